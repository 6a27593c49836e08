import assert from 'node:assert/strict';
import { test } from 'node:test';

import { proto } from '@whiskeysockets/baileys';

import {
  closeFrame, closeReason, connectionUpdateFrames, disconnectInfo, INTENTIONAL_CLOSE, LidMappings, lidMappingFrame,
  lidMappingsOfKey, lidMappingsOfKeyWrite, meFromUser, messageEntries, messageFrames, observeKeyWrites, RecentIds,
  statusFrameOfUpsert, statusFramesOfUpdates, statusName,
} from '../events.js';
import { schema } from '../testing/helpers.js';

test('close reasons follow the table in docs/protocol.md', () => {
  const table = {
    400: 'badCertificate', 401: 'loggedOut', 403: 'forbidden', 405: 'versionRejected', 408: 'connectionLost',
    411: 'multideviceMismatch', 428: 'connectionClosed', 440: 'connectionReplaced', 500: 'badSession',
    503: 'unavailableService', 515: 'restartRequired',
  };
  for (const [code, reason] of Object.entries(table)) assert.equal(closeReason(Number(code), 'x'), reason);
  assert.equal(closeReason(408, 'QR refs attempts ended'), 'qrRefsExhausted');
  assert.equal(closeReason(408, 'WebSocket Error (connect ECONNREFUSED 127.0.0.1:9)'), 'connectionLost');
  assert.equal(closeReason(418, 'x'), 'unknown');
  assert.equal(closeReason(null, null), 'unknown');
});

test('disconnectInfo reads Baileys Boom errors and tolerates anything else', () => {
  // Shaped like @hapi/boom's Boom (Baileys' dependency, not ours).
  const boom = Object.assign(new Error('Stream Errored (restart required)'), { isBoom: true, output: { statusCode: 515 } });
  assert.deepEqual(disconnectInfo(boom),
    { statusCode: 515, message: 'Stream Errored (restart required)' });
  assert.deepEqual(disconnectInfo(undefined), { statusCode: null, message: null });
  assert.deepEqual(disconnectInfo(new Error('plain')), { statusCode: null, message: 'plain' });
});

test('close frames validate, 515 is the only reconnect', async () => {
  const { validateFrame } = await schema();
  const restart = closeFrame(515, 'Stream Errored (restart required)', true);
  assert.deepEqual(restart, {
    type: 'connection', state: 'close', status_code: 515, reason: 'restartRequired',
    message: 'Stream Errored (restart required)', will_reconnect: true,
  });
  for (const frame of [restart, closeFrame(408, 'QR refs attempts ended', false), closeFrame(null, null, false), INTENTIONAL_CLOSE]) {
    assert.ok(validateFrame(frame), JSON.stringify(validateFrame.errors));
  }
});

test('connection.update: connecting, qr, scan, open', async () => {
  const { validateFrame } = await schema();
  const me = meFromUser({ id: '5511999990000:12@s.whatsapp.net', lid: '123456789012345:12@lid', name: 'Loja' });
  const cases = [
    [{ connection: 'connecting', receivedPendingNotifications: false, qr: undefined }, 'close', null,
      [{ type: 'connection', state: 'connecting' }]],
    [{ qr: '2@ref,noise,identity,adv,1' }, 'connecting', null, [{ type: 'qr', qr: '2@ref,noise,identity,adv,1' }]],
    [{ isNewLogin: true, qr: undefined }, 'connecting', null,
      [{ type: 'connection', state: 'connecting', is_new_login: true }]],
    [{ connection: 'open' }, 'connecting', me, [{ type: 'connection', state: 'open', me }]],
    [{ receivedPendingNotifications: true }, 'open', null, []],
  ];
  for (const [update, state, user, expected] of cases) {
    const frames = connectionUpdateFrames(/** @type {any} */ (update), /** @type {any} */ (state), /** @type {any} */ (user));
    assert.deepEqual(frames, expected);
    for (const frame of frames) assert.ok(validateFrame(frame), JSON.stringify(validateFrame.errors));
  }
  assert.deepEqual(meFromUser({ id: '5511999990000:12@s.whatsapp.net' }), { id: '5511999990000:12@s.whatsapp.net', lid: null, name: null });
  assert.equal(meFromUser(undefined), null);
});

