// The real sidecar against the WhatsApp simulator, loopback only: incoming media lands in the
// spool (bytes, mode, names), size limits, per-chat order behind a slow download while other
// chats go on, and lid_mapping frames (initial history sync, LID-addressed messages).
//
// Slow and lying media are served by a small HTTP server of this test: the message is built with
// the simulator's own media crypto (buildMediaMessage) and sent with /admin/send-message, its url
// pointing here, so the test decides when the download may finish.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { buildMediaMessage } from '../../tests/simulator/media.mjs';
import { PRELOAD, startSim } from '../../tests/simulator/harness/helpers.mjs';
import { framesOf, schema, startSidecar, tempDir } from '../testing/helpers.js';

const ME = '5511999990021';
const ALICE = '5511988880001';
const BOB = '5511988880002';
const CAROL = '5511988880003';
const MAX_BYTES = 2 * 1024 * 1024;

/** Buffers as base64 strings, the form proto.Message.fromObject takes for bytes. */
function forProto(/** @type {any} */ value) {
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (Array.isArray(value)) return value.map(forProto);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, forProto(v)]));
  }
  return value;
}

/** Serves blobs at /<id>; a held blob is answered only when released. */
async function mediaServer() {
  /** @type {Map<string, Buffer>} */
  const blobs = new Map();
  /** @type {Map<string, Promise<void>>} */
  const holds = new Map();
  const requested = new Set();
  const server = http.createServer(async (req, res) => {
    const id = (req.url ?? '').slice(1);
    requested.add(id);
    await holds.get(id);
    const blob = blobs.get(id);
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length });
    res.end(blob);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    base: `http://127.0.0.1:${port}`,
    blobs,
    requested,
    /** @param {string} id */
    hold(id) {
      /** @type {() => void} */
      let release = () => {};
      holds.set(id, new Promise((resolve) => { release = () => resolve(undefined); }));
      return release;
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve(undefined)); }),
  };
}

