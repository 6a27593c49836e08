import assert from 'node:assert/strict';
import { test } from 'node:test';

import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { generateWAMessageFromContent, proto } from '@whiskeysockets/baileys';

import { createCommandHandler, mediaContent, quotedMessage, resolveChatJid } from '../commands.js';
import { RecentIds } from '../events.js';
import { NumberCheck, SentMessages } from '../outgoing.js';
import { schema, tempDir } from '../testing/helpers.js';

const quiet = /** @type {any} */ ({ warn() {}, info() {}, debug() {}, error() {} });

/**
 * A stand-in for the Baileys socket: records calls, answers like sendMessage does (a
 * WebMessageInfo whose timestamp is a protobuf Long), reads media streams to the end.
 * @param {{fail?: Error, onSend?: (messageId: string) => void, registered?: Record<string, string>, lookupFails?: boolean}} [options]
 *   registered: phone JIDs onWhatsApp knows -> the JID it answers with (default: every JID as itself)
 */
function fakeSocket({ fail, onSend, registered, lookupFails } = {}) {
  /** @type {any[]} */
  const calls = [];
  return {
    calls,
    user: { id: '5511999990000:12@s.whatsapp.net' },
    async sendMessage(/** @type {string} */ jid, /** @type {any} */ content, /** @type {any} */ options) {
      /** @type {Record<string, unknown>} */
      const recorded = { ...content };
      for (const kind of ['image', 'video', 'audio', 'document', 'sticker']) {
        if (content[kind]?.stream) {
          const chunks = [];
          for await (const chunk of content[kind].stream) chunks.push(chunk);
          recorded[kind] = Buffer.concat(chunks).toString();
        }
      }
      calls.push({ jid, content: recorded, options });
      onSend?.(options.messageId);
      if (fail) throw fail;
      return proto.WebMessageInfo.fromObject({
        key: { remoteJid: jid, fromMe: true, id: options.messageId },
        messageTimestamp: 1764374460,
        message: content.text ? { extendedTextMessage: { text: content.text } } : { protocolMessage: { type: 0 } },
      });
    },
    async onWhatsApp(/** @type {string} */ jid) {
      calls.push({ onWhatsApp: jid });
      if (lookupFails) throw new Error('Timed Out');
      const answer = registered ? registered[jid] : jid;
      return answer ? [{ jid: answer, exists: true }] : [];
    },
    async readMessages(/** @type {any[]} */ keys) {
      calls.push({ readMessages: keys });
      if (fail) throw fail;
    },
    async logout() {
      calls.push({ logout: true });
    },
  };
}

