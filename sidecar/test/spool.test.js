// The media spool with a fake downloader (streams made here): what lands on disk, names, sizes,
// limits, errors, and what is cleaned up. The real download path is in media.test.js.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';

import { proto } from '@whiskeysockets/baileys';

import {
  createMediaSpool, describeDownloadError, extensionFor, fileStem, lengthOf, mediaContent, sweepStaleTemps,
} from '../media.js';
import { schema, tempDir } from '../testing/helpers.js';

const logger = /** @type {any} */ ({ debug() {}, info() {}, warn() {}, error() {}, trace() {}, child() { return this; } });

/**
 * @param {string} id
 * @param {Record<string, any>} message
 */
const wa = (id, message) => ({ key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id }, message });

/** @param {Buffer} bytes */
const sha = (bytes) => createHash('sha256').update(bytes).digest();

/** A stream of `bytes` in chunks of `size`. */
function chunked(/** @type {Buffer} */ bytes, size = 1000) {
  const parts = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts);
}

test('mediaContent: media kinds after unwrapping; text and stubs are not media', () => {
  const image = { imageMessage: { mimetype: 'image/jpeg' } };
  assert.equal(mediaContent(wa('a', image))?.contentType, 'imageMessage');
  assert.equal(mediaContent(wa('a', { ephemeralMessage: { message: image } }))?.contentType, 'imageMessage');
  assert.equal(mediaContent(wa('a', { viewOnceMessageV2: { message: { videoMessage: {} } } }))?.contentType, 'videoMessage');
  assert.equal(mediaContent(wa('a', { documentWithCaptionMessage: { message: { documentMessage: { fileName: 'a.pdf' } } } }))?.contentType, 'documentMessage');
  assert.equal(mediaContent(wa('a', { audioMessage: { ptt: true } }))?.contentType, 'audioMessage');
  assert.equal(mediaContent(wa('a', { stickerMessage: {} }))?.contentType, 'stickerMessage');
  assert.equal(mediaContent(wa('a', { ptvMessage: {} }))?.contentType, 'ptvMessage');
  // A protobuf object, as Baileys hands it over.
  const decoded = proto.Message.decode(proto.Message.encode({ imageMessage: { mimetype: 'image/png', fileLength: 5 } }).finish());
  assert.equal(mediaContent(wa('a', decoded))?.content.mimetype, 'image/png');
  assert.equal(mediaContent(wa('a', { conversation: 'oi' })), null);
  assert.equal(mediaContent(wa('a', { locationMessage: {} })), null);
  assert.equal(mediaContent({ key: {} }), null);
});

test('names: tame ids kept, anything else digested; extensions never from raw input', () => {
  assert.equal(fileStem('3EB0C1A2B3C4D5E6F7A8'), '3EB0C1A2B3C4D5E6F7A8');
  for (const id of ['../../etc/passwd', 'a/b', '.hidden', '', 'x'.repeat(81), 'ção', undefined]) {
    assert.match(fileStem(id), /^m-[0-9a-f]{32}$/, String(id));
  }
  assert.equal(extensionFor('image/jpeg', null), '.jpg');
  assert.equal(extensionFor('audio/ogg; codecs=opus', null), '.ogg');
  assert.equal(extensionFor('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', 'x.xlsx'), '.xlsx');
  assert.equal(extensionFor('application/octet-stream', 'notas.TXT'), '.txt');
  assert.equal(extensionFor('application/octet-stream', '../../x/evil.sh/'), '.bin');
  assert.equal(extensionFor('application/x-foo', 'a.tar.gz'), '.gz');
  assert.equal(extensionFor('image/x-icon', null), '.bin');
  assert.equal(extensionFor('image/avif', null), '.avif');
  assert.equal(extensionFor('../../../etc/passwd', 'a.b/c'), '.bin');
  assert.equal(lengthOf(12), 12);
  assert.equal(lengthOf(proto.WebMessageInfo.fromObject({ messageTimestamp: 7 }).messageTimestamp), 7);
  assert.equal(lengthOf(-1), null);
  assert.equal(lengthOf(undefined), null);
});

