// The simulated primary phone: accounts, linked devices, ADV pairing (QR and pairing code).
// Mirrors configureSuccessfulPairing (lib/Utils/validate-connection.js) and the link_code_companion_reg handling
// (lib/Socket/messages-recv.js, requestPairingCode in lib/Socket/socket.js).
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import {
	aesDecryptGCM,
	aesEncryptCTR,
	aesDecryptCTR,
	Curve,
	derivePairingCodeKey,
	hkdf,
	proto,
	WA_ADV_ACCOUNT_SIG_PREFIX,
	WA_ADV_DEVICE_SIG_PREFIX
} from '@whiskeysockets/baileys';
import * as curve from 'libsignal/src/curve.js';

export class Account {
	constructor({ phone, lid, pushName }) {
		this.phone = String(phone);
		this.lid = String(lid || randomLid());
		this.pushName = pushName || `Sim ${this.phone.slice(-4)}`;
		// the primary's identity key; also the ADV account signature key
		this.identity = Curve.generateKeyPair();
		this.nextDeviceId = 1;
		this.nextKeyIndex = 1;
		/** @type {Map<number, Device>} */
		this.devices = new Map();
	}

	get pnJid() {
		return `${this.phone}@s.whatsapp.net`;
	}

	get lidJid() {
		return `${this.lid}@lid`;
	}

	toJSON() {
		return {
			phone: this.phone,
			lid: this.lid,
			push_name: this.pushName,
			devices: [...this.devices.values()].map(d => d.toJSON())
		};
	}
}

export class Device {
	constructor({ account, id, noiseKey, registration, advSecret, platform, keyIndex }) {
		this.account = account;
		this.id = id;
		this.noiseKey = noiseKey; // base64 of the client's Noise static public key: identifies the device at login
		this.registrationId = registration.registrationId;
		this.identityKey = registration.identityKey; // 32 bytes
		this.signedPreKey = registration.signedPreKey; // {keyId, public, signature}
		this.advSecret = advSecret;
		this.platform = platform;
		this.keyIndex = keyIndex;
		/** @type {Map<number, Buffer>} pre-keys uploaded by the client and not yet handed out */
		this.preKeys = new Map();
		this.preKeysUploaded = 0;
		this.deviceIdentity = null; // ADVSignedDeviceIdentity the client signed (pair-device-sign)
		this.signatureValid = null;
		/** stanzas waiting for the device to come online (delivered with offline="1" after login) */
		this.offlineQueue = [];
		this.pairedAt = Date.now();
	}

	get jid() {
		return `${this.account.phone}:${this.id}@s.whatsapp.net`;
	}

	get lidJid() {
		return `${this.account.lid}:${this.id}@lid`;
	}

	/** Bundle fields for a key fetch; consumes one pre-key, like the real server. */
	takeBundle() {
		let preKey;
		const first = this.preKeys.keys().next();
		if (!first.done) {
			preKey = { keyId: first.value, public: this.preKeys.get(first.value) };
			this.preKeys.delete(first.value);
		}
		return {
			registrationId: this.registrationId,
			identityKey: this.identityKey,
			signedPreKey: this.signedPreKey,
			preKey
		};
	}

	toJSON() {
		return {
			id: this.id,
			jid: this.jid,
			lid_jid: this.lidJid,
			noise_key: this.noiseKey,
			registration_id: this.registrationId,
			platform: this.platform,
			prekeys_available: this.preKeys.size,
			prekeys_uploaded: this.preKeysUploaded,
			device_signature_valid: this.signatureValid,
			offline_queue: this.offlineQueue.length
		};
	}
}

export const randomLid = () => String(randomInt(10 ** 13, 10 ** 14 - 1)) + String(randomInt(0, 9));

/** Parses a QR string `https://wa.me/settings/linked_devices#ref,noise,identity,adv,platform` (or the bare list). */
export const parseQr = qr => {
	const s = String(qr);
	const hash = s.includes('#') ? s.slice(s.indexOf('#') + 1) : s;
	const parts = hash.split(',');
	if (parts.length < 4) {
		throw new Error('QR string must have ref,noiseKey,identityKey,advSecret[,platform]');
	}
	const [ref, noiseKey, identityKey, advSecret, platformId] = parts;
	return { ref, noiseKey, identityKey: Buffer.from(identityKey, 'base64'), advSecret: Buffer.from(advSecret, 'base64'), platformId };
};

/**
 * Builds the `<pair-success>` iq content for a device. The HMAC uses the companion's ADV secret; the account signature
 * is a real Curve25519 signature by the account identity key over 0x06 0x00 || details || companion identity.
 */
