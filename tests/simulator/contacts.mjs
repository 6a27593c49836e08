// Simulated contacts: other WhatsApp users, each with its own libsignal store (primary device 0 only).
// A contact encrypts 1:1 messages to a linked device against the pre-keys that device uploaded, and decrypts what the
// linked device sends it (pkmsg/msg), after fetching the contact's own key bundle from the simulator.
import { randomInt } from 'node:crypto';
import libsignal from 'libsignal';
import { proto, unpadRandomMax16, writeRandomPadMax16 } from '@whiskeysockets/baileys';
import { randomLid } from './phone.mjs';

const { keyhelper, ProtocolAddress, SessionBuilder, SessionCipher } = libsignal;
const withPrefix = pub => (pub.length === 33 ? Buffer.from(pub) : Buffer.concat([Buffer.from([5]), pub]));
const stripPrefix = pub => (pub.length === 33 ? Buffer.from(pub.subarray(1)) : Buffer.from(pub));

/** In-memory libsignal storage; SessionRecord objects are kept as they are. */
class MemorySignalStore {
	constructor(identity) {
		// {pubKey(33), privKey(32)}; `identity` is a Baileys-style {public(32), private(32)} pair when given
		this.identity = identity
			? { pubKey: withPrefix(identity.public), privKey: Buffer.from(identity.private) }
			: keyhelper.generateIdentityKeyPair();
		this.registrationId = keyhelper.generateRegistrationId();
		this.signedPreKey = keyhelper.generateSignedPreKey(this.identity, randomInt(1, 2 ** 23));
		this.preKeys = new Map();
		this.nextPreKeyId = randomInt(1, 2 ** 22);
		this.sessions = new Map();
	}

	getOurIdentity() {
		return this.identity;
	}

	getOurRegistrationId() {
		return this.registrationId;
	}

	isTrustedIdentity() {
		return true;
	}

	async loadSession(addr) {
		return this.sessions.get(addr);
	}

	async storeSession(addr, record) {
		this.sessions.set(addr, record);
	}

	async loadPreKey(id) {
		const kp = this.preKeys.get(Number(id));
		return kp ? { pubKey: kp.pubKey, privKey: kp.privKey } : undefined;
	}

	async removePreKey(id) {
		this.preKeys.delete(Number(id));
	}

	async loadSignedPreKey(id) {
		if (Number(id) !== this.signedPreKey.keyId) {
			return undefined;
		}
		return this.signedPreKey.keyPair;
	}

	newPreKey() {
		const id = this.nextPreKeyId++;
		const { keyPair } = keyhelper.generatePreKey(id);
		this.preKeys.set(id, keyPair);
		return { keyId: id, public: keyPair.pubKey };
	}
}

/** Short summary of a decoded proto.Message for /admin/received. */
export const summarizeMessage = message => {
	const m = message?.deviceSentMessage?.message || message || {};
	const out = { type: 'unknown', text: null, quoted_id: null, reaction: null, edit: null, revoke: null, media: null };
	const ctx = m.extendedTextMessage?.contextInfo || m.imageMessage?.contextInfo || m.videoMessage?.contextInfo ||
		m.documentMessage?.contextInfo || m.audioMessage?.contextInfo || m.stickerMessage?.contextInfo;
	if (ctx?.stanzaId) {
		out.quoted_id = ctx.stanzaId;
	}
	if (m.conversation != null) {
		out.type = 'text';
		out.text = m.conversation;
	} else if (m.extendedTextMessage) {
		out.type = 'text';
		out.text = m.extendedTextMessage.text ?? null;
	} else if (m.reactionMessage) {
		out.type = 'reaction';
		out.reaction = { target_id: m.reactionMessage.key?.id ?? null, text: m.reactionMessage.text ?? '' };
	} else if (m.protocolMessage) {
		const pm = m.protocolMessage;
		const T = proto.Message.ProtocolMessage.Type;
		if (pm.type === T.REVOKE) {
			out.type = 'revoke';
			out.revoke = { target_id: pm.key?.id ?? null };
		} else if (pm.type === T.MESSAGE_EDIT) {
			out.type = 'edit';
			const em = pm.editedMessage || {};
			out.edit = {
				target_id: pm.key?.id ?? null,
				text: em.conversation ?? em.extendedTextMessage?.text ?? null
			};
			out.text = out.edit.text;
		} else {
			out.type = `protocol:${T[pm.type] ?? pm.type}`;
		}
	} else {
		for (const kind of ['image', 'video', 'audio', 'document', 'sticker']) {
			const mm = m[`${kind}Message`];
			if (mm) {
				out.type = kind;
				out.text = mm.caption ?? null;
				out.media = { mimetype: mm.mimetype ?? null, file_length: mm.fileLength != null ? Number(mm.fileLength) : null, url: mm.url ?? null, direct_path: mm.directPath ?? null };
				break;
			}
		}
		if (out.type === 'unknown') {
			const keys = Object.keys(m).filter(k => k !== 'messageContextInfo');
			out.type = keys[0] || 'empty';
		}
	}
	return out;
};