test('messages.upsert: one valid frame per message, in order, echo for own sends only', async () => {
  const { validateFrame } = await schema();
  const sent = new RecentIds();
  sent.add('3EB0AA11BB22CC33DD44');
  const own = proto.WebMessageInfo.fromObject({
    key: { remoteJid: '123456789012345@lid', fromMe: true, id: '3EB0AA11BB22CC33DD44', remoteJidAlt: '5511988887777@s.whatsapp.net', addressingMode: 'lid' },
    messageTimestamp: 1764374460,
    status: 2,
    message: { extendedTextMessage: { text: 'Olá!' }, messageContextInfo: { messageSecret: Buffer.alloc(32, 171) } },
  });
  // proto.MessageKey has no remoteJidAlt/addressingMode (Baileys adds them to plain key objects).
  own.key = { ...own.key, remoteJidAlt: '5511988887777@s.whatsapp.net', addressingMode: 'lid' };
  const fromPhone = {
    key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: true, id: '3EB0PHONE' },
    messageTimestamp: 1764374461,
    message: { conversation: 'sent from the phone' },
  };
  const incoming = {
    key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id: '3EB0C1A2B3C4D5E6F7A8' },
    messageTimestamp: 1764374400,
    pushName: 'Maria',
    message: proto.Message.decode(proto.Message.encode({ conversation: 'Oi, tudo bem?' }).finish()),
  };
  const stub = { key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id: '3EB0FFEE' }, messageStubType: 2, messageTimestamp: 1764374470 };
  const ephemeral = {
    key: { remoteJid: '120363025246125486@g.us', fromMe: false, id: '3EB0EPH', participant: '123@lid', participantAlt: '5511@s.whatsapp.net' },
    message: { ephemeralMessage: { message: { imageMessage: { mimetype: 'image/jpeg', fileLength: 1234, mediaKey: Buffer.alloc(32, 1) } } } },
  };

  const { frames, skipped } = messageFrames({ type: 'append', messages: [own, fromPhone, incoming, stub, ephemeral] }, sent);
  assert.equal(skipped, 0);
  assert.deepEqual(frames.map((f) => [f.key.id, f.echo, f.content_type]), [
    ['3EB0AA11BB22CC33DD44', true, 'extendedTextMessage'],
    ['3EB0PHONE', false, 'conversation'],
    ['3EB0C1A2B3C4D5E6F7A8', false, 'conversation'],
    ['3EB0FFEE', false, null],
    ['3EB0EPH', false, 'imageMessage'],
  ]);
  for (const frame of frames) {
    assert.equal(frame.upsert, 'append');
    assert.ok(validateFrame(frame), JSON.stringify(validateFrame.errors));
  }
  const [ownFrame, , incomingFrame] = frames;
  assert.deepEqual(ownFrame.key, {
    remoteJid: '123456789012345@lid', fromMe: true, id: '3EB0AA11BB22CC33DD44', remoteJidAlt: '5511988887777@s.whatsapp.net', addressingMode: 'lid',
  });
  assert.equal(ownFrame.message.messageTimestamp, 1764374460);
  assert.equal(ownFrame.message.status, 2);
  assert.deepEqual(/** @type {any} */ (ownFrame.message.message).messageContextInfo.messageSecret,
    { type: 'Buffer', data: Buffer.alloc(32, 171).toString('base64') });
  assert.deepEqual(incomingFrame.message, {
    key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: false, id: '3EB0C1A2B3C4D5E6F7A8' },
    messageTimestamp: 1764374400,
    pushName: 'Maria',
    message: { conversation: 'Oi, tudo bem?' },
  });
  // The frame survives the trip through JSON unchanged (no toJSON anywhere on the way).
  assert.deepEqual(JSON.parse(JSON.stringify(frames)), frames);
});

test('messages without a usable key are skipped and counted, not sent invalid', () => {
  const { frames, skipped } = messageFrames({
    type: 'notify',
    messages: [{ key: { remoteJid: 'x@s.whatsapp.net', fromMe: false } }, { key: { id: 'A', remoteJid: '' } },
      { key: { remoteJid: 'x@s.whatsapp.net', id: 'B' } }],
  }, new RecentIds());
  assert.equal(skipped, 2);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].key.fromMe, false);
  assert.equal(frames[0].message.key.fromMe, false);
});

