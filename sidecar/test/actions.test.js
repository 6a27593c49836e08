// Agent actions reaching WhatsApp (issue 5), the real sidecar against the WhatsApp simulator,
// loopback only: replies with a quote, media uploaded over HTTPS and decrypted byte-exact by the
// contact, files refused outside the spool, revoke, read receipts, message_status frames from
// the contact's receipts, and numbers without WhatsApp.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PRELOAD, startSim } from '../../tests/simulator/harness/helpers.mjs';
import { framesOf, schema, startSidecar, tempDir } from '../testing/helpers.js';

const ME = '5511999990031';
const ALICE = '5511988880031'; // answers with delivery and read receipts (the default)
const BOB = '5511988880032'; // answers with no receipts: the test sends them
const NOBODY = '5511900000031'; // not a simulated contact: usync says `contact type="out"`
const ALICE_JID = `${ALICE}@s.whatsapp.net`;
const BOB_JID = `${BOB}@s.whatsapp.net`;

describe('agent actions against the WhatsApp simulator', () => {
  /** @type {Awaited<ReturnType<typeof startSim>>} */
  let sim;
  /** @type {ReturnType<typeof tempDir>} */
  let auth;
  /** @type {ReturnType<typeof tempDir>} */
  let spool;
  /** @type {ReturnType<typeof tempDir>} */
  let outside;
  /** @type {ReturnType<typeof startSidecar>} */
  let sidecar;
  let commandCount = 0;

  /**
   * Sends a command and resolves with its result frame.
   * @param {Record<string, unknown>} command  without id
   */
  const run = async (command) => {
    const id = `a${(commandCount += 1)}`;
    sidecar.send({ ...command, id });
    return sidecar.waitFor((f) => f.type === 'result' && f.id === id);
  };

  /**
   * What a contact received, once `pred` holds for it (polled: the simulator decrypts async).
   * @param {string} phone
   * @param {(received: any[]) => boolean} pred
   */
  const receivedBy = async (phone, pred, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const received = /** @type {any[]} */ (await sim.get(`/admin/received?phone=${phone}`));
      if (pred(received)) return received;
      if (Date.now() > deadline) throw new Error(`timed out; ${phone} received ${JSON.stringify(received.map((m) => [m.id, m.type]))}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  /** @param {string} phone @param {string} id */
  const receivedMedia = async (phone, id) => {
    const res = await fetch(`${sim.base}/admin/received-media?phone=${phone}&id=${encodeURIComponent(id)}`);
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  };

  /** @param {string} name @param {Buffer} bytes */
  const inSpool = (name, bytes) => {
    const path = join(spool.dir, name);
    writeFileSync(path, bytes, { mode: 0o600 });
    return path;
  };

  before(async () => {
    auth = tempDir();
    spool = tempDir('ponte-spool-');
    outside = tempDir('ponte-outside-');
    sim = await startSim();
    await sim.post('/admin/contacts', { phone: ALICE, push_name: 'Alice' });
    await sim.post('/admin/contacts', { phone: BOB, push_name: 'Bob', receipts: 'none' });
    // Baileys uploads media to the media_conn host over HTTPS: trust the simulator's certificate
    // the way the bridge would pass one through.
    const { pem } = await sim.get('/admin/tls-cert');
    const caFile = join(outside.dir, 'sim-ca.pem');
    writeFileSync(caFile, pem);
    sidecar = startSidecar({
      PONTE_AUTH_DIR: auth.dir, PONTE_WA_WEBSOCKET_URL: sim.url, PONTE_MEDIA_DIR: spool.dir, NODE_EXTRA_CA_CERTS: caFile,
    }, ['--import', PRELOAD]);
    const qr = await sidecar.waitFor((f) => f.type === 'qr');
    await sim.post('/admin/scan-qr', { qr: qr.qr, phone: ME });
    await sidecar.waitFor((f) => f.type === 'connection' && f.state === 'open');
    // Both chats established (a contact's first message may be upserted out of order).
    for (const phone of [ALICE, BOB]) {
      const warm = await sim.post('/admin/send-text', { from_phone: phone, text: 'oi' });
      await sidecar.waitFor((f) => f.type === 'message' && f.key.id === warm.id);
    }
  });
  after(async () => {
    sidecar?.kill();
    await sim?.stop();
    for (const dir of [auth, spool, outside]) dir?.cleanup();
  });

  test('send_text with a quote: the contact sees the reply above the customer message and above our own', async () => {
    const incoming = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'Quando sai meu pedido?' });
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === incoming.id);
    const reply = await run({
      type: 'send_text', jid: ALICE_JID, text: 'Sai hoje.',
      quote: { id: incoming.id, from_me: false, participant: null, text: 'Quando sai meu pedido?' },
    });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const replyId = reply.data.message_id;
    let received = await receivedBy(ALICE, (list) => list.some((m) => m.id === replyId));
    let got = received.find((m) => m.id === replyId);
    assert.equal(got.text, 'Sai hoje.');
    assert.equal(got.quoted_id, incoming.id);
    let context = got.raw.extendedTextMessage.contextInfo;
    assert.equal(context.participant, ALICE_JID);
    assert.equal(context.quotedMessage.conversation, 'Quando sai meu pedido?');
    assert.equal(context.remoteJid, undefined);

    // Quoting our own message: the quoted author is this account.
    const again = await run({
      type: 'send_text', jid: ALICE_JID, text: 'Corrigindo:',
      quote: { id: replyId, from_me: true, participant: null, text: 'Sai hoje.' },
    });
    assert.equal(again.ok, true, JSON.stringify(again));
    received = await receivedBy(ALICE, (list) => list.some((m) => m.id === again.data.message_id));
    got = received.find((m) => m.id === again.data.message_id);
    assert.equal(got.quoted_id, replyId);
    context = got.raw.extendedTextMessage.contextInfo;
    assert.equal(context.participant, `${ME}@s.whatsapp.net`);
    assert.equal(context.quotedMessage.conversation, 'Sai hoje.');
  });

  test('message_status: delivered then read, after the message frame of the send', async () => {
    // Receipts on cue (Bob answers none by himself), so each one is its own update.
    const sent = await run({ type: 'send_text', jid: BOB_JID, text: 'Seu pedido saiu.' });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    const id = sent.data.message_id;
    const echo = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === id);
    assert.equal(echo.echo, true);
    await receivedBy(BOB, (list) => list.some((m) => m.id === id));
    await sim.post('/admin/receipt', { from_phone: BOB, id, type: 'delivery' });
    const delivered = await sidecar.waitFor((f) => f.type === 'message_status' && f.key.id === id && f.status === 'delivered');
    await sim.post('/admin/receipt', { from_phone: BOB, id, type: 'read' });
    const read = await sidecar.waitFor((f) => f.type === 'message_status' && f.key.id === id && f.status === 'read');
    assert.equal(read.key.fromMe, true);
    assert.match(read.key.remoteJid, /@(s\.whatsapp\.net|lid)$/);
    const order = sidecar.frames.filter((f) => f.key?.id === id).map((f) => f.status ?? f.type);
    assert.deepEqual(order.filter((s) => s !== 'server_ack'), ['message', 'delivered', 'read']);
    assert.ok(sidecar.frames.indexOf(echo) < sidecar.frames.indexOf(delivered));

    // Alice's automatic receipts (25 ms apart) come through as well, merged into the upsert or not.
    const auto = await run({ type: 'send_text', jid: ALICE_JID, text: 'Obrigado!' });
    const autoRead = await sidecar.waitFor((f) => f.type === 'message_status' && f.key.id === auto.data.message_id && f.status === 'read');
    const autoEcho = sidecar.frames.find((f) => f.type === 'message' && f.key.id === auto.data.message_id);
    assert.ok(autoEcho && sidecar.frames.indexOf(autoEcho) < sidecar.frames.indexOf(autoRead));
  });

  test('send_media: image, document (name kept) and voice note decrypt byte-exact at the contact; files stay', async (t) => {
    const image = randomBytes(300_000);
    const doc = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(50_000)]);
    const voice = randomBytes(20_000);
    const cases = [
      { bytes: image, command: { kind: 'image', path: inSpool('out-img', image), mimetype: 'image/jpeg', caption: 'a foto' }, type: 'image' },
      {
        bytes: doc,
        command: { kind: 'document', path: inSpool('out-doc', doc), mimetype: 'application/pdf', file_name: 'boleto-4512.pdf', caption: 'Segue o boleto' },
        type: 'document',
      },
      { bytes: voice, command: { kind: 'audio', path: inSpool('out-ptt', voice), mimetype: 'audio/ogg; codecs=opus', ptt: true }, type: 'audio' },
    ];
    const t0 = Date.now();
    const results = await Promise.all(cases.map(({ command }) => run({ type: 'send_media', jid: ALICE_JID, ...command })));
    t.diagnostic(`three uploads and sends: ${Date.now() - t0} ms`);
    for (const [i, result] of results.entries()) {
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.data.jid, ALICE_JID);
      const { bytes, command, type } = cases[i];
      const id = result.data.message_id;
      const received = await receivedBy(ALICE, (list) => list.some((m) => m.id === id));
      const got = received.find((m) => m.id === id);
      assert.equal(got.type, type);
      assert.equal(got.media.found, true, JSON.stringify(got.media));
      assert.equal(got.media.mac_ok, true, JSON.stringify(got.media));
      assert.equal(got.media.sha256_ok, true, JSON.stringify(got.media));
      assert.equal(got.media.mimetype, command.mimetype);
      assert.ok((await receivedMedia(ALICE, id)).equals(bytes), `${type} bytes`);
      const echo = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === id);
      assert.equal(echo.echo, true);
      assert.equal(echo.media, undefined, 'our own media is not downloaded again');
    }
    const [img, pdf, ptt] = await Promise.all(results.map(async (r) => (await receivedBy(ALICE, () => true)).find((m) => m.id === r.data.message_id)));
    assert.equal(img.text, 'a foto');
    assert.equal(pdf.raw.documentMessage.fileName, 'boleto-4512.pdf');
    assert.equal(pdf.text, 'Segue o boleto');
    assert.equal(ptt.raw.audioMessage.ptt, true);
    // The bridge deletes the files; the sidecar leaves them, and adds nothing to the spool.
    assert.deepEqual(readdirSync(spool.dir).sort(), ['out-doc', 'out-img', 'out-ptt']);
  });

  test('send_media with a quote and a sticker without caption', async () => {
    const incoming = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'manda o comprovante' });
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === incoming.id);
    const bytes = randomBytes(4000);
    const result = await run({
      type: 'send_media', jid: ALICE_JID, kind: 'sticker', path: inSpool('out-sticker', bytes), mimetype: 'image/webp',
      caption: 'ignored', quote: { id: incoming.id, from_me: false, text: 'manda o comprovante' },
    });
    assert.equal(result.ok, true, JSON.stringify(result));
    const received = await receivedBy(ALICE, (list) => list.some((m) => m.id === result.data.message_id));
    const got = received.find((m) => m.id === result.data.message_id);
    assert.equal(got.type, 'sticker');
    assert.equal(got.quoted_id, incoming.id);
    assert.equal(got.text, null);
    assert.ok((await receivedMedia(ALICE, result.data.message_id)).equals(bytes));
    // Baileys holds its own-send upsert ~100 ms in its event buffer: the echo comes later.
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === result.data.message_id);
  });

  test('bad_media: outside the spool, a symlink out of it, missing, a directory, relative; nothing is sent', async () => {
    const secret = join(outside.dir, 'secret.txt');
    writeFileSync(secret, 'not for WhatsApp');
    symlinkSync(secret, join(spool.dir, 'out-link'));
    mkdirSync(join(spool.dir, 'out-dir'));
    const before = (await sim.get(`/admin/received?phone=${ALICE}`)).length;
    const framesBefore = sidecar.frames.filter((f) => f.type === 'message').length;
    const paths = [secret, join(spool.dir, 'out-link'), join(spool.dir, 'missing'), join(spool.dir, 'out-dir'),
      join(spool.dir, '..', 'outside.txt'), 'out-img', `${spool.dir}/../${outside.dir.split('/').at(-1)}/secret.txt`];
    for (const path of paths) {
      const result = await run({ type: 'send_media', jid: ALICE_JID, kind: 'document', path, mimetype: 'text/plain' });
      assert.equal(result.ok, false, path);
      assert.equal(result.error.code, 'bad_media', `${path}: ${JSON.stringify(result)}`);
      assert.ok(!result.error.message.includes(outside.dir), 'the message does not quote paths');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await sim.get(`/admin/received?phone=${ALICE}`)).length, before);
    assert.equal(sidecar.frames.filter((f) => f.type === 'message').length, framesBefore);
  });

  test('revoke: the contact receives a revoke of that message', async () => {
    const sent = await run({ type: 'send_text', jid: ALICE_JID, text: 'mensagem errada' });
    assert.equal(sent.ok, true);
    await receivedBy(ALICE, (list) => list.some((m) => m.id === sent.data.message_id));
    // As an agent would: after the message is out (a revoke while Baileys still buffers the
    // message's own upsert, <100 ms after the send, rewrites that upsert into a stub).
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === sent.data.message_id);
    const revoked = await run({ type: 'revoke', jid: ALICE_JID, message_id: sent.data.message_id });
    assert.deepEqual(revoked.data, { message_id: sent.data.message_id });
    const received = await receivedBy(ALICE, (list) => list.some((m) => m.type === 'revoke' && m.revoke.target_id === sent.data.message_id));
    const revoke = received.find((m) => m.type === 'revoke');
    assert.equal(revoke.edit_attr, '7');
    // The revoke's own upsert is ours too: flagged echo, so the bridge does not post it.
    const echo = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === revoke.id);
    assert.equal(echo.echo, true);
    assert.equal(echo.content_type, 'protocolMessage');
  });

  test('mark_read: the simulator records our read receipt for the customer messages', async () => {
    const first = await sim.post('/admin/send-text', { from_phone: BOB, text: 'alô?' });
    const second = await sim.post('/admin/send-text', { from_phone: BOB, text: 'tem alguém?' });
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === second.id);
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === first.id);
    const result = await run({ type: 'mark_read', jid: BOB_JID, message_ids: [first.id, second.id] });
    assert.deepEqual(result, { type: 'result', id: result.id, ok: true, data: {} });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const sent = /** @type {any[]} */ (await sim.get(`/admin/sent?phone=${BOB}`));
      const reads = [first.id, second.id].map((id) => Object.values(sent.find((m) => m.id === id)?.status ?? {}).some((s) => s.read_at));
      if (reads.every(Boolean)) break;
      assert.ok(Date.now() < deadline, `read receipts not recorded: ${JSON.stringify(sent.slice(-2))}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  });

  test('not_on_whatsapp: a number the server does not know fails without a send; a contact passes', async () => {
    const before = sidecar.frames.filter((f) => f.type === 'message').length;
    const text = await run({ type: 'send_text', jid: `${NOBODY}@s.whatsapp.net`, text: 'alô' });
    assert.deepEqual(text.error, { code: 'not_on_whatsapp', message: `${NOBODY} is not on WhatsApp` });
    const media = await run({
      type: 'send_media', jid: `${NOBODY}@s.whatsapp.net`, kind: 'document', path: inSpool('out-nobody', Buffer.from('x')), mimetype: 'text/plain',
    });
    assert.equal(media.error.code, 'not_on_whatsapp');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(sidecar.frames.filter((f) => f.type === 'message').length, before, 'no echo: nothing was sent');
    const known = await run({ type: 'send_text', jid: ALICE_JID, text: 'você existe' });
    assert.equal(known.ok, true, JSON.stringify(known));
  });

  test('shutdown: every frame on stdout is valid', async () => {
    sidecar.send({ type: 'shutdown', id: 'bye' });
    const { code } = await sidecar.exited;
    assert.equal(code, 0, sidecar.stderr.slice(-2000));
    const { validateFrame } = await schema();
    const frames = framesOf(sidecar.stdout, validateFrame);
    assert.ok(frames.some((f) => f.type === 'message_status'));
    assert.ok(frames.some((f) => f.type === 'result' && f.error?.code === 'bad_media'));
  });
});
