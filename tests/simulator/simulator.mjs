// Simulated WhatsApp Web server state and protocol: connections (Noise, registration, login), the primary phone's
// side of pairing, contacts exchanging Signal-encrypted 1:1 messages with linked devices, receipts, and error
// injection. The HTTP control surface lives in control.mjs; the entry point is server.mjs.
import { createHash, randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import {
	Curve,
	getAllBinaryNodeChildren,
	getBinaryNodeChild,
	getBinaryNodeChildren,
	jidDecode,
	proto,
	S_WHATSAPP_NET
} from '@whiskeysockets/baileys';
import { makeCertChain } from './certs.mjs';
import { Contact, summarizeMessage } from './contacts.mjs';
import { buildMediaMessage, decryptMedia, mediaOf } from './media.mjs';
import { encodeFrame, FrameReader, NoiseResponder } from './noise.mjs';
import {
	Account,
	buildPairSuccess,
	Device,
	finishLinkCode,
	parseQr,
	unwrapLinkCodeKey,
	verifyDeviceSignature,
	wrapLinkCodeKey
} from './phone.mjs';
import { rootKeyPair } from './root-key.mjs';

export const DEFAULT_CONFIG = Object.freeze({
	/** refs in each <pair-device>; the client shows one QR per ref and closes 408 after the last */
	qr_refs: 6,
	/** answer `w:p` pings; false → the client closes 408 after keepAliveIntervalMs + 5 s */
	answer_pings: true,
	/** HTTP status to answer WS upgrades with instead of upgrading (null = accept) */
	reject_ws_upgrade: null,
	/** with reject_ws_upgrade: close the TCP connection after the response (default: keep it open, like a proxy) */
	reject_ws_upgrade_close: false,
	/** send <ib><edge_routing> after login (the client then prefixes its intro with 'ED' + routing info) */
	edge_routing: true,
	/** send <ib><offline count=N/> after login (with any queued offline stanzas before it) */
	offline_ib: true,
	/** delay before a contact's delivery receipt; the read receipt follows after the same delay again */
	receipt_delay_ms: 25,
	/** <failure reason=N> for the next `fail_logins.count` logins (e.g. {reason: 403, count: 1}); null = off */
	fail_logins: null,
	/** platform name in <pair-success> */
	platform: 'android',
	/**
	 * after a device's first login the phone sends an INITIAL_BOOTSTRAP history sync notification (inline payload with
	 * the contacts' PN→LID mappings) and the app-state sync answers empty collections, so Baileys leaves its
	 * 20-second AwaitingInitialSync buffering at once, as with a real phone
	 */
	initial_sync: true
});

/** Builds a binary node with string attributes (the encoder silently mangles non-string attribute values). */
export const mkNode = (tag, attrs = {}, content) => {
	const a = {};
	for (const [k, v] of Object.entries(attrs)) {
		if (v !== undefined && v !== null) {
			a[k] = String(v);
		}
	}
	return content === undefined ? { tag, attrs: a } : { tag, attrs: a, content };
};

const unixNow = () => String(Math.floor(Date.now() / 1000));
const be = (n, bytes) => {
	const b = Buffer.alloc(bytes);
	b.writeUIntBE(n, 0, bytes);
	return b;
};
const readBE = buf => (buf && buf.length ? Buffer.from(buf).readUIntBE(0, buf.length) : 0);
const contentBuffer = node => {
	const c = node?.content;
	if (c === undefined || c === null) {
		return undefined;
	}
	return typeof c === 'string' ? Buffer.from(c, 'utf8') : Buffer.from(c);
};
const contentString = node => contentBuffer(node)?.toString('utf8');
const childBuffer = (node, tag) => contentBuffer(getBinaryNodeChild(node, tag));
export const newMessageId = () => '3EB0' + randomBytes(10).toString('hex').toUpperCase();

export class HttpError extends Error {
	constructor(status, message) {
		super(message);
		this.status = status;
	}
}

const messageToJSON = msg =>
	proto.Message.toObject(msg, { longs: Number, enums: String, bytes: String, defaults: false, oneofs: false });

class Connection {
	constructor(sim, ws, remote) {
		this.sim = sim;
		this.ws = ws;
		this.id = sim.nextConnId++;
		this.remote = remote;
		this.createdAt = Date.now();
		this.stage = 'hello'; // hello → finish → open → closed
		this.kind = null; // 'registration' | 'login'
		this.reader = new FrameReader();
		this.noise = new NoiseResponder({ staticKeyPair: sim.staticKeyPair, certChain: sim.certChain });
		this.noiseKey = null;
		this.device = null;
		this.registration = null;
		this.refs = [];
		this.linkCode = null;
		this.ready = false; // login finished (pre-keys, passive, digest answered; offline backlog sent)
		this.answerPings = true;
		this.pending = new Map();
		this.nextTag = 1;
		this.chain = Promise.resolve();
		this.counters = { frames_in: 0, frames_out: 0, pings: 0 };
		ws.on('message', data => {
			this.chain = this.chain.then(() => this.onData(data)).catch(err => this.onProtocolError(err));
		});
		ws.on('close', () => this.onClose());
		ws.on('error', err => sim.log('debug', `conn ${this.id} ws error: ${err.message}`));
	}

	get isOpen() {
		return this.stage !== 'closed' && this.ws.readyState === 1;
	}

	toJSON() {
		return {
			id: this.id,
			stage: this.stage,
			kind: this.kind,
			ready: this.ready,
			noise_key: this.noiseKey,
			phone: this.device?.account.phone ?? this.linkCode?.phone ?? null,
			device: this.device?.jid ?? null,
			refs: this.refs,
			pairing_code_pending: !!this.linkCode,
			answer_pings: this.answerPings,
			routing_info: this.reader.routingInfo ? this.reader.routingInfo.toString('base64') : null,
			age_ms: Date.now() - this.createdAt,
			...this.counters
		};
	}

	onProtocolError(err) {
		this.sim.log('warn', `conn ${this.id} protocol error: ${err?.stack || err}`);
		this.terminate();
	}

	async onData(data) {
		if (this.stage === 'closed') {
			return;
		}
		for (const frame of this.reader.push(Buffer.from(data))) {
			this.counters.frames_in++;
			await this.onFrame(frame);
		}
	}

	async onFrame(frame) {
		switch (this.stage) {
			case 'hello': {
				const hello = this.noise.onClientHello(frame);
				this.sendRaw(encodeFrame(Buffer.from(hello)));
				this.stage = 'finish';
				return;
			}
			case 'finish': {
				const { clientStatic, payload } = this.noise.onClientFinish(frame);
				this.noiseKey = clientStatic.toString('base64');
				this.stage = 'open';
				await this.onClientPayload(payload);
				return;
			}
			case 'open': {
				const node = await this.noise.decryptNode(frame);
				this.sim.log('debug', `conn ${this.id} <- ${node.tag} ${JSON.stringify(node.attrs)}`);
				await this.onNode(node);
				return;
			}
			default:
				return;
		}
	}

	sendRaw(bytes) {
		if (this.ws.readyState === 1) {
			this.ws.send(bytes);
		}
	}

	send(node) {
		if (!this.isOpen || !this.noise.transport) {
			return false;
		}
		this.counters.frames_out++;
		this.sim.log('debug', `conn ${this.id} -> ${node.tag} ${JSON.stringify(node.attrs)}`);
		this.ws.send(this.noise.encryptNode(node));
		return true;
	}

	/** Sends an iq to the client and resolves with its answer (an iq result/error with the same id). */
	query(node, timeoutMs = 10000) {
		const id = node.attrs.id || `sim-${this.id}-${this.nextTag++}`;
		node.attrs.id = id;
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.pending.delete(id);
				reject(new Error(`client did not answer iq ${id} within ${timeoutMs} ms`));
			}, timeoutMs);
			this.pending.set(id, { resolve, reject, timer });
			if (!this.send(node)) {
				clearTimeout(timer);
				this.pending.delete(id);
				reject(new Error('connection closed'));
			}
		});
	}

	/** Closes the socket after a grace period unless the client closed it first. */
	closeSoon(ms = 1000) {
		setTimeout(() => {
			if (this.ws.readyState === 1) {
				this.ws.close();
			}
		}, ms).unref();
	}

	terminate() {
		try {
			this.ws.terminate();
		} catch {}
		this.onClose();
	}

	onClose() {
		if (this.stage === 'closed') {
			return;
		}
		this.stage = 'closed';
		this.ready = false;
		for (const ref of this.refs) {
			this.sim.refs.delete(ref);
		}
		for (const { reject, timer } of this.pending.values()) {
			clearTimeout(timer);
			reject(new Error('connection closed'));
		}
		this.pending.clear();
		this.linkCode?.waiter?.reject(new Error('connection closed before pairing completed'));
		this.sim.connections.delete(this);
		this.sim.log('info', `conn ${this.id} closed${this.device ? ` (${this.device.jid})` : ''}`);
	}

	// ---- registration and login ----

	async onClientPayload(payload) {
		const sim = this.sim;
		if (payload.devicePairingData && !payload.passive) {
			const d = payload.devicePairingData;
			this.kind = 'registration';
			this.registration = {
				registrationId: readBE(d.eRegid),
				identityKey: Buffer.from(d.eIdent),
				signedPreKey: { keyId: readBE(d.eSkeyId), public: Buffer.from(d.eSkeyVal), signature: Buffer.from(d.eSkeySig) },
				pushName: payload.pushName || null
			};
			sim.counters.registrations++;
			const refs = [];
			for (let i = 0; i < Math.max(1, Number(sim.config.qr_refs) || 1); i++) {
				const ref = `2@${randomBytes(30).toString('base64')}`;
				refs.push(ref);
				sim.refs.set(ref, this);
			}
			this.refs = refs;
			sim.log('info', `conn ${this.id} registration; sent ${refs.length} QR refs`);
			this.send(
				mkNode('iq', { from: S_WHATSAPP_NET, type: 'set', id: `sim-${this.id}-${this.nextTag++}`, xmlns: 'md' }, [
					mkNode('pair-device', {}, refs.map(r => mkNode('ref', {}, Buffer.from(r, 'utf8'))))
				])
			);
			return;
		}
		const phone = payload.username != null ? payload.username.toString() : null;
		const deviceId = payload.device ?? 0;
		const device = sim.devicesByNoise.get(this.noiseKey);
		this.kind = 'login';
		if (!device || device.account.phone !== phone || device.id !== deviceId) {
			sim.counters.login_failures++;
			sim.log('info', `conn ${this.id} login for unknown device ${phone}:${deviceId} → failure 401`);
			this.send(mkNode('failure', { reason: '401', location: 'sim' }));
			this.closeSoon(500);
			return;
		}
		const fl = sim.config.fail_logins;
		if (fl && (fl.count ?? 1) > 0) {
			sim.config = { ...sim.config, fail_logins: (fl.count ?? 1) > 1 ? { ...fl, count: (fl.count ?? 1) - 1 } : null };
			sim.counters.login_failures++;
			this.send(mkNode('failure', fl.reason != null ? { reason: fl.reason, location: 'sim' } : { location: 'sim' }));
			this.closeSoon(500);
			return;
		}
		// another live connection with the same credentials is replaced, like the real server does
		for (const other of sim.connections) {
			if (other !== this && other.device === device && other.isOpen) {
				sim.log('info', `conn ${other.id} replaced by conn ${this.id}`);
				other.ready = false; // no more deliveries to the replaced connection
				other.send(mkNode('stream:error', {}, [mkNode('conflict', { type: 'replaced' })]));
				other.closeSoon(500);
			}
		}
		this.device = device;
		sim.counters.logins++;
		this.send(mkNode('success', { t: unixNow(), lid: device.lidJid, location: 'sim', props: '1', creation: String(Math.floor(device.pairedAt / 1000)) }));
		if (sim.config.edge_routing) {
			this.send(mkNode('ib', {}, [mkNode('edge_routing', {}, [mkNode('routing_info', {}, randomBytes(8))])]));
		}
		// fallback in case the client never asks for the digest
		this.readyTimer = setTimeout(() => this.finishLogin(), 15000);
		this.readyTimer.unref();
		sim.log('info', `conn ${this.id} logged in as ${device.jid}`);
	}

	/** After the login iqs: deliver the offline backlog and announce its end. */
	finishLogin() {
		if (this.ready || !this.device || !this.isOpen) {
			return;
		}
		clearTimeout(this.readyTimer);
		this.ready = true;
		const queue = this.device.offlineQueue.splice(0);
		for (const stanza of queue) {
			stanza.attrs.offline = '1';
			this.send(stanza);
		}
		if (this.sim.config.offline_ib) {
			this.send(mkNode('ib', {}, [mkNode('offline', { count: String(queue.length) })]));
		}
		if (this.sim.config.initial_sync && !this.device.initialSyncSent) {
			this.device.initialSyncSent = true;
			this.sim.sendInitialSync(this).catch(err => this.sim.log('warn', `initial sync for ${this.device?.jid} failed: ${err.stack}`));
		}
		this.sim.emitReady(this);
	}

	// ---- stanzas from the client ----

	async onNode(node) {
		switch (node.tag) {
			case 'iq':
				return this.onIq(node);
			case 'message':
				return this.sim.onClientMessage(this, node);
			case 'receipt':
				return this.sim.onClientReceipt(this, node);
			default:
				// ack, presence, chatstate, ib (unified_session, offline_batch), call: nothing to answer
				return;
		}
	}

	result(node, content) {
		return mkNode('iq', { from: S_WHATSAPP_NET, type: 'result', id: node.attrs.id }, content);
	}

	async onIq(node) {
		const { type, xmlns, id } = node.attrs;
		if (type === 'result' || type === 'error') {
			const p = this.pending.get(id);
			if (p) {
				this.pending.delete(id);
				clearTimeout(p.timer);
				p.resolve(node);
			}
			return;
		}
		const [child] = getAllBinaryNodeChildren(node);
		switch (xmlns) {
			case 'w:p':
				this.counters.pings++;
				if (this.answerPings && this.sim.config.answer_pings) {
					this.send(this.result(node));
				}
				return;
			case 'encrypt':
				return this.onEncryptIq(node, child);
			case 'usync':
				return this.send(this.result(node, [this.sim.answerUsync(this, child)]));
			case 'privacy':
				if (child?.tag === 'privacy' && type === 'get') {
					// readreceipts=all: readMessages() then sends `read` rather than `read-self`
					const cats = ['last', 'online', 'profile', 'status', 'groupadd', 'calladd', 'readreceipts', 'messages'];
					return this.send(this.result(node, [mkNode('privacy', {}, cats.map(name => mkNode('category', { name, value: 'all' })))]));
				}
				return this.send(this.result(node));
			case 'blocklist':
				return this.send(this.result(node, type === 'get' ? [mkNode('list', {}, [])] : undefined));
			case 'abt':
				return this.send(this.result(node, [mkNode('props', { protocol: '1' }, [])]));
			case 'md':
				return this.onMdIq(node, child);
			case 'w:sync:app:state': {
				// app-state sync: every requested collection is empty and complete
				const collections = getBinaryNodeChildren(child, 'collection').map(c =>
					mkNode('collection', { name: c.attrs.name, version: c.attrs.version || '0' })
				);
				return this.send(this.result(node, [mkNode('sync', {}, collections)]));
			}
			case 'w:m':
				if (child?.tag === 'media_conn') {
					return this.send(
						this.result(node, [
							mkNode('media_conn', { auth: 'sim', ttl: '3600', auth_ttl: '3600', max_buckets: '12' }, [
								mkNode('host', { hostname: this.sim.hostForMedia() })
							])
						])
					);
				}
				return this.send(this.result(node));
			default:
				// passive active/passive, w:stats, dirty, props, profile pictures, ...: an empty result is accepted
				return this.send(this.result(node));
		}
	}

	onEncryptIq(node, child) {
		const device = this.device;
		switch (child?.tag) {
			case 'count':
				return this.send(this.result(node, [mkNode('count', { value: String(device ? device.preKeys.size : 0) })]));
			case 'digest':
				this.send(this.result(node, [mkNode('digest', {}, [])]));
				// the client emits connection 'open' right after this answer
				setImmediate(() => this.finishLogin());
				return;
			case 'key':
				return this.send(this.result(node, [this.sim.answerKeyFetch(this, child)]));
			case 'rotate': {
				const skey = getBinaryNodeChild(child, 'skey');
				if (device && skey) {
					device.signedPreKey = {
						keyId: readBE(childBuffer(skey, 'id')),
						public: childBuffer(skey, 'value'),
						signature: childBuffer(skey, 'signature')
					};
				}
				return this.send(this.result(node));
			}
			default:
				break;
		}
		const list = getBinaryNodeChild(node, 'list');
		if (node.attrs.type === 'set' && list) {
			// pre-key upload: registration, type, identity, list of key{id,value}, skey{id,value,signature}
			if (device) {
				const identity = childBuffer(node, 'identity');
				if (identity && !identity.equals(device.identityKey)) {
					this.sim.log('warn', `conn ${this.id} pre-key upload with a different identity key`);
				}
				device.registrationId = readBE(childBuffer(node, 'registration')) || device.registrationId;
				let n = 0;
				for (const key of getBinaryNodeChildren(list, 'key')) {
					device.preKeys.set(readBE(childBuffer(key, 'id')), childBuffer(key, 'value'));
					n++;
				}
				device.preKeysUploaded += n;
				const skey = getBinaryNodeChild(node, 'skey');
				if (skey) {
					device.signedPreKey = {
						keyId: readBE(childBuffer(skey, 'id')),
						public: childBuffer(skey, 'value'),
						signature: childBuffer(skey, 'signature')
					};
				}
				this.sim.counters.prekeys_uploaded += n;
				this.sim.log('info', `conn ${this.id} ${device.jid} uploaded ${n} pre-keys`);
			}
			return this.send(this.result(node));
		}
		return this.send(this.result(node));
	}

	onMdIq(node, child) {
		if (child?.tag === 'link_code_companion_reg') {
			const stage = child.attrs.stage;
			if (stage === 'companion_hello') {
				const phone = (child.attrs.jid || '').split('@')[0].split(':')[0];
				const ref = randomBytes(16).toString('base64');
				this.linkCode = {
					phone,
					ref,
					wrappedCompanionEphemeral: childBuffer(child, 'link_code_pairing_wrapped_companion_ephemeral_pub'),
					companionNoiseKey: childBuffer(child, 'companion_server_auth_key_pub'),
					platformId: contentString(getBinaryNodeChild(child, 'companion_platform_id')),
					platformDisplay: contentString(getBinaryNodeChild(child, 'companion_platform_display'))
				};
				this.sim.log('info', `conn ${this.id} requested a pairing code for ${phone}`);
				return this.send(
					this.result(node, [
						mkNode('link_code_companion_reg', {}, [mkNode('link_code_pairing_ref', {}, Buffer.from(ref, 'utf8'))])
					])
				);
			}
			if (stage === 'companion_finish') {
				const lc = this.linkCode;
				if (!lc?.phoneEphemeral) {
					return this.send(mkNode('iq', { from: S_WHATSAPP_NET, type: 'error', id: node.attrs.id }, [mkNode('error', { code: '400', text: 'bad-request' })]));
				}
				try {
					const { advSecret, companionIdentity } = finishLinkCode({
						phoneEphemeral: lc.phoneEphemeral,
						companionEphemeralPub: lc.companionEphemeralPub,
						account: lc.account,
						wrappedBundle: childBuffer(child, 'link_code_pairing_wrapped_key_bundle'),
						companionIdentity: childBuffer(child, 'companion_identity_public')
					});
					this.send(this.result(node));
					// pair-success waits for the client's answer: do not block this connection's frame queue on it
					this.sim
						.completePairing(this, { account: lc.account, advSecret, companionIdentity, ...lc.options })
						.then(res => lc.waiter?.resolve(res), err => lc.waiter?.reject(err));
				} catch (err) {
					this.sim.log('info', `conn ${this.id} pairing-code key bundle rejected: ${err.message}`);
					this.send(mkNode('iq', { from: S_WHATSAPP_NET, type: 'error', id: node.attrs.id }, [mkNode('error', { code: '401', text: 'not-authorized' })]));
					lc.waiter?.reject(new HttpError(400, 'pairing code does not match (key bundle did not decrypt)'));
					this.linkCode = null;
				}
				return;
			}
			return this.send(this.result(node));
		}
		if (child?.tag === 'remove-companion-device' && this.device) {
			this.sim.unlinkDevice(this.device, { notify: false });
			return this.send(this.result(node));
		}
		return this.send(this.result(node));
	}
}

