// Baileys events -> protocol frames. Pure translation: no I/O, no decisions about meaning (the
// bridge decides what a message is; we tag it with content_type and forward it whole).
import { getContentType, normalizeMessageContent } from '@whiskeysockets/baileys';

import { toWire } from './protocol.js';

/** status_code -> reason, docs/protocol.md "Reason names". */
const REASONS = new Map([
  [400, 'badCertificate'],
  [401, 'loggedOut'],
  [403, 'forbidden'],
  [405, 'versionRejected'],
  [408, 'connectionLost'],
  [411, 'multideviceMismatch'],
  [428, 'connectionClosed'],
  [440, 'connectionReplaced'],
  [500, 'badSession'],
  [503, 'unavailableService'],
  [515, 'restartRequired'],
]);

/** The one close the sidecar handles itself: right after pairing, reconnect with the same auth. */
export const RESTART_REQUIRED = 515;

// Baileys' message when every QR ref expired unscanned (lib/Socket/socket.js); same 408 code as
// a lost connection, but the bridge must not just restart into a new QR loop.
const QR_REFS_ENDED = 'QR refs attempts ended';

/**
 * @param {number | null} statusCode
 * @param {string | null} message
 * @returns {string}
 */
export function closeReason(statusCode, message) {
  if (statusCode === 408 && message === QR_REFS_ENDED) return 'qrRefsExhausted';
  return (statusCode !== null && REASONS.get(statusCode)) || 'unknown';
}

/**
 * The code Baileys closed with: a Boom's `output.statusCode`, else null.
 * @param {unknown} error  `lastDisconnect.error`
 * @returns {{statusCode: number | null, message: string | null}}
 */
export function disconnectInfo(error) {
  const err = /** @type {{output?: {statusCode?: unknown}, message?: unknown} | undefined} */ (error);
  const code = err?.output?.statusCode;
  return {
    statusCode: Number.isInteger(code) ? /** @type {number} */ (code) : null,
    message: typeof err?.message === 'string' ? err.message : null,
  };
}

/**
 * @param {number | null} statusCode
 * @param {string | null} message
 * @param {boolean} willReconnect
 * @returns {import('./protocol.js').ConnectionEvent}
 */
export function closeFrame(statusCode, message, willReconnect) {
  return {
    type: 'connection',
    state: 'close',
    status_code: statusCode,
    reason: closeReason(statusCode, message),
    message,
    will_reconnect: willReconnect,
  };
}

/** The close we report after our own stop (shutdown, stdin EOF, SIGTERM). */
export const INTENTIONAL_CLOSE = /** @type {import('./protocol.js').ConnectionEvent} */ (Object.freeze({
  type: 'connection',
  state: 'close',
  status_code: null,
  reason: 'intentional',
  message: null,
  will_reconnect: false,
}));

/**
 * @param {{id?: string | null, lid?: string | null, name?: string | null} | undefined} user  sock.user / creds.me
 * @returns {import('./protocol.js').Me | null} null when Baileys has no id (never expected on open)
 */
export function meFromUser(user) {
  if (!user?.id) return null;
  return { id: user.id, lid: user.lid || null, name: user.name || null };
}

/**
 * Translates the non-close parts of one `connection.update` (close needs the process's policy,
 * so main.js builds that frame). Returns the frames in the order the bridge should see them.
 * @param {Partial<import('@whiskeysockets/baileys').ConnectionState>} update
 * @param {'connecting' | 'open' | 'close'} currentState  the state before this update
 * @param {import('./protocol.js').Me | null} me          sock.user when the update opens
 * @returns {Array<import('./protocol.js').QrEvent | import('./protocol.js').ConnectionEvent>}
 */
export function connectionUpdateFrames(update, currentState, me) {
  /** @type {Array<import('./protocol.js').QrEvent | import('./protocol.js').ConnectionEvent>} */
  const frames = [];
  if (update.connection === 'connecting') {
    frames.push({ type: 'connection', state: 'connecting', ...(update.isNewLogin ? { is_new_login: true } : {}) });
  } else if (update.connection === 'open') {
    if (me) frames.push({ type: 'connection', state: 'open', me, ...(update.isNewLogin ? { is_new_login: true } : {}) });
  } else if (update.isNewLogin && currentState !== 'close') {
    // Baileys reports a successful scan on its own ({isNewLogin, qr: undefined}) while the
    // socket is still connecting; the frame carries the state unchanged.
    frames.push({ type: 'connection', state: currentState, is_new_login: true });
  }
  if (typeof update.qr === 'string' && update.qr !== '') {
    frames.push({ type: 'qr', qr: update.qr });
  }
  return frames;
}

/**
 * A bounded set of the message ids this process sent, oldest forgotten first, so that own sends
 * coming back as `append` upserts can be flagged `echo`.
 */
export class RecentIds {
  /** @type {Set<string>} */
  #ids = new Set();

  /** @param {number} [limit] */
  constructor(limit = 2000) {
    this.limit = limit;
  }

  /** @param {string} id */
  add(id) {
    this.#ids.delete(id);
    this.#ids.add(id);
    if (this.#ids.size > this.limit) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
  }

  /** @param {string} id */
  has(id) {
    return this.#ids.has(id);
  }

  get size() {
    return this.#ids.size;
  }
}

/**
 * One `message` frame per message of the upsert, in Baileys' order. Messages whose key lacks
 * the fields every consumer needs (remoteJid, id) cannot form a valid frame and are returned in
 * `skipped` for the caller to log.
 * @param {{messages: any[], type: string}} upsert
 * @param {RecentIds} sentIds
 * @returns {{frames: import('./protocol.js').MessageEvent[], skipped: number}}
 */
export function messageFrames(upsert, sentIds) {
  /** @type {import('./protocol.js').MessageEvent[]} */
  const frames = [];
  let skipped = 0;
  if (upsert.type !== 'notify' && upsert.type !== 'append') {
    return { frames, skipped: upsert.messages.length };
  }
  for (const msg of upsert.messages) {
    const message = /** @type {Record<string, any>} */ (toWire(msg));
    const key = message?.key;
    if (!key || typeof key.remoteJid !== 'string' || !key.remoteJid
      || typeof key.id !== 'string' || !key.id) {
      skipped += 1;
      continue;
    }
    // protobuf leaves an unset bool off the object; the schema (and the bridge) want it explicit.
    key.fromMe = Boolean(key.fromMe);
    frames.push({
      type: 'message',
      upsert: upsert.type,
      key: { ...key },
      content_type: getContentType(normalizeMessageContent(msg.message)) ?? null,
      echo: key.fromMe && sentIds.has(key.id),
      message,
    });
  }
  return { frames, skipped };
}
