// Measures the simulator round trips with the real Baileys client:
//   node tests/simulator/harness/measure.mjs [runs=5] [messages=20]
// spawn → first QR, scan → open, saved-session spawn → open, contact send (server write) → client messages.upsert,
// client sendMessage → contact decrypted → read receipt back as status 4.
import { Client, pairClient, startSim } from './helpers.mjs';

const runs = Number(process.argv[2] || 5);
const perRun = Number(process.argv[3] || 20);
const stats = xs => {
	const s = [...xs].sort((a, b) => a - b);
	const pct = p => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
	return { n: s.length, min: s[0], p50: pct(50), p90: pct(90), max: s.at(-1) };
};

const out = { spawn_to_qr_ms: [], scan_to_open_ms: [], saved_spawn_to_open_ms: [], contact_send_to_upsert_ms: [], client_send_to_read_ms: [] };
const sim = await startSim();
try {
	for (let r = 0; r < runs; r++) {
		await sim.post('/admin/reset');
		const phone = `55119999${String(r).padStart(5, '0')}`;
		const { client, timings } = await pairClient(sim, { phone });
		out.spawn_to_qr_ms.push(timings.spawn_to_qr_ms);
		out.scan_to_open_ms.push(timings.scan_to_open_ms);
		const contact = '5511988880000';
		await sim.post('/admin/contacts', { phone: contact });
		for (let i = 0; i < perRun; i++) {
			const res = await sim.post('/admin/send-text', { from_phone: contact, text: `m${i}`, addressing: i % 2 ? 'lid' : 'pn' });
			const up = await client.waitUpsert(m => m.key.id === res.id);
			out.contact_send_to_upsert_ms.push(up.at - res.devices[0].sent_at_ms);
		}
		for (let i = 0; i < 5; i++) {
			const t0 = Date.now();
			const sent = await client.request('sendMessage', { jid: `${contact}@s.whatsapp.net`, content: { text: `out ${i}` } });
			const ev = await client.waitStatus(sent.key.id, 4);
			out.client_send_to_read_ms.push(ev.at - t0);
		}
		await client.request('end');
		const again = new Client({ authDir: client.authDir });
		await again.start(sim);
		await again.waitOpen();
		out.saved_spawn_to_open_ms.push(Date.now() - again.spawnedAt);
		await again.stop();
		await client.stop();
	}
} finally {
	await sim.stop();
}
const summary = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, stats(v)]));
process.stdout.write(JSON.stringify({ node: process.version, runs, messages_per_run: perRun, ...summary }, null, 2) + '\n');