export class Simulator {
	constructor({ log = () => {}, root = rootKeyPair() } = {}) {
		this.log = log;
		this.root = root;
		this.staticKeyPair = Curve.generateKeyPair();
		this.certChain = makeCertChain({ root, serverStaticPublic: this.staticKeyPair.public });
		this.port = 0;
		this.readyWaiters = new Set();
		this.connections = new Set();
		this.reset();
	}

	reset() {
		for (const conn of [...this.connections]) {
			conn.terminate();
		}
		/** @type {Map<string, Account>} */
		this.accounts = new Map();
		/** @type {Map<string, Device>} */
		this.devicesByNoise = new Map();
		/** @type {Map<string, Contact>} */
		this.contacts = new Map();
		this.connections = new Set();
		this.refs = new Map();
		this.media = new Map();
		/** blobs the linked devices uploaded: id → { blob, path, token, at } */
		this.uploads = new Map();
		this.config = { ...DEFAULT_CONFIG };
		this.nextConnId = this.nextConnId || 1;
		this.counters = {
			connections: 0,
			registrations: 0,
			logins: 0,
			login_failures: 0,
			pairings: 0,
			prekeys_uploaded: 0,
			messages_to_client: 0,
			messages_from_client: 0,
			decrypt_failures: 0,
			receipts_from_client: 0,
			receipts_to_client: 0,
			rejected_upgrades: 0,
			uploads: 0,
			kicks: 0
		};
	}

