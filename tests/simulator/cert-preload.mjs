// Test-only preload: `node --import ./tests/simulator/cert-preload.mjs client.mjs`
//
// Points Baileys' WA_CERT_DETAILS.PUBLIC_KEY at the simulator's test root (see root-key.mjs), so the Noise certificate
// chain that the simulator signs with that root verifies. WA_CERT_DETAILS is a mutable exported object and
// lib/Utils/noise-handler.js reads it at handshake time, so replacing the key before the first connection is enough.
// Baileys rc14's Curve.verify never fails (libsignal returns false instead of throwing), so today the chain would pass
// anyway; with this preload it still passes once that check is fixed. Never load this in production.
//
// PONTE_SIM_ROOT_KEY (base64 public key, as printed by the simulator's ready line) wins over PONTE_SIM_ROOT_SEED.
import { WA_CERT_DETAILS } from '@whiskeysockets/baileys/lib/Defaults/index.js';
import { rootKeyPair } from './root-key.mjs';

const fromEnv = process.env.PONTE_SIM_ROOT_KEY;
const key = fromEnv ? Buffer.from(fromEnv, 'base64') : rootKeyPair().public;
if (key.length !== 32) {
	throw new Error('PONTE_SIM_ROOT_KEY must be a base64 32-byte Curve25519 public key');
}
WA_CERT_DETAILS.PUBLIC_KEY = key;
