// WhatsApp Web framing and the responder side of Baileys' Noise XX handshake
// (mirror of lib/Utils/noise-handler.js and validateConnection in lib/Socket/socket.js).
//
// Wire format, both directions: 3-byte big-endian length + payload. The client's first WS message is prefixed with
// the intro header: optionally 'E' 'D' 0x00 0x01 + 3-byte length + routing info, then 'W' 'A' 0x06 0x03.
// Handshake payloads are raw proto.HandshakeMessage; afterwards AES-256-GCM with IV = 8 zero bytes || 4-byte BE
// counter (one counter per direction), empty AAD, plaintext = binary node (encodeBinaryNode/decodeBinaryNode).
import { createHash } from 'node:crypto';
import {
	aesDecryptGCM,
	aesEncryptGCM,
	Curve,
	decodeBinaryNode,
	encodeBinaryNode,
	hkdf,
	NOISE_MODE,
	NOISE_WA_HEADER,
	proto
} from '@whiskeysockets/baileys';

const sha256 = data => createHash('sha256').update(data).digest();
const EMPTY = Buffer.alloc(0);

const ivFor = counter => {
	const iv = Buffer.alloc(12);
	iv.writeUInt32BE(counter >>> 0, 8);
	return iv;
};

/** Splits a byte stream into 3-byte-length-prefixed frames; handles the client intro header once. */
export class FrameReader {
	constructor() {
		this.buf = EMPTY;
		this.introDone = false;
		this.routingInfo = undefined;
	}

	/** Appends data; returns the complete frames now available. Throws on a malformed intro. */
	push(data) {
		this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : Buffer.from(data);
		if (!this.introDone) {
			if (this.buf.length < 4) {
				return [];
			}
			let offset = 0;
			if (this.buf[0] === 0x45 && this.buf[1] === 0x44) {
				// 'ED' 0x00 0x01 + 3-byte length + routing info
				if (this.buf.length < 7) {
					return [];
				}
				const len = (this.buf[4] << 16) | this.buf.readUInt16BE(5);
				if (this.buf.length < 7 + len + 4) {
					return [];
				}
				this.routingInfo = Buffer.from(this.buf.subarray(7, 7 + len));
				offset = 7 + len;
			}
			const header = this.buf.subarray(offset, offset + 4);
			if (!header.equals(NOISE_WA_HEADER)) {
				throw new Error(`bad intro header ${header.toString('hex')}`);
			}
			this.buf = this.buf.subarray(offset + 4);
			this.introDone = true;
		}
		const frames = [];
		while (this.buf.length >= 3) {
			const size = (this.buf[0] << 16) | (this.buf[1] << 8) | this.buf[2];
			if (this.buf.length < size + 3) {
				break;
			}
			frames.push(Buffer.from(this.buf.subarray(3, size + 3)));
			this.buf = this.buf.subarray(size + 3);
		}
		return frames;
	}
}

export const encodeFrame = payload => {
	const frame = Buffer.alloc(3 + payload.length);
	frame[0] = (payload.length >>> 16) & 0xff;
	frame[1] = (payload.length >>> 8) & 0xff;
	frame[2] = payload.length & 0xff;
	payload.copy ? payload.copy(frame, 3) : frame.set(payload, 3);
	return frame;
};

/**
 * Noise XX responder. Usage:
 *   const n = new NoiseResponder({ staticKeyPair, certChain })
 *   const serverHelloBytes = n.onClientHello(clientHelloFrame)
 *   const { clientStatic, payload } = n.onClientFinish(clientFinishFrame)   // payload: proto.ClientPayload
 *   n.encryptNode(node) / await n.decryptNode(frame)
 */
export class NoiseResponder {
	constructor({ staticKeyPair, certChain }) {
		this.static = staticKeyPair;
		this.certChain = certChain;
		const mode = Buffer.from(NOISE_MODE);
		this.h = mode.length === 32 ? mode : sha256(mode);
		this.ck = this.h;
		this.k = this.h;
		this.counter = 0;
		this.transport = null;
		this.mixHash(NOISE_WA_HEADER);
	}

	mixHash(data) {
		this.h = sha256(Buffer.concat([this.h, data]));
	}

	mixKey(ikm) {
		const out = Buffer.from(hkdf(Buffer.from(ikm), 64, { salt: this.ck, info: '' }));
		this.ck = out.subarray(0, 32);
		this.k = out.subarray(32);
		this.counter = 0;
	}

	encryptAndHash(plaintext) {
		const ct = aesEncryptGCM(plaintext, this.k, ivFor(this.counter++), this.h);
		this.mixHash(ct);
		return ct;
	}

	decryptAndHash(ciphertext) {
		const pt = aesDecryptGCM(ciphertext, this.k, ivFor(this.counter++), this.h);
		this.mixHash(ciphertext);
		return pt;
	}

	/** Handles the client's first frame; returns the serialized server hello. */
	onClientHello(frame) {
		const msg = proto.HandshakeMessage.decode(frame);
		const clientEphemeral = msg.clientHello?.ephemeral;
		if (!clientEphemeral || clientEphemeral.length !== 32) {
			throw new Error('client hello without a 32-byte ephemeral key');
		}
		this.clientEphemeral = Buffer.from(clientEphemeral);
		this.mixHash(this.clientEphemeral);
		this.ephemeral = Curve.generateKeyPair();
		this.mixHash(this.ephemeral.public);
		this.mixKey(Curve.sharedKey(this.ephemeral.private, this.clientEphemeral));
		const staticCt = this.encryptAndHash(this.static.public);
		this.mixKey(Curve.sharedKey(this.static.private, this.clientEphemeral));
		const payloadCt = this.encryptAndHash(this.certChain);
		return proto.HandshakeMessage.encode({
			serverHello: { ephemeral: this.ephemeral.public, static: staticCt, payload: payloadCt }
		}).finish();
	}

	/** Handles the client finish; returns { clientStatic, payload } and switches to transport mode. */
	onClientFinish(frame) {
		const msg = proto.HandshakeMessage.decode(frame);
		const fin = msg.clientFinish;
		if (!fin?.static || !fin?.payload) {
			throw new Error('client finish without static/payload');
		}
		const clientStatic = this.decryptAndHash(Buffer.from(fin.static));
		this.mixKey(Curve.sharedKey(this.ephemeral.private, clientStatic));
		const payloadBytes = this.decryptAndHash(Buffer.from(fin.payload));
		const payload = proto.ClientPayload.decode(payloadBytes);
		const keys = Buffer.from(hkdf(EMPTY, 64, { salt: this.ck, info: '' }));
		// the client encrypts with the first half and decrypts with the second
		this.transport = { dec: keys.subarray(0, 32), enc: keys.subarray(32), readCounter: 0, writeCounter: 0 };
		return { clientStatic: Buffer.from(clientStatic), payload };
	}

	encryptNode(node) {
		const plain = encodeBinaryNode(node);
		return encodeFrame(aesEncryptGCM(plain, this.transport.enc, ivFor(this.transport.writeCounter++), EMPTY));
	}

	async decryptNode(frame) {
		const plain = aesDecryptGCM(frame, this.transport.dec, ivFor(this.transport.readCounter++), EMPTY);
		return decodeBinaryNode(plain);
	}
}
