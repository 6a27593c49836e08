import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, relative as relative_ } from 'node:path';
import { test } from 'node:test';

import { chatKindOf, ConfigError, ignoreJidPredicate, loadConfig } from '../config.js';
import { tempDir } from '../testing/helpers.js';

test('defaults: pinned version, WhatsApp URL, warn, Baileys timeouts', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  assert.deepEqual(loadConfig({ PONTE_AUTH_DIR: dir, PONTE_INSTANCE_ID: 'loja' }), {
    instanceId: 'loja',
    authDir: dir,
    websocketUrl: 'wss://web.whatsapp.com/ws/chat',
    waVersion: [2, 3000, 1043857760],
    browserName: 'Chrome',
    logLevel: 'warn',
    connectTimeoutMs: 20000,
    keepAliveMs: 30000,
    pairingPhone: null,
    qrTimeoutMs: null,
    mediaDir: null,
    mediaMaxBytes: 64 * 1024 * 1024,
    ignoreChats: new Set(['status', 'newsletter', 'broadcast']),
  });
});

test('every variable is read; empty counts as unset', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const config = loadConfig({
    PONTE_AUTH_DIR: dir,
    PONTE_INSTANCE_ID: '',
    PONTE_WA_WEBSOCKET_URL: 'ws://127.0.0.1:8080/ws/chat',
    PONTE_WA_VERSION: '2.3000.1',
    PONTE_BROWSER_NAME: 'Ponte',
    PONTE_LOG_LEVEL: 'DEBUG',
    PONTE_CONNECT_TIMEOUT_MS: '5000',
    PONTE_KEEPALIVE_MS: '1000',
    PONTE_PAIRING_PHONE: '5511999990000',
    PONTE_QR_TIMEOUT_MS: '1500',
    PONTE_MEDIA_DIR: dir,
    PONTE_MEDIA_MAX_BYTES: '1048576',
  });
  assert.equal(config.instanceId, '-');
  assert.equal(config.websocketUrl, 'ws://127.0.0.1:8080/ws/chat');
  assert.deepEqual(config.waVersion, [2, 3000, 1]);
  assert.equal(config.browserName, 'Ponte');
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.connectTimeoutMs, 5000);
  assert.equal(config.keepAliveMs, 1000);
  assert.equal(config.pairingPhone, '5511999990000');
  assert.equal(config.qrTimeoutMs, 1500);
  assert.equal(config.mediaDir, dir);
  assert.equal(config.mediaMaxBytes, 1048576);
});

test('PONTE_MEDIA_DIR is made absolute; an empty one means no spool', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const relative = relative_(process.cwd(), dir);
  assert.equal(loadConfig({ PONTE_AUTH_DIR: dir, PONTE_MEDIA_DIR: relative }).mediaDir, dir);
  assert.equal(loadConfig({ PONTE_AUTH_DIR: dir, PONTE_MEDIA_DIR: ' ' }).mediaDir, null);
  assert.equal(loadConfig({ PONTE_AUTH_DIR: dir, PONTE_MEDIA_MAX_BYTES: '5000000000' }).mediaMaxBytes, 5_000_000_000);
});

