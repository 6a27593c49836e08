// What sending needs besides Baileys itself: the spool file check for send_media, the "is this
// number on WhatsApp" lookup with its caches, and the store of our own sent messages that
// Baileys' getMessage answers peer retry receipts from.
import { constants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';
import { isAbsolute, sep } from 'node:path';

import { proto } from './baileys.js';

import { TtlCache } from './cache.js';

// ---------------------------------------------------------------------------------------------
// send_media: only regular files inside the spool

/** send_media's file is refused (`bad_media`); the message says why without quoting the path. */
export class BadMediaError extends Error {
  name = 'BadMediaError';
}

/**
 * @typedef {object} SpoolFile
 * @property {import('node:fs/promises').FileHandle} handle  open for reading; the caller closes it
 * @property {string} path   the real path (symlinks resolved)
 * @property {number} size
 */

/**
 * Opens a file the bridge put in the spool, for sending. Baileys reads a `{url}` that is a local
 * path with createReadStream (and fetches http(s) ones), so no command string ever reaches it:
 * the file is opened here, checked, and Baileys gets the open file's stream. The check is on the
 * real path (a symlink in the spool pointing outside is refused), and the descriptor opened is
 * the one checked: a file swapped after the check is never read.
 * @param {string | null} spoolDir  PONTE_MEDIA_DIR
 * @param {string} path
 * @returns {Promise<SpoolFile>}
 * @throws {BadMediaError}
 */
export async function openSpoolFile(spoolDir, path) {
  if (spoolDir === null) throw new BadMediaError('no media spool is configured (PONTE_MEDIA_DIR)');
  if (!isAbsolute(path)) throw new BadMediaError('path is not absolute');
  let spool;
  let real;
  try {
    spool = await realpath(spoolDir);
  } catch (err) {
    throw new BadMediaError(`the media spool is not accessible (${errCode(err)})`);
  }
  try {
    real = await realpath(path);
  } catch (err) {
    throw new BadMediaError(errCode(err) === 'ENOENT' ? 'file does not exist' : `file is not accessible (${errCode(err)})`);
  }
  if (!real.startsWith(spool.endsWith(sep) ? spool : spool + sep)) throw new BadMediaError('file is not inside the media spool');
  let info;
  try {
    // Before opening: opening a FIFO for reading would block until someone writes to it.
    info = await lstat(real);
  } catch (err) {
    throw new BadMediaError(`file is not accessible (${errCode(err)})`);
  }
  if (!info.isFile()) throw new BadMediaError('not a regular file');
  let handle;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw new BadMediaError(`file cannot be opened (${errCode(err)})`);
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile() || opened.ino !== info.ino || opened.dev !== info.dev) {
      throw new BadMediaError('file changed while it was checked');
    }
    if (opened.size === 0) throw new BadMediaError('file is empty');
    return { handle, path: real, size: opened.size };
  } catch (err) {
    await handle.close().catch(() => {});
    if (err instanceof BadMediaError) throw err;
    throw new BadMediaError(`file cannot be read (${errCode(err)})`);
  }
}

/** @param {unknown} err */
function errCode(err) {
  return /** @type {NodeJS.ErrnoException} */ (err)?.code ?? String(err);
}

// ---------------------------------------------------------------------------------------------
// not_on_whatsapp

/** Unknown numbers are asked about again after this long (someone may install WhatsApp). */
export const NEGATIVE_TTL_MS = 10 * 60 * 1000;
/** A lookup slower than this does not hold the send back. */
export const LOOKUP_TIMEOUT_MS = 5000;

/**
 * @typedef {{exists: true, jid: string} | {exists: false} | {exists: null, error: string}} NumberStatus
 *   `exists: null`: the lookup failed or timed out; the caller sends anyway.
 */

/**
 * Asks WhatsApp whether phone numbers have an account (Baileys `onWhatsApp`, a USync `contact`
 * query), once per number: positive answers are kept for the process lifetime, negative ones
 * for NEGATIVE_TTL_MS, both bounded. Concurrent checks of one number share one query.
 *
 * rc14's onWhatsApp returns only the numbers that exist (`[{jid, exists: true}]`; the others are
 * filtered out), and undefined when the query's answer is not a result.
 */
export class NumberCheck {
  #lookup;
  #timeoutMs;
  /** @type {TtlCache} */
  #known;
  /** @type {TtlCache} */
  #unknown;
  /** @type {Map<string, Promise<NumberStatus>>} */
  #inflight = new Map();