	get baseUrl() {
		return `http://127.0.0.1:${this.port}`;
	}

	hostForMedia() {
		return `127.0.0.1:${this.port}`;
	}

	storeUpload(path, params, blob) {
		const id = randomBytes(12).toString('hex');
		this.uploads.set(id, { blob, path, token: params.get('token'), at: Date.now() });
		this.counters.uploads++;
		return { url: `https://${this.hostForMedia()}/v/sim/${id}`, direct_path: `/v/sim/${id}?ccb=sim`, ts: Math.floor(Date.now() / 1000) };
	}

	/** Finds the upload a media message points to (directPath or url) and decrypts it. */
	async decryptUploaded(message) {
		const media = mediaOf(message);
		if (!media) {
			return null;
		}
		const ref = media.body.directPath || media.body.url || '';
		const m = /\/v\/sim\/([0-9a-f]+)/.exec(ref);
		const up = m && this.uploads.get(m[1]);
		if (!up) {
			return { found: false };
		}
		const { plain, macOk } = await decryptMedia(up.blob, media.body.mediaKey, media.mediaType);
		const sha = createHash('sha256').update(plain).digest();
		return {
			found: true,
			plain,
			mac_ok: macOk,
			sha256_ok: media.body.fileSha256 ? sha.equals(Buffer.from(media.body.fileSha256)) : null,
			size: plain.length
		};
	}

