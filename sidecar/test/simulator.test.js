// The real sidecar against the project's WhatsApp Web simulator (tests/simulator), loopback only:
// QR pairing through the 515 reconnect, incoming and outgoing text with echo flags, a restart on
// the saved session, and logout. This is where main.js's lifecycle is exercised end to end.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BufferJSON } from '@whiskeysockets/baileys';

import { PRELOAD, startSim } from '../../tests/simulator/harness/helpers.mjs';
import { framesOf, schema, startSidecar, tempDir } from '../testing/helpers.js';

const ME = '5511999990007';
const ALICE = '5511988887777';
const ALICE_JID = `${ALICE}@s.whatsapp.net`;

describe('sidecar against the WhatsApp simulator', () => {
  /** @type {Awaited<ReturnType<typeof startSim>>} */
  let sim;
  /** @type {ReturnType<typeof tempDir>} */
  let auth;
  /** @type {ReturnType<typeof startSidecar>[]} */
  const started = [];

  /** @param {string} url */
  const launch = (url) => {
    const sidecar = startSidecar(
      { PONTE_AUTH_DIR: auth.dir, PONTE_WA_WEBSOCKET_URL: url, PONTE_BROWSER_NAME: 'Ponte' },
      ['--import', PRELOAD],
    );
    started.push(sidecar);
    return sidecar;
  };

  /** @param {ReturnType<typeof startSidecar>} sidecar */
  const finished = async (sidecar) => {
    const { validateFrame } = await schema();
    const { code } = await sidecar.exited;
    return { code, frames: framesOf(sidecar.stdout, validateFrame) };
  };

  before(async () => {
    auth = tempDir();
    sim = await startSim();
    await sim.post('/admin/contacts', { phone: ALICE, push_name: 'Alice' });
  });
  after(async () => {
    for (const sidecar of started) sidecar.kill();
    await sim?.stop();
    auth?.cleanup();
  });

  test('pairing: qr, scan, 515 with reconnect, open with me; creds on disk', async (t) => {
    const sidecar = launch(sim.url);
    const t0 = Date.now();
    const qr = await sidecar.waitFor((f) => f.type === 'qr');
    t.diagnostic(`spawn to first qr ${Date.now() - t0} ms`);
    assert.match(qr.qr, /,/);
    await sim.post('/admin/scan-qr', { qr: qr.qr, phone: ME });
    const open = await sidecar.waitFor((f) => f.type === 'connection' && f.state === 'open');
    t.diagnostic(`scan to open ${Date.now() - t0} ms after spawn`);

    const states = sidecar.frames.filter((f) => f.type === 'connection');
    const restart = states.find((f) => f.state === 'close');
    assert.deepEqual(restart, {
      type: 'connection', state: 'close', status_code: 515, reason: 'restartRequired',
      message: restart.message, will_reconnect: true,
    });
    assert.ok(states.some((f) => f.state === 'connecting' && f.is_new_login === true), JSON.stringify(states));
    // The reconnect happened in the same process: connecting again after the 515, then open.
    const afterRestart = states.slice(states.indexOf(restart) + 1).map((f) => f.state);
    assert.deepEqual(afterRestart, ['connecting', 'open']);
    assert.match(open.me.id, new RegExp(`^${ME}:\\d+@s\\.whatsapp\\.net$`));
    assert.match(open.me.lid ?? '', /@lid$/);

    const creds = JSON.parse(readFileSync(join(auth.dir, 'creds.json'), 'utf8'), BufferJSON.reviver);
    assert.equal(creds.me.id, open.me.id);
    assert.ok(Buffer.isBuffer(creds.noiseKey.private));
  });

  test('incoming text is a notify message frame; send_text answers and echoes', async () => {
    const sidecar = started[0];
    const incoming = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'Oi, tudo bem?', addressing: 'pn' });
    const frame = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === incoming.id);
    assert.equal(frame.upsert, 'notify');
    assert.equal(frame.content_type, 'conversation');
    assert.equal(frame.echo, false);
    assert.equal(frame.key.remoteJid, ALICE_JID);
    assert.equal(frame.key.fromMe, false);
    assert.equal(frame.message.message.conversation, 'Oi, tudo bem?');
    assert.equal(typeof frame.message.messageTimestamp, 'number');

    sidecar.send({ type: 'send_text', id: 'c17', jid: ALICE_JID, text: 'Olá! Como posso ajudar?' });
    const result = await sidecar.waitFor((f) => f.type === 'result' && f.id === 'c17');
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.data.jid, ALICE_JID);
    assert.equal(typeof result.data.timestamp, 'number');
    const echo = await sidecar.waitFor((f) => f.type === 'message' && f.key.id === result.data.message_id);
    assert.equal(echo.echo, true);
    assert.equal(echo.key.fromMe, true);
    assert.equal(echo.content_type, 'extendedTextMessage');
    assert.equal(echo.message.message.extendedTextMessage.text, 'Olá! Como posso ajudar?');

    // The contact really got it (decrypted with the Signal session the sidecar stored).
    const deadline = Date.now() + 10_000;
    /** @type {any[]} */
    let received = [];
    while (Date.now() < deadline) {
      received = await sim.get(`/admin/received?phone=${ALICE}`);
      if (received.some((m) => m.id === result.data.message_id)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(received.find((m) => m.id === result.data.message_id)?.text, 'Olá! Como posso ajudar?');
  });

  test('shutdown keeps the link: a new process logs in on the saved session, no QR', async () => {
    const first = started[0];
    first.send({ type: 'shutdown', id: 'c20' });
    const stopped = await finished(first);
    assert.equal(stopped.code, 0, first.stderr);
    assert.deepEqual(stopped.frames.slice(-2).map((f) => f.reason ?? f.type), ['intentional', 'result']);
    assert.ok(existsSync(join(auth.dir, 'creds.json')));

    const second = launch(sim.url);
    const open = await second.waitFor((f) => f.type === 'connection' && f.state === 'open');
    assert.ok(!second.frames.some((f) => f.type === 'qr'));
    assert.equal(open.me.id, stopped.frames.find((f) => f.state === 'open').me.id);
    // The stored Signal session still decrypts.
    const incoming = await sim.post('/admin/send-text', { from_phone: ALICE, text: 'de novo', addressing: 'pn' });
    const frame = await second.waitFor((f) => f.type === 'message' && f.key.id === incoming.id);
    assert.equal(frame.message.message.conversation, 'de novo');
  });

  test('logout: result ok, close 401 loggedOut, exit 0', async () => {
    const second = started[1];
    second.send({ type: 'logout', id: 'c19' });
    const { code, frames } = await finished(second);
    assert.equal(code, 0, second.stderr);
    assert.deepEqual(frames.find((f) => f.type === 'result' && f.id === 'c19'), { type: 'result', id: 'c19', ok: true, data: {} });
    const close = frames.filter((f) => f.type === 'connection').at(-1);
    assert.equal(close.state, 'close');
    assert.equal(close.status_code, 401);
    assert.equal(close.reason, 'loggedOut');
    assert.equal(close.will_reconnect, false);
  });
});
