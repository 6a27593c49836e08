import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { BufferJSON, initAuthCreds, proto } from '@whiskeysockets/baileys';

import { AuthUnreadableError, FileStore, keyFileName, missingCredsField, openAuthStore, TEMP_PREFIX } from '../auth.js';
import { tempDir } from '../testing/helpers.js';

const quiet = { warn() {}, info() {}, debug() {}, trace() {}, error() {} };

/** @param {string} dir */
const listing = (dir) => readdirSync(dir).sort();

test('a missing creds.json is a new identity, written on the first save', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = await openAuthStore(dir, quiet);
  assert.equal(store.isNew, true);
  assert.equal(missingCredsField(store.creds), null);
  assert.deepEqual(listing(dir), [], 'nothing is written before Baileys asks');

  store.creds.me = { id: '5511999990000:12@s.whatsapp.net', name: 'Loja' };
  await store.saveCreds();
  assert.deepEqual(listing(dir), ['creds.json']);

  const again = await openAuthStore(dir, quiet);
  assert.equal(again.isNew, false);
  assert.deepEqual(again.creds.me, store.creds.me);
  assert.ok(Buffer.isBuffer(again.creds.noiseKey.private));
  assert.deepEqual(again.creds.noiseKey.private, store.creds.noiseKey.private);
  assert.deepEqual(again.creds.signedPreKey.signature, store.creds.signedPreKey.signature);
  assert.equal(again.creds.registrationId, store.creds.registrationId);
});

test('creds.json is written as Baileys BufferJSON', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = await openAuthStore(dir, quiet);
  await store.saveCreds();
  const raw = JSON.parse(readFileSync(join(dir, 'creds.json'), 'utf8'));
  assert.deepEqual(raw.noiseKey.public, { type: 'Buffer', data: store.creds.noiseKey.public.toString('base64') });
});

for (const [name, content] of [['empty', ''], ['blank', '  \n'], ['not JSON', '{"noiseKey":'], ['JSON null', 'null'],
  ['missing keys', '{"registrationId": 1}']]) {
  test(`an unreadable creds.json (${name}) is fatal and left untouched`, async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const path = join(dir, 'creds.json');
    writeFileSync(path, content);
    const before = statSync(path);
    await assert.rejects(openAuthStore(dir, quiet), AuthUnreadableError);
    assert.equal(readFileSync(path, 'utf8'), content);
    assert.equal(statSync(path).mtimeMs, before.mtimeMs);
    assert.deepEqual(listing(dir), ['creds.json']);
  });
}

test('creds with a truncated key are refused', () => {
  const creds = JSON.parse(JSON.stringify(initAuthCreds(), BufferJSON.replacer), BufferJSON.reviver);
  assert.equal(missingCredsField(creds), null);
  creds.signedIdentityKey.private = creds.signedIdentityKey.private.subarray(0, 10);
  assert.equal(missingCredsField(creds), 'signedIdentityKey');
});