	receivedMedia(phone, id) {
		const contact = this.contactByPhone(phone);
		const bytes = contact.mediaPlain.get(id);
		if (!bytes) {
			throw new HttpError(404, `no decrypted media for message ${id}`);
		}
		return bytes;
	}

	setConfig(patch) {
		const next = { ...this.config };
		for (const [k, v] of Object.entries(patch || {})) {
			if (!(k in DEFAULT_CONFIG)) {
				throw new HttpError(400, `unknown config key "${k}" (known: ${Object.keys(DEFAULT_CONFIG).join(', ')})`);
			}
			next[k] = v;
		}
		this.config = next;
		return this.config;
	}

	acceptConnection(ws, remote) {
		const conn = new Connection(this, ws, remote);
		this.connections.add(conn);
		this.counters.connections++;
		this.log('info', `conn ${conn.id} opened from ${remote}`);
		return conn;
	}

	state() {
		return {
			port: this.port,
			root_key: this.root.public.toString('base64'),
			config: this.config,
			connections: [...this.connections].map(c => c.toJSON()),
			accounts: [...this.accounts.values()].map(a => a.toJSON()),
			contacts: [...this.contacts.values()].map(c => c.toJSON()),
			pending_qr_refs: [...this.refs.entries()].map(([ref, c]) => ({ ref, connection: c.id, noise_key: c.noiseKey })),
			pending_pairing_codes: [...this.connections].filter(c => c.linkCode).map(c => ({ connection: c.id, phone: c.linkCode.phone })),
			counters: this.counters
		};
	}

	emitReady(conn) {
		for (const w of [...this.readyWaiters]) {
			w(conn);
		}
	}

	liveConnectionFor(device) {
		for (const c of this.connections) {
			if (c.device === device && c.isOpen && c.ready) {
				return c;
			}
		}
		return null;
	}

	// ---- accounts and pairing (the phone) ----

	getOrCreateAccount({ phone, lid, push_name }) {
		const digits = String(phone || '').replace(/\D/g, '');
		if (!digits) {
			throw new HttpError(400, 'phone (digits) is required');
		}
		let account = this.accounts.get(digits);
		if (!account) {
			account = new Account({ phone: digits, lid: lid ? String(lid).replace(/@.*$/, '') : undefined, pushName: push_name });
			this.accounts.set(digits, account);
		} else if (push_name) {
			account.pushName = push_name;
		}
		return account;
	}

	async scanQr({ qr, phone = '5511999990000', lid, push_name, platform, biz_name } = {}) {
		if (!qr) {
			throw new HttpError(400, 'qr is required');
		}
		let parsed;
		try {
			parsed = parseQr(qr);
		} catch (err) {
			throw new HttpError(400, err.message);
		}
		const conn = this.refs.get(parsed.ref);
		if (!conn || !conn.isOpen) {
			throw new HttpError(404, 'no waiting connection shows this QR ref (expired, already used or closed)');
		}
		if (conn.noiseKey !== parsed.noiseKey) {
			throw new HttpError(400, 'QR noise key does not match the connection that received the ref');
		}
		if (!parsed.identityKey.equals(conn.registration.identityKey)) {
			throw new HttpError(400, 'QR identity key does not match the registration payload');
		}
		const account = this.getOrCreateAccount({ phone, lid, push_name });
		return this.completePairing(conn, {
			account,
			advSecret: parsed.advSecret,
			companionIdentity: parsed.identityKey,
			platform,
			bizName: biz_name
		});
	}

