// Media to the spool (docs/protocol.md "Media and order"): a media message's file is downloaded
// in stream mode into a temporary file in PONTE_MEDIA_DIR, checked, fsynced and renamed to its
// final name, and the frame carries the path. The file is never held whole in memory, and no
// name WhatsApp supplies (message id, file name, mimetype) chooses the path unsanitised.
//
// Files are the bridge's once reported: this module deletes only its own temporaries (of failed
// downloads, and those a killed process left behind).
import { createHash, randomBytes } from 'node:crypto';
import { lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

import { downloadMediaMessage, getContentType, normalizeMessageContent } from './baileys.js';

import { Limiter } from './ordering.js';

/** Content types whose message carries a downloadable file (after unwrapping). */
export const MEDIA_CONTENT_TYPES = new Set([
  'imageMessage', 'videoMessage', 'ptvMessage', 'audioMessage', 'documentMessage', 'stickerMessage',
]);

/** How long a download may go without receiving a byte (or without an answer) before it fails. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Downloads running at once, all chats together; the rest wait for a slot. */
export const DEFAULT_CONCURRENCY = 4;
/** Temporaries older than this at start-up belong to a process that died mid-download. */
const STALE_TEMP_MS = 60 * 60 * 1000;

const TEMP_PREFIX = '.ponte-';
const TEMP_SUFFIX = '.part';
const TEMP_PATTERN = /^\.ponte-[0-9a-f]{16}\.part$/;
const FALLBACK_MIMETYPE = 'application/octet-stream';

/** Extensions for the mimetypes WhatsApp clients send; parameters (`; codecs=opus`) ignored. */
const EXTENSIONS = new Map([
  ['image/jpeg', '.jpg'], ['image/png', '.png'], ['image/webp', '.webp'], ['image/gif', '.gif'],
  ['image/heic', '.heic'], ['image/heif', '.heif'], ['image/bmp', '.bmp'], ['image/tiff', '.tif'],
  ['video/mp4', '.mp4'], ['video/3gpp', '.3gp'], ['video/quicktime', '.mov'], ['video/webm', '.webm'],
  ['video/x-matroska', '.mkv'], ['video/mpeg', '.mpg'],
  ['audio/ogg', '.ogg'], ['audio/opus', '.opus'], ['audio/mpeg', '.mp3'], ['audio/mp3', '.mp3'], ['audio/mp4', '.m4a'],
  ['audio/x-m4a', '.m4a'], ['audio/aac', '.aac'], ['audio/amr', '.amr'], ['audio/wav', '.wav'], ['audio/x-wav', '.wav'],
  ['audio/webm', '.weba'], ['audio/flac', '.flac'],
  ['application/pdf', '.pdf'], ['application/zip', '.zip'], ['application/x-rar-compressed', '.rar'],
  ['application/vnd.rar', '.rar'], ['application/x-7z-compressed', '.7z'], ['application/gzip', '.gz'],
  ['application/json', '.json'], ['application/xml', '.xml'], ['application/rtf', '.rtf'],
  ['application/msword', '.doc'], ['application/vnd.ms-excel', '.xls'], ['application/vnd.ms-powerpoint', '.ppt'],
  ['application/vnd.openxmlformats-officedocument.wordprocessingml.document', '.docx'],
  ['application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', '.xlsx'],
  ['application/vnd.openxmlformats-officedocument.presentationml.presentation', '.pptx'],
  ['application/vnd.oasis.opendocument.text', '.odt'], ['application/vnd.oasis.opendocument.spreadsheet', '.ods'],
  ['application/vnd.oasis.opendocument.presentation', '.odp'], ['application/vnd.android.package-archive', '.apk'],
  ['text/plain', '.txt'], ['text/csv', '.csv'], ['text/html', '.html'], ['text/vcard', '.vcf'], ['text/x-vcard', '.vcf'],
]);

/**
 * The media part of a message, wrappers (ephemeral, view-once, documentWithCaption, edits)
 * unwrapped the way content_type is computed; null when the message has no downloadable file.
 * @param {any} msg  a Baileys WAMessage
 * @returns {{contentType: string, content: any} | null}
 */
export function mediaContent(msg) {
  const normalized = normalizeMessageContent(msg?.message);
  const contentType = normalized ? getContentType(normalized) : undefined;
  if (!contentType || !MEDIA_CONTENT_TYPES.has(contentType)) return null;
  const content = /** @type {any} */ (normalized)[contentType];
  if (!content || typeof content !== 'object') return null;
  return { contentType, content };
}

/**
 * The final file name's stem: the message id when it is tame, else a digest of it. WhatsApp ids
 * are [0-9A-F] in practice, but they come from the sender's device.
 * @param {unknown} id
 * @returns {string}
 */
export function fileStem(id) {
  const text = typeof id === 'string' ? id : '';
  if (/^[A-Za-z0-9_-]{1,80}$/.test(text)) return text;
  return `m-${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

/**
 * The extension for a file: from the mimetype when it is a known one, else (documents) from the
 * sender's file name when that ends in a short alphanumeric extension, else from a plain
 * mimetype subtype, else `.bin`. Never longer than 9 characters, never a path separator.
 * @param {string} mimetype
 * @param {string | null} fileName
 * @returns {string}
 */
export function extensionFor(mimetype, fileName) {
  const base = mimetype.split(';')[0].trim().toLowerCase();
  const known = EXTENSIONS.get(base);
  if (known) return known;
  const fromName = fileName ? /\.([A-Za-z0-9]{1,8})$/.exec(fileName) : null;
  if (fromName) return `.${fromName[1].toLowerCase()}`;
  const subtype = /^[a-z]+\/([a-z0-9]{1,8})$/.exec(base);
  if (subtype) return `.${subtype[1]}`;
  return '.bin';
}

/**
 * A protobuf uint64 (Long), number or numeric string as a number; null when absent or not a
 * non-negative safe integer.
 * @param {unknown} value
 * @returns {number | null}
 */
export function lengthOf(value) {
  let n;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'bigint' || typeof value === 'string') n = Number(value);
  else if (value && typeof value === 'object' && typeof (/** @type {any} */ (value).toNumber) === 'function') {
    n = /** @type {any} */ (value).toNumber();
  } else return null;
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/**
 * A download error as a short sentence for the frame and the log: no stack, no data, no URL
 * (WhatsApp media URLs carry access tokens).
 * @param {unknown} err
 * @returns {string}
 */
export function describeDownloadError(err) {
  const e = /** @type {any} */ (err);
  const status = e?.output?.statusCode;
  if (e?.isBoom && typeof e.message === 'string' && e.message.startsWith('Failed to fetch stream')) {
    return `the media server answered HTTP ${status}`;
  }
  let text = err instanceof Error ? err.message : String(err);
  // undici's "fetch failed" keeps the reason in `cause` (ECONNREFUSED, certificate errors, …).
  const cause = e?.cause;
  if (cause && typeof cause === 'object') {
    const code = typeof cause.code === 'string' ? cause.code : null;
    const why = typeof cause.message === 'string' ? cause.message : null;
    if (code || why) text += ` (${code ?? why})`;
  }
  text = text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>)]+/gi, '<url>');
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

class TooLargeError extends Error {
  /** @param {number} received */
  constructor(received) {
    super('media grew past the limit while downloading');
    this.received = received;
  }
}

class StalledError extends Error {}

/**
 * @typedef {object} SpoolOptions
 * @property {string | null} dir          PONTE_MEDIA_DIR (absolute), or null when not configured
 * @property {number} maxBytes            PONTE_MEDIA_MAX_BYTES
 * @property {import('pino').Logger} logger
 * @property {(msg: any) => Promise<import('node:stream').Readable>} [download]
 *   the decrypted content as a stream; default Baileys' downloadMediaMessage in stream mode
 * @property {(msg: any) => Promise<any>} [reuploadRequest]  sock.updateMediaMessage (404/410 answers)
 * @property {number} [idleTimeoutMs]
 * @property {number} [concurrency]
 */

/**
 * @param {SpoolOptions} options
 */
export function createMediaSpool(options) {
  const {
    dir, maxBytes, logger, idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS, concurrency = DEFAULT_CONCURRENCY,
  } = options;
  const download = options.download ?? ((/** @type {any} */ msg) => downloadMediaMessage(msg, 'stream', {}, {
    logger,
    reuploadRequest: (/** @type {any} */ m) => {
      if (!options.reuploadRequest) throw new Error('media re-upload is not available');
      return options.reuploadRequest(m);
    },
  }));
  const limiter = new Limiter(concurrency);
  /** Final names being placed right now: two downloads must not pick the same free name. */
  const reserved = new Set();

  /**
   * Downloads the media of `msg` to the spool. Never rejects: every failure is a `media` error.
   * Null when the message has no media.
   * @param {any} msg
   * @returns {Promise<import('./protocol.js').MediaInfo> | null}
   */
  function fetchMedia(msg) {
    const found = mediaContent(msg);
    if (!found) return null;
    return fetchContent(msg, found.contentType, found.content).catch((err) => {
      // Only a bug gets here (fetchContent reports download problems itself).
      logger.error({ error: describeDownloadError(err) }, 'media handling failed');
      return /** @type {import('./protocol.js').MediaInfo} */ ({
        error: 'download_failed', mimetype: FALLBACK_MIMETYPE, size: null, file_name: null, message: 'internal error',
      });
    });
  }

  /**
   * @param {any} msg
   * @param {string} contentType
   * @param {any} content
   * @returns {Promise<import('./protocol.js').MediaInfo>}
   */
  async function fetchContent(msg, contentType, content) {
    const mimetype = typeof content.mimetype === 'string' && content.mimetype !== '' ? content.mimetype : FALLBACK_MIMETYPE;
    const fileName = contentType === 'documentMessage' && typeof content.fileName === 'string' && content.fileName !== ''
      ? content.fileName
      : null;
    const declared = lengthOf(content.fileLength);
    const id = msg?.key?.id;
    if (dir === null) {
      return {
        error: 'download_failed', mimetype, size: declared, file_name: fileName,
        message: 'no media spool is configured (PONTE_MEDIA_DIR is not set)',
      };
    }
    if (declared !== null && declared > maxBytes) {
      logger.info({ wa_message_id: id, size: declared, max: maxBytes }, 'media too large; not downloaded');
      return {
        error: 'too_large', mimetype, size: declared, file_name: fileName, message: `larger than ${maxBytes} bytes`,
      };
    }
    const started = Date.now();
    const outcome = await limiter.run(() => downloadTo(dir, msg, content, fileStem(id) + extensionFor(mimetype, fileName)));
    if ('path' in outcome) {
      logger.debug({ wa_message_id: id, size: outcome.size, ms: Date.now() - started }, 'media downloaded');
      return { path: outcome.path, mimetype, size: outcome.size, file_name: fileName };
    }
    if ('received' in outcome) {
      logger.warn({ wa_message_id: id, declared, received: outcome.received, max: maxBytes },
        'media passed the size limit while downloading; dropped');
      return {
        error: 'too_large', mimetype, size: outcome.received, file_name: fileName,
        message: `more than ${maxBytes} bytes arrived (the message declared ${declared ?? 'no size'})`,
      };
    }
    logger.warn({ wa_message_id: id, error: outcome.message }, 'media download failed');
    return { error: 'download_failed', mimetype, size: declared, file_name: fileName, message: outcome.message };
  }

  /**
   * @param {string} spool
   * @param {any} msg
   * @param {any} content
   * @param {string} finalName
   * @returns {Promise<{path: string, size: number} | {received: number} | {message: string}>}
   */
  async function downloadTo(spool, msg, content, finalName) {
    const tempPath = join(spool, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}${TEMP_SUFFIX}`);
    /** @type {import('node:fs/promises').FileHandle | undefined} */
    let handle;
    /** @type {import('node:stream').Readable | undefined} */
    let stream;
    /** @type {NodeJS.Timeout | undefined} */
    let idle;
    try {
      handle = await open(tempPath, 'wx', 0o600);
      await handle.chmod(0o600); // whatever the umask
      stream = await withTimeout(Promise.resolve().then(() => download(msg)), idleTimeoutMs);
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => stream?.destroy(new StalledError(`no data for ${idleTimeoutMs} ms`)), idleTimeoutMs);
      };
      arm();
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of stream) {
        arm();
        const bytes = /** @type {Buffer} */ (chunk);
        size += bytes.length;
        if (size > maxBytes) throw new TooLargeError(size);
        hash.update(bytes);
        await writeAll(handle, bytes);
      }
      clearTimeout(idle);
      const expected = content.fileSha256;
      if (expected && expected.length === 32 && !Buffer.from(expected).equals(hash.digest())) {
        throw new Error('the downloaded content does not match its SHA-256');
      }
      await handle.sync();
      await handle.close();
      handle = undefined;
      const path = await place(spool, tempPath, finalName);
      await syncDir(spool);
      return { path, size };
    } catch (err) {
      clearTimeout(idle);
      stream?.destroy();
      await handle?.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      if (err instanceof TooLargeError) return { received: err.received };
      return { message: describeDownloadError(err) };
    }
  }

  /**
   * Renames the finished temporary to `name`, or to `stem-N.ext` when that is taken (the same id
   * in two chats, or a re-delivered message whose earlier file the bridge still has).
   * @param {string} spool
   * @param {string} tempPath
   * @param {string} name
   */
  async function place(spool, tempPath, name) {
    const dot = name.lastIndexOf('.');
    const stem = name.slice(0, dot);
    const ext = name.slice(dot);
    for (let n = 0; n < 1000; n += 1) {
      const candidate = join(spool, n === 0 ? name : `${stem}-${n}${ext}`);
      if (reserved.has(candidate)) continue;
      reserved.add(candidate);
      try {
        if (await exists(candidate)) continue;
        await rename(tempPath, candidate);
        return candidate;
      } finally {
        reserved.delete(candidate);
      }
    }
    throw new Error('no free file name in the media spool');
  }

  return {
    fetch: fetchMedia,
    /** Downloads running now. */
    get running() {
      return limiter.running;
    },
  };
}