describe('media, order and LID mappings against the WhatsApp simulator', () => {
  /** @type {Awaited<ReturnType<typeof startSim>>} */
  let sim;
  /** @type {Awaited<ReturnType<typeof mediaServer>>} */
  let media;
  /** @type {ReturnType<typeof tempDir>} */
  let auth;
  /** @type {ReturnType<typeof tempDir>} */
  let spool;
  /** @type {ReturnType<typeof startSidecar>} */
  let sidecar;
  /** @type {any} */
  let account;

  /** The spool's entries, temporaries included. */
  const spoolFiles = () => readdirSync(spool.dir).sort();

  /**
   * Sends a media message whose blob this test serves (optionally held).
   * @param {{from: string, kind: string, bytes: Buffer, mimetype: string, fileLength?: number, wrap?: string}} opts
   */
  const sendServedMedia = async ({ from, kind, bytes, mimetype, fileLength, wrap }) => {
    const mediaId = randomBytes(6).toString('hex');
    const built = await buildMediaMessage({
      kind, bytes, mimetype, baseUrl: media.base, store: (/** @type {string} */ _id, /** @type {Buffer} */ blob) => media.blobs.set(mediaId, blob),
    });
    const [field] = Object.keys(built.message);
    const body = { ...built.message[field], url: `${media.base}/${mediaId}` };
    if (fileLength !== undefined) body.fileLength = fileLength;
    const message = wrap ? { [wrap]: { message: { [field]: body } } } : { [field]: body };
    const sent = await sim.post('/admin/send-message', { from_phone: from, message: forProto(message), stanza_type: 'media' });
    return { id: /** @type {string} */ (sent.id), mediaId };
  };

  before(async () => {
    auth = tempDir();
    spool = tempDir('ponte-spool-');
    [sim, media] = await Promise.all([startSim(), mediaServer()]);
    // In the phone's contacts before linking: their PN -> LID pairs come with the initial sync.
    await sim.post('/admin/contacts', { phone: ALICE, push_name: 'Alice' });
    await sim.post('/admin/contacts', { phone: BOB, push_name: 'Bob' });
    sidecar = startSidecar({
      PONTE_AUTH_DIR: auth.dir, PONTE_WA_WEBSOCKET_URL: sim.url, PONTE_MEDIA_DIR: spool.dir,
      PONTE_MEDIA_MAX_BYTES: String(MAX_BYTES),
    }, ['--import', PRELOAD]);
    const qr = await sidecar.waitFor((f) => f.type === 'qr');
    account = await sim.post('/admin/scan-qr', { qr: qr.qr, phone: ME });
    await sidecar.waitFor((f) => f.type === 'connection' && f.state === 'open');
  });
  after(async () => {
    sidecar?.kill();
    await Promise.all([sim?.stop(), media?.close()]);
    auth?.cleanup();
    spool?.cleanup();
  });

  test('initial history sync: one lid_mapping per contact, no duplicates', async () => {
    const contacts = /** @type {any[]} */ (await sim.get('/admin/contacts'));
    for (const phone of [ALICE, BOB]) {
      const contact = contacts.find((c) => c.phone === phone);
      const frame = await sidecar.waitFor((f) => f.type === 'lid_mapping' && f.pn === `${phone}@s.whatsapp.net`);
      assert.deepEqual(frame, { type: 'lid_mapping', lid: `${String(contact.lid).replace(/@.*$/, '')}@lid`, pn: `${phone}@s.whatsapp.net` });
    }
    const pairs = sidecar.frames.filter((f) => f.type === 'lid_mapping').map((f) => `${f.lid} ${f.pn}`);
    assert.equal(new Set(pairs).size, pairs.length, JSON.stringify(pairs));
    assert.ok(account.lid);
  });

  test('an image lands in the spool: same bytes, mode 0600, path named by the message id', async (t) => {
    const bytes = randomBytes(1024 * 1024);
    const t0 = Date.now();
    const sent = await sim.post('/admin/send-media', {
      from_phone: ALICE, kind: 'image', bytes_b64: bytes.toString('base64'), mimetype: 'image/jpeg', caption: 'foto',
    });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === sent.id);
    t.diagnostic(`1 MiB image: send-media call to frame ${Date.now() - t0} ms`);
    assert.equal(frame.content_type, 'imageMessage');
    assert.deepEqual(frame.media, { path: join(spool.dir, `${sent.id}.jpg`), mimetype: 'image/jpeg', size: bytes.length, file_name: null });
    assert.ok(readFileSync(frame.media.path).equals(bytes));
    assert.equal(statSync(frame.media.path).mode & 0o777, 0o600);
    assert.equal(frame.message.message.imageMessage.caption, 'foto');
    assert.equal(frame.chat_name, undefined);
  });

  test('a document keeps its file name in file_name; the path ignores it and a hostile id', async () => {
    const bytes = Buffer.from('%PDF-1.4 relatório\n');
    const sent = await sim.post('/admin/send-media', {
      from_phone: ALICE, kind: 'document', bytes_b64: bytes.toString('base64'), mimetype: 'application/pdf',
      file_name: '../../relatório final.pdf', id: '../../3EB0/..\\EVIL',
    });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === sent.id);
    assert.equal(frame.content_type, 'documentMessage');
    assert.equal(frame.media.file_name, '../../relatório final.pdf');
    assert.equal(frame.media.mimetype, 'application/pdf');
    assert.equal(dirname(frame.media.path), spool.dir);
    assert.match(basename(frame.media.path), /^m-[0-9a-f]{32}\.pdf$/);
    assert.ok(readFileSync(frame.media.path).equals(bytes));

    // A voice note (audio with ptt) is media too; the mimetype's parameters do not reach the name.
    const ptt = await sim.post('/admin/send-media', {
      from_phone: ALICE, kind: 'ptt', bytes_b64: randomBytes(3000).toString('base64'), mimetype: 'audio/ogg; codecs=opus',
    });
    const voice = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === ptt.id);
    assert.equal(voice.content_type, 'audioMessage');
    assert.equal(voice.media.path, join(spool.dir, `${ptt.id}.ogg`));
    assert.equal(voice.media.mimetype, 'audio/ogg; codecs=opus');
  });

  test('too large by its declared length: not downloaded, no file', async () => {
    const before = spoolFiles();
    const sent = await sim.post('/admin/send-media', {
      from_phone: BOB, kind: 'document', bytes_b64: randomBytes(MAX_BYTES + 1).toString('base64'),
      mimetype: 'application/zip', file_name: 'big.zip',
    });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === sent.id);
    assert.deepEqual(frame.media, {
      error: 'too_large', mimetype: 'application/zip', size: MAX_BYTES + 1, file_name: 'big.zip', message: `larger than ${MAX_BYTES} bytes`,
    });
    assert.deepEqual(spoolFiles(), before);
  });

  test('a lying fileLength: the download stops at the limit and leaves nothing behind', async () => {
    const before = spoolFiles();
    const { id, mediaId } = await sendServedMedia({
      from: BOB, kind: 'video', bytes: randomBytes(MAX_BYTES + 100_000), mimetype: 'video/mp4', fileLength: 1000,
    });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === id);
    assert.ok(media.requested.has(mediaId), 'the download was attempted');
    assert.equal(frame.media.error, 'too_large');
    assert.ok(frame.media.size > MAX_BYTES, JSON.stringify(frame.media));
    assert.match(frame.media.message, /declared 1000/);
    assert.deepEqual(spoolFiles(), before);
  });

  test('a view-once image and a failed download (404): the wrapper is unwrapped; errors carry no URL', async () => {
    const bytes = randomBytes(5000);
    const viewOnce = await sendServedMedia({ from: BOB, kind: 'image', bytes, mimetype: 'image/png', wrap: 'viewOnceMessageV2' });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === viewOnce.id);
    assert.equal(frame.content_type, 'imageMessage');
    assert.equal(frame.media.path, join(spool.dir, `${viewOnce.id}.png`));
    assert.ok(readFileSync(frame.media.path).equals(bytes));

    const gone = await sendServedMedia({ from: BOB, kind: 'sticker', bytes: randomBytes(100), mimetype: 'image/webp' });
    media.blobs.delete(gone.mediaId);
    const before = spoolFiles();
    const failed = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === gone.id);
    assert.equal(failed.content_type, 'stickerMessage');
    assert.equal(failed.media.error, 'download_failed');
    assert.equal(failed.media.mimetype, 'image/webp');
    assert.doesNotMatch(failed.media.message, /http|127\.0\.0\.1/);
    assert.deepEqual(spoolFiles(), before);
  });

  test('order: a text waits for the slow media before it in its chat; another chat does not', async (t) => {
    // Baileys itself may swap a contact's very first PN message with the next one (simulator
    // README, "Upserts can come out of order"): establish both chats first.
    for (const phone of [ALICE, BOB]) {
      const warm = await sim.post('/admin/send-text', { from_phone: phone, text: 'oi' });
      await sidecar.waitFor((f) => f.type === 'message' && f.key.id === warm.id);
    }
    const bytes = randomBytes(200_000);
    const mediaId = randomBytes(6).toString('hex');
    const release = media.hold(mediaId);
    const built = await buildMediaMessage({
      kind: 'image', bytes, mimetype: 'image/jpeg', baseUrl: media.base, store: (/** @type {string} */ _id, /** @type {Buffer} */ blob) => media.blobs.set(mediaId, blob),
    });
    const body = { ...built.message.imageMessage, url: `${media.base}/${mediaId}` };
    const t0 = Date.now();
    const slow = await sim.post('/admin/send-message', { from_phone: ALICE, message: forProto({ imageMessage: body }), stanza_type: 'media' });
    const text = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'depois da foto' });
    const other = await sim.post('/admin/send-text', { from_phone: BOB, text: 'outro chat' });

    // Bob's chat goes on while Alice's image is still downloading.
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === other.id);
    const deadline = Date.now() + 10_000;
    while (!media.requested.has(mediaId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(media.requested.has(mediaId), 'the slow download started');
    // Alice's text arrived long ago (5-6 ms per message); give a wrong implementation time to show.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!sidecar.frames.some((f) => f.key?.id === text.id || f.key?.id === slow.id), 'nothing of the held chat is out yet');
    release();
    const textFrame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === text.id);
    t.diagnostic(`held chat released after ${Date.now() - t0} ms`);
    const ids = sidecar.frames.filter((f) => f.type === 'message').map((f) => f.key.id);
    assert.ok(ids.indexOf(other.id) < ids.indexOf(slow.id), 'the other chat went first');
    assert.equal(ids.indexOf(slow.id) + 1, ids.indexOf(text.id), 'media, then the text right after it');
    assert.equal(textFrame.message.message.conversation, 'depois da foto');
    const slowFrame = sidecar.frames.find((f) => f.key?.id === slow.id);
    assert.ok(readFileSync(slowFrame.media.path).equals(bytes));
  });

  test('a LID-addressed message from a contact the sync did not know: lid_mapping before its frame', async () => {
    const carol = await sim.post('/admin/contacts', { phone: CAROL, push_name: 'Carol' });
    const carolLid = `${String(carol.lid).replace(/@.*$/, '')}@lid`;
    assert.ok(!sidecar.frames.some((f) => f.type === 'lid_mapping' && f.lid === carolLid));
    const sent = await sim.post('/admin/send-text', { from_phone: CAROL, text: 'oi pelo lid', addressing: 'lid' });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === sent.id);
    assert.equal(frame.key.remoteJid, carolLid);
    assert.equal(frame.key.remoteJidAlt, `${CAROL}@s.whatsapp.net`);
    const index = sidecar.frames.findIndex((f) => f.type === 'lid_mapping' && f.lid === carolLid);
    assert.ok(index >= 0, 'mapping emitted');
    assert.deepEqual(sidecar.frames[index], { type: 'lid_mapping', lid: carolLid, pn: `${CAROL}@s.whatsapp.net` });
    assert.ok(index < sidecar.frames.indexOf(frame));

    // A second message of the same pair does not repeat it.
    const again = await sim.post('/admin/send-text', { from_phone: CAROL, text: 'de novo', addressing: 'lid' });
    await sidecar.waitFor((f) => f.type === 'message' && f.key.id === again.id);
    assert.equal(sidecar.frames.filter((f) => f.type === 'lid_mapping' && f.lid === carolLid).length, 1);
  });

  test('shutdown: every frame on stdout is valid; no temporaries left in the spool', async () => {
    sidecar.send({ type: 'shutdown', id: 'bye' });
    const { code } = await sidecar.exited;
    assert.equal(code, 0, sidecar.stderr.slice(-2000));
    const { validateFrame } = await schema();
    const frames = framesOf(sidecar.stdout, validateFrame);
    assert.ok(frames.some((f) => f.media?.path));
    assert.ok(frames.some((f) => f.media?.error === 'too_large'));
    assert.ok(frames.some((f) => f.type === 'lid_mapping'));
    assert.deepEqual(spoolFiles().filter((name) => name.startsWith('.')), []);
    for (const name of spoolFiles()) assert.equal(statSync(join(spool.dir, name)).mode & 0o777, 0o600, name);
    assert.ok(!existsSync(join(spool.dir, '..', 'relatório final.pdf')));
  });
});
