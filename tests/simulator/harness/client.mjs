// A plain, unmodified Baileys client driven over IPC by the simulator tests.
// Started with: fork(client.mjs, { execArgv: ['--import', cert-preload.mjs] }) so the preload applies.
// Parent → child: {reqId, cmd, ...args}; child → parent: {reqId, ok, result|error} and {ev, data, at}.
import { mkdirSync } from 'node:fs';
import { Agent } from 'node:https';
import pino from 'pino';
import makeWASocket, {
	BufferJSON,
	DisconnectReason,
	downloadMediaMessage,
	makeCacheableSignalKeyStore,
	useMultiFileAuthState
} from '@whiskeysockets/baileys';

// libsignal prints session dumps on stdout/stderr: keep the child quiet
console.log = console.info = console.debug = console.warn = () => {};

const logger = pino({ level: process.env.SIM_CLIENT_LOG || 'silent' }, pino.destination(2));
const send = msg => process.send?.(JSON.parse(JSON.stringify(msg, BufferJSON.replacer)));
const emit = (ev, data) => send({ ev, data, at: Date.now() });

let sock = null;
let opts = null;
let authState = null;
let saveCreds = null;
let stopped = false;
const messages = new Map(); // id → WAMessage (both directions), for quoting, reactions, edits and downloads

const codeOf = err => err?.output?.statusCode ?? err?.statusCode ?? null;

const connect = async () => {
	if (!authState) {
		mkdirSync(opts.authDir, { recursive: true });
		({ state: authState, saveCreds } = await useMultiFileAuthState(opts.authDir));
	}
	sock = makeWASocket({
		waWebSocketUrl: opts.url,
		auth: { creds: authState.creds, keys: makeCacheableSignalKeyStore(authState.keys, logger) },
		logger,
		markOnlineOnConnect: false,
		syncFullHistory: false,
		connectTimeoutMs: opts.connectTimeoutMs ?? 10000,
		keepAliveIntervalMs: opts.keepAliveIntervalMs ?? 30000,
		qrTimeout: opts.qrTimeout,
		defaultQueryTimeoutMs: opts.defaultQueryTimeoutMs ?? 20000,
		getMessage: async key => messages.get(key.id)?.message ?? undefined,
		// uploads go to the simulator's HTTPS side; trust its throw-away certificate (also for wss://)
		fetchAgent: opts.tlsCaPem ? new Agent({ ca: opts.tlsCaPem }) : undefined,
		agent: opts.tlsCaPem && opts.url.startsWith('wss:') ? new Agent({ ca: opts.tlsCaPem }) : undefined
	});
	const mine = sock;
	mine.ev.on('creds.update', async update => {
		await saveCreds();
		emit('creds.update', { me: authState.creds.me ?? null, registered: authState.creds.registered ?? false, keys: Object.keys(update) });
	});
	mine.ev.on('connection.update', update => {
		const { connection, lastDisconnect, qr, isNewLogin, receivedPendingNotifications } = update;
		const data = { connection, qr, isNewLogin, receivedPendingNotifications };
		if (lastDisconnect) {
			data.lastDisconnect = { code: codeOf(lastDisconnect.error), message: lastDisconnect.error?.message ?? null };
		}
		emit('connection.update', data);
		if (connection === 'close' && mine === sock) {
			const code = codeOf(lastDisconnect?.error);
			if (!stopped && opts.autoRestart !== false && code === DisconnectReason.restartRequired) {
				emit('reconnecting', { code });
				connect().catch(err => emit('error', { message: String(err?.stack || err) }));
			}
		}
	});
	mine.ev.on('messages.upsert', ({ messages: list, type }) => {
		for (const m of list) {
			if (m.key?.id) {
				messages.set(m.key.id, m);
			}
		}
		emit('messages.upsert', { type, messages: list });
	});
	mine.ev.on('messages.update', updates => emit('messages.update', updates));
	mine.ev.on('messaging-history.set', h =>
		emit('messaging-history.set', { syncType: h.syncType, isLatest: h.isLatest, chats: h.chats.length, lidPnMappings: h.lidPnMappings ?? [] })
	);
	mine.ev.on('messages.reaction', r => emit('messages.reaction', r));
	mine.ev.on('presence.update', p => emit('presence.update', p));
};

const commands = {
	start: async args => {
		opts = args;
		stopped = false;
		await connect();
		return { ok: true };
	},
	requestPairingCode: async ({ phone, code }) => sock.requestPairingCode(phone, code),
	sendMessage: async ({ jid, content, quotedId }) => {
		const options = {};
		// media as base64 in IPC: {image|document|...: {b64}}
		for (const kind of ['image', 'video', 'audio', 'document', 'sticker']) {
			if (content[kind]?.b64) {
				content = { ...content, [kind]: Buffer.from(content[kind].b64, 'base64') };
			}
		}
		if (quotedId) {
			options.quoted = messages.get(quotedId);
			if (!options.quoted) {
				throw new Error(`no stored message ${quotedId} to quote`);
			}
		}
		// {react: {text, keyOf: id}} / {edit: id} / {delete: id} → the stored message key
		const c = { ...content };
		if (c.react?.keyOf) {
			c.react = { text: c.react.text, key: messages.get(c.react.keyOf)?.key };
		}
		if (typeof c.edit === 'string') {
			c.edit = messages.get(c.edit)?.key;
		}
		if (typeof c.delete === 'string') {
			c.delete = messages.get(c.delete)?.key;
		}
		const sent = await sock.sendMessage(jid, c, options);
		// store right away: the 'append' upsert may sit in Baileys' event buffer for a while
		messages.set(sent.key.id, sent);
		return { key: sent.key, message: sent.message };
	},
	readMessages: async ({ ids }) => {
		await sock.readMessages(ids.map(id => messages.get(id).key));
		return { ok: true };
	},
	download: async ({ id }) => {
		const msg = messages.get(id);
		if (!msg) {
			throw new Error(`no stored message ${id}`);
		}
		const buf = await downloadMediaMessage(msg, 'buffer', {}, { logger, reuploadRequest: sock.updateMediaMessage });
		return { b64: Buffer.from(buf).toString('base64') };
	},
	onWhatsApp: async ({ phones }) => sock.onWhatsApp(...phones),
	creds: async () => ({ me: authState?.creds.me ?? null, registered: authState?.creds.registered ?? false }),
	end: async () => {
		stopped = true;
		sock?.end(undefined);
		return { ok: true };
	},
	exit: async () => {
		stopped = true;
		sock?.end(undefined);
		setTimeout(() => process.exit(0), 50);
		return { ok: true };
	}
};

process.on('message', async msg => {
	const fn = commands[msg?.cmd];
	if (!fn) {
		send({ reqId: msg?.reqId, ok: false, error: `unknown command ${msg?.cmd}` });
		return;
	}
	try {
		const result = await fn(msg);
		send({ reqId: msg.reqId, ok: true, result });
	} catch (err) {
		send({ reqId: msg.reqId, ok: false, error: String(err?.stack || err) });
	}
});
process.on('disconnect', () => process.exit(0));
emit('spawned', { pid: process.pid });
