// Entry point: node tests/simulator/server.mjs [--port 0] [--host 127.0.0.1]
// Listens on loopback, prints ONE JSON line {"port":N,"root_key":"<b64>"} on stdout when ready; logs go to stderr.
// PONTE_SIM_LOG=error|warn|info|debug (default info). PONTE_SIM_ROOT_SEED changes the test root key (see root-key.mjs).
import './quiet-console.mjs'; // must stay first: keeps libsignal's console output off stdout
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { pathToFileURL } from 'node:url';
import { WebSocketServer } from 'ws';
import { makeControlHandler } from './control.mjs';
import { Simulator } from './simulator.mjs';
import { makeSelfSignedCert } from './tls.mjs';

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 };

export const makeLogger = (level = process.env.PONTE_SIM_LOG || 'info') => {
	const max = LEVELS[level] ?? LEVELS.info;
	return (lvl, msg) => {
		if ((LEVELS[lvl] ?? 0) <= max) {
			process.stderr.write(`[wa-sim ${new Date().toISOString()} ${lvl}] ${msg}\n`);
		}
	};
};

/**
 * Starts the simulator; resolves with { sim, server, port, close() }.
 * One loopback port serves plain HTTP + ws:// and, when openssl made a certificate, HTTPS + wss:// (the first byte of
 * each TCP connection tells TLS (0x16) from plain HTTP). HTTPS is what Baileys uses for media uploads.
 */
export const startSimulator = async ({ port = 0, host = '127.0.0.1', log = makeLogger(), tls = makeSelfSignedCert() } = {}) => {
	const sim = new Simulator({ log });
	sim.tlsCert = tls?.cert ?? null;
	const control = makeControlHandler(sim);
	const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
	const onUpgrade = (req, socket, head) => {
		const reject = sim.config.reject_ws_upgrade;
		if (reject) {
			sim.counters.rejected_upgrades++;
			socket.on('error', () => {});
			if (sim.config.reject_ws_upgrade_close) {
				// closing right away leaves rc14 hanging in 'connecting' (no timeout fires after the response)
				socket.end(`HTTP/1.1 ${Number(reject)} Simulated\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
			} else {
				// like a proxy keeping the connection alive: the client times out after connectTimeoutMs (408)
				socket.write(`HTTP/1.1 ${Number(reject)} Simulated\r\nContent-Length: 0\r\n\r\n`);
				setTimeout(() => socket.destroy(), 60000).unref();
			}
			return;
		}
		wss.handleUpgrade(req, socket, head, ws => {
			sim.acceptConnection(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
		});
	};
	const httpServer = createServer((req, res) => control(req, res));
	httpServer.on('upgrade', onUpgrade);
	const httpsServer = tls ? createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => control(req, res)) : null;
	httpsServer?.on('upgrade', onUpgrade);
	httpsServer?.on('tlsClientError', () => {});
	const sockets = new Set();
	const server = createNetServer(socket => {
		sockets.add(socket);
		socket.on('close', () => sockets.delete(socket));
		socket.on('error', () => {});
		socket.once('data', chunk => {
			socket.pause();
			socket.unshift(chunk);
			if (chunk[0] === 0x16 && httpsServer) {
				// the TLS wrap reads the buffered ClientHello itself and drives the handle from then on
				httpsServer.emit('connection', socket);
			} else {
				httpServer.emit('connection', socket);
				process.nextTick(() => socket.resume());
			}
		});
	});
	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(port, host, resolve);
	});
	sim.port = server.address().port;
	return {
		sim,
		server,
		port: sim.port,
		close: () =>
			new Promise(resolve => {
				for (const c of [...sim.connections]) {
					c.terminate();
				}
				wss.close();
				for (const s of sockets) {
					s.destroy();
				}
				server.close(() => resolve());
			})
	};
};

const parseArgs = argv => {
	const out = { port: 0, host: '127.0.0.1' };
	for (let i = 0; i < argv.length; i++) {
		if (argv[i] === '--port') {
			out.port = Number(argv[++i]);
		} else if (argv[i] === '--host') {
			out.host = argv[++i];
		}
	}
	if (!['127.0.0.1', 'localhost', '::1'].includes(out.host)) {
		throw new Error('the simulator listens on loopback only');
	}
	return out;
};

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
	const { port, host } = parseArgs(process.argv.slice(2));
	const { sim, close } = await startSimulator({ port, host });
	process.stdout.write(JSON.stringify({ port: sim.port, root_key: sim.root.public.toString('base64') }) + '\n');
	const stop = () => {
		close().then(() => process.exit(0));
		setTimeout(() => process.exit(0), 2000).unref();
	};
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}
