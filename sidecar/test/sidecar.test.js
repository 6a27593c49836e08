// The real sidecar process, loopback only: a closed port, or a TCP server that accepts and never
// answers (Baileys then waits in `connecting`). No WhatsApp protocol is spoken here.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { openAuthStore } from '../auth.js';
import { closedPort, framesOf, schema, silentServer, startSidecar, tempDir } from '../testing/helpers.js';

const INTENTIONAL = { type: 'connection', state: 'close', status_code: null, reason: 'intentional', message: null, will_reconnect: false };

/**
 * Waits for exit and returns the status plus the validated frames.
 * @param {ReturnType<typeof startSidecar>} sidecar
 */
async function finished(sidecar) {
  const { validateFrame } = await schema();
  const timer = setTimeout(() => sidecar.kill(), 40_000);
  const { code, signal } = await sidecar.exited;
  clearTimeout(timer);
  return { code, signal, frames: framesOf(sidecar.stdout, validateFrame) };
}

// Each process spends about a second of CPU loading Baileys; more at once only adds contention.
describe('sidecar process', { concurrency: Math.max(2, availableParallelism()) }, () => {
  test('closed port: ready, connecting, close 408 connectionLost, exit 0, stdout frames only', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const port = await closedPort();
    const started = Date.now();
    const sidecar = startSidecar({ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: `ws://127.0.0.1:${port}` });
    t.after(() => sidecar.kill());
    const { code, signal, frames } = await finished(sidecar);
    t.diagnostic(`spawn to exit ${Date.now() - started} ms`);
    assert.equal(signal, null);
    assert.equal(code, 0, sidecar.stderr);
    assert.equal(frames.length, 3, sidecar.stdout);
    assert.deepEqual(frames[0], { type: 'ready', protocol: 1, sidecar: frames[0].sidecar, baileys: '7.0.0-rc14', pid: sidecar.child.pid });
    assert.deepEqual(frames[1], { type: 'connection', state: 'connecting' });
    assert.deepEqual(frames[2], {
      type: 'connection', state: 'close', status_code: 408, reason: 'connectionLost',
      message: `WebSocket Error (connect ECONNREFUSED 127.0.0.1:${port})`, will_reconnect: false,
    });
    // An unpaired identity is not worth a file; nothing else may appear either.
    assert.deepEqual(readdirSync(dir), []);
  });

  test('saved creds are used, not replaced, across a failed connection', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const store = await openAuthStore(dir, /** @type {any} */ ({ warn() {}, info() {}, debug() {}, trace() {} }));
    await store.saveCreds();
    const before = readFileSync(join(dir, 'creds.json'), 'utf8');
    const mtime = statSync(join(dir, 'creds.json')).mtimeMs;
    // At trace level Baileys logs every step; stdout must still hold frames only.
    const sidecar = startSidecar({
      PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: `ws://127.0.0.1:${await closedPort()}`, PONTE_LOG_LEVEL: 'trace',
    });
    t.after(() => sidecar.kill());
    const { code, frames } = await finished(sidecar);
    assert.equal(code, 0, sidecar.stderr);
    assert.deepEqual(frames.map((f) => f.state ?? f.type), ['ready', 'connecting', 'close']);
    assert.ok(sidecar.stderr.includes('"class":"baileys"'), 'Baileys logs go to stderr');
    assert.equal(readFileSync(join(dir, 'creds.json'), 'utf8'), before);
    assert.equal(statSync(join(dir, 'creds.json')).mtimeMs, mtime);
  });

  test('while connecting: not_connected, bad_command, then shutdown answers ok and exits 0', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const server = await silentServer();
    t.after(server.close);
    const sidecar = startSidecar({ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: server.url, PONTE_CONNECT_TIMEOUT_MS: '60000' });
    t.after(() => sidecar.kill());
    await sidecar.waitFor((f) => f.type === 'connection' && f.state === 'connecting');

    sidecar.send({ type: 'send_text', id: 'c18', jid: '5511988887777@s.whatsapp.net', text: 'Olá' });
    assert.deepEqual(await sidecar.waitFor((f) => f.id === 'c18'),
      { type: 'result', id: 'c18', ok: false, error: { code: 'not_connected', message: 'connection is not open' } });

    sidecar.send({ type: 'send_text', id: 'c21', jid: '5511988887777', text: 'no server part' });
    sidecar.send('{"type":"send_text","id":"c22","jid":"5511988887777@s.whats\n');
    sidecar.send('this is not json and has no id\n');
    sidecar.send({ type: 'teleport', id: 'c23' });
    sidecar.send({ type: 'shutdown', id: 'c24', force: true });
    sidecar.send({ type: 'logout', id: 'c25' });
    sidecar.send({ type: 'send_text', id: 'c26', jid: '5511988887777@s.whatsapp.net', text: 'x'.repeat(1_100_000) });
    for (const id of ['c21', 'c22', 'c23', 'c24', 'c26']) {
      const result = await sidecar.waitFor((f) => f.id === id);
      assert.equal(result.ok, false, id);
      assert.equal(result.error.code, 'bad_command', id);
    }
    assert.equal((await sidecar.waitFor((f) => f.id === 'c25')).error.code, 'not_connected');
    // A bad line changes nothing: still connecting, still answering.
    assert.ok(sidecar.child.exitCode === null);

    sidecar.send({ type: 'shutdown', id: 'c20' });
    const { code, frames } = await finished(sidecar);
    assert.equal(code, 0, sidecar.stderr);
    const tail = frames.slice(-2);
    assert.deepEqual(tail, [INTENTIONAL, { type: 'result', id: 'c20', ok: true, data: {} }]);
    assert.equal(frames.filter((f) => f.type === 'result').length, 8, 'one answer per answerable command');
    assert.ok(!sidecar.stderr.includes('no server part'), 'command text stays out of the logs');
  });

  test('stdin EOF is an intentional stop: close reported, exit 0', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const server = await silentServer();
    t.after(server.close);
    const sidecar = startSidecar({ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: server.url, PONTE_CONNECT_TIMEOUT_MS: '60000' });
    t.after(() => sidecar.kill());
    await sidecar.waitFor((f) => f.state === 'connecting');
    sidecar.child.stdin.end();
    const { code, frames } = await finished(sidecar);
    assert.equal(code, 0, sidecar.stderr);
    assert.deepEqual(frames.map((f) => f.state ?? f.type), ['ready', 'connecting', 'close']);
    assert.deepEqual(frames.at(-1), INTENTIONAL);
  });

  test('SIGTERM is an intentional stop: close reported, exit 0', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const server = await silentServer();
    t.after(server.close);
    const sidecar = startSidecar({ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: server.url, PONTE_CONNECT_TIMEOUT_MS: '60000' });
    t.after(() => sidecar.kill());
    await sidecar.waitFor((f) => f.state === 'connecting');
    sidecar.child.kill('SIGTERM');
    const { code, signal, frames } = await finished(sidecar);
    assert.equal(signal, null);
    assert.equal(code, 0, sidecar.stderr);
    assert.deepEqual(frames.at(-1), INTENTIONAL);
  });

  test('an uncaught exception is a crash: non-zero, non-78 exit', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const server = await silentServer();
    t.after(server.close);
    // The preload turns SIGUSR2 into an exception thrown from an event handler.
    const preload = 'data:text/javascript,process.on("SIGUSR2",()=>{throw new Error("injected failure")})';
    const sidecar = startSidecar(
      { PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: server.url, PONTE_CONNECT_TIMEOUT_MS: '60000' },
      ['--import', preload],
    );
    t.after(() => sidecar.kill());
    await sidecar.waitFor((f) => f.state === 'connecting');
    sidecar.child.kill('SIGUSR2');
    const { code, signal, frames } = await finished(sidecar);
    assert.equal(signal, null);
    assert.notEqual(code, 0);
    assert.notEqual(code, 78);
    assert.deepEqual(frames.map((f) => f.state ?? f.type), ['ready', 'connecting']);
    assert.ok(sidecar.stderr.includes('injected failure'));
  });

  for (const [name, content] of [['empty', ''], ['not JSON', '{"noiseKey": {"private": ']]) {
    test(`creds.json ${name}: ready, fatal auth_unreadable, exit 78, file untouched`, async (t) => {
      const { dir, cleanup } = tempDir();
      t.after(cleanup);
      const path = join(dir, 'creds.json');
      writeFileSync(path, content);
      const mtime = statSync(path).mtimeMs;
      const sidecar = startSidecar({ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: `ws://127.0.0.1:${await closedPort()}` });
      t.after(() => sidecar.kill());
      const { code, frames } = await finished(sidecar);
      assert.equal(code, 78, sidecar.stderr);
      assert.deepEqual(frames.map((f) => f.type), ['ready', 'fatal']);
      assert.equal(frames[1].code, 'auth_unreadable');
      assert.match(frames[1].message, /refusing to create a new identity/);
      assert.equal(readFileSync(path, 'utf8'), content);
      assert.equal(statSync(path).mtimeMs, mtime);
      assert.deepEqual(readdirSync(dir), ['creds.json']);
    });
  }

  // Every rule of loadConfig is unit-tested in config.test.js; here, that the process obeys.
  const badConfigs = /** @type {Array<[string, Record<string, string>, RegExp]>} */ ([
    ['malformed PONTE_WA_VERSION', { PONTE_WA_VERSION: '2.3000' }, /PONTE_WA_VERSION/],
    ['missing PONTE_AUTH_DIR', { PONTE_AUTH_DIR: '' }, /PONTE_AUTH_DIR is not set/],
  ]);
  for (const [name, env, pattern] of badConfigs) {
    test(`bad config (${name}): fatal bad_config, exit 78`, async (t) => {
      const { dir, cleanup } = tempDir();
      t.after(cleanup);
      const sidecar = startSidecar({ PONTE_AUTH_DIR: dir, PONTE_WA_WEBSOCKET_URL: 'ws://127.0.0.1:9', ...env });
      t.after(() => sidecar.kill());
      const { code, frames } = await finished(sidecar);
      assert.equal(code, 78, sidecar.stderr);
      assert.deepEqual(frames.map((f) => f.type), ['ready', 'fatal']);
      assert.equal(frames[1].code, 'bad_config');
      assert.match(frames[1].message, pattern);
    });
  }
});