  /**
   * @param {object} options
   * @param {(jid: string) => Promise<Array<{jid?: unknown, exists?: unknown}> | undefined>} options.lookup
   * @param {number} [options.timeoutMs]
   * @param {number} [options.negativeTtlMs]
   * @param {number} [options.maxEntries]
   * @param {() => number} [options.now]
   */
  constructor({ lookup, timeoutMs = LOOKUP_TIMEOUT_MS, negativeTtlMs = NEGATIVE_TTL_MS, maxEntries = 10_000, now = Date.now }) {
    this.#lookup = lookup;
    this.#timeoutMs = timeoutMs;
    this.#known = new TtlCache({ ttlMs: Infinity, maxEntries, now });
    this.#unknown = new TtlCache({ ttlMs: negativeTtlMs, maxEntries: Math.min(maxEntries, 1000), now });
  }

  /**
   * @param {string} jid  a phone-number JID (`<digits>@s.whatsapp.net`)
   * @returns {Promise<NumberStatus>}
   */
  async check(jid) {
    /** @type {string | undefined} */
    const known = this.#known.get(jid);
    if (known !== undefined) return { exists: true, jid: known };
    if (this.#unknown.get(jid) !== undefined) return { exists: false };
    let pending = this.#inflight.get(jid);
    if (!pending) {
      pending = this.#ask(jid);
      this.#inflight.set(jid, pending);
      const settled = pending;
      void settled.finally(() => { if (this.#inflight.get(jid) === settled) this.#inflight.delete(jid); });
    }
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ exists: null, error: `no answer in ${this.#timeoutMs} ms` }), this.#timeoutMs);
    });
    try {
      return /** @type {NumberStatus} */ (await Promise.race([pending, timeout]));
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The query itself; its answer is cached even when the caller stopped waiting for it.
   * @param {string} jid
   * @returns {Promise<NumberStatus>}
   */
  async #ask(jid) {
    let answer;
    try {
      answer = await this.#lookup(jid);
    } catch (err) {
      return { exists: null, error: err instanceof Error ? err.message : String(err) };
    }
    if (!Array.isArray(answer)) return { exists: null, error: 'the lookup gave no result' };
    const found = answer.find((entry) => entry && entry.exists === true);
    if (!found) {
      this.#unknown.set(jid, true);
      return { exists: false };
    }
    // WhatsApp answers with the number's registered JID, which can differ from the one asked
    // about (Brazilian mobile numbers with or without the ninth digit): that one receives.
    const canonical = typeof found.jid === 'string' && /^\d+@s\.whatsapp\.net$/.test(found.jid) ? found.jid : jid;
    this.#known.set(jid, canonical);
    return { exists: true, jid: canonical };
  }
}

// ---------------------------------------------------------------------------------------------
// getMessage

/**
 * The messages this process sent, newest last, bounded by count and by encoded size, so that a
 * peer's retry receipt can still be answered after Baileys' own recent-message cache (512
 * messages, 5 minutes) forgot the message. Stored encoded: compact, and immune to Baileys
 * mutating the object it was given.
 */
export class SentMessages {
  /** @type {Map<string, Uint8Array>} */
  #entries = new Map();
  #bytes = 0;

  /** @param {{limit?: number, maxBytes?: number}} [options] */
  constructor({ limit = 1000, maxBytes = 32 * 1024 * 1024 } = {}) {
    this.limit = limit;
    this.maxBytes = maxBytes;
  }

  /**
   * @param {string | null | undefined} id
   * @param {import('@whiskeysockets/baileys').proto.IMessage | null | undefined} message
   */
  add(id, message) {
    if (!id || !message) return;
    const encoded = proto.Message.encode(message).finish();
    if (encoded.length > this.maxBytes) return;
    this.#forget(id);
    this.#entries.set(id, encoded);
    this.#bytes += encoded.length;
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.limit && this.#bytes <= this.maxBytes) break;
      this.#forget(oldest);
    }
  }

  /**
   * Baileys' getMessage(key): the message content, or undefined when it is not ours or forgotten.
   * @param {string | null | undefined} id
   * @returns {import('@whiskeysockets/baileys').proto.Message | undefined}
   */
  get(id) {
    const encoded = id ? this.#entries.get(id) : undefined;
    return encoded ? proto.Message.decode(encoded) : undefined;
  }

  /** @param {string} id */
  #forget(id) {
    const encoded = this.#entries.get(id);
    if (!encoded) return;
    this.#entries.delete(id);
    this.#bytes -= encoded.length;
  }

  get size() {
    return this.#entries.size;
  }

  get bytes() {
    return this.#bytes;
  }
}