export const buildPairSuccess = ({ account, device, companionIdentity, platform = 'android', bizName }) => {
	const details = proto.ADVDeviceIdentity.encode({
		rawId: randomInt(1, 2 ** 31),
		timestamp: Math.floor(Date.now() / 1000),
		keyIndex: device.keyIndex
	}).finish();
	const accountSignature = Curve.sign(
		account.identity.private,
		Buffer.concat([WA_ADV_ACCOUNT_SIG_PREFIX, details, companionIdentity])
	);
	const signed = proto.ADVSignedDeviceIdentity.encode({
		details,
		accountSignatureKey: account.identity.public,
		accountSignature
	}).finish();
	const hmac = createHmac('sha256', device.advSecret).update(signed).digest();
	const identityHmac = proto.ADVSignedDeviceIdentityHMAC.encode({ details: signed, hmac }).finish();
	const content = [
		{ tag: 'device-identity', attrs: {}, content: Buffer.from(identityHmac) },
		{ tag: 'platform', attrs: { name: platform } },
		{ tag: 'device', attrs: { jid: device.jid, lid: device.lidJid } }
	];
	if (bizName) {
		content.push({ tag: 'biz', attrs: { name: bizName } });
	}
	return { tag: 'pair-success', attrs: {}, content };
};

/** Checks the companion's device signature in its `<pair-device-sign>` reply. Returns true/false. */
export const verifyDeviceSignature = ({ account, companionIdentity, signedBytes }) => {
	const signed = proto.ADVSignedDeviceIdentity.decode(signedBytes);
	const msg = Buffer.concat([WA_ADV_DEVICE_SIG_PREFIX, signed.details, companionIdentity, account.identity.public]);
	return verifyStrict(companionIdentity, msg, signed.deviceSignature);
};

/** Real signature check: libsignal's verifySignature returns a boolean (Baileys' Curve.verify ignores it). */
export const verifyStrict = (pub32, msg, sig) => {
	try {
		return curve.verifySignature(Buffer.concat([Buffer.from([5]), pub32]), msg, Buffer.from(sig)) === true;
	} catch {
		return false;
	}
};

// ---- pairing code (phone side) ----

/** Unwraps `salt(32) || iv(16) || AES-CTR(pub)` with PBKDF2(code). */
export const unwrapLinkCodeKey = async (wrapped, code) => {
	const buf = Buffer.from(wrapped);
	const key = await derivePairingCodeKey(code, buf.subarray(0, 32));
	return aesDecryptCTR(buf.subarray(48, 80), key, buf.subarray(32, 48));
};

export const wrapLinkCodeKey = async (pub, code) => {
	const salt = randomBytes(32);
	const iv = randomBytes(16);
	const key = await derivePairingCodeKey(code, salt);
	return Buffer.concat([salt, iv, aesEncryptCTR(pub, key, iv)]);
};

/**
 * Phone side of companion_finish: decrypts the wrapped key bundle and derives the ADV secret.
 * Throws when the bundle does not decrypt (wrong code) or does not match the expected identities.
 */
export const finishLinkCode = ({ phoneEphemeral, companionEphemeralPub, account, wrappedBundle, companionIdentity }) => {
	const companionShared = Curve.sharedKey(phoneEphemeral.private, companionEphemeralPub);
	const buf = Buffer.from(wrappedBundle);
	const salt = buf.subarray(0, 32);
	const iv = buf.subarray(32, 44);
	const key = Buffer.from(hkdf(companionShared, 32, { salt, info: 'link_code_pairing_key_bundle_encryption_key' }));
	const plain = aesDecryptGCM(buf.subarray(44), key, iv, Buffer.alloc(0));
	const bundleCompanionIdentity = plain.subarray(0, 32);
	const bundlePrimaryIdentity = plain.subarray(32, 64);
	const random = plain.subarray(64, 96);
	if (!bundlePrimaryIdentity.equals(account.identity.public)) {
		throw new Error('key bundle names another primary identity');
	}
	if (companionIdentity && !bundleCompanionIdentity.equals(Buffer.from(companionIdentity))) {
		throw new Error('key bundle companion identity mismatch');
	}
	const identityShared = Curve.sharedKey(account.identity.private, bundleCompanionIdentity);
	const advSecret = Buffer.from(
		hkdf(Buffer.concat([companionShared, identityShared, random]), 32, { info: 'adv_secret' })
	);
	return { advSecret, companionIdentity: Buffer.from(bundleCompanionIdentity) };
};
