import assert from 'node:assert/strict';
import { test } from 'node:test';

import { proto } from '@whiskeysockets/baileys';

import { createCommandHandler, resolveChatJid } from '../commands.js';
import { RecentIds } from '../events.js';
import { schema } from '../testing/helpers.js';

const quiet = /** @type {any} */ ({ warn() {}, info() {}, debug() {}, error() {} });

/**
 * A stand-in for the Baileys socket: records calls, answers like sendMessage does (a
 * WebMessageInfo whose timestamp is a protobuf Long).
 * @param {{fail?: Error, onSend?: (messageId: string) => void}} [options]
 */
function fakeSocket({ fail, onSend } = {}) {
  /** @type {any[]} */
  const calls = [];
  return {
    calls,
    user: { id: '5511999990000:12@s.whatsapp.net' },
    async sendMessage(/** @type {string} */ jid, /** @type {any} */ content, /** @type {any} */ options) {
      calls.push({ jid, content, options });
      onSend?.(options.messageId);
      if (fail) throw fail;
      return proto.WebMessageInfo.fromObject({
        key: { remoteJid: jid, fromMe: true, id: options.messageId },
        messageTimestamp: 1764374460,
        message: { extendedTextMessage: { text: content.text } },
      });
    },
    async logout() {
      calls.push({ logout: true });
    },
  };
}

/** @param {{sock?: any, open?: boolean, stop?: () => Promise<void>}} options */
function handlerFor({ sock = null, open = true, stop = async () => {} }) {
  const sentIds = new RecentIds();
  const handle = createCommandHandler({ socket: () => sock, isOpen: () => open, sentIds, stop, logger: quiet });
  return { handle, sentIds };
}

test('send_text: not_connected unless the socket is open', async () => {
  const { validateFrame } = await schema();
  for (const [sock, open] of [[null, true], [fakeSocket(), false]]) {
    const { handle } = handlerFor({ sock, open });
    const result = await handle({ type: 'send_text', id: 'c18', jid: '5511988887777@s.whatsapp.net', text: 'hi' });
    assert.deepEqual(result, { type: 'result', id: 'c18', ok: false, error: { code: 'not_connected', message: 'connection is not open' } });
    assert.ok(validateFrame(result));
  }
});

test('send_text: the id is generated first, registered as ours, and passed to Baileys', async () => {
  const { validateFrame } = await schema();
  /** @type {boolean | undefined} */
  let knownWhenSending;
  /** @type {RecentIds} */
  let ids;
  const sock = fakeSocket({ onSend: (messageId) => { knownWhenSending = ids.has(messageId); } });
  const { handle, sentIds } = handlerFor({ sock });
  ids = sentIds;
  const result = await handle({ type: 'send_text', id: 'c17', jid: '5511988887777@s.whatsapp.net', text: 'Olá! Como posso ajudar?' });
  assert.ok(validateFrame(result), JSON.stringify(validateFrame.errors));
  assert.equal(result.ok, true);
  const data = /** @type {any} */ (result).data;
  assert.match(data.message_id, /^3EB0[0-9A-F]{18}$/);
  assert.equal(data.jid, '5511988887777@s.whatsapp.net');
  assert.equal(data.timestamp, 1764374460);
  assert.equal(knownWhenSending, true, 'an upsert racing sendMessage must already be an echo');
  assert.deepEqual(sock.calls, [{
    jid: '5511988887777@s.whatsapp.net',
    content: { text: 'Olá! Como posso ajudar?' },
    options: { messageId: data.message_id },
  }]);
});

test('send_text: invalid_jid for addresses Baileys would mishandle; nothing is sent', async () => {
  const sock = fakeSocket();
  const { handle } = handlerFor({ sock });
  for (const jid of ['abc@s.whatsapp.net', '5511988887777:3@s.whatsapp.net', '5511_1@s.whatsapp.net', 'status@broadcast', '@lid']) {
    const result = await handle({ type: 'send_text', id: 'c1', jid, text: 'x' });
    assert.equal(!result.ok && result.error.code, 'invalid_jid', jid);
  }
  assert.equal(sock.calls.length, 0);
});

test('resolveChatJid accepts every chat kind the schema allows and maps c.us', () => {
  for (const jid of ['5511988887777@s.whatsapp.net', '123456789012345@lid', '120363025246125486@g.us',
    '5511988887777-1400000000@g.us', '1234567890@broadcast', '120363000000000000@newsletter']) {
    assert.deepEqual(resolveChatJid(jid), { jid });
  }
  assert.deepEqual(resolveChatJid('5511988887777@c.us'), { jid: '5511988887777@s.whatsapp.net' });
  assert.ok('error' in resolveChatJid('5511988887777@example.com'));
});

test('send_text: send_failed when Baileys throws', async () => {
  const { validateFrame } = await schema();
  const sock = fakeSocket({ fail: Object.assign(new Error('Connection Closed'), { output: { statusCode: 428 } }) });
  const { handle } = handlerFor({ sock });
  const result = await handle({ type: 'send_text', id: 'c2', jid: '5511988887777@s.whatsapp.net', text: 'x' });
  assert.deepEqual(result, { type: 'result', id: 'c2', ok: false, error: { code: 'send_failed', message: 'Connection Closed' } });
  assert.ok(validateFrame(result));
});

test('logout: calls sock.logout (never on shutdown) and answers {}', async () => {
  const sock = fakeSocket();
  const { handle } = handlerFor({ sock });
  assert.deepEqual(await handle({ type: 'logout', id: 'c19' }), { type: 'result', id: 'c19', ok: true, data: {} });
  assert.deepEqual(sock.calls, [{ logout: true }]);
  const closed = handlerFor({ sock: fakeSocket(), open: false });
  const refused = await closed.handle({ type: 'logout', id: 'c20' });
  assert.equal(!refused.ok && refused.error.code, 'not_connected');
});

test('shutdown: answers only after the stop completed, without logging out', async () => {
  const sock = fakeSocket();
  const order = [];
  const { handle } = handlerFor({ sock, stop: async () => { await new Promise((r) => setTimeout(r, 10)); order.push('stopped'); } });
  const result = await handle({ type: 'shutdown', id: 'c20' });
  order.push('answered');
  assert.deepEqual(result, { type: 'result', id: 'c20', ok: true, data: {} });
  assert.deepEqual(order, ['stopped', 'answered']);
  assert.deepEqual(sock.calls, []);
});