	/** Phone side of the pairing-code flow; resolves once pair-success has been signed by the client. */
	async pairingCode({ phone, code, lid, push_name, platform, biz_name, timeout_ms = 20000 } = {}) {
		const digits = String(phone || '').replace(/\D/g, '');
		if (!digits || !code) {
			throw new HttpError(400, 'phone and code are required');
		}
		const conn = [...this.connections].find(c => c.isOpen && c.linkCode && c.linkCode.phone === digits && !c.linkCode.phoneEphemeral);
		if (!conn) {
			throw new HttpError(404, `no connection requested a pairing code for ${digits}`);
		}
		const lc = conn.linkCode;
		const account = this.getOrCreateAccount({ phone: digits, lid, push_name });
		const normalized = String(code).replace(/[-\s]/g, '').toUpperCase();
		lc.account = account;
		lc.options = { platform, bizName: biz_name };
		lc.companionEphemeralPub = await unwrapLinkCodeKey(lc.wrappedCompanionEphemeral, normalized);
		lc.phoneEphemeral = Curve.generateKeyPair();
		const wrappedPrimary = await wrapLinkCodeKey(lc.phoneEphemeral.public, normalized);
		const done = new Promise((resolve, reject) => {
			lc.waiter = { resolve, reject };
		});
		const timer = setTimeout(() => lc.waiter.reject(new HttpError(504, 'client did not finish the pairing-code exchange')), timeout_ms);
		conn.send(
			mkNode('notification', { from: S_WHATSAPP_NET, id: `sim-${conn.id}-${conn.nextTag++}`, t: unixNow(), type: 'link_code_companion_reg' }, [
				mkNode('link_code_companion_reg', { stage: 'primary_hello' }, [
					mkNode('link_code_pairing_wrapped_primary_ephemeral_pub', {}, wrappedPrimary),
					mkNode('primary_identity_pub', {}, account.identity.public),
					mkNode('link_code_pairing_ref', {}, Buffer.from(lc.ref, 'utf8'))
				])
			])
		);
		try {
			return await done;
		} finally {
			clearTimeout(timer);
		}
	}

	async completePairing(conn, { account, advSecret, companionIdentity, platform, bizName }) {
		const device = new Device({
			account,
			id: account.nextDeviceId++,
			noiseKey: conn.noiseKey,
			registration: conn.registration,
			advSecret: Buffer.from(advSecret),
			platform: platform || this.config.platform,
			keyIndex: account.nextKeyIndex++
		});
		const pairSuccess = buildPairSuccess({ account, device, companionIdentity, platform: device.platform, bizName });
		let reply;
		try {
			reply = await conn.query(mkNode('iq', { from: S_WHATSAPP_NET, type: 'set', t: unixNow(), xmlns: 'md' }, [pairSuccess]), 10000);
		} catch (err) {
			throw new HttpError(504, `pair-success not answered: ${err.message}`);
		}
		if (reply.attrs.type !== 'result') {
			throw new HttpError(502, `client rejected pair-success: ${JSON.stringify(reply.attrs)}`);
		}
		const identityNode = getBinaryNodeChild(getBinaryNodeChild(reply, 'pair-device-sign'), 'device-identity');
		if (!identityNode) {
			throw new HttpError(502, 'client answered pair-success without <pair-device-sign><device-identity>');
		}
		device.deviceIdentity = contentBuffer(identityNode);
		device.signatureValid = verifyDeviceSignature({ account, companionIdentity, signedBytes: device.deviceIdentity });
		if (!device.signatureValid) {
			this.log('warn', `device signature of ${device.jid} does not verify`);
		}
		account.devices.set(device.id, device);
		const previous = this.devicesByNoise.get(conn.noiseKey);
		if (previous && previous !== device) {
			previous.account.devices.delete(previous.id);
		}
		this.devicesByNoise.set(conn.noiseKey, device);
		for (const ref of conn.refs) {
			this.refs.delete(ref);
		}
		conn.refs = [];
		conn.linkCode = null;
		this.counters.pairings++;
		this.log('info', `paired ${device.jid} (lid ${device.lidJid}) on conn ${conn.id}; sending 515`);
		conn.send(mkNode('stream:error', { code: '515' }));
		conn.closeSoon(2000);
		return {
			phone: account.phone,
			lid: account.lid,
			device_id: device.id,
			jid: device.jid,
			lid_jid: device.lidJid,
			noise_key: device.noiseKey,
			device_signature_valid: device.signatureValid
		};
	}

	/** The phone (device 0 of the account) sends the companion its initial history sync notification. */
	async sendInitialSync(conn) {
		const device = conn.device;
		const account = device.account;
		account.phoneSender ||= new Contact({ phone: account.phone, lid: account.lid, pushName: account.pushName, identity: account.identity });
		const T = proto.HistorySync.HistorySyncType.INITIAL_BOOTSTRAP;
		const history = proto.HistorySync.encode({
			syncType: T,
			conversations: [],
			progress: 100,
			chunkOrder: 0,
			phoneNumberToLidMappings: [...this.contacts.values()].map(c => ({ pnJid: c.pnJid, lidJid: c.lidJid }))
		}).finish();
		const message = {
			protocolMessage: {
				type: proto.Message.ProtocolMessage.Type.HISTORY_SYNC_NOTIFICATION,
				historySyncNotification: {
					syncType: T,
					progress: 100,
					chunkOrder: 0,
					fileLength: history.length,
					initialHistBootstrapInlinePayload: deflateSync(history)
				}
			}
		};
		const { type, ciphertext } = await account.phoneSender.encryptFor(device, message);
		conn.send(
			// notify = the account's push name: Baileys takes creds.me.name from a fromMe message's pushName
			mkNode('message', { from: account.pnJid, id: newMessageId(), t: unixNow(), type: 'text', category: 'peer', push_priority: 'high_force', notify: account.pushName }, [
				mkNode('enc', { v: '2', type }, ciphertext)
			])
		);
	}

	/** Like the real server: tell a connected device when its stock of one-time pre-keys runs low. */
	checkPreKeys(device) {
		if (device.preKeys.size >= 5 || device.preKeysUploaded === 0) {
			return;
		}
		const conn = this.liveConnectionFor(device);
		conn?.send(
			mkNode('notification', { from: S_WHATSAPP_NET, id: `sim-${conn.id}-${conn.nextTag++}`, t: unixNow(), type: 'encrypt' }, [
				mkNode('count', { value: String(device.preKeys.size) })
			])
		);
	}

	/** A contact's presence (`available`, `unavailable`) or chat state (`composing`, `recording`, `paused`). */
	sendPresence({ from_phone, to, type = 'available', addressing = 'pn' }) {
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		const from = addressing === 'lid' ? contact.lidJid : contact.pnJid;
		let stanza;
		if (type === 'available' || type === 'unavailable') {
			stanza = mkNode('presence', { from, type: type === 'unavailable' ? 'unavailable' : undefined, last: type === 'unavailable' ? unixNow() : undefined });
		} else if (type === 'composing' || type === 'recording' || type === 'paused') {
			stanza = mkNode('chatstate', { from }, [mkNode(type === 'paused' ? 'paused' : 'composing', type === 'recording' ? { media: 'audio' } : {})]);
		} else {
			throw new HttpError(400, 'type must be available, unavailable, composing, recording or paused');
		}
		let sent = 0;
		for (const device of account.devices.values()) {
			const conn = this.liveConnectionFor(device);
			if (conn?.send(stanza)) {
				sent++;
			}
		}
		return { sent };
	}

	unlinkDevice(device, { notify = true } = {}) {
		device.account.devices.delete(device.id);
		if (this.devicesByNoise.get(device.noiseKey) === device) {
			this.devicesByNoise.delete(device.noiseKey);
		}
		for (const c of this.connections) {
			if (c.device === device && notify) {
				c.send(mkNode('failure', { reason: '401', location: 'sim' }));
				c.closeSoon(500);
			}
		}
	}

