// The simulator's test certificate root.
//
// Baileys checks the Noise certificate chain against WA_CERT_DETAILS.PUBLIC_KEY. The simulator signs its chain with its
// own root key, so the client under test must be started with cert-preload.mjs, which points WA_CERT_DETAILS at this
// root. Both sides derive the key pair from the same seed, so they agree without talking to each other:
//   PONTE_SIM_ROOT_SEED  any string; default 'ponte-whatsapp-simulator-root-v1'
// The 32-byte private key is sha256(seed); the public key is its X25519 public key (what Curve25519 signing uses).
// This module only depends on node:crypto so the preload stays cheap.
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';

export const DEFAULT_ROOT_SEED = 'ponte-whatsapp-simulator-root-v1';
const PKCS8_X25519_PREFIX = Buffer.from([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 110, 4, 34, 4, 32]);

/** Public X25519 key (32 bytes) for a raw 32-byte private key. */
export const x25519PublicFromPrivate = priv => {
	const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, priv]), format: 'der', type: 'pkcs8' });
	return Buffer.from(createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(12));
};

/** Deterministic key pair {private, public} (32 bytes each) from a seed string. */
export const rootKeyPair = (seed = process.env.PONTE_SIM_ROOT_SEED || DEFAULT_ROOT_SEED) => {
	const priv = createHash('sha256').update(String(seed), 'utf8').digest();
	return { private: priv, public: x25519PublicFromPrivate(priv) };
};
