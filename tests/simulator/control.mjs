// HTTP control API (JSON in/out) and media downloads, served on the same port as the WebSocket.
// See README.md for the full list of routes.
import { HttpError } from './simulator.mjs';

const MAX_BODY = 64 * 1024 * 1024;

const readJson = req =>
	new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;
		req.on('data', c => {
			size += c.length;
			if (size > MAX_BODY) {
				reject(new HttpError(413, 'body too large'));
				req.destroy();
				return;
			}
			chunks.push(c);
		});
		req.on('end', () => {
			if (!chunks.length) {
				resolve({});
				return;
			}
			try {
				resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
			} catch {
				reject(new HttpError(400, 'body is not valid JSON'));
			}
		});
		req.on('error', reject);
	});

const readRaw = req =>
	new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;
		req.on('data', c => {
			size += c.length;
			if (size > MAX_BODY) {
				reject(new HttpError(413, 'body too large'));
				req.destroy();
				return;
			}
			chunks.push(c);
		});
		req.on('end', () => resolve(Buffer.concat(chunks)));
		req.on('error', reject);
	});

const sendJson = (res, status, body) => {
	const data = Buffer.from(JSON.stringify(body));
	res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
	res.end(data);
};

export const makeControlHandler = sim => {
	const routes = {
		'GET /admin/state': () => sim.state(),
		'GET /admin/root-key': () => ({ root_key: sim.root.public.toString('base64') }),
		'GET /admin/tls-cert': () => {
			if (!sim.tlsCert) {
				throw new HttpError(404, 'no TLS certificate (openssl was not available at startup)');
			}
			return { pem: sim.tlsCert };
		},
		'POST /admin/reset': () => {
			sim.reset();
			return { ok: true };
		},
		'POST /admin/config': body => ({ config: sim.setConfig(body) }),
		'POST /admin/scan-qr': body => sim.scanQr(body),
		'POST /admin/pairing-code': body => sim.pairingCode(body),
		'POST /admin/contacts': body => sim.addContact(body).toJSON(),
		'GET /admin/contacts': () => [...sim.contacts.values()].map(c => c.toJSON()),
		'POST /admin/send-text': body => sim.sendText(body),
		'POST /admin/send-media': body => sim.sendMedia(body),
		'POST /admin/send-message': body => sim.sendMessage(body),
		'POST /admin/send-reaction': body => sim.sendReaction(body),
		'POST /admin/send-edit': body => sim.sendEdit(body),
		'POST /admin/send-revoke': body => sim.sendRevoke(body),
		'POST /admin/receipt': body => sim.sendReceipt(body),
		'POST /admin/presence': body => sim.sendPresence(body),
		'GET /admin/received': (_, q) => sim.contactByPhone(q.get('phone')).received,
		'GET /admin/sent': (_, q) =>
			sim.contactByPhone(q.get('phone')).sent.map(({ message, ...rest }) => rest),
		'POST /admin/kick': body => sim.kick(body),
		'POST /admin/unlink': body => {
			const account = sim.targetAccount(body.phone);
			const devices = [...account.devices.values()].filter(d => body.device == null || d.id === Number(body.device));
			for (const d of devices) {
				sim.unlinkDevice(d);
			}
			return { unlinked: devices.map(d => d.jid) };
		},
		'POST /admin/wait-ready': async body => {
			const conn = await sim.waitForReady({ phone: body.phone, timeoutMs: body.timeout_ms ?? 20000 });
			return conn.toJSON();
		}
	};

	return async (req, res) => {
		const url = new URL(req.url, 'http://localhost');
		try {
			if (req.method === 'GET' && url.pathname.startsWith('/media/')) {
				const blob = sim.media.get(url.pathname.slice('/media/'.length));
				if (!blob) {
					sendJson(res, 404, { error: 'no such media' });
					return;
				}
				res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length });
				res.end(blob);
				return;
			}
			if (req.method === 'GET' && url.pathname.startsWith('/v/sim/')) {
				const up = sim.uploads.get(url.pathname.slice('/v/sim/'.length));
				if (!up) {
					sendJson(res, 404, { error: 'no such upload' });
					return;
				}
				res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': up.blob.length });
				res.end(up.blob);
				return;
			}
			if (req.method === 'POST' && /^\/(mms|product|pps)\//.test(url.pathname)) {
				// Baileys' media upload (always https://<media_conn host>/mms/<type>/<token>?auth=…&token=…)
				sendJson(res, 200, sim.storeUpload(url.pathname, url.searchParams, await readRaw(req)));
				return;
			}
			if (req.method === 'GET' && url.pathname === '/admin/received-media') {
				const bytes = sim.receivedMedia(url.searchParams.get('phone'), url.searchParams.get('id'));
				res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
				res.end(bytes);
				return;
			}
			if (url.pathname === '/healthz') {
				sendJson(res, 200, { ok: true });
				return;
			}
			const handler = routes[`${req.method} ${url.pathname}`];
			if (!handler) {
				sendJson(res, 404, { error: `no route ${req.method} ${url.pathname}` });
				return;
			}
			const body = req.method === 'POST' ? await readJson(req) : {};
			const result = await handler(body, url.searchParams);
			sendJson(res, 200, result ?? { ok: true });
		} catch (err) {
			const status = err instanceof HttpError ? err.status : 500;
			if (status === 500) {
				sim.log('warn', `control ${req.method} ${url.pathname} failed: ${err?.stack || err}`);
			}
			sendJson(res, status, { error: err?.message || String(err) });
		}
	};
};
