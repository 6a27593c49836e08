// Baileys events -> protocol frames. Pure translation: no I/O, no decisions about meaning (the
// bridge decides what a message is; we tag it with content_type and forward it whole). Media
// downloads and group names are added later, in the chat's queue (ordering.js).
import { getContentType, jidNormalizedUser, normalizeMessageContent } from './baileys.js';

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
  const { entries, skipped } = messageEntries(upsert, sentIds);
  return { frames: entries.map((entry) => entry.frame), skipped };
}

/**
 * Like messageFrames, with each frame's Baileys message beside it (media downloads need the
 * original protobuf object, not its wire form).
 * @param {{messages: any[], type: string}} upsert
 * @param {RecentIds} sentIds
 * @returns {{entries: Array<{frame: import('./protocol.js').MessageEvent, msg: any}>, skipped: number}}
 */
export function messageEntries(upsert, sentIds) {
  /** @type {Array<{frame: import('./protocol.js').MessageEvent, msg: any}>} */
  const entries = [];
  let skipped = 0;
  if (upsert.type !== 'notify' && upsert.type !== 'append') {
    return { entries, skipped: upsert.messages.length };
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
    entries.push({
      frame: {
        type: 'message',
        upsert: upsert.type,
        key: { ...key },
        content_type: getContentType(normalizeMessageContent(msg.message)) ?? null,
        echo: key.fromMe && sentIds.has(key.id),
        message,
      },
      msg,
    });
  }
  return { entries, skipped };
}

/** Baileys' WAMessageStatus numbers -> the protocol's names (docs/protocol.md `message_status`). */
export const STATUS_NAMES = /** @type {const} */ (['error', 'pending', 'server_ack', 'delivered', 'read', 'played']);

/**
 * @param {unknown} status  a WAMessageStatus number
 * @returns {import('./protocol.js').MessageStatus | null}
 */
export function statusName(status) {
  return typeof status === 'number' && Number.isInteger(status) && status >= 0 && status < STATUS_NAMES.length
    ? STATUS_NAMES[status]
    : null;
}

/**
 * A `message_status` frame, its key copied like a message frame's; null when the key cannot
 * name a message or the status is not one of Baileys' numbers.
 * @param {unknown} rawKey
 * @param {unknown} status
 * @returns {import('./protocol.js').MessageStatusEvent | null}
 */
export function statusFrame(rawKey, status) {
  const name = statusName(status);
  const key = /** @type {Record<string, any> | undefined} */ (toWire(rawKey));
  if (name === null || !key || typeof key !== 'object'
    || typeof key.remoteJid !== 'string' || !key.remoteJid || typeof key.id !== 'string' || !key.id) {
    return null;
  }
  key.fromMe = Boolean(key.fromMe);
  return { type: 'message_status', key: /** @type {any} */ (key), status: name };
}

/**
 * The status changes of a Baileys `messages.update` batch (edits, revokes and other updates
 * without `status` are not statuses), in Baileys' order.
 * @param {unknown} updates
 * @returns {import('./protocol.js').MessageStatusEvent[]}
 */
export function statusFramesOfUpdates(updates) {
  if (!Array.isArray(updates)) return [];
  const frames = [];
  for (const entry of updates) {
    const status = entry?.update?.status;
    if (status === undefined || status === null) continue;
    const frame = statusFrame(entry.key, status);
    if (frame) frames.push(frame);
  }
  return frames;
}

/**
 * The status Baileys merged into an upserted message of ours: a receipt that came while the
 * upsert was still in the event buffer never becomes a `messages.update` (lib/Utils/event-buffer.js),
 * it only overwrites `status` on the message. Our own fresh sends carry PENDING (1), which says
 * nothing; from SERVER_ACK (2) on it is news.
 * @param {any} msg  a Baileys WAMessage of an upsert
 * @returns {import('./protocol.js').MessageStatusEvent | null}
 */
export function statusFrameOfUpsert(msg) {
  if (!msg?.key?.fromMe || typeof msg.status !== 'number' || msg.status < 2) return null;
  return statusFrame(msg.key, msg.status);
}

const LID_USER = /^[0-9]+@lid$/;
const PN_USER = /^[0-9]+@s\.whatsapp\.net$/;