	// ---- contacts ----

	addContact({ phone, lid, push_name, receipts } = {}) {
		const digits = String(phone || '').replace(/\D/g, '');
		if (!digits) {
			throw new HttpError(400, 'phone (digits) is required');
		}
		let contact = this.contacts.get(digits);
		if (!contact) {
			contact = new Contact({ phone: digits, lid: lid ? String(lid).replace(/@.*$/, '') : undefined, pushName: push_name });
			this.contacts.set(digits, contact);
		} else if (push_name) {
			contact.pushName = push_name;
		}
		if (receipts) {
			if (!['read', 'delivery', 'none'].includes(receipts)) {
				throw new HttpError(400, 'receipts must be read, delivery or none');
			}
			contact.receiptMode = receipts;
		}
		return contact;
	}

	contactByPhone(phone) {
		const contact = this.contacts.get(String(phone || '').replace(/\D/g, ''));
		if (!contact) {
			throw new HttpError(404, `unknown contact ${phone}`);
		}
		return contact;
	}

	/** Finds the contact a user part (PN or LID, without device) belongs to. */
	contactByUser(user) {
		for (const c of this.contacts.values()) {
			if (c.phone === user || c.lid === user) {
				return c;
			}
		}
		return null;
	}

	accountByUser(user) {
		for (const a of this.accounts.values()) {
			if (a.phone === user || a.lid === user) {
				return a;
			}
		}
		return null;
	}

	targetAccount(to) {
		if (to) {
			const a = this.accountByUser(String(to).replace(/@.*$/, '').replace(/\D/g, ''));
			if (!a) {
				throw new HttpError(404, `unknown linked number ${to}`);
			}
			return a;
		}
		if (this.accounts.size !== 1) {
			throw new HttpError(400, `"to" is required when ${this.accounts.size} linked numbers exist`);
		}
		return this.accounts.values().next().value;
	}

	/** Encrypts `message` from a contact to every linked device of `account`; live devices get it now. */
	async sendFromContact({ contact, account, message, id, addressing = 'pn', stanzaType = 'text', mediatype, edit, corrupt = false }) {
		if (addressing !== 'pn' && addressing !== 'lid') {
			throw new HttpError(400, 'addressing must be "pn" or "lid"');
		}
		if (!account.devices.size) {
			throw new HttpError(409, `${account.phone} has no linked device`);
		}
		id = id || newMessageId();
		const t = unixNow();
		const devices = [];
		for (const device of account.devices.values()) {
			if (!contact.hasSession(device) && device.preKeysUploaded === 0) {
				throw new HttpError(409, `${device.jid} has not uploaded pre-keys yet (wait for connection open)`);
			}
			const { type, ciphertext } = await contact.encryptFor(device, message);
			if (corrupt) {
				ciphertext[ciphertext.length - 1] ^= 0xff; // breaks the MAC: the client answers with a retry receipt
			}
			this.checkPreKeys(device);
			const from = addressing === 'lid'
				? { from: contact.lidJid, sender_pn: contact.pnJid, addressing_mode: 'lid' }
				: { from: contact.pnJid, sender_lid: contact.lidJid, addressing_mode: 'pn' };
			const stanza = mkNode('message', { ...from, id, t, type: stanzaType, notify: contact.pushName, edit }, [
				mkNode('enc', { v: '2', type, mediatype }, ciphertext)
			]);
			const conn = this.liveConnectionFor(device);
			if (conn) {
				conn.send(stanza);
			} else {
				device.offlineQueue.push(stanza);
			}
			devices.push({ device: device.jid, live: !!conn, enc: type, sent_at_ms: conn ? Date.now() : null });
		}
		this.counters.messages_to_client++;
		contact.sent.push({
			id,
			to: account.phone,
			addressing,
			t: Number(t),
			...summarizeMessage(message),
			stanza_type: stanzaType,
			mediatype: mediatype ?? null,
			edit_attr: edit ?? null,
			message,
			retries: 0,
			status: Object.fromEntries(devices.map(d => [d.device, { delivered_at: null, read_at: null }]))
		});
		return { id, t: Number(t), devices };
	}

	/** Builds a quote context for a reply to `quotedId` (a message either side sent). */
	quoteContext(contact, account, quotedId, addressing) {
		const ownMsg = contact.sent.find(m => m.id === quotedId);
		const theirs = contact.received.find(m => m.id === quotedId);
		const participant = ownMsg
			? (addressing === 'lid' ? contact.lidJid : contact.pnJid)
			: (addressing === 'lid' ? account.lidJid : account.pnJid);
		const text = ownMsg?.text ?? theirs?.text ?? '';
		return { stanzaId: quotedId, participant, quotedMessage: { conversation: text } };
	}

	async sendText({ from_phone, to, text, addressing = 'pn', id, quoted, corrupt }) {
		if (typeof text !== 'string') {
			throw new HttpError(400, 'text (string) is required');
		}
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		const message = quoted
			? { extendedTextMessage: { text, contextInfo: this.quoteContext(contact, account, quoted, addressing) } }
			: { conversation: text };
		return this.sendFromContact({ contact, account, message, id, addressing, corrupt: !!corrupt });
	}

	async sendMedia({ from_phone, to, kind = 'image', bytes_b64, mimetype, caption, file_name, addressing = 'pn', id }) {
		if (!bytes_b64) {
			throw new HttpError(400, 'bytes_b64 is required');
		}
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		let built;
		try {
			built = await buildMediaMessage({
				kind,
				bytes: Buffer.from(bytes_b64, 'base64'),
				mimetype: mimetype || 'application/octet-stream',
				caption,
				fileName: file_name,
				baseUrl: this.baseUrl,
				store: (mediaId, blob) => this.media.set(mediaId, blob)
			});
		} catch (err) {
			throw new HttpError(400, err.message);
		}
		const res = await this.sendFromContact({ contact, account, message: built.message, id, addressing, stanzaType: 'media', mediatype: kind === 'ptt' ? 'ptt' : built.mediaType });
		return { ...res, media_id: built.mediaId, url: built.url };
	}

	/** Any proto.Message (JSON as accepted by proto.Message.fromObject, bytes as base64). */
	async sendMessage({ from_phone, to, message, addressing = 'pn', id, stanza_type = 'text', edit }) {
		if (!message || typeof message !== 'object') {
			throw new HttpError(400, 'message (proto.Message JSON) is required');
		}
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		return this.sendFromContact({ contact, account, message: proto.Message.fromObject(message), id, addressing, stanzaType: stanza_type, edit });
	}

	/** The chat key a contact uses to refer to `targetId` (its own message or one the linked number sent it). */
	targetKey(contact, account, targetId, addressing) {
		const own = contact.sent.some(m => m.id === targetId);
		return { remoteJid: addressing === 'lid' ? account.lidJid : account.pnJid, fromMe: own, id: targetId };
	}