test('RecentIds forgets the oldest beyond its limit', () => {
  const ids = new RecentIds(3);
  for (const id of ['a', 'b', 'c', 'd']) ids.add(id);
  assert.equal(ids.size, 3);
  assert.equal(ids.has('a'), false);
  assert.equal(ids.has('d'), true);
  ids.add('b'); // refreshed: now the newest
  ids.add('e');
  assert.equal(ids.has('b'), true);
  assert.equal(ids.has('c'), false);
});

test('messageEntries keeps the Baileys message beside its frame', () => {
  const msg = { key: { remoteJid: 'x@s.whatsapp.net', fromMe: false, id: 'A' }, message: { imageMessage: { mimetype: 'image/png' } } };
  const { entries, skipped } = messageEntries({ type: 'notify', messages: [msg] }, new RecentIds());
  assert.equal(skipped, 0);
  assert.equal(entries[0].msg, msg);
  assert.equal(entries[0].frame.content_type, 'imageMessage');
  assert.equal(messageEntries({ type: 'prepend', messages: [msg] }, new RecentIds()).skipped, 1);
});

test('lid_mapping frames: device suffixes removed, either order, anything else refused; all valid', async () => {
  const { validateFrame } = await schema();
  const expected = { type: 'lid_mapping', lid: '207365884047522@lid', pn: '5511988887777@s.whatsapp.net' };
  assert.deepEqual(lidMappingFrame('207365884047522:3@lid', '5511988887777:12@s.whatsapp.net'), expected);
  assert.deepEqual(lidMappingFrame('5511988887777@s.whatsapp.net', '207365884047522@lid'), expected);
  assert.deepEqual(lidMappingFrame('207365884047522@lid', '5511988887777@c.us'), expected);
  assert.ok(validateFrame(expected), JSON.stringify(validateFrame.errors));
  for (const [a, b] of [
    ['207365884047522@lid', '207365884047523@lid'], ['5511@s.whatsapp.net', '5512@s.whatsapp.net'],
    ['120363025246125486@g.us', '207365884047522@lid'], ['207365884047522@hosted.lid', '5511@hosted'],
    ['', '5511@s.whatsapp.net'], [undefined, null], ['not a jid', '207365884047522@lid'], [42, {}],
  ]) {
    assert.equal(lidMappingFrame(a, b), null, `${a} ${b}`);
  }
});

test('lidMappingsOfKey: 1:1 alt addresses and group participants', () => {
  assert.deepEqual(lidMappingsOfKey({
    remoteJid: '207365884047522@lid', remoteJidAlt: '5511988887777@s.whatsapp.net', fromMe: false, id: 'A', participant: '',
  }), [{ type: 'lid_mapping', lid: '207365884047522@lid', pn: '5511988887777@s.whatsapp.net' }]);
  assert.deepEqual(lidMappingsOfKey({
    remoteJid: '120363025246125486@g.us', participant: '5511977776666:2@s.whatsapp.net', participantAlt: '99887766554433@lid', id: 'B',
  }), [{ type: 'lid_mapping', lid: '99887766554433@lid', pn: '5511977776666@s.whatsapp.net' }]);
  assert.deepEqual(lidMappingsOfKey({ remoteJid: '5511988887777@s.whatsapp.net', id: 'C' }), []);
  assert.deepEqual(lidMappingsOfKey(undefined), []);
});

test('LidMappings: each pair once, bounded', () => {
  const mappings = new LidMappings(2);
  const a = { lid: '1@lid', pn: '11@s.whatsapp.net' };
  const b = { lid: '2@lid', pn: '22@s.whatsapp.net' };
  const c = { lid: '3:1@lid', pn: '33@s.whatsapp.net' };
  assert.deepEqual(mappings.fresh([a, a, { lid: 'x', pn: 'y' }, null]).map((f) => f.lid), ['1@lid']);
  assert.deepEqual(mappings.fresh([a, b]).map((f) => f.lid), ['2@lid']);
  assert.deepEqual(mappings.fresh([c]).map((f) => f.lid), ['3@lid']);
  // The oldest pair was forgotten: sending it again is harmless for the bridge.
  assert.deepEqual(mappings.fresh([a, c]).map((f) => f.lid), ['1@lid']);
});

