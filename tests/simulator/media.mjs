// Incoming media: WhatsApp media crypto (lib/Utils/messages-media.js) and a blob store served at GET /media/<id>.
// Messages carry `url` and NO directPath, so Baileys downloads from the url as given (plain local HTTP).
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { getMediaKeys } from '@whiskeysockets/baileys';

export const MEDIA_KINDS = {
	image: { field: 'imageMessage', mediaType: 'image' },
	video: { field: 'videoMessage', mediaType: 'video' },
	audio: { field: 'audioMessage', mediaType: 'audio' },
	ptt: { field: 'audioMessage', mediaType: 'audio', extra: { ptt: true } },
	document: { field: 'documentMessage', mediaType: 'document' },
	sticker: { field: 'stickerMessage', mediaType: 'sticker' }
};

/** Encrypts bytes like a WhatsApp upload: AES-256-CBC + 10-byte HMAC-SHA256 tail. */
export const encryptMedia = async (plain, mediaType) => {
	const mediaKey = randomBytes(32);
	const { iv, cipherKey, macKey } = await getMediaKeys(mediaKey, mediaType);
	const aes = createCipheriv('aes-256-cbc', cipherKey, iv);
	const enc = Buffer.concat([aes.update(plain), aes.final()]);
	const mac = createHmac('sha256', macKey).update(iv).update(enc).digest().subarray(0, 10);
	const blob = Buffer.concat([enc, mac]);
	return {
		mediaKey,
		blob,
		fileSha256: createHash('sha256').update(plain).digest(),
		fileEncSha256: createHash('sha256').update(blob).digest(),
		fileLength: plain.length
	};
};

/**
 * Builds the proto.Message content for an incoming media message; stores the encrypted blob via `store(id, blob)`.
 * Returns { message, mediaId, url }.
 */
export const buildMediaMessage = async ({ kind, bytes, mimetype, caption, fileName, baseUrl, store }) => {
	const spec = MEDIA_KINDS[kind];
	if (!spec) {
		throw new Error(`unsupported media kind "${kind}" (one of ${Object.keys(MEDIA_KINDS).join(', ')})`);
	}
	const enc = await encryptMedia(bytes, spec.mediaType);
	const mediaId = randomBytes(12).toString('hex');
	store(mediaId, enc.blob);
	const url = `${baseUrl}/media/${mediaId}`;
	const body = {
		url,
		mimetype,
		fileSha256: enc.fileSha256,
		fileEncSha256: enc.fileEncSha256,
		fileLength: enc.fileLength,
		mediaKey: enc.mediaKey,
		mediaKeyTimestamp: Math.floor(Date.now() / 1000),
		...(spec.extra || {})
	};
	if (caption && kind !== 'audio' && kind !== 'ptt' && kind !== 'sticker') {
		body.caption = caption;
	}
	if (kind === 'document') {
		body.fileName = fileName || 'file';
	}
	return { message: { [spec.field]: body }, mediaId, url, mediaType: spec.mediaType };
};

/** Decrypts an uploaded blob (ciphertext || 10-byte MAC); returns { plain, macOk }. */
export const decryptMedia = async (blob, mediaKey, mediaType) => {
	const { iv, cipherKey, macKey } = await getMediaKeys(Buffer.from(mediaKey), mediaType);
	const enc = blob.subarray(0, blob.length - 10);
	const mac = blob.subarray(blob.length - 10);
	const macOk = createHmac('sha256', macKey).update(iv).update(enc).digest().subarray(0, 10).equals(mac);
	const aes = createDecipheriv('aes-256-cbc', cipherKey, iv);
	return { plain: Buffer.concat([aes.update(enc), aes.final()]), macOk };
};

/** Media type (HKDF info) of the media field in a proto.Message, or null. */
export const mediaOf = message => {
	const m = message?.deviceSentMessage?.message || message || {};
	for (const [field, mediaType] of [
		['imageMessage', 'image'],
		['videoMessage', 'video'],
		['ptvMessage', 'video'],
		['audioMessage', 'audio'],
		['documentMessage', 'document'],
		['stickerMessage', 'sticker']
	]) {
		if (m[field]) {
			return { field, mediaType, body: m[field] };
		}
	}
	const doc = m.documentWithCaptionMessage?.message?.documentMessage;
	return doc ? { field: 'documentMessage', mediaType: 'document', body: doc } : null;
};