export class Contact {
	/** `identity` (optional, {public, private}) fixes the Signal identity, e.g. the primary phone's account key. */
	constructor({ phone, lid, pushName, identity }) {
		this.phone = String(phone);
		this.lid = String(lid || randomLid());
		this.pushName = pushName || `Contact ${this.phone.slice(-4)}`;
		this.store = new MemorySignalStore(identity);
		/** messages this contact received from linked devices, in order */
		this.received = [];
		/** messages this contact sent, with delivery state per device */
		this.sent = [];
		/** decrypted media the linked number sent, by message id */
		this.mediaPlain = new Map();
		this.receiptMode = 'read'; // 'read' | 'delivery' | 'none'
	}

	get pnJid() {
		return `${this.phone}@s.whatsapp.net`;
	}

	get lidJid() {
		return `${this.lid}@lid`;
	}

	/** Key bundle for `iq encrypt get <key>`; each call hands out a fresh one-time pre-key. */
	bundle() {
		const preKey = this.store.newPreKey();
		const spk = this.store.signedPreKey;
		return {
			registrationId: this.store.registrationId,
			identity: stripPrefix(this.store.identity.pubKey),
			signedPreKey: { keyId: spk.keyId, public: stripPrefix(spk.keyPair.pubKey), signature: Buffer.from(spk.signature) },
			preKey: { keyId: preKey.keyId, public: stripPrefix(preKey.public) }
		};
	}

	addressFor(device) {
		return new ProtocolAddress(`${device.account.phone}`, device.id);
	}

	hasSession(device) {
		const rec = this.store.sessions.get(this.addressFor(device).toString());
		return !!rec?.haveOpenSession();
	}

	forgetSession(device) {
		this.store.sessions.delete(this.addressFor(device).toString());
	}

	/** Encrypts a proto.Message for a linked device; builds a session from its uploaded bundle when needed. */
	async encryptFor(device, message) {
		const addr = this.addressFor(device);
		if (!this.hasSession(device)) {
			const b = device.takeBundle();
			if (!b.identityKey || !b.signedPreKey) {
				throw new Error(`device ${device.jid} has no key bundle`);
			}
			await new SessionBuilder(this.store, addr).initOutgoing({
				registrationId: b.registrationId,
				identityKey: withPrefix(b.identityKey),
				signedPreKey: { keyId: b.signedPreKey.keyId, publicKey: withPrefix(b.signedPreKey.public), signature: b.signedPreKey.signature },
				preKey: b.preKey ? { keyId: b.preKey.keyId, publicKey: withPrefix(b.preKey.public) } : undefined
			});
		}
		const bytes = writeRandomPadMax16(proto.Message.encode(message).finish());
		const { type, body } = await new SessionCipher(this.store, addr).encrypt(bytes);
		return { type: type === 3 ? 'pkmsg' : 'msg', ciphertext: Buffer.from(body, 'binary') };
	}

	/** Decrypts what a linked device sent this contact; returns the proto.Message. */
	async decryptFrom(device, type, ciphertext) {
		const cipher = new SessionCipher(this.store, this.addressFor(device));
		const plain = type === 'pkmsg'
			? await cipher.decryptPreKeyWhisperMessage(Buffer.from(ciphertext))
			: await cipher.decryptWhisperMessage(Buffer.from(ciphertext));
		return proto.Message.decode(unpadRandomMax16(plain));
	}

	toJSON() {
		return {
			phone: this.phone,
			lid: this.lid,
			push_name: this.pushName,
			receipts: this.receiptMode,
			received: this.received.length,
			sent: this.sent.length
		};
	}
}
