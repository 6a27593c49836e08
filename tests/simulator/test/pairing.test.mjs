// QR pairing, pairing code, saved-session login, unknown device, certificate chain and preload.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { proto } from '@whiskeysockets/baileys';
import { makeCertChain } from '../certs.mjs';
import { verifyStrict } from '../phone.mjs';
import { rootKeyPair } from '../root-key.mjs';
import { Client, pairClient, PRELOAD, startSim } from '../harness/helpers.mjs';

describe('pairing and login against the simulator', () => {
	let sim;
	const clients = [];
	before(async () => {
		sim = await startSim();
	});
	after(async () => {
		await Promise.all(clients.map(c => c.stop()));
		await sim?.stop();
	});

	let saved; // auth dir of the QR-paired client, reused below

	test('QR → scan → 515 → login → pre-key upload → open', async t => {
		const { client, pairing, timings } = await pairClient(sim, { phone: '5511999990001', pushName: 'Ponte Test' });
		clients.push(client);
		t.diagnostic(`spawn→first QR ${timings.spawn_to_qr_ms} ms, scan→open ${timings.scan_to_open_ms} ms`);
		assert.equal(pairing.phone, '5511999990001');
		assert.equal(pairing.device_signature_valid, true);
		const conn = client.events.filter(e => e.ev === 'connection.update').map(e => e.data);
		const qrIdx = conn.findIndex(u => u.qr);
		const newLoginIdx = conn.findIndex(u => u.isNewLogin);
		const closeIdx = conn.findIndex(u => u.connection === 'close');
		const openIdx = conn.findIndex(u => u.connection === 'open');
		assert.ok(qrIdx >= 0 && qrIdx < newLoginIdx && newLoginIdx < closeIdx && closeIdx < openIdx, JSON.stringify(conn));
		assert.equal(conn[closeIdx].lastDisconnect.code, 515);
		assert.match(conn[qrIdx].qr, /^https:\/\/wa\.me\/settings\/linked_devices#2@/);
		const creds = await client.request('creds');
		assert.equal(creds.me.id, pairing.jid);
		assert.equal(creds.me.lid, pairing.lid_jid);
		const state = await sim.get('/admin/state');
		const account = state.accounts.find(a => a.phone === '5511999990001');
		assert.equal(account.devices.length, 1);
		assert.equal(account.devices[0].prekeys_uploaded, 812);
		assert.ok(state.connections.some(c => c.device === pairing.jid && c.ready));
		// the phone's INITIAL_BOOTSTRAP history sync notification was decrypted and processed
		const hist = await client.waitFor(e => e.ev === 'messaging-history.set');
		assert.equal(hist.data.syncType, 0);
		await client.waitFor(e => e.ev === 'creds.update' && e.data.keys.includes('accountSyncCounter'));
		// its notify attribute gives the client its own push name
		await client.waitFor(e => e.ev === 'creds.update' && e.data.me?.name === 'Ponte Test');
		saved = client;
	});

	test('restart with a saved session opens without a QR (and sends the edge routing header)', async () => {
		assert.ok(saved, 'needs the paired client');
		const before = saved.events.length;
		await saved.request('end');
		await saved.waitClose({ from: before });
		const client = new Client({ authDir: saved.authDir });
		clients.push(client);
		const t0 = Date.now();
		await client.start(sim);
		await client.waitOpen({ timeoutMs: 15000 });
		assert.ok(Date.now() - t0 < 10000);
		assert.ok(!client.events.some(e => e.ev === 'connection.update' && e.data.qr), 'no QR on saved login');
		const state = await sim.get('/admin/state');
		const conn = state.connections.find(c => c.device?.startsWith('5511999990001:') && c.ready);
		assert.ok(conn.routing_info, 'client prefixed its intro with ED + routing info');
		// a second login does not upload the initial pre-keys again
		assert.equal(state.accounts.find(a => a.phone === '5511999990001').devices[0].prekeys_uploaded, 812);
		await client.request('end');
	});

	test('wss:// on the same port works with the simulator certificate', async () => {
		const { pem } = await sim.get('/admin/tls-cert');
		const client = new Client({ authDir: saved.authDir });
		clients.push(client);
		await client.request('start', { url: `wss://127.0.0.1:${sim.port}`, authDir: saved.authDir, tlsCaPem: pem });
		await client.waitOpen({ timeoutMs: 15000 });
		await client.request('end');
		await client.waitClose();
	});

	test('pairing code: companion_hello → phone notification → companion_finish → pair-success → open', async t => {
		const client = new Client();
		clients.push(client);
		await client.start(sim);
		await client.waitQr();
		const phone = '5511977776666';
		const code = await client.request('requestPairingCode', { phone });
		assert.match(code, /^[0-9A-Z]{8}$/);
		await assert.rejects(sim.post('/admin/pairing-code', { phone, code: code === 'AAAAAAAA' ? 'BBBBBBBB' : 'AAAAAAAA' }), /400/);
		// the wrong code consumed that exchange; ask again
		const code2 = await client.request('requestPairingCode', { phone });
		const t0 = Date.now();
		const res = await sim.post('/admin/pairing-code', { phone, code: code2 });
		assert.equal(res.phone, phone);
		await client.waitOpen();
		t.diagnostic(`pairing code → open ${Date.now() - t0} ms`);
		const creds = await client.request('creds');
		assert.equal(creds.registered, true);
		assert.equal(creds.me.id, res.jid);
		assert.ok(client.events.some(e => e.ev === 'connection.update' && e.data.lastDisconnect?.code === 515));
	});

	test('an unknown device gets failure 401 at login', async () => {
		assert.ok(saved);
		await sim.post('/admin/unlink', { phone: '5511999990001' });
		const client = new Client({ authDir: saved.authDir });
		clients.push(client);
		await client.start(sim);
		const close = await client.waitClose();
		assert.equal(close.data.lastDisconnect.code, 401);
	});
});

describe('certificate chain', () => {
	test('the chain is really signed by the test root (strict signature checks)', () => {
		const root = rootKeyPair();
		const staticKey = Buffer.alloc(32, 7);
		const chain = proto.CertChain.decode(makeCertChain({ root, serverStaticPublic: staticKey }));
		const inter = proto.CertChain.NoiseCertificate.Details.decode(chain.intermediate.details);
		const leaf = proto.CertChain.NoiseCertificate.Details.decode(chain.leaf.details);
		assert.equal(inter.issuerSerial, 0);
		assert.ok(Buffer.from(leaf.key).equals(staticKey));
		assert.equal(verifyStrict(root.public, chain.intermediate.details, chain.intermediate.signature), true);
		assert.equal(verifyStrict(Buffer.from(inter.key), chain.leaf.details, chain.leaf.signature), true);
		// and a different root would not verify
		const other = rootKeyPair('another-root');
		assert.equal(verifyStrict(other.public, chain.intermediate.details, chain.intermediate.signature), false);
	});

	test('the preload points WA_CERT_DETAILS at the same root the server prints', async () => {
		const sim = await startSim();
		try {
			const script = "import { WA_CERT_DETAILS } from '@whiskeysockets/baileys'; process.stdout.write(WA_CERT_DETAILS.PUBLIC_KEY.toString('base64'))";
			const out = execFileSync(process.execPath, ['--import', PRELOAD, '--input-type=module', '-e', script], { cwd: process.cwd(), encoding: 'utf8' });
			assert.equal(out.trim().slice(-44), sim.root_key);
			assert.equal(sim.root_key, rootKeyPair().public.toString('base64'));
		} finally {
			await sim.stop();
		}
	});
});
