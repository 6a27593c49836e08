// 1:1 messaging both ways between a real Baileys client and simulated contacts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, pairClient, startSim } from '../harness/helpers.mjs';

const ME = '5511999990002';
const ALICE = '5511988887777';
const BOB = '5511966665555';
const ALICE_JID = `${ALICE}@s.whatsapp.net`;

/** /admin/received once all `ids` are there (a retry resend can land a little later). */
const receivedWith = async (sim, phone, ids, timeoutMs = 10000) => {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const list = await sim.get(`/admin/received?phone=${phone}`);
		if (ids.every(id => list.some(m => m.id === id)) || Date.now() > end) {
			return list;
		}
		await new Promise(r => setTimeout(r, 50));
	}
};

describe('messaging through the simulator', () => {
	let sim;
	let client;
	let alice;
	let bob;
	before(async () => {
		sim = await startSim();
		const { pem } = await sim.get('/admin/tls-cert');
		({ client } = await pairClient(sim, { phone: ME, startOpts: { tlsCaPem: pem } }));
		alice = await sim.post('/admin/contacts', { phone: ALICE, push_name: 'Alice' });
		bob = await sim.post('/admin/contacts', { phone: BOB, lid: '222233334444555', push_name: 'Bob' });
	});
	after(async () => {
		await client?.stop();
		await sim?.stop();
	});

	test('onWhatsApp finds simulated contacts only', async () => {
		const res = await client.request('onWhatsApp', { phones: [ALICE, '5511900000000'] });
		assert.deepEqual(res, [{ jid: ALICE_JID, exists: true }]);
	});

	test('contact text addressed by phone number reaches messages.upsert', async t => {
		const r = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'olá by PN', addressing: 'pn' });
		const { message, data, at } = await client.waitUpsert(m => m.key.id === r.id);
		t.diagnostic(`server send → upsert ${at - r.devices[0].sent_at_ms} ms`);
		assert.equal(data.type, 'notify');
		assert.equal(message.message.conversation, 'olá by PN');
		assert.equal(message.key.remoteJid, ALICE_JID);
		assert.equal(message.key.remoteJidAlt, `${alice.lid}@lid`);
		assert.equal(message.key.addressingMode, 'pn');
		assert.equal(message.key.fromMe, false);
		assert.equal(message.pushName, 'Alice');
		assert.equal(r.devices[0].enc, 'pkmsg');
	});

	test('contact text addressed by LID reaches messages.upsert with the PN as remoteJidAlt', async t => {
		const r = await sim.post('/admin/send-text', { from_phone: BOB, text: 'hi by LID', addressing: 'lid' });
		const { message, at } = await client.waitUpsert(m => m.key.id === r.id);
		t.diagnostic(`server send → upsert ${at - r.devices[0].sent_at_ms} ms`);
		assert.equal(message.message.conversation, 'hi by LID');
		assert.equal(message.key.remoteJid, '222233334444555@lid');
		assert.equal(message.key.remoteJidAlt, `${BOB}@s.whatsapp.net`);
		assert.equal(message.key.addressingMode, 'lid');
		// libsignal keeps sending pkmsg until the other side answers on that session
		const r2 = await sim.post('/admin/send-text', { from_phone: BOB, text: 'again', addressing: 'lid' });
		assert.equal(r2.devices[0].enc, 'pkmsg');
		await client.waitUpsert(m => m.key.id === r2.id && m.message?.conversation === 'again');
	});

	test('send, reply, react, edit and delete are decrypted by the contact; receipts come back', async () => {
		const incoming = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'question?' });
		await client.waitUpsert(m => m.key.id === incoming.id);

		const text = await client.request('sendMessage', { jid: ALICE_JID, content: { text: 'plain text' } });
		const reply = await client.request('sendMessage', { jid: ALICE_JID, content: { text: 'the answer' }, quotedId: incoming.id });
		const react = await client.request('sendMessage', { jid: ALICE_JID, content: { react: { text: '👍', keyOf: incoming.id } } });
		const edit = await client.request('sendMessage', { jid: ALICE_JID, content: { text: 'the answer (edited)', edit: reply.key.id } });
		const del = await client.request('sendMessage', { jid: ALICE_JID, content: { delete: text.key.id } });

		// delivery (3) and read (4) receipts reach the client as status updates
		await client.waitStatus(text.key.id, 3);
		await client.waitStatus(text.key.id, 4);
		await client.waitStatus(del.key.id, 4);
		const ids = new Set([text, reply, react, edit, del].map(m => m.key.id));
		const updates = client.events.filter(e => e.ev === 'messages.update').flatMap(e => e.data).filter(u => ids.has(u.key.id));
		assert.ok(updates.some(u => u.update.status === 3), 'a DELIVERY_ACK messages.update');
		assert.ok(updates.some(u => u.update.status === 4), 'a READ messages.update');

		const received = await receivedWith(sim, ALICE, [text.key.id, reply.key.id, react.key.id, edit.key.id, del.key.id]);
		const byId = Object.fromEntries(received.map(m => [m.id, m]));
		assert.deepEqual(
			received.map(m => m.id),
			[text.key.id, reply.key.id, react.key.id, edit.key.id, del.key.id]
		);
		assert.equal(byId[text.key.id].type, 'text');
		assert.equal(byId[text.key.id].text, 'plain text');
		assert.equal(byId[text.key.id].addressing, 'pn');
		assert.equal(byId[reply.key.id].text, 'the answer');
		assert.equal(byId[reply.key.id].quoted_id, incoming.id);
		assert.deepEqual(byId[react.key.id].reaction, { target_id: incoming.id, text: '👍' });
		assert.equal(byId[react.key.id].stanza_type, 'reaction');
		assert.deepEqual(byId[edit.key.id].edit, { target_id: reply.key.id, text: 'the answer (edited)' });
		assert.equal(byId[edit.key.id].edit_attr, '1');
		assert.deepEqual(byId[del.key.id].revoke, { target_id: text.key.id });
		assert.equal(byId[del.key.id].edit_attr, '7');
		assert.ok(byId[text.key.id].raw.extendedTextMessage.text === 'plain text');
	});

	test('sending to a LID jid is captured with LID addressing', async () => {
		const sent = await client.request('sendMessage', { jid: '222233334444555@lid', content: { text: 'to your LID' } });
		await client.waitStatus(sent.key.id, 4);
		const received = await receivedWith(sim, BOB, [sent.key.id]);
		const entry = received.find(m => m.id === sent.key.id);
		assert.equal(entry.text, 'to your LID');
		assert.equal(entry.addressing, 'lid');
	});

	test("the client's read receipt is recorded by the contact", async () => {
		const r = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'read me' });
		await client.waitUpsert(m => m.key.id === r.id);
		await client.request('readMessages', { ids: [r.id] });
		let st;
		for (let i = 0; i < 50; i++) {
			const sent = await sim.get(`/admin/sent?phone=${ALICE}`);
			st = Object.values(sent.find(m => m.id === r.id).status)[0];
			if (st.read_at) {
				break;
			}
			await new Promise(res => setTimeout(res, 50));
		}
		assert.ok(st.delivered_at && st.read_at, JSON.stringify(st));
	});

	test('a message the client cannot decrypt is asked again (retry receipt) and then arrives', async () => {
		const r = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'second try', corrupt: true });
		const { message } = await client.waitUpsert(m => m.key.id === r.id && m.message?.conversation === 'second try');
		assert.equal(message.key.remoteJid, ALICE_JID);
		const sent = (await sim.get(`/admin/sent?phone=${ALICE}`)).find(m => m.id === r.id);
		assert.equal(sent.retries, 1);
	});

	test('a contact typing and presence reach presence.update', async () => {
		await sim.post('/admin/presence', { from_phone: ALICE, type: 'composing' });
		const ev = await client.waitFor(e => e.ev === 'presence.update' && e.data.id === ALICE_JID);
		assert.equal(ev.data.presences[ALICE_JID].lastKnownPresence, 'composing');
	});

	test('contact reaction, edit and revoke reach the client', async () => {
		const mine = await client.request('sendMessage', { jid: ALICE_JID, content: { text: 'react to me' } });
		await sim.post('/admin/send-reaction', { from_phone: ALICE, target_id: mine.key.id, text: '❤️' });
		const reaction = await client.waitFor(e => e.ev === 'messages.reaction' && e.data.some(r => r.key.id === mine.key.id));
		assert.equal(reaction.data.find(r => r.key.id === mine.key.id).reaction.text, '❤️');

		const theirs = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'typo' });
		await client.waitUpsert(m => m.key.id === theirs.id);
		await sim.post('/admin/send-edit', { from_phone: ALICE, target_id: theirs.id, text: 'fixed' });
		const edited = await client.waitFor(e => e.ev === 'messages.update' && e.data.some(u => u.key.id === theirs.id && u.update.message));
		const upd = edited.data.find(u => u.key.id === theirs.id);
		assert.equal(upd.update.message.editedMessage.message.conversation, 'fixed');

		await sim.post('/admin/send-revoke', { from_phone: ALICE, target_id: theirs.id });
		await client.waitFor(e => e.ev === 'messages.update' && e.data.some(u => u.key.id === theirs.id && u.update.messageStubType === 1));
	});

	test('incoming image downloads byte-exact from local HTTP (no directPath)', async () => {
		const bytes = Buffer.alloc(70000);
		for (let i = 0; i < bytes.length; i++) {
			bytes[i] = (i * 31 + 7) % 256;
		}
		const r = await sim.post('/admin/send-media', {
			from_phone: ALICE,
			kind: 'image',
			bytes_b64: bytes.toString('base64'),
			mimetype: 'image/jpeg',
			caption: 'a picture'
		});
		const { message } = await client.waitUpsert(m => m.key.id === r.id);
		assert.equal(message.message.imageMessage.caption, 'a picture');
		assert.equal(message.message.imageMessage.directPath, undefined);
		assert.ok(message.message.imageMessage.url.startsWith('http://127.0.0.1:'));
		const { b64 } = await client.request('download', { id: r.id });
		assert.ok(Buffer.from(b64, 'base64').equals(bytes));
	});

	test('incoming document downloads byte-exact', async () => {
		const bytes = Buffer.from('%PDF-1.4 simulated\n'.repeat(100));
		const r = await sim.post('/admin/send-media', {
			from_phone: BOB,
			kind: 'document',
			bytes_b64: bytes.toString('base64'),
			mimetype: 'application/pdf',
			file_name: 'doc.pdf',
			addressing: 'lid'
		});
		const { message } = await client.waitUpsert(m => m.key.id === r.id);
		assert.equal(message.message.documentMessage.fileName, 'doc.pdf');
		const { b64 } = await client.request('download', { id: r.id });
		assert.ok(Buffer.from(b64, 'base64').equals(bytes));
	});

	test('outgoing media: the client uploads over HTTPS and the contact decrypts it byte-exact', async () => {
		const doc = Buffer.from('outgoing document bytes\n'.repeat(500));
		const sentDoc = await client.request('sendMessage', {
			jid: ALICE_JID,
			content: { document: { b64: doc.toString('base64') }, mimetype: 'text/plain', fileName: 'notes.txt', caption: 'see attached' }
		});
		const img = Buffer.alloc(3000, 0xab);
		const sentImg = await client.request('sendMessage', { jid: ALICE_JID, content: { image: { b64: img.toString('base64') }, caption: 'pic' } });
		await client.waitStatus(sentImg.key.id, 4);
		const received = await receivedWith(sim, ALICE, [sentDoc.key.id, sentImg.key.id]);
		const d = received.find(m => m.id === sentDoc.key.id);
		assert.equal(d.type, 'document', JSON.stringify(d));
		assert.equal(d.media.mac_ok, true);
		assert.equal(d.media.sha256_ok, true);
		assert.equal(d.media.mimetype, 'text/plain');
		const i = received.find(m => m.id === sentImg.key.id);
		assert.equal(i.type, 'image');
		assert.equal(i.text, 'pic');
		for (const [id, bytes] of [[sentDoc.key.id, doc], [sentImg.key.id, img]]) {
			const res = await fetch(`${sim.base}/admin/received-media?phone=${ALICE}&id=${id}`);
			assert.equal(res.status, 200);
			assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
		}
	});

	test('the simulator kept stdout to its single ready line (libsignal output is silenced)', () => {
		assert.deepEqual(sim.extraStdout, []);
	});

	test('messages sent while the device is offline arrive after login as offline (append) upserts', async () => {
		const authDir = client.authDir;
		const before = client.events.length;
		await client.request('end');
		await client.waitClose({ from: before });
		const r = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'while you were away' });
		assert.equal(r.devices[0].live, false);
		const again = new Client({ authDir });
		try {
			await again.start(sim);
			const { message, data } = await again.waitUpsert(m => m.key.id === r.id);
			assert.equal(message.message.conversation, 'while you were away');
			assert.equal(data.type, 'append');
			await again.waitFor(e => e.ev === 'connection.update' && e.data.receivedPendingNotifications === true);
		} finally {
			await again.request('end').catch(() => {});
			await again.stop();
		}
	});
});
