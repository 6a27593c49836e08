// Every disconnect path: the injected server behaviour and the DisconnectReason code the real client reports.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, pairClient, startSim } from '../harness/helpers.mjs';

const PHONE = '5511999990003';

describe('error injection', () => {
	let sim;
	let client; // one paired client process; each case reconnects it with its saved auth
	before(async () => {
		sim = await startSim();
		({ client } = await pairClient(sim, { phone: PHONE }));
		// from here on the client does not reconnect by itself, so every close is observed as it happened
		const from = client.events.length;
		await client.request('end');
		await client.waitClose({ from });
	});
	after(async () => {
		await client?.stop();
		await sim?.stop();
	});

	/** (Re)connects the paired client, waits for open, runs `inject`, returns the close event. */
	const closeAfter = async (inject, startOpts = {}) => {
		const from = client.events.length;
		const last = client.events.filter(e => e.ev === 'connection.update').at(-1)?.data;
		if (last?.connection !== 'open' || Object.keys(startOpts).length) {
			if (last?.connection !== 'close') {
				await client.request('end');
				await client.waitClose({ from });
			}
			const from2 = client.events.length;
			await client.start(sim, { autoRestart: false, ...startOpts });
			await client.waitOpen({ from: from2 });
		}
		const from3 = client.events.length;
		await inject();
		const close = await client.waitClose({ from: from3, timeoutMs: 15000 });
		return close.data.lastDisconnect;
	};

	const cases = [
		['restart (stream:error 515)', { kind: 'restart' }, 515],
		['stream:error code 503', { kind: 'stream-error', code: 503 }, 503],
		['stream:error without code, unknown child → 500', { kind: 'stream-error' }, 500],
		['conflict replaced → 440', { kind: 'conflict' }, 440],
		['failure 401', { kind: 'failure', code: 401 }, 401],
		['failure 403', { kind: 'failure', code: 403 }, 403],
		['failure 405', { kind: 'failure', code: 405 }, 405],
		['failure without reason → 500', { kind: 'failure' }, 500],
		['xmlstreamend → 428', { kind: 'xmlstreamend' }, 428],
		['dropped socket → 428', { kind: 'drop' }, 428],
		['downgrade_webclient → 411', { kind: 'downgrade' }, 411]
	];
	for (const [name, kick, code] of cases) {
		test(name, async () => {
			const last = await closeAfter(() => sim.post('/admin/kick', { ...kick, phone: PHONE }));
			assert.equal(last.code, code, JSON.stringify(last));
		});
	}

	test('a second client with the same credentials replaces the first (440)', async () => {
		const from = client.events.length;
		await closeAfter(async () => {
			const twin = new Client({ authDir: client.authDir });
			await twin.start(sim, { autoRestart: false });
			await twin.waitOpen();
			await twin.stop();
		});
		const close = await client.waitClose({ from });
		assert.equal(close.data.lastDisconnect.code, 440);
	});

	test('unanswered keep-alive pings → 408 after interval + 5 s', async t => {
		const t0 = { at: 0 };
		const last = await closeAfter(
			async () => {
				t0.at = Date.now();
				await sim.post('/admin/kick', { kind: 'stop-pings', phone: PHONE });
			},
			{ keepAliveIntervalMs: 500 }
		);
		assert.equal(last.code, 408);
		assert.match(last.message, /lost/i);
		t.diagnostic(`closed ${Date.now() - t0.at} ms after pings stopped`);
	});

	test('failure at login (config fail_logins) reaches the client', async () => {
		await client.request('end').catch(() => {});
		await sim.post('/admin/config', { fail_logins: { reason: 403, count: 1 } });
		const from = client.events.length;
		await client.start(sim, { autoRestart: false });
		const close = await client.waitClose({ from });
		assert.equal(close.data.lastDisconnect.code, 403);
		// the next login works again
		const from2 = client.events.length;
		await client.start(sim, { autoRestart: false });
		await client.waitOpen({ from: from2 });
	});

	test('restart with autoRestart reconnects and opens again', async () => {
		const from = client.events.length;
		await client.request('end').catch(() => {});
		await client.waitClose({ from });
		const from2 = client.events.length;
		await client.start(sim, { autoRestart: true });
		await client.waitOpen({ from: from2 });
		const from3 = client.events.length;
		await sim.post('/admin/kick', { kind: 'restart', phone: PHONE });
		const close = await client.waitClose({ from: from3 });
		assert.equal(close.data.lastDisconnect.code, 515);
		await client.waitOpen({ from: from3 });
	});

	test('QR refs exhausted → 408 "QR refs attempts ended"', async () => {
		await sim.post('/admin/config', { qr_refs: 2 });
		const fresh = new Client();
		try {
			const t0 = Date.now();
			await fresh.start(sim, { qrTimeout: 400 });
			const close = await fresh.waitClose();
			assert.equal(close.data.lastDisconnect.code, 408);
			assert.match(close.data.lastDisconnect.message, /QR refs attempts ended/);
			assert.equal(fresh.events.filter(e => e.ev === 'connection.update' && e.data.qr).length, 2);
			assert.ok(Date.now() - t0 < 10000);
		} finally {
			await fresh.stop();
			await sim.post('/admin/config', { qr_refs: 6 });
		}
	});

	test('an HTTP error on the WebSocket upgrade → 408 after connectTimeoutMs', async () => {
		await sim.post('/admin/config', { reject_ws_upgrade: 503 });
		const fresh = new Client();
		try {
			const t0 = Date.now();
			await fresh.start(sim, { connectTimeoutMs: 1000 });
			const close = await fresh.waitClose();
			assert.equal(close.data.lastDisconnect.code, 408);
			assert.ok(Date.now() - t0 >= 900);
		} finally {
			await fresh.stop();
			await sim.post('/admin/config', { reject_ws_upgrade: null });
		}
	});
});
