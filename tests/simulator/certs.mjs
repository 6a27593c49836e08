// Noise certificate chain signed by the simulator's test root (root-key.mjs).
//   intermediate: Details{serial 1, issuerSerial 0 (= WA_CERT_DETAILS.SERIAL), key}, signed by the root
//   leaf:         Details{serial 2, issuerSerial 1, key = server static public key}, signed by the intermediate
import { Curve, proto } from '@whiskeysockets/baileys';
import { rootKeyPair } from './root-key.mjs';

export const makeCertChain = ({ root = rootKeyPair(), serverStaticPublic }) => {
	const now = Math.floor(Date.now() / 1000);
	const intermediateKey = Curve.generateKeyPair();
	const intermediateDetails = proto.CertChain.NoiseCertificate.Details.encode({
		serial: 1,
		issuerSerial: 0,
		key: intermediateKey.public,
		notBefore: now - 3600,
		notAfter: now + 365 * 24 * 3600
	}).finish();
	const leafDetails = proto.CertChain.NoiseCertificate.Details.encode({
		serial: 2,
		issuerSerial: 1,
		key: serverStaticPublic,
		notBefore: now - 3600,
		notAfter: now + 30 * 24 * 3600
	}).finish();
	const chain = proto.CertChain.encode({
		intermediate: { details: intermediateDetails, signature: Curve.sign(root.private, intermediateDetails) },
		leaf: { details: leafDetails, signature: Curve.sign(intermediateKey.private, leafDetails) }
	}).finish();
	return Buffer.from(chain);
};
