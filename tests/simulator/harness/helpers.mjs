// Test helpers: start the simulator as a child process, talk to its control API, fork Baileys clients.
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const SIM_DIR = join(here, '..');
export const SERVER = join(SIM_DIR, 'server.mjs');
export const PRELOAD = join(SIM_DIR, 'cert-preload.mjs');
export const CLIENT = join(here, 'client.mjs');

export const sleep = ms => new Promise(r => setTimeout(r, ms));

/** Spawns server.mjs; resolves once its ready line arrives. */
export const startSim = async ({ env = {} } = {}) => {
	const child = spawn(process.execPath, [SERVER, '--port', '0'], {
		env: { ...process.env, PONTE_SIM_LOG: process.env.PONTE_SIM_LOG || 'warn', ...env },
		stdio: ['ignore', 'pipe', 'inherit']
	});
	const rl = createInterface({ input: child.stdout });
	const ready = await new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error('simulator did not start')), 15000);
		rl.once('line', line => {
			clearTimeout(timer);
			resolve(JSON.parse(line));
		});
		child.once('exit', code => reject(new Error(`simulator exited with ${code}`)));
	});
	const extraStdout = [];
	rl.on('line', l => extraStdout.push(l));
	const base = `http://127.0.0.1:${ready.port}`;
	const call = async (method, path, body) => {
		const res = await fetch(base + path, {
			method,
			headers: body ? { 'content-type': 'application/json' } : undefined,
			body: body ? JSON.stringify(body) : undefined
		});
		const json = await res.json();
		if (!res.ok) {
			const err = new Error(`${method} ${path} → ${res.status}: ${json.error}`);
			err.status = res.status;
			throw err;
		}
		return json;
	};
	return {
		...ready,
		url: `ws://127.0.0.1:${ready.port}`,
		base,
		extraStdout,
		get: path => call('GET', path),
		post: (path, body = {}) => call('POST', path, body),
		stop: () =>
			new Promise(resolve => {
				if (child.exitCode !== null) {
					resolve();
					return;
				}
				child.once('exit', () => resolve());
				child.kill('SIGTERM');
			})
	};
};

/** A forked Baileys client (see client.mjs) with an event log and helpers to await events. */
export class Client {
	constructor({ authDir, preload = true } = {}) {
		this.ownsDir = !authDir;
		this.authDir = authDir || mkdtempSync(join(tmpdir(), 'wa-sim-auth-'));
		this.events = [];
		this.waiters = new Set();
		this.pending = new Map();
		this.nextReq = 1;
		this.spawnedAt = Date.now();
		this.stderr = [];
		this.child = fork(CLIENT, [], {
			execArgv: preload ? ['--import', PRELOAD] : [],
			stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
			env: { ...process.env }
		});
		this.child.stderr.on('data', d => {
			this.stderr.push(d.toString());
			if (this.stderr.length > 200) {
				this.stderr.shift();
			}
		});
		this.child.on('message', msg => this.onMessage(msg));
		this.exited = new Promise(resolve => this.child.once('exit', resolve));
	}

	onMessage(msg) {
		if (msg.reqId) {
			const p = this.pending.get(msg.reqId);
			if (p) {
				this.pending.delete(msg.reqId);
				msg.ok ? p.resolve(msg.result) : p.reject(new Error(msg.error));
			}
			return;
		}
		this.events.push(msg);
		for (const w of [...this.waiters]) {
			w(msg);
		}
	}

	request(cmd, args = {}, timeoutMs = 30000) {
		const reqId = this.nextReq++;
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.pending.delete(reqId);
				reject(new Error(`client command ${cmd} timed out`));
			}, timeoutMs);
			this.pending.set(reqId, {
				resolve: v => {
					clearTimeout(timer);
					resolve(v);
				},
				reject: e => {
					clearTimeout(timer);
					reject(e);
				}
			});
			this.child.send({ reqId, cmd, ...args });
		});
	}

	start(sim, opts = {}) {
		return this.request('start', { url: sim.url, authDir: this.authDir, ...opts });
	}

	/** Resolves with the first event (already seen after index `from`, or future) matching `pred`. */
	waitFor(pred, { timeoutMs = 20000, from = 0, what = 'event' } = {}) {
		for (let i = from; i < this.events.length; i++) {
			if (pred(this.events[i])) {
				return Promise.resolve(this.events[i]);
			}
		}
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.waiters.delete(w);
				const tail = this.events.slice(-8).map(e => `${e.ev} ${JSON.stringify(e.data).slice(0, 200)}`).join('\n  ');
				reject(new Error(`timed out waiting for ${what}; last events:\n  ${tail}\nstderr: ${this.stderr.join('').slice(-2000)}`));
			}, timeoutMs);
			const w = ev => {
				if (pred(ev)) {
					clearTimeout(timer);
					this.waiters.delete(w);
					resolve(ev);
				}
			};
			this.waiters.add(w);
		});
	}

	waitQr(opts) {
		return this.waitFor(e => e.ev === 'connection.update' && e.data.qr, { what: 'qr', ...opts });
	}

	waitOpen(opts) {
		return this.waitFor(e => e.ev === 'connection.update' && e.data.connection === 'open', { what: 'open', ...opts });
	}

	waitClose(opts) {
		return this.waitFor(e => e.ev === 'connection.update' && e.data.connection === 'close', { what: 'close', ...opts });
	}

	waitUpsert(pred, opts) {
		return this.waitFor(e => e.ev === 'messages.upsert' && e.data.messages.some(pred), { what: 'messages.upsert', ...opts }).then(e => ({
			...e,
			message: e.data.messages.find(pred)
		}));
	}

	/** Status of an own message from messages.update or from a merged upsert (event-buffer quirk). */
	waitStatus(id, status, opts) {
		return this.waitFor(
			e =>
				(e.ev === 'messages.update' && e.data.some(u => u.key.id === id && (u.update.status ?? 0) >= status)) ||
				(e.ev === 'messages.upsert' && e.data.messages.some(m => m.key.id === id && (m.status ?? 0) >= status)),
			{ what: `status ${status} for ${id}`, ...opts }
		);
	}

	async stop() {
		if (this.child.exitCode === null) {
			try {
				await this.request('exit', {}, 3000);
			} catch {}
			const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
			await this.exited;
			clearTimeout(t);
		}
		if (this.ownsDir) {
			rmSync(this.authDir, { recursive: true, force: true });
		}
	}
}

/** Pairs a fresh client by QR; returns { client, pairing, timings }. */
export const pairClient = async (sim, { phone = '5511999990000', lid, pushName, clientOpts = {}, startOpts = {} } = {}) => {
	const client = new Client(clientOpts);
	const t0 = client.spawnedAt;
	await client.start(sim, startOpts);
	const qrEv = await client.waitQr();
	const tQr = Date.now();
	const pairing = await sim.post('/admin/scan-qr', { qr: qrEv.data.qr, phone, lid, push_name: pushName });
	await client.waitOpen();
	const tOpen = Date.now();
	return { client, pairing, timings: { spawn_to_qr_ms: tQr - t0, scan_to_open_ms: tOpen - tQr } };
};

export const tempDir = () => mkdtempSync(join(tmpdir(), 'wa-sim-auth-'));