/**
 * Removes temporaries a previous process left behind (killed mid-download). Only our own
 * pattern, only old ones: a second process on the same spool could be downloading right now.
 * @param {string} dir
 * @param {number} [maxAgeMs]
 * @returns {Promise<number>} how many were removed
 */
export async function sweepStaleTemps(dir, maxAgeMs = STALE_TEMP_MS) {
  let removed = 0;
  const now = Date.now();
  for (const name of await readdir(dir)) {
    if (!TEMP_PATTERN.test(name)) continue;
    const path = join(dir, name);
    try {
      const info = await lstat(path);
      if (info.isFile() && now - info.mtimeMs > maxAgeMs) {
        await unlink(path);
        removed += 1;
      }
    } catch {
      // gone meanwhile
    }
  }
  return removed;
}

/**
 * @param {import('node:fs/promises').FileHandle} handle
 * @param {Buffer} bytes
 */
async function writeAll(handle, bytes) {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

/** @param {string} path */
async function exists(path) {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Makes the rename durable (the directory entry, not just the file's bytes).
 * @param {string} dir
 */
async function syncDir(dir) {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The stream, or a StalledError when the media server does not answer in time. A stream that
 * arrives after the timeout is destroyed.
 * @param {Promise<import('node:stream').Readable>} promise
 * @param {number} ms
 * @returns {Promise<import('node:stream').Readable>}
 */
function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new StalledError(`no answer from the media server in ${ms} ms`));
    }, ms);
    promise.then((stream) => {
      clearTimeout(timer);
      if (late) stream.destroy();
      else resolve(stream);
    }, (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