/** @param {{sock?: any, open?: boolean, stop?: () => Promise<void>, mediaDir?: string | null}} options */
function handlerFor({ sock = null, open = true, stop = async () => {}, mediaDir = null }) {
  const sentIds = new RecentIds();
  const sent = new SentMessages();
  const numbers = new NumberCheck({ lookup: (jid) => sock.onWhatsApp(jid), timeoutMs: 200 });
  const handle = createCommandHandler({ socket: () => sock, isOpen: () => open, sentIds, sent, numbers, mediaDir, stop, logger: quiet });
  return { handle, sentIds, sent };
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
  assert.deepEqual(sock.calls, [{ onWhatsApp: '5511988887777@s.whatsapp.net' }, {
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

test('quotedMessage: what Baileys builds from it is a reply to that message, by whoever wrote it', () => {
  const me = '5511999990000:12@s.whatsapp.net';
  const alice = '5511988887777@s.whatsapp.net';
  /** @param {string} jid @param {any} quote */
  const contextOf = (jid, quote) => {
    const msg = generateWAMessageFromContent(jid, proto.Message.fromObject({ extendedTextMessage: { text: 'resposta' } }), {
      userJid: me, quoted: /** @type {any} */ (quotedMessage(jid, quote)),
    });
    return /** @type {any} */ (msg.message?.extendedTextMessage?.contextInfo);
  };
  // The customer's message in a 1:1 chat: the author is the chat.
  let context = contextOf(alice, { id: '3EB0C1', from_me: false, participant: null, text: 'Quando sai?' });
  assert.equal(context.stanzaId, '3EB0C1');
  assert.equal(context.participant, alice);
  assert.equal(context.quotedMessage.conversation, 'Quando sai?');
  assert.equal(context.remoteJid, undefined, 'same chat: no remoteJid');
  // Our own message: the author is this account, without the device.
  context = contextOf(alice, { id: '3EB0AA', from_me: true, participant: null, text: null });
  assert.equal(context.participant, '5511999990000@s.whatsapp.net');
  assert.equal(context.quotedMessage.conversation, '');
  // A group member's message: the participant given.
  const group = '120363025246125486@g.us';
  context = contextOf(group, { id: '3EB0G1', from_me: false, participant: '5511977776666@s.whatsapp.net', text: 'oi' });
  assert.equal(context.participant, '5511977776666@s.whatsapp.net');
  assert.equal(context.remoteJid, undefined);
  // A LID chat.
  context = contextOf('123456789012345@lid', { id: '3EB0L1', from_me: false, text: 'oi' });
  assert.equal(context.participant, '123456789012345@lid');
});

test('send_text with a quote passes Baileys the quoted message', async () => {
  const sock = fakeSocket();
  const { handle } = handlerFor({ sock });
  const result = await handle({
    type: 'send_text', id: 'c30', jid: '5511988887777@s.whatsapp.net', text: 'Sai hoje.',
    quote: { id: '3EB0C1A2B3C4D5E6F7A8', from_me: false, participant: null, text: 'Quando sai meu pedido?' },
  });
  assert.equal(result.ok, true);
  const send = sock.calls.find((c) => c.content);
  assert.deepEqual(send.options.quoted, {
    key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id: '3EB0C1A2B3C4D5E6F7A8' },
    message: { conversation: 'Quando sai meu pedido?' },
  });
});

test('not_on_whatsapp: no send, the answer cached; groups and LIDs are not looked up; a failed lookup still sends', async () => {
  const { validateFrame } = await schema();
  const sock = fakeSocket({ registered: { '5511988887777@s.whatsapp.net': '5511988887777@s.whatsapp.net' } });
  const { handle } = handlerFor({ sock });
  const nobody = await handle({ type: 'send_text', id: 'c35', jid: '5511900000000@s.whatsapp.net', text: 'alô' });
  assert.deepEqual(nobody, { type: 'result', id: 'c35', ok: false, error: { code: 'not_on_whatsapp', message: '5511900000000 is not on WhatsApp' } });
  assert.ok(validateFrame(nobody));
  const again = await handle({ type: 'send_text', id: 'c36', jid: '5511900000000@c.us', text: 'alô' });
  assert.equal(!again.ok && again.error.code, 'not_on_whatsapp');
  assert.deepEqual(sock.calls, [{ onWhatsApp: '5511900000000@s.whatsapp.net' }], 'asked once, nothing sent');

  for (const jid of ['5511988887777@s.whatsapp.net', '5511988887777@s.whatsapp.net', '120363025246125486@g.us', '123456789012345@lid']) {
    const result = await handle({ type: 'send_text', id: 'c37', jid, text: 'oi' });
    assert.equal(result.ok, true, jid);
  }
  assert.deepEqual(sock.calls.filter((c) => c.onWhatsApp).map((c) => c.onWhatsApp), ['5511900000000@s.whatsapp.net', '5511988887777@s.whatsapp.net']);
  assert.deepEqual(sock.calls.filter((c) => c.content).map((c) => c.jid),
    ['5511988887777@s.whatsapp.net', '5511988887777@s.whatsapp.net', '120363025246125486@g.us', '123456789012345@lid']);

  const flaky = fakeSocket({ lookupFails: true });
  const sent = await handlerFor({ sock: flaky }).handle({ type: 'send_text', id: 'c38', jid: '5511977776666@s.whatsapp.net', text: 'oi' });
  assert.equal(sent.ok, true);
  assert.equal(flaky.calls.filter((c) => c.content).length, 1);
});

test('send: to the JID WhatsApp registered the number under, which the result names', async () => {
  const sock = fakeSocket({ registered: { '5511988887777@s.whatsapp.net': '551188887777@s.whatsapp.net' } });
  const { handle } = handlerFor({ sock });
  const result = await handle({
    type: 'send_text', id: 'c39', jid: '5511988887777@s.whatsapp.net', text: 'oi', quote: { id: 'Q', from_me: false },
  });
  assert.equal(result.ok && result.data.jid, '551188887777@s.whatsapp.net');
  const send = sock.calls.find((c) => c.content);
  assert.equal(send.jid, '551188887777@s.whatsapp.net');
  assert.equal(send.options.quoted.key.remoteJid, '551188887777@s.whatsapp.net', 'the quote names the chat sent to');
  // Its revoke must go the same way, or it reaches nobody.
  const revoked = await handle({ type: 'revoke', id: 'c40', jid: '5511988887777@s.whatsapp.net', message_id: 'M1' });
  assert.deepEqual(revoked.ok && revoked.data, { message_id: 'M1' });
  assert.equal(sock.calls.at(-1).jid, '551188887777@s.whatsapp.net');
  assert.deepEqual(sock.calls.at(-1).content, { delete: { remoteJid: '551188887777@s.whatsapp.net', fromMe: true, id: 'M1' } });
  // And the read receipts for what the customer wrote from there.
  await handle({ type: 'mark_read', id: 'c41', jid: '5511988887777@s.whatsapp.net', message_ids: ['R1'] });
  assert.deepEqual(sock.calls.at(-1).readMessages, [{ remoteJid: '551188887777@s.whatsapp.net', id: 'R1', fromMe: false }]);
  assert.equal(sock.calls.filter((c) => c.onWhatsApp).length, 1, 'asked once');
});

test('sends are kept for getMessage; revoke sends a delete of our message and is an echo too', async () => {
  const sock = fakeSocket();
  const { handle, sent, sentIds } = handlerFor({ sock });
  const text = await handle({ type: 'send_text', id: 'c17', jid: '5511988887777@s.whatsapp.net', text: 'errado' });
  assert.equal(text.ok, true);
  const id = /** @type {any} */ (text).data.message_id;
  assert.equal(sent.get(id)?.extendedTextMessage?.text, 'errado');

  const revoked = await handle({ type: 'revoke', id: 'c33', jid: '5511988887777@s.whatsapp.net', message_id: id });
  assert.deepEqual(revoked, { type: 'result', id: 'c33', ok: true, data: { message_id: id } });
  const call = sock.calls.at(-1);
  assert.deepEqual(call.content, { delete: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: true, id } });
  assert.ok(sentIds.has(call.options.messageId), 'the revoke upsert is an echo');
  assert.ok(sent.get(call.options.messageId), 'and can be re-sent on a retry receipt');
  assert.equal(sock.calls.filter((c) => c.onWhatsApp).length, 1, 'the cached answer serves the revoke');

  const failing = handlerFor({ sock: fakeSocket({ fail: new Error('Connection Closed') }) });
  const failed = await failing.handle({ type: 'revoke', id: 'c34', jid: '5511988887777@s.whatsapp.net', message_id: id });
  assert.equal(!failed.ok && failed.error.code, 'send_failed');
  const closed = await handlerFor({ sock, open: false }).handle({ type: 'revoke', id: 'c35', jid: '5511988887777@s.whatsapp.net', message_id: id });
  assert.equal(!closed.ok && closed.error.code, 'not_connected');
});

test('mark_read: read receipts for the customer messages, with the group participant', async () => {
  const sock = fakeSocket();
  const { handle } = handlerFor({ sock });
  assert.deepEqual(await handle({ type: 'mark_read', id: 'c34', jid: '5511988887777@s.whatsapp.net', message_ids: ['A', 'B'] }),
    { type: 'result', id: 'c34', ok: true, data: {} });
  assert.deepEqual(sock.calls.at(-1).readMessages, [
    { remoteJid: '5511988887777@s.whatsapp.net', id: 'A', fromMe: false },
    { remoteJid: '5511988887777@s.whatsapp.net', id: 'B', fromMe: false },
  ]);
  await handle({ type: 'mark_read', id: 'c35', jid: '120363025246125486@g.us', message_ids: ['G'], participant: '5511977776666@s.whatsapp.net' });
  assert.deepEqual(sock.calls.at(-1).readMessages, [
    { remoteJid: '120363025246125486@g.us', id: 'G', fromMe: false, participant: '5511977776666@s.whatsapp.net' },
  ]);
  assert.deepEqual(sock.calls.filter((c) => c.onWhatsApp).map((c) => c.onWhatsApp), ['5511988887777@s.whatsapp.net'], 'groups are not looked up');
  const failed = await handlerFor({ sock: fakeSocket({ fail: new Error('Timed Out') }) })
    .handle({ type: 'mark_read', id: 'c36', jid: '5511988887777@s.whatsapp.net', message_ids: ['A'] });
  assert.deepEqual(failed, { type: 'result', id: 'c36', ok: false, error: { code: 'send_failed', message: 'Timed Out' } });
});

test('send_media: each kind as Baileys content from the opened file; bad_media sends nothing', async (t) => {
  const { validateFrame } = await schema();
  const spool = tempDir('ponte-spool-');
  const outside = tempDir('ponte-outside-');
  t.after(() => { spool.cleanup(); outside.cleanup(); });
  const file = join(spool.dir, 'out-5f2c');
  writeFileSync(file, 'bytes');
  const sock = fakeSocket();
  const { handle, sentIds } = handlerFor({ sock, mediaDir: spool.dir });
  const jid = '5511988887777@s.whatsapp.net';
  const cases = [
    [{ kind: 'image', mimetype: 'image/jpeg', caption: 'foto' }, { image: 'bytes', mimetype: 'image/jpeg', caption: 'foto' }],
    [{ kind: 'video', mimetype: 'video/mp4', caption: null }, { video: 'bytes', mimetype: 'video/mp4' }],
    [{ kind: 'document', mimetype: 'application/pdf', file_name: 'boleto.pdf', caption: 'Segue' },
      { document: 'bytes', mimetype: 'application/pdf', fileName: 'boleto.pdf', caption: 'Segue' }],
    [{ kind: 'document', mimetype: 'application/pdf' }, { document: 'bytes', mimetype: 'application/pdf', fileName: 'out-5f2c' }],
    [{ kind: 'audio', mimetype: 'audio/ogg; codecs=opus', ptt: true, caption: 'no' }, { audio: 'bytes', mimetype: 'audio/ogg; codecs=opus', ptt: true }],
    [{ kind: 'audio', mimetype: 'audio/mpeg' }, { audio: 'bytes', mimetype: 'audio/mpeg', ptt: false }],
    [{ kind: 'sticker', mimetype: 'image/webp', caption: 'no' }, { sticker: 'bytes', mimetype: 'image/webp' }],
  ];
  for (const [command, content] of cases) {
    const result = await handle(/** @type {any} */ ({ type: 'send_media', id: 'm1', jid, path: file, ...command }));
    assert.ok(validateFrame(result));
    assert.equal(result.ok, true, JSON.stringify(result));
    const call = sock.calls.at(-1);
    assert.deepEqual(call.content, content, JSON.stringify(command));
    assert.ok(sentIds.has(call.options.messageId), 'echo tagged');
  }
  const quoted = await handle({
    type: 'send_media', id: 'm2', jid, path: file, kind: 'image', mimetype: 'image/png', quote: { id: 'Q1', from_me: true },
  });
  assert.equal(quoted.ok, true);
  assert.equal(sock.calls.at(-1).options.quoted.key.id, 'Q1');

  const sends = sock.calls.filter((c) => c.content).length;
  const secret = join(outside.dir, 'secret');
  writeFileSync(secret, 'x');
  symlinkSync(secret, join(spool.dir, 'link'));
  mkdirSync(join(spool.dir, 'dir'));
  for (const path of [secret, join(spool.dir, 'link'), join(spool.dir, 'missing'), join(spool.dir, 'dir'), 'out-5f2c']) {
    const result = await handle({ type: 'send_media', id: 'm3', jid, path, kind: 'document', mimetype: 'text/plain' });
    assert.equal(!result.ok && result.error.code, 'bad_media', path);
    assert.ok(validateFrame(result));
  }
  const noSpool = await handlerFor({ sock }).handle({ type: 'send_media', id: 'm4', jid, path: file, kind: 'image', mimetype: 'image/png' });
  assert.equal(!noSpool.ok && noSpool.error.code, 'bad_media');
  assert.equal(sock.calls.filter((c) => c.content).length, sends, 'nothing sent');

  // Not on WhatsApp: checked after the file, nothing sent either.
  const unknown = fakeSocket({ registered: {} });
  const refused = await handlerFor({ sock: unknown, mediaDir: spool.dir }).handle({ type: 'send_media', id: 'm5', jid, path: file, kind: 'image', mimetype: 'image/png' });
  assert.equal(!refused.ok && refused.error.code, 'not_on_whatsapp');
  assert.equal(unknown.calls.filter((c) => c.content).length, 0);
});

test('mediaContent: captions only where WhatsApp shows them', () => {
  const stream = /** @type {any} */ ({});
  /** @param {any} command */
  const content = (command) => mediaContent({ type: 'send_media', id: 'x', jid: 'j', path: '/s/f.ogg', mimetype: 'm', ...command }, stream, '/s/f.ogg');
  assert.deepEqual(content({ kind: 'sticker', caption: 'c' }), { sticker: { stream }, mimetype: 'm' });
  assert.deepEqual(content({ kind: 'audio', caption: 'c' }), { audio: { stream }, mimetype: 'm', ptt: false });
  assert.deepEqual(content({ kind: 'video', caption: '' }), { video: { stream }, mimetype: 'm' });
  assert.deepEqual(content({ kind: 'document', file_name: '' }), { document: { stream }, mimetype: 'm', fileName: 'f.ogg' });
});

test('profile_picture: the URL, or null when there is none or it is hidden', async () => {
  const url = 'https://pps.whatsapp.net/v/t61/123_n.jpg?oh=abc&oe=6790';
  const sock = { ...fakeSocket(), profilePictureUrl: async () => url };
  const { handle } = handlerFor({ sock });
  assert.deepEqual(await handle({ type: 'profile_picture', id: 'c40', jid: '5511988887777@s.whatsapp.net' }),
    { type: 'result', id: 'c40', ok: true, data: { url } });
  const hidden = { ...fakeSocket(), profilePictureUrl: async () => { throw new Error('item-not-found'); } };
  assert.deepEqual(await handlerFor({ sock: hidden }).handle({ type: 'profile_picture', id: 'c41', jid: '5511988887777@s.whatsapp.net' }),
    { type: 'result', id: 'c41', ok: true, data: { url: null } });
  const closed = await handlerFor({ sock, open: false }).handle({ type: 'profile_picture', id: 'c42', jid: '5511988887777@s.whatsapp.net' });
  assert.equal(!closed.ok && closed.error.code, 'not_connected');
});