test('key-store writes: lid-mapping entries become pairs; the store still gets the write first', async () => {
  assert.deepEqual(lidMappingsOfKeyWrite({
    'lid-mapping': { 5511988887777: '207365884047522', '207365884047522_reverse': '5511988887777', 5511000: null },
    session: { 'x.0': {} },
  }), [{ lid: '207365884047522@lid', pn: '5511988887777@s.whatsapp.net' }]);
  assert.deepEqual(lidMappingsOfKeyWrite({ 'pre-key': { 1: {} } }), []);

  /** @type {string[]} */
  const log = [];
  const store = {
    get: async (/** @type {string} */ type, /** @type {string[]} */ ids) => { log.push(`get ${type} ${ids}`); return {}; },
    set: async () => { log.push('set'); },
    clear: async () => { log.push('clear'); },
  };
  const observed = observeKeyWrites(/** @type {any} */ (store), (data) => { log.push(`seen ${Object.keys(data)}`); throw new Error('ignored'); });
  await observed.get('lid-mapping', ['1']);
  await observed.set({ 'lid-mapping': {} });
  await /** @type {any} */ (observed).clear();
  assert.deepEqual(log, ['get lid-mapping 1', 'set', 'seen lid-mapping', 'clear']);
});

test('message_status: Baileys status numbers by name; only updates that carry a status; keys copied', async () => {
  const { validateFrame } = await schema();
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(statusName), ['error', 'pending', 'server_ack', 'delivered', 'read', 'played']);
  assert.deepEqual([6, -1, 2.5, '4', null, undefined].map(statusName), [null, null, null, null, null, null]);
  const key = { remoteJid: '5511988887777@s.whatsapp.net', id: '3EB0AA11BB22CC33DD44', fromMe: true, participant: undefined };
  const frames = statusFramesOfUpdates([
    { key, update: { status: proto.WebMessageInfo.Status.DELIVERY_ACK, messageTimestamp: 1764374460 } },
    { key: { ...key, id: 'EDITED' }, update: { message: { conversation: 'x' } } },
    { key: { ...key, id: 'REVOKED' }, update: { message: null, messageStubType: 1 } },
    { key: { remoteJid: '123456789012345@lid', id: 'X2', participant: '' }, update: { status: 4 } },
    { key: { remoteJid: '', id: 'X3', fromMe: true }, update: { status: 4 } },
    { key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: true, id: 'X4' }, update: { status: 9 } },
    { key, update: { status: 0, messageStubParameters: ['479'] } },
  ]);
  assert.deepEqual(frames, [
    { type: 'message_status', key: { remoteJid: '5511988887777@s.whatsapp.net', id: '3EB0AA11BB22CC33DD44', fromMe: true }, status: 'delivered' },
    // Receipts for messages that are not ours (our phone read the customer's message) too: the bridge picks.
    { type: 'message_status', key: { remoteJid: '123456789012345@lid', id: 'X2', participant: '', fromMe: false }, status: 'read' },
    { type: 'message_status', key: { remoteJid: '5511988887777@s.whatsapp.net', id: '3EB0AA11BB22CC33DD44', fromMe: true }, status: 'error' },
  ]);
  for (const frame of frames) assert.ok(validateFrame(frame), JSON.stringify(validateFrame.errors));
  assert.deepEqual(statusFramesOfUpdates(undefined), []);
});

test('message_status from an upsert: our messages from server_ack on, never pending, never the customer\'s', async () => {
  const { validateFrame } = await schema();
  const key = { remoteJid: '5511988887777@s.whatsapp.net', fromMe: true, id: '3EB0AA11BB22CC33DD44' };
  const msg = (/** @type {any} */ over) => proto.WebMessageInfo.fromObject({ key, message: { conversation: 'x' }, ...over });
  const read = statusFrameOfUpsert(msg({ status: 4 }));
  assert.deepEqual(read, { type: 'message_status', key, status: 'read' });
  assert.ok(validateFrame(read));
  assert.deepEqual(statusFrameOfUpsert(msg({ status: 2 }))?.status, 'server_ack');
  assert.equal(statusFrameOfUpsert(msg({ status: 1 })), null, 'a fresh send is pending: nothing to say');
  assert.equal(statusFrameOfUpsert(msg({})), null);
  assert.equal(statusFrameOfUpsert(msg({ key: { ...key, fromMe: false }, status: 3 })), null);
});
