// Command handlers: each turns one validated command into exactly one `result` frame. They never
// throw; whatever goes wrong becomes an error result the bridge can act on.
import { basename } from 'node:path';

import { generateMessageIDV2, jidDecode } from './baileys.js';

import { BadMediaError, openSpoolFile } from './outgoing.js';
import { errorResult, okResult, toWire } from './protocol.js';

/**
 * What the handlers need from the running process (main.js provides it).
 * @typedef {object} Session
 * @property {() => any} socket          the current Baileys socket, or null
 * @property {() => boolean} isOpen      true only while the connection is open and no stop is under way
 * @property {import('./events.js').RecentIds} sentIds   ids of our sends, for echo flags
 * @property {import('./outgoing.js').SentMessages} [sent]  our sent messages, for getMessage
 * @property {import('./outgoing.js').NumberCheck} [numbers]  "is this number on WhatsApp"; none: no check
 * @property {string | null} [mediaDir]  PONTE_MEDIA_DIR: send_media reads only files inside it
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

/** The send_media kinds whose WhatsApp message shows a caption. */
const CAPTIONED = new Set(['image', 'video', 'document']);

/**
 * Baileys' `quoted` option for a reply: the smallest WAMessage generateWAMessageFromContent
 * reads (lib/Utils/messages.js). From it Baileys builds contextInfo: stanzaId = key.id;
 * participant = our own JID (creds.me.id, device stripped) when key.fromMe, else
 * key.participant, else key.remoteJid (a 1:1 chat: the contact); quotedMessage = the content
 * below (it must have one: a message without content makes Baileys index `undefined`); and
 * contextInfo.remoteJid only when key.remoteJid differs from the chat sent to, so the key names
 * that chat.
 * @param {string} jid  the chat the reply goes to
 * @param {import('./protocol.js').Quote} quote
 */
export function quotedMessage(jid, quote) {
  return {
    key: {
      remoteJid: jid,
      fromMe: quote.from_me,
      id: quote.id,
      // '' is what Baileys itself has for 1:1 messages; both fall back to the chat.
      ...(quote.participant ? { participant: quote.participant } : {}),
    },
    message: { conversation: quote.text ?? '' },
  };
}

/**
 * Baileys' content for a send_media command. The file goes in as the stream of the descriptor
 * openSpoolFile checked, never as a `{url}` string.
 * @param {import('./protocol.js').SendMediaCommand} command
 * @param {import('node:stream').Readable} stream
 * @param {string} realPath
 */
export function mediaContent(command, stream, realPath) {
  /** @type {Record<string, unknown>} */
  const content = { [command.kind]: { stream }, mimetype: command.mimetype };
  if (command.caption && CAPTIONED.has(command.kind)) content.caption = command.caption;
  if (command.kind === 'document') {
    // Baileys would call it "file"; the spool name at least keeps the extension.
    content.fileName = command.file_name || basename(realPath);
  }
  if (command.kind === 'audio') content.ptt = command.ptt === true;
  return content;
}

/** A profile picture is decoration: never wait long for one. */
const PROFILE_PICTURE_MS = 10_000;

/**
 * @param {Session} session
 * @returns {(command: import('./protocol.js').SidecarCommand) => Promise<import('./protocol.js').Result>}
 */