test('keys round-trip with Buffers; null deletes; ids are sanitised like useMultiFileAuthState', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = await openAuthStore(dir, quiet);
  const session = { record: Buffer.from([1, 2, 3, 250]), nested: { key: new Uint8Array([9, 8]) } };
  const preKey = { private: Buffer.alloc(32, 1), public: Buffer.alloc(32, 2) };
  await store.diskKeys.set({
    session: { '5511988887777:3@s.whatsapp.net': session },
    'pre-key': { 1: preKey, 2: preKey },
    'lid-mapping': { '5511988887777': '123456789012345', '123456789012345_reverse': '5511988887777' },
    'device-list': { '5511988887777': ['0', '3'] },
    tctoken: { '5511988887777@s.whatsapp.net': { token: Buffer.from('tok'), timestamp: '1764374400' } },
    'identity-key': { '5511988887777.0': Buffer.alloc(33, 5) },
    'sender-key': { '120363025246125486@g.us::5511988887777::0': Buffer.from('sk') },
    'sender-key-memory': { '120363025246125486@g.us': { '5511988887777:0@s.whatsapp.net': true } },
    'app-state-sync-version': { regular: { version: 3, hash: Buffer.alloc(128, 7), indexValueMap: {} } },
  });
  assert.ok(existsSync(join(dir, 'session-5511988887777-3@s.whatsapp.net.json')));
  assert.ok(existsSync(join(dir, keyFileName('sender-key', '120363025246125486@g.us::5511988887777::0'))));
  assert.equal(keyFileName('session', 'a/b:c'), 'session-a__b-c.json');

  const got = await store.diskKeys.get('session', ['5511988887777:3@s.whatsapp.net', 'nobody.0']);
  assert.deepEqual(Object.keys(got), ['5511988887777:3@s.whatsapp.net']);
  assert.ok(Buffer.isBuffer(got['5511988887777:3@s.whatsapp.net'].record));
  assert.deepEqual(got['5511988887777:3@s.whatsapp.net'].record, session.record);
  assert.deepEqual([...got['5511988887777:3@s.whatsapp.net'].nested.key], [9, 8]);
  const keys = await store.diskKeys.get('pre-key', ['1', '2']);
  assert.deepEqual(keys['1'], preKey);
  const lid = await store.diskKeys.get('lid-mapping', ['5511988887777', '123456789012345_reverse']);
  assert.deepEqual(lid, { 5511988887777: '123456789012345', '123456789012345_reverse': '5511988887777' });
  const devices = await store.diskKeys.get('device-list', ['5511988887777']);
  assert.deepEqual(devices['5511988887777'], ['0', '3']);
  const tc = await store.diskKeys.get('tctoken', ['5511988887777@s.whatsapp.net']);
  assert.deepEqual(tc['5511988887777@s.whatsapp.net'].token, Buffer.from('tok'));
  const version = await store.diskKeys.get('app-state-sync-version', ['regular']);
  assert.deepEqual(version.regular.hash, Buffer.alloc(128, 7));

  await store.diskKeys.set({ 'pre-key': { 1: null }, session: { 'never-existed.0': null } });
  assert.ok(!existsSync(join(dir, 'pre-key-1.json')));
  assert.deepEqual(Object.keys(await store.diskKeys.get('pre-key', ['1', '2'])), ['2']);
});

test('app-state-sync-key comes back as the protobuf Baileys expects', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = await openAuthStore(dir, quiet);
  const keyData = proto.Message.AppStateSyncKeyData.fromObject({
    keyData: Buffer.alloc(32, 3),
    fingerprint: { rawId: 7, currentIndex: 1, deviceIndexes: [0, 1] },
    timestamp: 1764374400,
  });
  await store.diskKeys.set({ 'app-state-sync-key': { AAAAAQ: keyData } });
  const got = (await store.diskKeys.get('app-state-sync-key', ['AAAAAQ'])).AAAAAQ;
  assert.ok(got instanceof proto.Message.AppStateSyncKeyData);
  assert.deepEqual(Buffer.from(got.keyData), Buffer.alloc(32, 3));
  assert.equal(got.fingerprint.rawId, 7);
});

test('set() resolves only once the files are on disk; the cached store writes through', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = await openAuthStore(dir, quiet);
  const ids = Array.from({ length: 200 }, (_, i) => String(i + 1));
  /** @type {Record<string, any>} */
  const batch = {};
  for (const id of ids) batch[id] = { keyPair: { private: Buffer.alloc(32, 1), public: Buffer.alloc(32, 2) }, keyId: Number(id) };
  await store.keys.set({ 'pre-key': batch });
  // Synchronous reads straight after the await: nothing may still be in flight.
  for (const id of ids) {
    const value = JSON.parse(readFileSync(join(dir, `pre-key-${id}.json`), 'utf8'), BufferJSON.reviver);
    assert.equal(value.keyId, Number(id));
  }
  assert.equal(store.files.lockCount, 0, 'the per-file lock map is pruned');
  assert.ok(!listing(dir).some((name) => name.startsWith(TEMP_PREFIX)), 'no temp file is left');
});