/**
 * A `lid_mapping` frame for a pair, device suffixes removed; null unless one side is a LID and
 * the other a phone-number JID (either order: Baileys' fields are not always named right).
 * @param {unknown} a
 * @param {unknown} b
 * @returns {import('./protocol.js').LidMappingEvent | null}
 */
export function lidMappingFrame(a, b) {
  const x = normalizeUser(a);
  const y = normalizeUser(b);
  if (!x || !y) return null;
  if (LID_USER.test(x) && PN_USER.test(y)) return { type: 'lid_mapping', lid: x, pn: y };
  if (PN_USER.test(x) && LID_USER.test(y)) return { type: 'lid_mapping', lid: y, pn: x };
  return null;
}

/** @param {unknown} jid */
function normalizeUser(jid) {
  if (typeof jid !== 'string' || !jid.includes('@')) return null;
  try {
    return jidNormalizedUser(jid) || null;
  } catch {
    return null;
  }
}

/**
 * The LID <-> phone pairs a message key reveals: remoteJid/remoteJidAlt (1:1 chats) and
 * participant/participantAlt (groups).
 * @param {any} key
 * @returns {import('./protocol.js').LidMappingEvent[]}
 */
export function lidMappingsOfKey(key) {
  const out = [];
  for (const frame of [lidMappingFrame(key?.remoteJid, key?.remoteJidAlt), lidMappingFrame(key?.participant, key?.participantAlt)]) {
    if (frame) out.push(frame);
  }
  return out;
}

/**
 * Emits each LID <-> phone pair once per process (bounded: a pair forgotten long ago may be sent
 * again, which the bridge takes as a no-op).
 */
export class LidMappings {
  #sent;

  /** @param {number} [limit] */
  constructor(limit = 10_000) {
    this.#sent = new RecentIds(limit);
  }

  /**
   * The frames not sent yet among `pairs` (objects with lid/pn, or frames from lidMappingFrame).
   * @param {Iterable<{lid?: unknown, pn?: unknown} | null | undefined>} pairs
   * @returns {import('./protocol.js').LidMappingEvent[]}
   */
  fresh(pairs) {
    const out = [];
    for (const pair of pairs) {
      const frame = pair ? lidMappingFrame(pair.lid, pair.pn) : null;
      if (!frame) continue;
      const id = `${frame.lid} ${frame.pn}`;
      if (this.#sent.has(id)) continue;
      this.#sent.add(id);
      out.push(frame);
    }
    return out;
  }
}

/**
 * The pairs in a Signal key-store write (`keys.set(data)`): Baileys keeps its LID table under
 * key type `lid-mapping` as `<pnUser> -> <lidUser>` plus `<lidUser>_reverse -> <pnUser>`, and
 * writes only pairs it did not have. Every mapping Baileys learns passes here, whichever way
 * (history sync, envelopes, USync, LID migration), which matters because rc14's event buffer
 * drops `lidPnMappings` from a buffered `messaging-history.set`: the initial sync's mappings
 * never reach that event.
 * @param {Record<string, Record<string, unknown> | undefined>} data
 * @returns {Array<{lid: string, pn: string}>}
 */
export function lidMappingsOfKeyWrite(data) {
  const table = data?.['lid-mapping'];
  if (!table || typeof table !== 'object') return [];
  const out = [];
  for (const [pnUser, lidUser] of Object.entries(table)) {
    if (pnUser.endsWith('_reverse') || typeof lidUser !== 'string') continue;
    out.push({ lid: `${lidUser}@lid`, pn: `${pnUser}@s.whatsapp.net` });
  }
  return out;
}

/**
 * The key store handed to Baileys, with every committed write shown to `onWrite` after it is
 * stored. A failing observer never fails the write.
 * @param {import('@whiskeysockets/baileys').SignalKeyStore} keys
 * @param {(data: any) => void} onWrite
 * @returns {import('@whiskeysockets/baileys').SignalKeyStore}
 */
export function observeKeyWrites(keys, onWrite) {
  return {
    get: (type, ids) => keys.get(type, ids),
    async set(data) {
      await keys.set(data);
      try {
        onWrite(data);
      } catch {
        // reporting is best effort; the write itself succeeded
      }
    },
    ...(keys.clear ? { clear: () => /** @type {any} */ (keys).clear() } : {}),
  };
}