export function createCommandHandler(session) {
  /**
   * What every send checks first: an open socket and a chat JID Baileys handles.
   * @param {{id: string, jid: string}} command
   * @returns {{sock: any, jid: string} | {result: import('./protocol.js').Result}}
   */
  function target(command) {
    const sock = session.socket();
    if (!sock || !session.isOpen()) return { result: errorResult(command.id, 'not_connected', 'connection is not open') };
    const resolved = resolveChatJid(command.jid);
    if ('error' in resolved) return { result: errorResult(command.id, 'invalid_jid', resolved.error) };
    return { sock, jid: resolved.jid };
  }

  /**
   * Phone-number chats only: is there an account behind the number? Groups and LIDs exist by
   * construction. A lookup that fails does not stop the send (a flaky query must not block
   * agents); WhatsApp's own answer may name the number's JID differently, and that JID is the
   * one that receives.
   * @param {string} commandId
   * @param {string} jid
   * @returns {Promise<{jid: string} | {result: import('./protocol.js').Result}>}
   */
  async function recipient(commandId, jid) {
    if (!session.numbers || !jid.endsWith('@s.whatsapp.net')) return { jid };
    const status = await session.numbers.check(jid);
    if (status.exists === false) {
      return { result: errorResult(commandId, 'not_on_whatsapp', `${jid.slice(0, jid.indexOf('@'))} is not on WhatsApp`) };
    }
    if (status.exists === null) {
      session.logger.warn({ jid, error: status.error }, 'could not check whether the number is on WhatsApp; sending anyway');
      return { jid };
    }
    if (status.jid !== jid) session.logger.info({ jid, registered: status.jid }, 'sending to the JID WhatsApp registered the number under');
    return { jid: status.jid };
  }

  /**
   * The JID WhatsApp registered a phone number under (cached after the first send), for
   * commands about messages already exchanged; anything else, and a number without an account
   * or a failed lookup, stays as given (nothing more can go wrong there than the send did).
   * @param {string} jid
   */
  async function registered(jid) {
    if (!session.numbers || !jid.endsWith('@s.whatsapp.net')) return jid;
    const status = await session.numbers.check(jid);
    return status.exists === true ? status.jid : jid;
  }

  /**
   * One sendMessage with a pre-generated id: the own-send upsert can arrive before sendMessage
   * resolves, and it must already be recognised as an echo then.
   * @param {{id: string, type: string}} command
   * @param {any} sock
   * @param {string} jid
   * @param {Record<string, unknown>} content
   * @param {Record<string, unknown>} [extra]  more sendMessage options (quoted)
   * @returns {Promise<{ok: true, sent: any, messageId: string} | {ok: false, result: import('./protocol.js').Result}>}
   */
  async function send(command, sock, jid, content, extra = {}) {
    const messageId = generateMessageIDV2(sock.user?.id);
    session.sentIds.add(messageId);
    let sent;
    try {
      sent = await sock.sendMessage(jid, content, { ...extra, messageId });
    } catch (err) {
      session.logger.warn({ error: errorSummary(err), wa_message_id: messageId }, `${command.type} failed`);
      return { ok: false, result: errorResult(command.id, 'send_failed', errorMessage(err)) };
    }
    try {
      session.sent?.add(sent?.key?.id ?? messageId, sent?.message);
    } catch (err) {
      session.logger.warn({ error: errorSummary(err), wa_message_id: messageId }, 'could not keep the sent message for retries');
    }
    return { ok: true, sent, messageId };
  }

  /**
   * @param {string} commandId
   * @param {string} jid
   * @param {any} sent
   * @param {string} messageId
   */
  function sentResult(commandId, jid, sent, messageId) {
    const timestamp = toWire(sent?.messageTimestamp);
    return okResult(commandId, {
      message_id: sent?.key?.id ?? messageId,
      jid,
      timestamp: typeof timestamp === 'number' ? timestamp : Math.floor(Date.now() / 1000),
    });
  }

  /** @param {import('./protocol.js').SendTextCommand} command */
  async function sendText(command) {
    const chat = target(command);
    if ('result' in chat) return chat.result;
    const to = await recipient(command.id, chat.jid);
    if ('result' in to) return to.result;
    const extra = command.quote ? { quoted: quotedMessage(to.jid, command.quote) } : {};
    const outcome = await send(command, chat.sock, to.jid, { text: command.text }, extra);
    if (!outcome.ok) return outcome.result;
    return sentResult(command.id, to.jid, outcome.sent, outcome.messageId);
  }

  /** @param {import('./protocol.js').SendMediaCommand} command */
  async function sendMedia(command) {
    const chat = target(command);
    if ('result' in chat) return chat.result;
    let file;
    try {
      file = await openSpoolFile(session.mediaDir ?? null, command.path);
    } catch (err) {
      if (!(err instanceof BadMediaError)) throw err;
      session.logger.warn({ problem: err.message }, 'send_media refused its file');
      return errorResult(command.id, 'bad_media', err.message);
    }
    try {
      const to = await recipient(command.id, chat.jid);
      if ('result' in to) return to.result;
      const stream = file.handle.createReadStream({ autoClose: false });
      const extra = command.quote ? { quoted: quotedMessage(to.jid, command.quote) } : {};
      const outcome = await send(command, chat.sock, to.jid, mediaContent(command, stream, file.path), extra);
      stream.destroy();
      if (!outcome.ok) return outcome.result;
      return sentResult(command.id, to.jid, outcome.sent, outcome.messageId);
    } finally {
      // The file stays: the bridge deletes it.
      await file.handle.close().catch(() => {});
    }
  }

  /** @param {import('./protocol.js').RevokeCommand} command */
  async function revoke(command) {
    const chat = target(command);
    if ('result' in chat) return chat.result;
    // The message went to the number's registered JID (see recipient); so must its revoke.
    const jid = await registered(chat.jid);
    // Only our own messages: deleting someone else's (a group admin's power) is not offered.
    const key = { remoteJid: jid, fromMe: true, id: command.message_id };
    const outcome = await send(command, chat.sock, jid, { delete: key });
    if (!outcome.ok) return outcome.result;
    return okResult(command.id, { message_id: command.message_id });
  }

  /** @param {import('./protocol.js').MarkReadCommand} command */
  async function markRead(command) {
    const chat = target(command);
    if ('result' in chat) return chat.result;
    const participant = command.participant || undefined;
    // The customer wrote from the registered JID: the receipts go back there.
    const jid = await registered(chat.jid);
    const keys = command.message_ids.map((id) => ({ remoteJid: jid, id, fromMe: false, ...(participant ? { participant } : {}) }));
    try {
      // Queries the privacy settings once per socket, then sends `read` (or `read-self` when
      // this account does not share read receipts).
      await chat.sock.readMessages(keys);
    } catch (err) {
      session.logger.warn({ error: errorSummary(err), count: keys.length }, 'mark_read failed');
      return errorResult(command.id, 'send_failed', errorMessage(err));
    }
    return okResult(command.id);
  }

  /** @param {import('./protocol.js').ProfilePictureCommand} command */
  async function profilePicture(command) {
    const chat = target(command);
    if ('result' in chat) return chat.result;
    let timer;
    try {
      const url = await Promise.race([
        chat.sock.profilePictureUrl(chat.jid, 'image'),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out')), PROFILE_PICTURE_MS); }),
      ]);
      return okResult(command.id, { url: typeof url === 'string' && url !== '' ? url : null });
    } catch (err) {
      // No picture, or one the contact's privacy settings hide: WhatsApp answers 404/401, and
      // for the bridge that is simply "no picture".
      session.logger.debug({ error: errorSummary(err) }, 'no profile picture');
      return okResult(command.id, { url: null });
    } finally {
      clearTimeout(timer);
    }
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
        case 'send_media':
          return await sendMedia(command);
        case 'revoke':
          return await revoke(command);
        case 'mark_read':
          return await markRead(command);
        case 'profile_picture':
          return await profilePicture(command);
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