test('a download lands as <id><ext>, 0600, whole, fsynced; frames validate', async (t) => {
  const { dir, cleanup } = tempDir('ponte-spool-');
  t.after(cleanup);
  const { validateFrame } = await schema();
  const bytes = Buffer.alloc(250_000, 7);
  const spool = createMediaSpool({ dir, maxBytes: 1_000_000, logger, download: async () => chunked(bytes) });
  const media = await spool.fetch(wa('3EB0IMG1', { imageMessage: { mimetype: 'image/jpeg', fileLength: bytes.length, fileSha256: sha(bytes) } }));
  assert.deepEqual(media, { path: join(dir, '3EB0IMG1.jpg'), mimetype: 'image/jpeg', size: bytes.length, file_name: null });
  assert.ok(readFileSync(join(dir, '3EB0IMG1.jpg')).equals(bytes));
  assert.equal(statSync(join(dir, '3EB0IMG1.jpg')).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['3EB0IMG1.jpg']);
  const key = { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id: '3EB0IMG1' };
  assert.ok(validateFrame({ type: 'message', upsert: 'notify', key, content_type: 'imageMessage', echo: false, media, message: { key } }),
    JSON.stringify(validateFrame.errors));

  // The same id again (another chat, or a re-delivery): a new name, the first file untouched.
  const again = await spool.fetch(wa('3EB0IMG1', { imageMessage: { mimetype: 'image/jpeg' } }));
  assert.equal(/** @type {any} */ (again).path, join(dir, '3EB0IMG1-1.jpg'));
  // Documents keep the sender's name only in file_name; a caption wrapper is unwrapped.
  const doc = await spool.fetch(wa('3EB0DOC', {
    documentWithCaptionMessage: { message: { documentMessage: { mimetype: 'application/pdf', fileName: '../../../x.pdf', caption: 'c' } } },
  }));
  assert.deepEqual(doc, { path: join(dir, '3EB0DOC.pdf'), mimetype: 'application/pdf', size: bytes.length, file_name: '../../../x.pdf' });
  // No mimetype at all: still a valid frame.
  const bare = await spool.fetch(wa('3EB0BARE', { stickerMessage: {} }));
  assert.deepEqual(bare, { path: join(dir, '3EB0BARE.bin'), mimetype: 'application/octet-stream', size: bytes.length, file_name: null });
});

test('concurrent downloads with the same id get distinct names', async (t) => {
  const { dir, cleanup } = tempDir('ponte-spool-');
  t.after(cleanup);
  const spool = createMediaSpool({ dir, maxBytes: 1000, logger, download: async () => Readable.from([Buffer.from('x')]) });
  const results = await Promise.all([1, 2, 3, 4, 5].map(() => spool.fetch(wa('SAME', { imageMessage: { mimetype: 'image/png' } }))));
  const paths = results.map((m) => /** @type {any} */ (m).path);
  assert.equal(new Set(paths).size, 5, JSON.stringify(paths));
  assert.equal(readdirSync(dir).length, 5);
});

test('too large: declared over the limit is not downloaded; passing it mid-stream stops and cleans up', async (t) => {
  const { dir, cleanup } = tempDir('ponte-spool-');
  t.after(cleanup);
  let downloads = 0;
  let destroyed = false;
  const spool = createMediaSpool({
    dir, maxBytes: 10_000, logger,
    download: async () => {
      downloads += 1;
      const stream = chunked(Buffer.alloc(50_000, 1));
      stream.on('close', () => { destroyed = true; });
      return stream;
    },
  });
  const declared = await spool.fetch(wa('BIG', { documentMessage: { mimetype: 'application/pdf', fileName: 'c.pdf', fileLength: 209715200 } }));
  assert.deepEqual(declared, {
    error: 'too_large', mimetype: 'application/pdf', size: 209715200, file_name: 'c.pdf', message: 'larger than 10000 bytes',
  });
  assert.equal(downloads, 0);

  const lying = await spool.fetch(wa('LIAR', { videoMessage: { mimetype: 'video/mp4', fileLength: 10 } }));
  assert.equal(downloads, 1);
  assert.equal(/** @type {any} */ (lying).error, 'too_large');
  assert.ok(/** @type {any} */ (lying).size > 10_000 && /** @type {any} */ (lying).size <= 11_000);
  assert.match(/** @type {any} */ (lying).message, /more than 10000 bytes arrived \(the message declared 10\)/);
  assert.ok(destroyed, 'the download stream was stopped');
  assert.deepEqual(readdirSync(dir), []);
});