test('bad values are ConfigErrors naming the variable', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const file = join(dir, 'a-file');
  writeFileSync(file, '');
  const cases = [
    [{}, /PONTE_AUTH_DIR is not set/],
    [{ PONTE_AUTH_DIR: '  ' }, /PONTE_AUTH_DIR is not set/],
    [{ PONTE_AUTH_DIR: join(dir, 'missing') }, /PONTE_AUTH_DIR .* is not accessible \(ENOENT\)/],
    [{ PONTE_AUTH_DIR: file }, /PONTE_AUTH_DIR .* is not a directory/],
    [{ PONTE_AUTH_DIR: dir, PONTE_WA_VERSION: '2.3000' }, /PONTE_WA_VERSION/],
    [{ PONTE_AUTH_DIR: dir, PONTE_WA_VERSION: '2,3000,1' }, /PONTE_WA_VERSION/],
    [{ PONTE_AUTH_DIR: dir, PONTE_WA_VERSION: 'v2.3000.1' }, /PONTE_WA_VERSION/],
    [{ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: 'not a url' }, /PONTE_WA_WEBSOCKET_URL/],
    [{ PONTE_AUTH_DIR: dir, PONTE_PAIRING_PHONE: '+55 11 99999-0000' }, /PONTE_PAIRING_PHONE/],
    [{ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: 'https://web.whatsapp.com' }, /PONTE_WA_WEBSOCKET_URL/],
    [{ PONTE_AUTH_DIR: dir, PONTE_LOG_LEVEL: 'loud' }, /PONTE_LOG_LEVEL/],
    [{ PONTE_AUTH_DIR: dir, PONTE_CONNECT_TIMEOUT_MS: '-5' }, /PONTE_CONNECT_TIMEOUT_MS/],
    [{ PONTE_AUTH_DIR: dir, PONTE_CONNECT_TIMEOUT_MS: '0' }, /PONTE_CONNECT_TIMEOUT_MS/],
    [{ PONTE_AUTH_DIR: dir, PONTE_KEEPALIVE_MS: '30s' }, /PONTE_KEEPALIVE_MS/],
    [{ PONTE_AUTH_DIR: dir, PONTE_MEDIA_DIR: join(dir, 'missing') }, /PONTE_MEDIA_DIR .* is not accessible \(ENOENT\)/],
    [{ PONTE_AUTH_DIR: dir, PONTE_MEDIA_DIR: file }, /PONTE_MEDIA_DIR .* is not a directory/],
    [{ PONTE_AUTH_DIR: dir, PONTE_MEDIA_MAX_BYTES: '0' }, /PONTE_MEDIA_MAX_BYTES .* positive integer of bytes/],
    [{ PONTE_AUTH_DIR: dir, PONTE_MEDIA_MAX_BYTES: '64MB' }, /PONTE_MEDIA_MAX_BYTES/],
    [{ PONTE_AUTH_DIR: dir, PONTE_MEDIA_MAX_BYTES: '-1' }, /PONTE_MEDIA_MAX_BYTES/],
  ];
  for (const [env, pattern] of cases) {
    assert.throws(() => loadConfig(/** @type {any} */ (env)), (err) => err instanceof ConfigError && pattern.test(err.message), JSON.stringify(env));
  }
});

test('PONTE_IGNORE_CHATS: unset is the default; set is the list, empty or none ignore nothing; unknown kinds refused', (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const kinds = (/** @type {string | undefined} */ value) => [...loadConfig({ PONTE_AUTH_DIR: dir, PONTE_IGNORE_CHATS: value }).ignoreChats].sort();
  assert.deepEqual(kinds(undefined), ['broadcast', 'newsletter', 'status']);
  assert.deepEqual(kinds('status, GROUP ,'), ['group', 'status']);
  assert.deepEqual(kinds('status,newsletter,broadcast,group'), ['broadcast', 'group', 'newsletter', 'status']);
  assert.deepEqual(kinds(''), []);
  assert.deepEqual(kinds('  '), []);
  assert.deepEqual(kinds('none'), []);
  for (const bad of ['groups', 'status,person', 'none,status']) {
    assert.throws(() => kinds(bad), (err) => err instanceof ConfigError && /PONTE_IGNORE_CHATS/.test(err.message), bad);
  }
});

test('shouldIgnoreJid: each kind drops its chats and only those', () => {
  const jids = {
    status: 'status@broadcast',
    broadcast: '1764374400@broadcast',
    newsletter: '120363000000000000@newsletter',
    group: '120363025246125486@g.us',
    pn: '5511988887777@s.whatsapp.net',
    device: '5511988887777:3@s.whatsapp.net',
    lid: '123456789012345@lid',
    server: 's.whatsapp.net',
  };
  assert.deepEqual(Object.fromEntries(Object.entries(jids).map(([name, jid]) => [name, chatKindOf(jid)])), {
    status: 'status', broadcast: 'broadcast', newsletter: 'newsletter', group: 'group', pn: null, device: null, lid: null, server: null,
  });
  const ignored = (/** @type {any[]} */ kinds) => {
    const predicate = ignoreJidPredicate(new Set(kinds));
    return Object.entries(jids).filter(([, jid]) => predicate(jid)).map(([name]) => name);
  };
  assert.deepEqual(ignored(['status', 'newsletter', 'broadcast']), ['status', 'broadcast', 'newsletter']);
  assert.deepEqual(ignored(['status']), ['status'], 'status is not a broadcast list');
  assert.deepEqual(ignored(['broadcast']), ['broadcast'], 'nor the other way round');
  assert.deepEqual(ignored(['group']), ['group']);
  assert.deepEqual(ignored([]), []);
  assert.equal(ignoreJidPredicate(new Set(['group']))(/** @type {any} */ (undefined)), false);
});
