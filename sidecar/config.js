// Launch configuration, read once from the allow-listed environment (docs/protocol.md "Launch").
// Pure: no Baileys, no I/O beyond a stat of the auth and media directories, so main.js can turn
// any problem into `fatal bad_config` before touching the network or the auth state.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';

export const DEFAULT_WEBSOCKET_URL = 'wss://web.whatsapp.com/ws/chat';
export const DEFAULT_WA_VERSION = '2.3000.1043857760';
export const DEFAULT_BROWSER_NAME = 'Chrome';
export const DEFAULT_LOG_LEVEL = 'warn';
export const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
export const DEFAULT_KEEPALIVE_MS = 30_000;
export const DEFAULT_MEDIA_MAX_BYTES = 64 * 1024 * 1024;

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Chat kinds PONTE_IGNORE_CHATS can name. */
export const CHAT_KINDS = /** @type {const} */ (['status', 'newsletter', 'broadcast', 'group']);
/** @typedef {typeof CHAT_KINDS[number]} ChatKind */
export const DEFAULT_IGNORE_CHATS = /** @type {ChatKind[]} */ (['status', 'newsletter', 'broadcast']);

/**
 * @typedef {object} SidecarConfig
 * @property {string} instanceId         for log lines only
 * @property {string} authDir            existing directory holding creds.json and key files
 * @property {string} websocketUrl       ws:// or wss:// URL of WhatsApp Web (or a local simulator)
 * @property {[number, number, number]} waVersion   pinned; never fetched
 * @property {string} browserName
 * @property {string} logLevel           pino level for stderr
 * @property {number} connectTimeoutMs
 * @property {number} keepAliveMs
 * @property {string | null} pairingPhone  digits: link by pairing code instead of QR codes
 * @property {number | null} qrTimeoutMs  lifetime of every QR ref; null keeps Baileys' 60 s / 20 s
 * @property {string | null} mediaDir    existing directory for downloaded media (the spool); null: none
 *                                        configured, media messages then report download_failed
 * @property {number} mediaMaxBytes      media larger than this is not downloaded (too_large)
 * @property {Set<ChatKind>} ignoreChats  chats Baileys drops before decrypting (shouldIgnoreJid)
 */

export class ConfigError extends Error {
  name = 'ConfigError';
}

/**
 * Reads and validates the launch environment.
 * @param {NodeJS.ProcessEnv} env
 * @returns {SidecarConfig}
 * @throws {ConfigError} naming the variable and what is wrong with it
 */
export function loadConfig(env) {
  // The bridge passes unset settings as absent, but an empty value means "unset" too.
  const get = (/** @type {string} */ name) => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };

  const authDir = get('PONTE_AUTH_DIR');
  if (!authDir) throw new ConfigError('PONTE_AUTH_DIR is not set');
  let isDir = false;
  try {
    isDir = statSync(authDir).isDirectory();
  } catch (err) {
    // The bridge creates the directory; inventing it here could hide a wrong path behind a
    // fresh identity (a new QR) while the real session sits elsewhere.
    throw new ConfigError(`PONTE_AUTH_DIR ${authDir} is not accessible (${errCode(err)})`);
  }
  if (!isDir) throw new ConfigError(`PONTE_AUTH_DIR ${authDir} is not a directory`);

  // Optional, but when given it must be the spool the bridge created (and reads from): a typo
  // would otherwise scatter media in a directory nobody cleans.
  const mediaSetting = get('PONTE_MEDIA_DIR');
  // Absolute: frames carry the path, and the bridge may run from another working directory.
  const mediaDir = mediaSetting === undefined ? null : resolve(mediaSetting);
  if (mediaDir !== null) {
    let mediaIsDir = false;
    try {
      mediaIsDir = statSync(mediaDir).isDirectory();
    } catch (err) {
      throw new ConfigError(`PONTE_MEDIA_DIR ${mediaDir} is not accessible (${errCode(err)})`);
    }
    if (!mediaIsDir) throw new ConfigError(`PONTE_MEDIA_DIR ${mediaDir} is not a directory`);
  }

  const websocketUrl = get('PONTE_WA_WEBSOCKET_URL') ?? DEFAULT_WEBSOCKET_URL;
  let url;
  try {
    url = new URL(websocketUrl);
  } catch {
    throw new ConfigError(`PONTE_WA_WEBSOCKET_URL ${websocketUrl} is not a URL`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new ConfigError(`PONTE_WA_WEBSOCKET_URL ${websocketUrl} is not a ws:// or wss:// URL`);
  }

  const versionText = get('PONTE_WA_VERSION') ?? DEFAULT_WA_VERSION;
  if (!/^\d{1,10}\.\d{1,10}\.\d{1,15}$/.test(versionText)) {
    throw new ConfigError(`PONTE_WA_VERSION ${versionText} is not a dotted version like ${DEFAULT_WA_VERSION}`);
  }
  const waVersion = /** @type {[number, number, number]} */ (versionText.split('.').map(Number));
  if (!waVersion.every(Number.isSafeInteger)) {
    throw new ConfigError(`PONTE_WA_VERSION ${versionText} has an out-of-range part`);
  }

  const logLevel = (get('PONTE_LOG_LEVEL') ?? DEFAULT_LOG_LEVEL).toLowerCase();
  if (!LOG_LEVELS.has(logLevel)) {
    throw new ConfigError(`PONTE_LOG_LEVEL ${logLevel} is not one of ${[...LOG_LEVELS].join(', ')}`);
  }

  const pairingPhone = get('PONTE_PAIRING_PHONE') ?? null;
  if (pairingPhone !== null && !/^\d{8,15}$/.test(pairingPhone)) {
    throw new ConfigError(`PONTE_PAIRING_PHONE ${pairingPhone} is not a phone number in digits (8 to 15)`);
  }

  return {
    instanceId: get('PONTE_INSTANCE_ID') ?? '-',
    authDir,
    websocketUrl,
    waVersion,
    browserName: get('PONTE_BROWSER_NAME') ?? DEFAULT_BROWSER_NAME,
    logLevel,
    connectTimeoutMs: positiveInt(get, 'PONTE_CONNECT_TIMEOUT_MS', DEFAULT_CONNECT_TIMEOUT_MS),
    keepAliveMs: positiveInt(get, 'PONTE_KEEPALIVE_MS', DEFAULT_KEEPALIVE_MS),
    pairingPhone,
    qrTimeoutMs: get('PONTE_QR_TIMEOUT_MS') === undefined ? null : positiveInt(get, 'PONTE_QR_TIMEOUT_MS', 0),
    mediaDir,
    mediaMaxBytes: positiveBytes(get, 'PONTE_MEDIA_MAX_BYTES', DEFAULT_MEDIA_MAX_BYTES),
    ignoreChats: chatKinds(env.PONTE_IGNORE_CHATS),
  };
}