test('a write replaces the file by rename: an open reader keeps the old, complete content', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const files = new FileStore(dir);
  const old = JSON.stringify({ v: 'old'.repeat(1000) });
  await files.write('creds.json', old);
  const inodeBefore = statSync(join(dir, 'creds.json')).ino;
  const fd = openSync(join(dir, 'creds.json'), 'r');
  try {
    await files.write('creds.json', JSON.stringify({ v: 'new' }));
    // An in-place rewrite (useMultiFileAuthState's writeFile) would truncate this very inode.
    const buffer = Buffer.alloc(old.length + 10);
    const read = readSync(fd, buffer, 0, buffer.length, 0);
    assert.equal(buffer.subarray(0, read).toString('utf8'), old);
  } finally {
    closeSync(fd);
  }
  assert.notEqual(statSync(join(dir, 'creds.json')).ino, inodeBefore);
  assert.equal(readFileSync(join(dir, 'creds.json'), 'utf8'), JSON.stringify({ v: 'new' }));
  assert.deepEqual(listing(dir), ['creds.json']);
});

test('a failed write leaves the previous file and no temp file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const files = new FileStore(dir);
  await files.write('session-a.json', '"old"');
  // Renaming a file over a non-empty directory fails after the temp file was written.
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(dir, 'blocked.json'));
  writeFileSync(join(dir, 'blocked.json', 'x'), '');
  await assert.rejects(files.write('blocked.json', '"new"'));
  assert.deepEqual(listing(dir), ['blocked.json', 'session-a.json']);
  assert.equal(readFileSync(join(dir, 'session-a.json'), 'utf8'), '"old"');
});

test('writes to one file are serialised in call order; flush() waits for all', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const files = new FileStore(dir);
  const writes = [];
  for (let i = 0; i < 50; i += 1) writes.push(files.write('session-x.json', JSON.stringify(i)));
  await files.flush();
  assert.equal(readFileSync(join(dir, 'session-x.json'), 'utf8'), '49');
  await Promise.all(writes);
  assert.equal(files.lockCount, 0);
});

test('saveCreds coalesces bursts but always persists the latest creds', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const store = await openAuthStore(dir, quiet);
  const saves = [];
  for (let i = 0; i < 20; i += 1) {
    store.creds.accountSyncCounter = i;
    saves.push(store.saveCreds());
  }
  await Promise.all(saves);
  await store.flush();
  const raw = JSON.parse(readFileSync(join(dir, 'creds.json'), 'utf8'));
  assert.equal(raw.accountSyncCounter, 19);
});

test('stale temp files from a crash are removed on open; their targets are untouched', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const first = await openAuthStore(dir, quiet);
  await first.saveCreds();
  const creds = readFileSync(join(dir, 'creds.json'), 'utf8');
  writeFileSync(join(dir, `${TEMP_PREFIX}999-1-abcd`), '{"half":');
  const store = await openAuthStore(dir, quiet);
  assert.equal(store.isNew, false);
  assert.deepEqual(listing(dir), ['creds.json']);
  assert.equal(readFileSync(join(dir, 'creds.json'), 'utf8'), creds);
});

test('an unparsable key file reads as missing instead of failing every decrypt', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  /** @type {unknown[]} */
  const warnings = [];
  const store = await openAuthStore(dir, { ...quiet, warn: (obj) => warnings.push(obj) });
  writeFileSync(join(dir, 'session-1.0.json'), '{"broken"');
  assert.deepEqual(await store.diskKeys.get('session', ['1.0']), {});
  assert.deepEqual(warnings, [{ type: 'session' }]);
});