	async sendReaction({ from_phone, to, target_id, text = '', addressing = 'pn', id }) {
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		const message = { reactionMessage: { key: this.targetKey(contact, account, target_id, addressing), text, senderTimestampMs: Date.now() } };
		return this.sendFromContact({ contact, account, message, id, addressing, stanzaType: 'reaction' });
	}

	async sendEdit({ from_phone, to, target_id, text, addressing = 'pn', id }) {
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		const message = {
			protocolMessage: {
				key: this.targetKey(contact, account, target_id, addressing),
				type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
				editedMessage: { conversation: text },
				timestampMs: Date.now()
			}
		};
		return this.sendFromContact({ contact, account, message, id, addressing, edit: '1' });
	}

	async sendRevoke({ from_phone, to, target_id, addressing = 'pn', id }) {
		const contact = this.contactByPhone(from_phone);
		const account = this.targetAccount(to);
		const message = { protocolMessage: { key: this.targetKey(contact, account, target_id, addressing), type: proto.Message.ProtocolMessage.Type.REVOKE } };
		return this.sendFromContact({ contact, account, message, id, addressing, edit: '7' });
	}

	/** Manual receipt from a contact for a message the linked number sent it. */
	sendReceipt({ from_phone, id, type = 'read', addressing }) {
		const contact = this.contactByPhone(from_phone);
		const entry = contact.received.find(m => m.id === id);
		if (!entry) {
			throw new HttpError(404, `contact ${contact.phone} has not received message ${id}`);
		}
		const conn = [...this.connections].find(c => c.device?.jid === entry.from_device && c.isOpen);
		if (!conn) {
			throw new HttpError(409, `${entry.from_device} is not connected`);
		}
		const from = (addressing || entry.addressing) === 'lid' ? contact.lidJid : contact.pnJid;
		conn.send(mkNode('receipt', { from, id, t: unixNow(), type: type === 'read' ? 'read' : undefined }));
		this.counters.receipts_to_client++;
		return { ok: true };
	}

	// ---- what linked devices send ----

	answerUsync(conn, usync) {
		const query = getBinaryNodeChild(usync, 'query');
		const protocols = new Set(getAllBinaryNodeChildren(query || { content: [] }).map(n => n.tag));
		const list = getBinaryNodeChild(usync, 'list');
		const users = [];
		for (const user of getBinaryNodeChildren(list, 'user')) {
			let jid = user.attrs.jid;
			const contactNode = getBinaryNodeChild(user, 'contact');
			let phoneQuery = null;
			if (!jid && contactNode) {
				phoneQuery = (contentString(contactNode) || '').replace(/\D/g, '');
				jid = `${phoneQuery}@s.whatsapp.net`;
			}
			if (!jid) {
				continue;
			}
			const decoded = jidDecode(jid);
			const userPart = decoded?.user;
			const isLid = decoded?.server === 'lid';
			const contact = this.contactByUser(userPart);
			const account = contact ? null : this.accountByUser(userPart);
			const content = [];
			if (protocols.has('contact')) {
				content.push(mkNode('contact', { type: contact || account ? 'in' : 'out' }));
			}
			if (protocols.has('devices')) {
				let devices = [];
				if (contact) {
					devices = [mkNode('device', { id: '0' })];
				} else if (account && conn.device && account === conn.device.account) {
					// own account: only the asking device (Baileys skips it), no DSM fan-out to the phone
					devices = [mkNode('device', { id: String(conn.device.id), 'key-index': String(conn.device.keyIndex) })];
				}
				content.push(mkNode('devices', {}, [mkNode('device-list', {}, devices)]));
			}
			if (protocols.has('lid') && !isLid) {
				const lid = contact?.lidJid ?? account?.lidJid;
				content.push(lid ? mkNode('lid', { val: lid }) : mkNode('lid', {}));
			}
			users.push(mkNode('user', { jid: contact && phoneQuery ? contact.pnJid : jidNormalize(jid) }, content));
		}
		return mkNode(
			'usync',
			{ sid: usync.attrs.sid, index: '0', last: 'true', context: usync.attrs.context, mode: usync.attrs.mode },
			[mkNode('result', {}, [...protocols].map(p => mkNode(p, {}))), mkNode('list', {}, users)]
		);
	}

	answerKeyFetch(conn, keyNode) {
		const users = [];
		for (const user of getBinaryNodeChildren(keyNode, 'user')) {
			const jid = user.attrs.jid;
			const decoded = jidDecode(jid);
			if (!decoded) {
				continue;
			}
			const contact = this.contactByUser(decoded.user);
			let bundle = null;
			if (contact && !decoded.device) {
				bundle = contact.bundle();
			} else {
				const account = this.accountByUser(decoded.user);
				const device = account?.devices.get(decoded.device || 0);
				if (device && device !== conn.device) {
					const b = device.takeBundle();
					bundle = { registrationId: b.registrationId, identity: b.identityKey, signedPreKey: b.signedPreKey, preKey: b.preKey };
				}
			}
			if (!bundle) {
				continue;
			}
			const content = [
				mkNode('registration', {}, be(bundle.registrationId, 4)),
				mkNode('type', {}, Buffer.from([5])),
				mkNode('identity', {}, bundle.identity),
				mkNode('skey', {}, [
					mkNode('id', {}, be(bundle.signedPreKey.keyId, 3)),
					mkNode('value', {}, bundle.signedPreKey.public),
					mkNode('signature', {}, bundle.signedPreKey.signature)
				])
			];
			if (bundle.preKey) {
				content.push(mkNode('key', {}, [mkNode('id', {}, be(bundle.preKey.keyId, 3)), mkNode('value', {}, bundle.preKey.public)]));
			}
			users.push(mkNode('user', { jid }, content));
		}
		return mkNode('list', {}, users);
	}

