import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { ROOT } from '../testing/helpers.js';

/**
 * Runs an ES module snippet in a fresh node that imported console.js first, like main.js does.
 * @param {string} body
 * @param {Record<string, string>} [env]
 */
function runWithConsole(body, env = {}) {
  const source = `import { claimStdout } from './sidecar/console.js';\n${body}\n`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(run.status, 0, run.stderr);
  return run;
}

test('console output of every kind goes to stderr, never stdout', () => {
  const run = runWithConsole(`
    console.log('plain log');
    console.info('plain info');
    console.debug('plain debug');
    console.warn('plain warn');
    console.error(new Error('an error'));
    console.dir({ dir: 1 });
    console.table([{ a: 1 }]);
    console.trace('a trace');
    process.stdout.write('a direct stdout write\\n');
    void claimStdout;
  `, { PONTE_LOG_LEVEL: 'debug' });
  assert.equal(run.stdout, '');
  for (const text of ['plain log', 'plain info', 'plain debug', 'plain warn', 'an error', 'a trace', 'a direct stdout write']) {
    assert.ok(run.stderr.includes(text), text);
  }
});

test("libsignal's session dumps (private keys) are dropped, not just moved", () => {
  // What libsignal/src/session_record.js prints: the whole SessionEntry, ratchet keys included.
  const run = runWithConsole(`
    class SessionEntry { constructor() { this.currentRatchet = { ephemeralKeyPair: { privKey: Buffer.from('SECRETKEYMATERIAL') } }; } }
    console.info('Opening session:', new SessionEntry());
    console.info('Closing session:', new SessionEntry());
    console.info('Removing old closed session:', new SessionEntry());
    console.warn('Session already closed', new SessionEntry());
    console.warn('Closing open session in favor of incoming prekey bundle');
    console.info('some other line', new SessionEntry());
  `, { PONTE_LOG_LEVEL: 'trace' });
  assert.equal(run.stdout, '');
  assert.ok(!run.stderr.includes('Opening session'));
  assert.ok(!run.stderr.includes('Closing session'));
  assert.ok(!run.stderr.includes('SECRETKEYMATERIAL'));
  assert.ok(!run.stderr.includes('privKey'));
  // Other lines stay, with objects summarised by class name only.
  assert.ok(run.stderr.includes('Closing open session in favor of incoming prekey bundle'));
  assert.ok(run.stderr.includes('some other line [SessionEntry]'));
});

test('stderr lines are JSON in pino shape and respect PONTE_LOG_LEVEL (default warn)', () => {
  const run = runWithConsole(`
    console.info('quiet info');
    console.warn('loud warn');
  `);
  const lines = run.stderr.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(lines.map((l) => [l.level, l.msg, l.src]), [[40, 'loud warn', 'console']]);
});

test('the claimed writer is the only way onto stdout', () => {
  const run = runWithConsole(`
    const write = claimStdout();
    console.log('not a frame');
    write('{"type":"qr","qr":"x"}\\n');
    process.stdout.write('not a frame either\\n');
    let again = 'no';
    try { claimStdout(); } catch { again = 'refused'; }
    console.warn(again);
  `);
  assert.equal(run.stdout, '{"type":"qr","qr":"x"}\n');
  assert.ok(run.stderr.includes('refused'));
});
