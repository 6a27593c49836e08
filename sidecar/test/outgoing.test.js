// What sending relies on besides Baileys: the spool check of send_media, the "is this number on
// WhatsApp" lookup and its caches, and the store getMessage answers retries from.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { proto } from '@whiskeysockets/baileys';

import { BadMediaError, NumberCheck, openSpoolFile, SentMessages } from '../outgoing.js';
import { tempDir } from '../testing/helpers.js';

test('openSpoolFile: a regular file inside the spool, opened; its real path and size', async (t) => {
  const spool = tempDir('ponte-spool-');
  t.after(spool.cleanup);
  const path = join(spool.dir, 'out-1.pdf');
  writeFileSync(path, 'PDF!');
  const file = await openSpoolFile(spool.dir, path);
  try {
    assert.equal(file.path, path);
    assert.equal(file.size, 4);
    const { bytesRead, buffer } = await file.handle.read(Buffer.alloc(8), 0, 8, 0);
    assert.equal(buffer.subarray(0, bytesRead).toString(), 'PDF!');
  } finally {
    await file.handle.close();
  }
  // A symlink inside the spool to a file inside the spool is fine: the real path is checked.
  symlinkSync(path, join(spool.dir, 'alias'));
  const alias = await openSpoolFile(spool.dir, join(spool.dir, 'alias'));
  assert.equal(alias.path, path);
  await alias.handle.close();
  // The spool named through a symlink (PONTE_MEDIA_DIR may be one) is still the spool.
  const outside = tempDir('ponte-outside-');
  t.after(outside.cleanup);
  symlinkSync(spool.dir, join(outside.dir, 'spool-link'));
  const viaLink = await openSpoolFile(join(outside.dir, 'spool-link'), join(outside.dir, 'spool-link', 'out-1.pdf'));
  assert.equal(viaLink.path, path);
  await viaLink.handle.close();
});

test('openSpoolFile: bad_media for anything else, without quoting the path', async (t) => {
  const spool = tempDir('ponte-spool-');
  const outside = tempDir('ponte-outside-');
  t.after(() => { spool.cleanup(); outside.cleanup(); });
  const secret = join(outside.dir, 'secret');
  writeFileSync(secret, 'x');
  symlinkSync(secret, join(spool.dir, 'link-out'));
  symlinkSync(join(spool.dir, 'nowhere'), join(spool.dir, 'dangling'));
  mkdirSync(join(spool.dir, 'dir'));
  writeFileSync(join(spool.dir, 'empty'), '');
  // A sibling whose name starts like the spool's is not inside it.
  const sibling = `${spool.dir}-evil`;
  mkdirSync(sibling);
  t.after(() => execFileSync('rm', ['-rf', sibling]));
  writeFileSync(join(sibling, 'f'), 'x');
  execFileSync('mkfifo', [join(spool.dir, 'fifo')]);
  const cases = [
    [secret, /not inside the media spool/],
    [join(spool.dir, 'link-out'), /not inside the media spool/],
    [join(spool.dir, '..', 'x'), /does not exist|not inside/],
    [join(spool.dir, 'missing'), /does not exist/],
    [join(spool.dir, 'dangling'), /does not exist/],
    [join(spool.dir, 'dir'), /not a regular file/],
    [join(spool.dir, 'fifo'), /not a regular file/],
    [join(spool.dir, 'empty'), /empty/],
    [join(sibling, 'f'), /not inside the media spool/],
    [spool.dir, /not inside the media spool/],
    ['out-1.pdf', /not absolute/],
  ];
  for (const [path, pattern] of cases) {
    await assert.rejects(openSpoolFile(spool.dir, /** @type {string} */ (path)), (err) => {
      assert.ok(err instanceof BadMediaError, String(err));
      assert.match(err.message, /** @type {RegExp} */ (pattern), String(path));
      assert.ok(!err.message.includes(spool.dir) && !err.message.includes(outside.dir), err.message);
      return true;
    });
  }
  await assert.rejects(openSpoolFile(null, secret), /no media spool/);
  await assert.rejects(openSpoolFile(join(spool.dir, 'missing-spool'), secret), /spool is not accessible/);
});

/**
 * A lookup like rc14's onWhatsApp: `[{jid, exists: true}]` for known numbers, `[]` for others.
 * @param {Record<string, string>} known  asked jid -> registered jid
 */
function fakeLookup(known) {
  /** @type {string[]} */
  const asked = [];
  return {
    asked,
    lookup: async (/** @type {string} */ jid) => {
      asked.push(jid);
      return known[jid] ? [{ jid: known[jid], exists: true }] : [];
    },
  };
}

