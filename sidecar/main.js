// Ponte's WhatsApp sidecar: one Baileys connection for one WhatsApp number, driven by JSON lines
// (docs/protocol.md). The bridge owns every policy decision (reconnect, wipe, backoff); this
// process reports, obeys, and exits.
//
// console.js must be evaluated before anything loads Baileys/libsignal; everything that pulls
// them in is therefore imported dynamically below.
import { claimStdout } from './console.js';

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { TtlCache } from './cache.js';
import { serializeListeners } from './ordering.js';
import { ConfigError, ignoreJidPredicate, loadConfig } from './config.js';
import {
  compileCommandValidators, createFrameWriter, createLineSplitter, decodeCommand, errorResult, PROTOCOL_VERSION,
  readLooseId, SIDECAR_VERSION,
} from './protocol.js';

/** Exit statuses, docs/protocol.md "Lifecycle". */
const EXIT_OK = 0;
const EXIT_CRASH = 70; // EX_SOFTWARE: the supervisor restarts us with backoff
const EXIT_FATAL = 78; // EX_CONFIG: after a `fatal` frame, the supervisor stops trying

/** How long exit waits for commands still running (e.g. the logout answer) before leaving. */
const COMMAND_SETTLE_MS = 3000;
/** Upper bound for sock.end(): a stuck WebSocket close must not keep a stopping process alive. */
const SOCKET_END_MS = 3000;
/** A command line longer than this cannot be valid (65 536 characters of text, JSON-escaped). */
const MAX_LINE_BYTES = 1024 * 1024;
/** How long a stop or a reported close waits for message frames still downloading their media. */
const MESSAGE_DRAIN_MS = 5000;

const frames = createFrameWriter(claimStdout(), (err) => {
  // The bridge closed our stdout: nobody can hear us any more. Stop as if told to.
  logError('stdout write failed', err);
  void requestStop('stdout closed');
});

/** @type {import('pino').Logger} */
let log;
/** @type {import('./auth.js').AuthStore | undefined} */
let auth;
/** @type {any} the current Baileys socket */
let sock = null;
/** @type {'connecting' | 'open' | 'close'} */
let connState = 'close';
/** Set by shutdown / stdin EOF / SIGTERM: closes from now on are ours. */
let intentional = false;
/** @type {Promise<void> | null} */
let stopPromise = null;
/** Set once the process is on its way out (after a reported close or a stop). */
let exiting = false;
/** @type {Set<Promise<unknown>>} */
const inflight = new Set();

/** Resolves once `ready` is out: no other frame may precede it, not even a stop's close. */
let readySent = () => {};
const readyWritten = new Promise((resolve) => { readySent = () => resolve(undefined); });

/** @type {import('./events.js') | undefined} */
let events;
/** @type {import('./events.js').RecentIds | undefined} */
let sentIds;
/** @type {ReturnType<import('./ordering.js').createMessagePipeline> | undefined} */
let messages;
/** @type {import('./events.js').LidMappings | undefined} */
let lidMappings;
/** @type {import('./groups.js').GroupCache | undefined} */
let groups;
/** Digits of the phone to link by pairing code (PONTE_PAIRING_PHONE), or null for QR codes. */
let pairingPhone = /** @type {string | null} */ (null);
/** The pairing code is requested once per process: a new code would void the one shown. */
let pairingRequested = false;
/** creds.json holds a linked account (`creds.account`); false until the pairing, when it is not. */
let accountOnDisk = false;

// EPIPE on stdout arrives as an 'error' event, not through a write callback.
process.stdout.on('error', (err) => {
  logError('stdout failed', err);
  void requestStop('stdout closed');
});
process.on('uncaughtException', (err) => crash('uncaught exception; exiting', err));
process.on('unhandledRejection', (reason) => {
  // Baileys leaves some promises unobserved; they are bugs to log, not reasons to drop the line.
  logError('unhandled promise rejection', reason);
});
// Installed before the slow Baileys import: a SIGTERM during start-up is a stop, not a kill.
process.on('SIGTERM', () => void requestStop('SIGTERM'));
process.on('SIGINT', () => void requestStop('SIGINT'));
// Files this process creates are its own: Baileys writes plaintext copies of outgoing media to
// os.tmpdir() (for thumbnails and durations) with the default mode, i.e. world-readable.
process.umask(0o077);