test('download errors: no URL, no stack; temp removed; a hash mismatch is an error too', async (t) => {
  const { dir, cleanup } = tempDir('ponte-spool-');
  t.after(cleanup);
  const { validateFrame } = await schema();
  /** @type {() => Promise<Readable>} */
  let download = async () => { throw Object.assign(new Error('Failed to fetch stream from https://mmg.whatsapp.net/v/t62/x?oh=SECRET&oe=1'), { isBoom: true, output: { statusCode: 403 } }); };
  const spool = createMediaSpool({ dir, maxBytes: 1_000_000, logger, download: () => download() });
  const http = await spool.fetch(wa('E1', { audioMessage: { mimetype: 'audio/ogg', fileLength: 5 } }));
  assert.deepEqual(http, { error: 'download_failed', mimetype: 'audio/ogg', size: 5, file_name: null, message: 'the media server answered HTTP 403' });

  download = async () => {
    const stream = new Readable({ read() {} });
    stream.push(Buffer.alloc(100));
    setImmediate(() => stream.destroy(new Error('socket hang up at https://mmg.whatsapp.net/d/f/abc?token=SECRET')));
    return stream;
  };
  const broken = /** @type {any} */ (await spool.fetch(wa('E2', { imageMessage: { mimetype: 'image/jpeg' } })));
  assert.equal(broken.error, 'download_failed');
  assert.equal(broken.message, 'socket hang up at <url>');

  download = async () => Readable.from([Buffer.from('tampered')]);
  const mismatch = /** @type {any} */ (await spool.fetch(wa('E3', { imageMessage: { mimetype: 'image/jpeg', fileSha256: sha(Buffer.from('original')) } })));
  assert.equal(mismatch.error, 'download_failed');
  assert.match(mismatch.message, /SHA-256/);

  const key = { remoteJid: 'x@s.whatsapp.net', fromMe: false, id: 'E' };
  for (const media of [http, broken, mismatch]) {
    assert.ok(validateFrame({ type: 'message', upsert: 'notify', key, content_type: 'imageMessage', echo: false, media, message: { key } }),
      JSON.stringify(validateFrame.errors));
  }
  assert.deepEqual(readdirSync(dir), []);
  assert.equal(describeDownloadError(Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 1.2.3.4:443' } })),
    'fetch failed (ECONNREFUSED)');
});

test('a stalled download fails after the idle timeout', async (t) => {
  const { dir, cleanup } = tempDir('ponte-spool-');
  t.after(cleanup);
  const silent = new Readable({ read() {} });
  silent.push(Buffer.alloc(10));
  /** @type {Array<() => Promise<Readable>>} */
  const downloads = [async () => silent, () => new Promise(() => {})];
  const spool = createMediaSpool({ dir, maxBytes: 1000, logger, idleTimeoutMs: 100, download: () => /** @type {any} */ (downloads.shift())() });
  const stalled = /** @type {any} */ (await spool.fetch(wa('S1', { imageMessage: { mimetype: 'image/jpeg' } })));
  assert.deepEqual([stalled.error, stalled.message], ['download_failed', 'no data for 100 ms']);
  assert.ok(silent.destroyed);
  const unanswered = /** @type {any} */ (await spool.fetch(wa('S2', { imageMessage: { mimetype: 'image/jpeg' } })));
  assert.deepEqual([unanswered.error, unanswered.message], ['download_failed', 'no answer from the media server in 100 ms']);
  assert.deepEqual(readdirSync(dir), []);
});

test('no spool configured: download_failed saying so, nothing attempted; text is not media', async () => {
  let calls = 0;
  const spool = createMediaSpool({ dir: null, maxBytes: 1000, logger, download: async () => { calls += 1; return Readable.from([]); } });
  assert.deepEqual(await spool.fetch(wa('N', { imageMessage: { mimetype: 'image/jpeg', fileLength: 10 } })), {
    error: 'download_failed', mimetype: 'image/jpeg', size: 10, file_name: null,
    message: 'no media spool is configured (PONTE_MEDIA_DIR is not set)',
  });
  assert.equal(spool.fetch(wa('T', { conversation: 'oi' })), null);
  assert.equal(calls, 0);
});

test('sweepStaleTemps removes only old temporaries of our own pattern', async (t) => {
  const { dir, cleanup } = tempDir('ponte-spool-');
  t.after(cleanup);
  const old = join(dir, '.ponte-0123456789abcdef.part');
  const fresh = join(dir, '.ponte-fedcba9876543210.part');
  const media = join(dir, '3EB0.jpg');
  const foreign = join(dir, '.other.part');
  for (const file of [old, fresh, media, foreign]) writeFileSync(file, 'x');
  const past = (Date.now() - 2 * 60 * 60 * 1000) / 1000;
  for (const file of [old, media, foreign]) utimesSync(file, past, past);
  assert.equal(await sweepStaleTemps(dir), 1);
  assert.deepEqual(readdirSync(dir).sort(), ['.other.part', '.ponte-fedcba9876543210.part', '3EB0.jpg']);
});