/**
 * PONTE_IGNORE_CHATS: a comma list of chat kinds. Unlike the other variables, set-but-empty is
 * a value here: the bridge passes its (possibly empty) list, and empty means "ignore nothing";
 * `none` says the same explicitly. Unset keeps the default.
 * @param {string | undefined} value
 * @returns {Set<ChatKind>}
 */
function chatKinds(value) {
  if (value === undefined) return new Set(DEFAULT_IGNORE_CHATS);
  const items = value.split(',').map((item) => item.trim().toLowerCase()).filter((item) => item !== '');
  if (items.length === 1 && items[0] === 'none') return new Set();
  const unknown = items.filter((item) => !(/** @type {readonly string[]} */ (CHAT_KINDS)).includes(item));
  if (unknown.length > 0) {
    throw new ConfigError(`PONTE_IGNORE_CHATS names unknown chat kinds ${unknown.join(', ')}; use ${CHAT_KINDS.join(', ')} or none`);
  }
  return new Set(/** @type {ChatKind[]} */ (items));
}

/**
 * Baileys' shouldIgnoreJid for a set of chat kinds. Baileys asks it with a stanza's `from`
 * (a receipt's chat) before decrypting anything, and acks the ignored ones away: their messages
 * are never downloaded, decrypted or reported. `status` is status@broadcast (status updates);
 * `broadcast` the other @broadcast lists; `newsletter` channels; `group` @g.us chats.
 * @param {Set<ChatKind>} kinds
 * @returns {(jid: string) => boolean}
 */
export function ignoreJidPredicate(kinds) {
  return (jid) => {
    if (kinds.size === 0 || typeof jid !== 'string') return false;
    const kind = chatKindOf(jid);
    return kind !== null && kinds.has(kind);
  };
}

/**
 * @param {string} jid
 * @returns {ChatKind | null} null: a person (phone number or LID), or anything else
 */
export function chatKindOf(jid) {
  const at = jid.lastIndexOf('@');
  const server = at === -1 ? '' : jid.slice(at + 1);
  if (server === 'broadcast') return jid.slice(0, at) === 'status' ? 'status' : 'broadcast';
  if (server === 'newsletter') return 'newsletter';
  if (server === 'g.us') return 'group';
  return null;
}

/**
 * @param {(name: string) => string | undefined} get
 * @param {string} name
 * @param {number} fallback
 */
function positiveInt(get, name, fallback) {
  const text = get(name);
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) === 0) {
    throw new ConfigError(`${name} ${text} is not a positive integer of milliseconds`);
  }
  return Number(text);
}

/**
 * @param {(name: string) => string | undefined} get
 * @param {string} name
 * @param {number} fallback
 */
function positiveBytes(get, name, fallback) {
  const text = get(name);
  if (text === undefined) return fallback;
  if (!/^\d{1,15}$/.test(text) || Number(text) === 0) {
    throw new ConfigError(`${name} ${text} is not a positive integer of bytes`);
  }
  return Number(text);
}

/** @param {unknown} err */
function errCode(err) {
  return /** @type {NodeJS.ErrnoException} */ (err)?.code ?? String(err);
}
