// Command handlers: each turns one validated command into exactly one `result` frame. They never
// throw; whatever goes wrong becomes an error result the bridge can act on.
import { generateMessageIDV2, jidDecode } from '@whiskeysockets/baileys';

import { errorResult, okResult, toWire } from './protocol.js';

/**
 * What the handlers need from the running process (main.js provides it).
 * @typedef {object} Session
 * @property {() => any} socket          the current Baileys socket, or null
 * @property {() => boolean} isOpen      true only while the connection is open and no stop is under way
 * @property {import('./events.js').RecentIds} sentIds
 * @property {() => Promise<void>} stop  the intentional stop (shutdown); resolves when it is done
 * @property {import('pino').Logger} logger
 */

// Users are digits for phone numbers and LIDs; groups may still carry the old `creator-time` form.
const USER_PATTERNS = /** @type {Record<string, RegExp>} */ ({
  's.whatsapp.net': /^\d+$/,
  'c.us': /^\d+$/,
  lid: /^\d+$/,
  'g.us': /^\d+(-\d+)?$/,
  broadcast: /^\d+$/,
  newsletter: /^\d+$/,
});

/**
 * The chat jid to hand to Baileys, or an explanation of why Baileys would mishandle it.
 * Baileys itself validates almost nothing: a jid without `@` crashes relayMessage with a
 * TypeError, and a malformed user "sends" to nobody while sendMessage resolves.
 * @param {string} jid
 * @returns {{jid: string} | {error: string}}
 */
export function resolveChatJid(jid) {
  const decoded = jidDecode(jid);
  if (!decoded || !decoded.user) return { error: 'jid has no user part' };
  const pattern = USER_PATTERNS[decoded.server];
  if (!pattern) return { error: `unsupported jid server ${decoded.server}` };
  if (decoded.device !== undefined || jid.slice(0, jid.indexOf('@')).includes('_')) {
    return { error: 'jid names a device, not a chat' };
  }
  if (!pattern.test(decoded.user)) return { error: 'jid user part is malformed' };
  // c.us is the legacy spelling of s.whatsapp.net; Baileys only recognises the latter.
  if (decoded.server === 'c.us') return { jid: `${decoded.user}@s.whatsapp.net` };
  return { jid };
}

/**
 * @param {Session} session
 * @returns {(command: import('./protocol.js').SidecarCommand) => Promise<import('./protocol.js').Result>}
 */
export function createCommandHandler(session) {
  /** @param {import('./protocol.js').SendTextCommand} command */
  async function sendText(command) {
    const sock = session.socket();
    if (!sock || !session.isOpen()) return errorResult(command.id, 'not_connected', 'connection is not open');
    const target = resolveChatJid(command.jid);
    if ('error' in target) return errorResult(command.id, 'invalid_jid', target.error);

    // Known before sending: the own-send upsert can arrive before sendMessage resolves, and it
    // must already be recognised as an echo then.
    const messageId = generateMessageIDV2(sock.user?.id);
    session.sentIds.add(messageId);
    let sent;
    try {
      sent = await sock.sendMessage(target.jid, { text: command.text }, { messageId });
    } catch (err) {
      session.logger.warn({ error: errorSummary(err), wa_message_id: messageId }, 'send_text failed');
      return errorResult(command.id, 'send_failed', errorMessage(err));
    }
    const timestamp = toWire(sent?.messageTimestamp);
    return okResult(command.id, {
      message_id: sent?.key?.id ?? messageId,
      jid: target.jid,
      timestamp: typeof timestamp === 'number' ? timestamp : Math.floor(Date.now() / 1000),
    });
  }

  /** @param {import('./protocol.js').LogoutCommand} command */
  async function logout(command) {
    const sock = session.socket();
    if (!sock || !session.isOpen()) return errorResult(command.id, 'not_connected', 'connection is not open');
    try {
      // Sends remove-companion-device, then Baileys closes with 401; main.js handles that close
      // like any other and waits for this result before exiting.
      await sock.logout();
    } catch (err) {
      session.logger.warn({ error: errorSummary(err) }, 'logout failed');
      return errorResult(command.id, 'internal', errorMessage(err));
    }
    return okResult(command.id);
  }

  /** @param {import('./protocol.js').ShutdownCommand} command */
  async function shutdown(command) {
    await session.stop();
    return okResult(command.id);
  }

  return async (command) => {
    try {
      switch (command.type) {
        case 'send_text':
          return await sendText(command);
        case 'logout':
          return await logout(command);
        case 'shutdown':
          return await shutdown(command);
        default:
          return errorResult(/** @type {any} */ (command).id, 'bad_command', 'unknown command type');
      }
    } catch (err) {
      session.logger.error({ error: errorSummary(err) }, 'command handler failed');
      return errorResult(command.id, 'internal', errorMessage(err));
    }
  };
}

/** @param {unknown} err */
function errorMessage(err) {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Enough to diagnose, without Boom's `data` (which may hold the stanza that failed).
 * @param {unknown} err
 */
function errorSummary(err) {
  if (!(err instanceof Error)) return { message: String(err) };
  const status = /** @type {any} */ (err).output?.statusCode;
  return { type: err.name, message: err.message, ...(status ? { status_code: status } : {}), stack: err.stack };
}
