// After a crash, the backlog is not held back by Baileys' initial-sync wait: the real sidecar
// against the WhatsApp simulator. rc14 holds every event in its buffer ("AwaitingInitialSync")
// from the end of the offline backlog until the phone's history notification, or 20 s, when the
// session has not finished a first sync (creds.accountSyncCounter 0): a sidecar killed in its
// first seconds after linking came back and delivered what arrived meanwhile 20 s late. The
// sidecar releases that hold at once; Baileys' sync itself (history, app state) is untouched.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BufferJSON } from '@whiskeysockets/baileys';

import { PRELOAD, startSim } from '../../tests/simulator/harness/helpers.mjs';
import { startSidecar, tempDir } from '../testing/helpers.js';

const ME = '5511999990041';
const ALICE = '5511988880041';
const BACKLOG = 30;
const TIMEOUT_LOG = 'Timeout in AwaitingInitialSync';

describe('initial-sync hold after a crash', () => {
  /** @type {Awaited<ReturnType<typeof startSim>>} */
  let sim;
  /** @type {ReturnType<typeof tempDir>} */
  let auth;
  /** @type {ReturnType<typeof startSidecar>[]} */
  const started = [];

  const launch = () => {
    const sidecar = startSidecar(
      { PONTE_AUTH_DIR: auth.dir, PONTE_WA_WEBSOCKET_URL: sim.url, PONTE_LOG_LEVEL: 'warn' },
      ['--import', PRELOAD],
    );
    started.push(sidecar);
    return sidecar;
  };

  const connected = async () => {
    const state = /** @type {any} */ (await sim.get('/admin/state'));
    return state.connections.some((/** @type {any} */ c) => c.stage === 'open' && c.phone === ME);
  };

  before(async () => {
    auth = tempDir();
    sim = await startSim();
    // No history notification from the phone: the first sync stays unfinished for 20 s, the
    // window a crash right after linking falls into.
    await sim.post('/admin/config', { initial_sync: false });
    await sim.post('/admin/contacts', { phone: ALICE, push_name: 'Alice' });
  });
  after(async () => {
    for (const sidecar of started) sidecar.kill();
    await sim?.stop();
    auth?.cleanup();
  });

  test('the backlog arrives before Baileys would have let it go', async (t) => {
    const first = launch();
    const qr = await first.waitFor((f) => f.type === 'qr');
    await sim.post('/admin/scan-qr', { qr: qr.qr, phone: ME });
    await first.waitFor((f) => f.type === 'connection' && f.state === 'open');
    first.kill(); // kill -9 in the first seconds after linking
    await first.exited;
    const creds = JSON.parse(readFileSync(join(auth.dir, 'creds.json'), 'utf8'), BufferJSON.reviver);
    assert.ok(!(creds.accountSyncCounter > 0), 'the first sync must still be unfinished');
    for (let i = 0; i < 50 && (await connected()); i += 1) await new Promise((r) => setTimeout(r, 20));

    // Written while the number is offline: the server delivers it as the login's backlog.
    const ids = [];
    for (let i = 0; i < BACKLOG; i += 1) {
      const sent = await sim.post('/admin/send-text', { from_phone: ALICE, text: `offline ${i}` });
      ids.push(sent.id);
    }
    const second = launch();
    const open = await second.waitFor((f) => f.type === 'connection' && f.state === 'open');
    const openedAt = Date.now();
    for (const id of ids) {
      await second.waitFor((f) => f.type === 'message' && f.key?.id === id, 40_000);
    }
    t.diagnostic(`open to the last of ${BACKLOG} backlog messages: ${Date.now() - openedAt} ms`);
    assert.ok(open);
    // The mechanism, not a stopwatch: every message came before Baileys' 20 s timeout fired.
    assert.ok(!second.stderr.includes(TIMEOUT_LOG), 'the backlog waited for the initial-sync timeout');
  });
});