test('NumberCheck: known numbers cached for good, unknown ones for ten minutes; the registered JID wins', async () => {
  let now = 1_000_000;
  const brazil = '5511988887777@s.whatsapp.net';
  const { asked, lookup } = fakeLookup({ [brazil]: '551188887777@s.whatsapp.net', '5511977776666@s.whatsapp.net': '5511977776666@s.whatsapp.net' });
  const check = new NumberCheck({ lookup, now: () => now });
  assert.deepEqual(await check.check(brazil), { exists: true, jid: '551188887777@s.whatsapp.net' });
  assert.deepEqual(await check.check('5511977776666@s.whatsapp.net'), { exists: true, jid: '5511977776666@s.whatsapp.net' });
  assert.deepEqual(await check.check('5511900000000@s.whatsapp.net'), { exists: false });
  now += 9 * 60 * 1000;
  assert.deepEqual(await check.check('5511900000000@s.whatsapp.net'), { exists: false });
  assert.deepEqual(await check.check(brazil), { exists: true, jid: '551188887777@s.whatsapp.net' });
  assert.equal(asked.length, 3, 'answered from the caches');
  now += 2 * 60 * 1000;
  now += 24 * 60 * 60 * 1000;
  assert.deepEqual(await check.check('5511900000000@s.whatsapp.net'), { exists: false });
  assert.deepEqual(await check.check(brazil), { exists: true, jid: '551188887777@s.whatsapp.net' });
  assert.deepEqual(asked, [brazil, '5511977776666@s.whatsapp.net', '5511900000000@s.whatsapp.net', '5511900000000@s.whatsapp.net']);
});

test('NumberCheck: concurrent checks share one query; failures and timeouts say "unknown" and are not cached', async () => {
  /** @type {Array<(value: any) => void>} */
  const answers = [];
  let calls = 0;
  const check = new NumberCheck({
    timeoutMs: 50,
    lookup: (jid) => {
      calls += 1;
      if (jid.startsWith('1')) return Promise.reject(new Error('Connection Closed'));
      if (jid.startsWith('2')) return Promise.resolve(undefined);
      return new Promise((resolve) => answers.push(resolve));
    },
  });
  const jid = '5511988887777@s.whatsapp.net';
  const both = Promise.all([check.check(jid), check.check(jid)]);
  assert.equal(calls, 1);
  answers[0]([{ jid, exists: true }]);
  assert.deepEqual(await both, [{ exists: true, jid }, { exists: true, jid }]);

  assert.deepEqual(await check.check('1@s.whatsapp.net'), { exists: null, error: 'Connection Closed' });
  assert.deepEqual(await check.check('1@s.whatsapp.net'), { exists: null, error: 'Connection Closed' });
  assert.deepEqual(await check.check('2@s.whatsapp.net'), { exists: null, error: 'the lookup gave no result' });
  assert.equal(calls, 4, 'failures are asked again');

  // Too slow: the caller goes on; the late answer still fills the cache.
  const slow = '5511977776666@s.whatsapp.net';
  const started = Date.now();
  assert.deepEqual(await check.check(slow), { exists: null, error: 'no answer in 50 ms' });
  assert.ok(Date.now() - started < 1000);
  answers[1]([]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(await check.check(slow), { exists: false });
  assert.equal(calls, 5);
});

test('NumberCheck: bounded caches', async () => {
  const { asked, lookup } = fakeLookup(Object.fromEntries([1, 2, 3, 4].map((n) => [`${n}@s.whatsapp.net`, `${n}@s.whatsapp.net`])));
  const check = new NumberCheck({ lookup, maxEntries: 2 });
  for (const n of [1, 2, 3, 4, 4, 3]) await check.check(`${n}@s.whatsapp.net`);
  assert.deepEqual(asked, ['1@s.whatsapp.net', '2@s.whatsapp.net', '3@s.whatsapp.net', '4@s.whatsapp.net']);
  await check.check('1@s.whatsapp.net');
  assert.equal(asked.length, 5, 'the oldest was forgotten');
});

test('SentMessages: getMessage finds our sends by id, newest kept, bounded by count and bytes', () => {
  const store = new SentMessages({ limit: 3, maxBytes: 1000 });
  /** @param {string} text */
  const text = (text) => proto.Message.fromObject({ extendedTextMessage: { text }, messageContextInfo: { messageSecret: Buffer.alloc(32, 7) } });
  for (const id of ['A', 'B', 'C', 'D']) store.add(id, text(`message ${id}`));
  assert.equal(store.get('A'), undefined, 'the oldest beyond the limit is forgotten');
  const d = store.get('D');
  assert.ok(d instanceof proto.Message);
  assert.equal(d?.extendedTextMessage?.text, 'message D');
  assert.ok(Buffer.from(/** @type {Uint8Array} */ (d?.messageContextInfo?.messageSecret)).equals(Buffer.alloc(32, 7)));
  // A copy each time: Baileys may change what it gets.
  /** @type {any} */ (d).extendedTextMessage.text = 'changed';
  assert.equal(store.get('D')?.extendedTextMessage?.text, 'message D');
  assert.equal(store.get(undefined), undefined);
  assert.equal(store.get('nope'), undefined);

  // Re-adding an id replaces it (and makes it the newest).
  store.add('B', text('again'));
  store.add('E', text('e'));
  assert.equal(store.get('C'), undefined);
  assert.equal(store.get('B')?.extendedTextMessage?.text, 'again');

  // The byte budget: a big message pushes older ones out; one over the whole budget is not kept.
  store.add('BIG', text('x'.repeat(950))); // 993 bytes encoded: nothing else fits beside it
  assert.equal(store.size, 1);
  assert.ok(store.bytes <= 1000);
  store.add('HUGE', text('x'.repeat(2000)));
  assert.equal(store.get('HUGE'), undefined);
  assert.ok(store.get('BIG'));
  store.add(null, text('no id'));
  store.add('F', null);
  assert.equal(store.size, 1);
});