	/** A `<message>` the linked device sent: decrypt for the contact, ack, then receipts. */
	async onClientMessage(conn, node) {
		const { id, to, type: stanzaType, edit } = node.attrs;
		const device = conn.device;
		if (!device) {
			return;
		}
		this.counters.messages_from_client++;
		conn.send(mkNode('ack', { class: 'message', id, from: to, t: unixNow() }));
		const targets = [];
		const participants = getBinaryNodeChild(node, 'participants');
		if (participants) {
			for (const toNode of getBinaryNodeChildren(participants, 'to')) {
				const enc = getBinaryNodeChild(toNode, 'enc');
				if (enc) {
					targets.push({ jid: toNode.attrs.jid, enc });
				}
			}
		} else {
			const enc = getBinaryNodeChild(node, 'enc');
			if (enc) {
				targets.push({ jid: to, enc });
			}
		}
		const toDecoded = jidDecode(to);
		const contact = toDecoded ? this.contactByUser(toDecoded.user) : null;
		if (!contact) {
			this.log('info', `message ${id} to ${to}: not a simulated contact, dropped after ack`);
			return;
		}
		let decrypted = null;
		for (const target of targets) {
			const d = jidDecode(target.jid);
			if (!d || d.device || (d.user !== contact.phone && d.user !== contact.lid)) {
				continue; // own devices (DSM) or others
			}
			try {
				decrypted = await contact.decryptFrom(device, target.enc.attrs.type, contentBuffer(target.enc));
			} catch (err) {
				this.counters.decrypt_failures++;
				this.log('warn', `contact ${contact.phone} could not decrypt ${id} (${target.enc.attrs.type}): ${err.message}; sending retry receipt`);
				conn.send(
					mkNode('receipt', { from: to, id, t: unixNow(), type: 'retry' }, [
						mkNode('retry', { count: '1', id, t: node.attrs.t || unixNow(), v: '1' }),
						mkNode('registration', {}, be(contact.store.registrationId, 4))
					])
				);
				return;
			}
		}
		if (!decrypted) {
			this.log('info', `message ${id} to ${to} carried no <enc> for the contact's device 0`);
			return;
		}
		const entry = {
			id,
			from_device: device.jid,
			to,
			addressing: toDecoded.server === 'lid' ? 'lid' : 'pn',
			stanza_type: stanzaType ?? null,
			edit_attr: edit ?? null,
			t: Math.floor(Date.now() / 1000),
			...summarizeMessage(decrypted),
			raw: messageToJSON(decrypted)
		};
		if (entry.media) {
			const dec = await this.decryptUploaded(decrypted).catch(err => ({ found: true, error: err.message }));
			if (dec) {
				const { plain, ...info } = dec;
				entry.media = { ...entry.media, ...info };
				if (plain) {
					contact.mediaPlain.set(id, plain);
				}
			}
		}
		const existing = contact.received.findIndex(m => m.id === id);
		if (existing >= 0) {
			contact.received[existing] = entry; // a retry resend of the same message
		} else {
			contact.received.push(entry);
		}
		this.log('info', `contact ${contact.phone} received ${entry.type} ${id} from ${device.jid}`);
		this.scheduleReceipts(conn, contact, to, id);
	}

	scheduleReceipts(conn, contact, from, id) {
		if (contact.receiptMode === 'none') {
			return;
		}
		const delay = Math.max(0, Number(this.config.receipt_delay_ms) || 0);
		const sendReceipt = type => {
			if (conn.send(mkNode('receipt', { from, id, t: unixNow(), type }))) {
				this.counters.receipts_to_client++;
			}
		};
		setTimeout(() => {
			sendReceipt(undefined);
			if (contact.receiptMode === 'read') {
				setTimeout(() => sendReceipt('read'), delay);
			}
		}, delay);
	}

	/** A `<receipt>` the linked device sent for a contact's message: record it, ack it, resend on retry. */
	async onClientReceipt(conn, node) {
		const { id, to, type } = node.attrs;
		conn.send(mkNode('ack', { class: 'receipt', id, from: to, type }));
		this.counters.receipts_from_client++;
		const decoded = jidDecode(to);
		const contact = decoded ? this.contactByUser(decoded.user) : null;
		if (!contact || !conn.device) {
			return;
		}
		const ids = [id, ...getBinaryNodeChildren(getBinaryNodeChild(node, 'list'), 'item').map(i => i.attrs.id)];
		for (const msgId of ids) {
			const entry = contact.sent.find(m => m.id === msgId);
			if (!entry) {
				continue;
			}
			const st = (entry.status[conn.device.jid] ||= { delivered_at: null, read_at: null });
			if (type === undefined || type === 'inactive') {
				st.delivered_at ||= Date.now();
			} else if (type === 'read' || type === 'read-self') {
				st.delivered_at ||= Date.now();
				st.read_at ||= Date.now();
			} else if (type === 'retry' && entry.retries < 3) {
				entry.retries++;
				this.log('info', `device ${conn.device.jid} asked to retry ${msgId}; re-encrypting with a new session`);
				contact.forgetSession(conn.device);
				const { type: encType, ciphertext } = await contact.encryptFor(conn.device, entry.message);
				const from = entry.addressing === 'lid'
					? { from: contact.lidJid, sender_pn: contact.pnJid, addressing_mode: 'lid' }
					: { from: contact.pnJid, sender_lid: contact.lidJid, addressing_mode: 'pn' };
				conn.send(
					mkNode('message', { ...from, id: msgId, t: String(entry.t), type: entry.stanza_type, notify: contact.pushName, edit: entry.edit_attr }, [
						mkNode('enc', { v: '2', type: encType, count: String(entry.retries), mediatype: entry.mediatype }, ciphertext)
					])
				);
			}
		}
	}

	kick({ kind, code, phone, connection } = {}) {
		const targets = [...this.connections].filter(c => {
			if (!c.isOpen) {
				return false;
			}
			if (connection != null) {
				return c.id === Number(connection);
			}
			if (phone != null) {
				return (c.device?.account.phone ?? c.linkCode?.phone) === String(phone).replace(/\D/g, '');
			}
			return true;
		});
		const stanza = (() => {
			switch (kind) {
				case 'restart':
					return mkNode('stream:error', { code: '515' });
				case 'stream-error':
					// no code: an unknown child → Baileys maps it to 500 (badSession)
					return code != null ? mkNode('stream:error', { code: String(code) }) : mkNode('stream:error', {}, [mkNode('sim-unknown-error', {})]);
				case 'conflict':
					return mkNode('stream:error', {}, [mkNode('conflict', { type: 'replaced' })]);
				case 'failure':
					return code != null ? mkNode('failure', { reason: String(code), location: 'sim' }) : mkNode('failure', { location: 'sim' });
				case 'xmlstreamend':
					return mkNode('xmlstreamend', {});
				case 'downgrade':
					return mkNode('ib', {}, [mkNode('downgrade_webclient', {})]);
				case 'drop':
				case 'stop-pings':
				case 'resume-pings':
					return null;
				default:
					throw new HttpError(400, `unknown kick kind "${kind}" (restart, stream-error, conflict, failure, xmlstreamend, drop, downgrade, stop-pings, resume-pings)`);
			}
		})();
		for (const c of targets) {
			if (kind === 'drop') {
				c.terminate();
			} else if (kind === 'stop-pings') {
				c.answerPings = false;
			} else if (kind === 'resume-pings') {
				c.answerPings = true;
			} else {
				c.send(stanza);
				c.closeSoon(1000);
			}
		}
		this.counters.kicks += targets.length;
		return { kicked: targets.map(c => c.id) };
	}

	/** Resolves with the next connection that finishes login (optionally for a phone). */
	waitForReady({ phone, timeoutMs = 20000 } = {}) {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.readyWaiters.delete(waiter);
				reject(new HttpError(504, 'no client finished login in time'));
			}, timeoutMs);
			const waiter = conn => {
				if (phone && conn.device?.account.phone !== String(phone)) {
					return;
				}
				clearTimeout(timer);
				this.readyWaiters.delete(waiter);
				resolve(conn);
			};
			this.readyWaiters.add(waiter);
		});
	}
}

const jidNormalize = jid => {
	const d = jidDecode(jid);
	return d ? `${d.user}@${d.server}` : jid;
};