// A failure in start-up or reconnect logic would otherwise leave a process that reads stdin
// but never connects; crash instead, so the supervisor restarts us.
await main().catch((err) => crash('start-up failed; exiting', err));

async function main() {
  let baileys;
  let pino;
  try {
    baileys = await import('./baileys.js');
    pino = (await import('pino')).default;
    events = await import('./events.js');
  } catch (err) {
    // Still `ready` first (the bridge checks the protocol), then say why we cannot go on.
    await frames.write(readyFrame(baileysVersionFromDisk()));
    readySent();
    return fatal('internal', `cannot load Baileys: ${err instanceof Error ? err.message : String(err)}`);
  }
  await frames.write(readyFrame(baileysVersionFromDisk()));
  readySent();

  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) return fatal('bad_config', err.message);
    throw err;
  }

  log = pino(
    { level: config.logLevel, base: { pid: process.pid, instance: config.instanceId } },
    pino.destination({ dest: 2, sync: true }),
  );
  await silenceDefaultBaileysLogger();

  const { AuthUnreadableError, openAuthStore } = await import('./auth.js');
  try {
    auth = await openAuthStore(config.authDir, log);
  } catch (err) {
    if (err instanceof AuthUnreadableError) return fatal('auth_unreadable', err.message);
    return fatal('auth_unreadable', `auth state cannot be opened: ${err instanceof Error ? err.message : String(err)}`);
  }
  log.info({ new_identity: auth.isNew }, 'auth state loaded');
  accountOnDisk = Boolean(auth.creds.account);

  sentIds = new events.RecentIds(2000);
  const { NumberCheck, SentMessages } = await import('./outgoing.js');
  // Our sends, newest 1000: Baileys' getMessage.
  const sentMessages = new SentMessages();
  pairingPhone = config.pairingPhone;
  await setUpMessageDelivery(config);
  const socketConfig = {
    // Watched for `lid-mapping` writes: every LID <-> phone pair Baileys learns becomes a frame.
    auth: {
      creds: auth.creds,
      keys: events.observeKeyWrites(auth.keys, (data) => writeLidMappings(events?.lidMappingsOfKeyWrite(data) ?? [])),
    },
    logger: log.child({ class: 'baileys' }),
    version: config.waVersion,
    waWebSocketUrl: config.websocketUrl,
    browser: baileys.Browsers.macOS(config.browserName),
    connectTimeoutMs: config.connectTimeoutMs,
    keepAliveIntervalMs: config.keepAliveMs,
    markOnlineOnConnect: false,
    ...(config.qrTimeoutMs !== null ? { qrTimeout: config.qrTimeoutMs } : {}),
    syncFullHistory: false,
    // One for the process, not per socket: retry counts must survive the 515 reconnect.
    msgRetryCounterCache: new TtlCache(),
    // Consulted before every group send; undefined (not cached) makes Baileys query WhatsApp.
    cachedGroupMetadata: (/** @type {string} */ jid) => /** @type {import('./groups.js').GroupCache} */ (groups).metadata(jid),
    // Answers peer retry receipts for our sends once Baileys' own cache (512, 5 min) forgot them.
    getMessage: async (/** @type {any} */ key) => sentMessages.get(key?.id),
    // Status updates, channels, broadcast lists (and groups, when asked): dropped before decryption.
    shouldIgnoreJid: ignoreJidPredicate(config.ignoreChats),
  };
  // A stop may have arrived while the auth state loaded; requestStop finishes the process then.
  if (intentional || exiting) return;
  connect(baileys.makeWASocket, socketConfig);

  // Commands wait in the stdin pipe until here: connecting first saves the validator compile
  // time (~0.1 s) on every start, and no command can do anything useful before the socket exists.
  let validateCommand;
  try {
    validateCommand = await compileCommandValidators();
  } catch (err) {
    return fatal('internal', `cannot compile the protocol schema: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { createCommandHandler } = await import('./commands.js');
  const numbers = new NumberCheck({
    // The socket of the moment: a 515 reconnect replaces it.
    lookup: (jid) => {
      if (!sock || connState !== 'open') throw new Error('connection is not open');
      return sock.onWhatsApp(jid);
    },
  });
  const handle = createCommandHandler({
    socket: () => sock,
    isOpen: () => sock !== null && connState === 'open' && !intentional && !exiting,
    sentIds,
    sent: sentMessages,
    numbers,
    mediaDir: config.mediaDir,
    stop: () => requestStop('shutdown command'),
    logger: log,
  });
  readCommands(validateCommand, handle);
}

/**
 * Opens a socket and wires its events. Called once at start and again after a 515.
 * @param {(config: any) => any} makeWASocket
 * @param {any} socketConfig
 */
function connect(makeWASocket, socketConfig) {
  const ev = /** @type {import('./events.js')} */ (events);
  const current = makeWASocket(socketConfig);
  sock = current;
  // Incoming messages one at a time, or a new contact's second message can overtake its first.
  if (serializeListeners(current.ws, 'CB:message') === 0) log.warn('no Baileys message handler to serialize');
  connState = 'connecting';

  current.ev.on('creds.update', () => {
    if (auth && !accountOnDisk && auth.creds.account) {
      // The pairing (pair-success, by QR or code). Baileys sends pair-device-sign right after
      // this synchronous emit; once it leaves, the phone lists the device as linked. An async
      // save could still be in flight then, and a kill in that gap made the next start show a
      // QR for a new identity while the phone kept a ghost device (tests/test_session_durability.py,
      // ~1 in 3 kills right after the scan). So this one save blocks; if it fails, the throw
      // reaches Baileys' pair-success handler, which ends the socket instead of acknowledging
      // a pairing we could not keep.
      try {
        auth.saveCredsSync();
      } catch (err) {
        logError('saving the new pairing failed; not acknowledging it', err);
        throw err;
      }
      accountOnDisk = true;
    }
    void auth?.saveCreds().catch((/** @type {unknown} */ err) => logError('saving creds failed', err));
  });

  // When the offline backlog has been delivered, rc14 starts holding every message event in its
  // buffer (`AwaitingInitialSync`, lib/Socket/chats.js) until the phone's history notification
  // arrives or 20 s pass, unless the session finished a first sync (creds.accountSyncCounter > 0).
  // A sidecar that crashed in its first seconds after linking thus came back and delivered the
  // backlog 20 s late, and a kill during the hold lost what it held. Baileys' listener (registered
  // before this one) has just called ev.buffer(): release it. Only the hold goes; the sync state
  // machine is untouched, so history (with its LID mappings) and the app-state sync still run,
  // and the history event now arrives unbuffered, `lidPnMappings` included.
  current.ev.on('connection.update', (/** @type {any} */ update) => {
    if (update.receivedPendingNotifications === true && current.ev.isBuffering()) {
      current.ev.flush();
      log.debug('released the initial-sync event hold');
    }
  });

  current.ev.on('connection.update', (/** @type {any} */ update) => {
    if (sock !== current) return;
    if (update.connection === 'close') {
      connState = 'close';
      void onClose(update.lastDisconnect?.error, makeWASocket, socketConfig);
      return;
    }
    const me = update.connection === 'open' ? ev.meFromUser(current.user ?? auth?.creds.me) : null;
    if (update.connection === 'open' && !me) log.error('connection opened without an account id');
    for (const frame of ev.connectionUpdateFrames(update, connState, me)) {
      // Linking by code: the QR refs still rotate underneath, but nobody should scan them.
      if (frame.type === 'qr' && pairingPhone !== null) continue;
      void frames.write(frame);
    }
    if (typeof update.qr === 'string' && pairingPhone !== null && !pairingRequested) {
      // The first QR ref means the socket is open and registering: the moment Baileys accepts
      // requestPairingCode (earlier it throws "Connection Closed").
      pairingRequested = true;
      const phone = pairingPhone;
      void Promise.resolve(current.requestPairingCode(phone)).then(
        (/** @type {string} */ code) => frames.write({ type: 'pairing_code', code, phone }),
        (/** @type {unknown} */ err) => crash('requesting the pairing code failed; exiting', err),
      );
    }
    if (update.connection === 'open' || update.connection === 'connecting') connState = update.connection;
    if (update.connection === 'open') log.info('connection open');
  });

  current.ev.on('messages.upsert', (/** @type {any} */ upsert) => {
    const { entries, skipped } = ev.messageEntries(upsert, /** @type {any} */ (sentIds));
    // Mappings first: the bridge can then resolve the LID of the very message that revealed it.
    writeLidMappings(entries.flatMap(({ msg }) => ev.lidMappingsOfKey(msg.key)));
    messages?.push(entries);
    // A receipt Baileys merged into a still-buffered upsert: reported right after its message.
    const merged = entries.map(({ msg }) => ev.statusFrameOfUpsert(msg)).filter((frame) => frame !== null);
    if (merged.length > 0) messages?.pushAfter(/** @type {any[]} */ (merged));
    if (skipped > 0) log.warn({ skipped, upsert: upsert.type }, 'dropped upserted messages that cannot form a frame');
    log.debug({ count: entries.length, upsert: upsert.type, queued: messages?.pending }, 'messages upserted');
  });

  current.ev.on('messages.update', (/** @type {any[]} */ updates) => {
    const statuses = ev.statusFramesOfUpdates(updates);
    if (statuses.length > 0) messages?.pushAfter(statuses);
  });

  current.ev.on('lid-mapping.update', (/** @type {any} */ mapping) => writeLidMappings([mapping]));
  current.ev.on('messaging-history.set', (/** @type {any} */ history) => {
    if (Array.isArray(history?.lidPnMappings)) writeLidMappings(history.lidPnMappings);
  });

  current.ev.on('groups.upsert', (/** @type {any[]} */ list) => groups?.upsert(list));
  current.ev.on('groups.update', (/** @type {any[]} */ list) => groups?.update(list));
  current.ev.on('group-participants.update', (/** @type {any} */ update) => groups?.participantsChanged(update));
}

/**
 * The message path: media spool, group names, LID mappings, and the per-chat queue that puts
 * them together in order (docs/protocol.md "Media and order").
 * @param {import('./config.js').SidecarConfig} config
 */
async function setUpMessageDelivery(config) {
  const ev = /** @type {import('./events.js')} */ (events);
  const { createMediaSpool, sweepStaleTemps } = await import('./media.js');
  const { createMessagePipeline } = await import('./ordering.js');
  const { GroupCache } = await import('./groups.js');

  if (config.mediaDir === null) {
    log.warn('PONTE_MEDIA_DIR is not set: media messages will report download_failed');
  } else {
    void sweepStaleTemps(config.mediaDir).then(
      (removed) => { if (removed > 0) log.info({ removed }, 'removed stale media temporaries'); },
      (err) => logError('sweeping the media spool failed', err),
    );
  }
  const spool = createMediaSpool({
    dir: config.mediaDir,
    maxBytes: config.mediaMaxBytes,
    logger: log.child({ class: 'media' }),
    // The socket of the moment: a 515 reconnect replaces it.
    reuploadRequest: (msg) => {
      if (!sock) throw new Error('no socket');
      return sock.updateMediaMessage(msg);
    },
  });
  groups = new GroupCache({
    fetch: (jid) => {
      if (!sock || connState !== 'open') throw new Error('connection is not open');
      return sock.groupMetadata(jid);
    },
    onFetchError: (jid, err) => {
      log.warn({ jid, error: err instanceof Error ? err.message : String(err) }, 'group metadata lookup failed');
    },
  });
  lidMappings = new ev.LidMappings();
  messages = createMessagePipeline({
    write: (frame) => frames.write(frame),
    media: (msg) => spool.fetch(msg),
    chatName: (jid) => /** @type {import('./groups.js').GroupCache} */ (groups).subject(jid),
    onError: (err, frame) => logError(`message ${frame.key.id} could not be completed`, err),
  });
}

/** @param {Iterable<{lid?: unknown, pn?: unknown} | null | undefined>} pairs */
function writeLidMappings(pairs) {
  for (const frame of lidMappings?.fresh(pairs) ?? []) void frames.write(frame);
}

/** Lets message frames still waiting for their media out before the process reports its end. */
async function drainMessages() {
  if (!messages || messages.pending === 0) return;
  const pending = messages.pending;
  const drained = await messages.drain(MESSAGE_DRAIN_MS);
  if (!drained) log.warn({ pending: messages.pending, of: pending }, 'message frames still incomplete at exit');
}

/**
 * @param {unknown} error  lastDisconnect.error
 * @param {(config: any) => any} makeWASocket
 * @param {any} socketConfig
 */
async function onClose(error, makeWASocket, socketConfig) {
  // Our own stop reports its close itself (reason `intentional`), whatever code Baileys gives.
  if (intentional || exiting) return;
  const ev = /** @type {import('./events.js')} */ (events);
  const { statusCode, message } = ev.disconnectInfo(error);
  if (statusCode === ev.RESTART_REQUIRED) {
    // Normal right after pairing: WhatsApp wants a fresh socket with the just-saved identity.
    await frames.write(ev.closeFrame(statusCode, message, true));
    await auth?.flush();
    if (intentional || exiting) return;
    log.info('restart required; reconnecting with the same auth');
    try {
      connect(makeWASocket, socketConfig);
    } catch (err) {
      crash('reconnect failed; exiting', err);
    }
    return;
  }
  exiting = true;
  log.info({ status_code: statusCode, reason: ev.closeReason(statusCode, message) }, 'connection closed; exiting');
  await drainMessages();
  await frames.write(ev.closeFrame(statusCode, message, false));
  await finish(EXIT_OK);
}

/**
 * The intentional stop: shutdown command, stdin EOF, SIGTERM/SIGINT. Idempotent; resolves when
 * the socket is ended, auth writes are on disk and the close is reported, and then lets the
 * process exit once running commands (the shutdown's own result included) have answered.
 * @param {string} why
 * @returns {Promise<void>}
 */
function requestStop(why) {
  if (stopPromise) return stopPromise;
  // A reported close is already taking the process down; nothing left to stop.
  if (exiting) return (stopPromise = Promise.resolve());
  intentional = true;
  // Our parent is gone when stdin or stdout closed: every message WhatsApp still hands this
  // socket would be acknowledged and then lost with the process, so the socket ends first.
  const orphaned = why.startsWith('stdin') || why.startsWith('stdout');
  stopPromise = (async () => {
    if (orphaned && sock) await Promise.race([Promise.resolve(sock.end(undefined)).catch(() => {}), delay(SOCKET_END_MS)]);
    await readyWritten;
    log?.info({ why }, 'stopping');
    await auth?.flush();
    const current = orphaned ? null : sock;
    if (current) {
      // end(undefined), never logout(): logout would unlink the device from the phone.
      await Promise.race([Promise.resolve(current.end(undefined)).catch(() => {}), delay(SOCKET_END_MS)]);
    }
    connState = 'close';
    await drainMessages();
    await auth?.flush();
    exiting = true;
    await frames.write(/** @type {any} */ ((events?.INTENTIONAL_CLOSE) ?? {
      type: 'connection', state: 'close', status_code: null, reason: 'intentional', message: null, will_reconnect: false,
    }));
  })();
  void stopPromise.then(() => finish(EXIT_OK), (err) => {
    logError('stop failed', err);
    return finish(EXIT_CRASH);
  });
  return stopPromise;
}

/**
 * Leaves after every auth write and every answer we still owe has reached its destination.
 * @param {number} code
 */
async function finish(code) {
  await auth?.flush();
  await Promise.race([Promise.allSettled([...inflight]), delay(COMMAND_SETTLE_MS)]);
  await auth?.flush();
  await frames.flush();
  process.exit(code);
}

/**
 * Exits with a crash status (no close frame): the supervisor restarts crashed sidecars with
 * backoff. Finishes auth writes already started first, briefly: a lost session write means
 * "Bad MAC" later.
 * @param {string} msg
 * @param {unknown} err
 */
function crash(msg, err) {
  logError(msg, err);
  exiting = true;
  const pending = auth ? auth.flush() : Promise.resolve();
  void Promise.race([pending, delay(2000)]).finally(() => process.exit(EXIT_CRASH));
}

/**
 * @param {'auth_unreadable' | 'bad_config' | 'internal'} code
 * @param {string} message
 */
async function fatal(code, message) {
  exiting = true;
  logError(`fatal: ${code}`, message);
  await frames.write({ type: 'fatal', code, message });
  await auth?.flush();
  await frames.flush();
  process.exit(EXIT_FATAL);
}

/**
 * Reads stdin as JSON lines; each command runs concurrently and answers once. EOF means the
 * bridge is gone or wants us gone: stop intentionally.
 * @param {Record<string, import('ajv').ValidateFunction>} validateCommand
 * @param {(command: import('./protocol.js').SidecarCommand) => Promise<import('./protocol.js').Result>} handle
 */
function readCommands(validateCommand, handle) {
  const splitter = createLineSplitter(MAX_LINE_BYTES, (line) => {
    if (line.trim() === '') return;
    const decoded = decodeCommand(line, validateCommand);
    if (!decoded.ok) {
      log.warn({ command_id: decoded.id, problem: decoded.message }, 'bad command line');
      if (decoded.id) track(frames.write(errorResult(decoded.id, 'bad_command', decoded.message)));
      return;
    }
    const { command } = decoded;
    log.debug({ command_id: command.id, command: command.type }, 'command received');
    track(handle(command).then((result) => frames.write(result)));
  }, (head, bytes) => {
    const id = readLooseId(head);
    log.warn({ command_id: id, bytes }, 'dropped an overlong command line');
    if (id) track(frames.write(errorResult(id, 'bad_command', `command line longer than ${MAX_LINE_BYTES} bytes`)));
  });

  process.stdin.on('data', (/** @type {Buffer} */ chunk) => splitter.push(chunk));
  process.stdin.on('end', () => {
    splitter.end();
    void requestStop('stdin closed');
  });
  process.stdin.on('error', (err) => {
    logError('stdin failed', err);
    void requestStop('stdin failed');
  });
}

/** @param {Promise<unknown>} promise */
function track(promise) {
  const tracked = promise.catch((err) => logError('command failed', err));
  inflight.add(tracked);
  void tracked.finally(() => inflight.delete(tracked));
}

/** @param {string} baileysVersion */
function readyFrame(baileysVersion) {
  return /** @type {import('./protocol.js').ReadyEvent} */ ({
    type: 'ready',
    protocol: PROTOCOL_VERSION,
    sidecar: SIDECAR_VERSION,
    baileys: baileysVersion,
    pid: process.pid,
  });
}

/** Baileys' version from its package.json (it has no `exports` map, so the path resolves). */
function baileysVersionFromDisk() {
  try {
    const require = createRequire(import.meta.url);
    const path = require.resolve('@whiskeysockets/baileys/package.json');
    return String(JSON.parse(readFileSync(path, 'utf8')).version);
  } catch {
    return 'unknown';
  }
}

/**
 * Baileys' module-level default logger writes to fd 1 directly (pino on stdout), bypassing
 * process.stdout; lib/Socket/communities.js uses it. Silence it: we pass our own logger.
 */
async function silenceDefaultBaileysLogger() {
  try {
    const { default: defaultLogger } = await import('@whiskeysockets/baileys/lib/Utils/logger.js');
    defaultLogger.level = 'silent';
  } catch (err) {
    log.warn({ error: String(err) }, 'cannot silence the default Baileys logger');
  }
}

/**
 * @param {string} msg
 * @param {unknown} err
 */
function logError(msg, err) {
  const detail = err instanceof Error ? { message: err.message, stack: err.stack } : { message: String(err) };
  if (log) log.error({ error: detail }, msg);
  else process.stderr.write(`${JSON.stringify({ level: 50, time: Date.now(), msg, error: detail })}\n`);
}

/** @param {number} ms */
function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
