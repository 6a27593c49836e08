// The per-chat queue, the download limiter and the message pipeline, driven with fake async
// tasks (deferred promises the test resolves), so every interleaving is deterministic.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChatQueue, createMessagePipeline, Limiter, serializeListeners } from '../ordering.js';
import { schema } from '../testing/helpers.js';

function deferred() {
  /** @type {(value?: any) => void} */
  let resolve = () => {};
  /** @type {(err: unknown) => void} */
  let reject = () => {};
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

/** Lets every already-queued promise callback run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

test('ChatQueue: one chat in order behind a slow task, other chats not held, idle chats dropped', async () => {
  const queue = new ChatQueue();
  /** @type {string[]} */
  const done = [];
  const slow = deferred();
  void queue.run('alice', async () => { await slow.promise; done.push('alice:media'); });
  void queue.run('alice', () => { done.push('alice:text'); });
  void queue.run('bob', () => { done.push('bob:text'); });
  await settle();
  assert.deepEqual(done, ['bob:text']);
  assert.equal(queue.size, 1, 'bob is idle again and forgotten');
  assert.equal(queue.pending, 2);

  slow.resolve();
  await queue.idle();
  assert.deepEqual(done, ['bob:text', 'alice:media', 'alice:text']);
  assert.equal(queue.size, 0);
  assert.equal(queue.pending, 0);
});

test('ChatQueue: a failing task is reported and does not stall its chat', async () => {
  const queue = new ChatQueue();
  /** @type {unknown[]} */
  const errors = [];
  /** @type {string[]} */
  const done = [];
  void queue.run('c', () => { throw new Error('boom'); }, (err) => errors.push(err));
  const last = queue.run('c', () => { done.push('after'); });
  await last;
  assert.deepEqual(done, ['after']);
  assert.equal(/** @type {Error} */ (errors[0]).message, 'boom');
  assert.equal(queue.size, 0);
});

test('ChatQueue: many chats and tasks leave nothing behind', async () => {
  const queue = new ChatQueue();
  /** @type {Map<string, number[]>} */
  const seen = new Map();
  for (let i = 0; i < 2000; i += 1) {
    const chat = `chat${i % 37}`;
    void queue.run(chat, async () => {
      // A random-ish pause so that tasks of different chats interleave.
      if (i % 3 === 0) await new Promise((resolve) => setTimeout(resolve, i % 5));
      seen.set(chat, [...(seen.get(chat) ?? []), i]);
    });
  }
  await queue.idle();
  assert.equal(queue.size, 0);
  for (const order of seen.values()) assert.deepEqual(order, [...order].sort((a, b) => a - b));
});

test('Limiter: at most n at once, the rest in arrival order', async () => {
  const limiter = new Limiter(2);
  const gates = [deferred(), deferred(), deferred(), deferred()];
  /** @type {number[]} */
  const started = [];
  const runs = gates.map((gate, i) => limiter.run(async () => { started.push(i); await gate.promise; return i; }));
  await settle();
  assert.deepEqual(started, [0, 1]);
  assert.equal(limiter.running, 2);
  gates[1].resolve();
  await settle();
  assert.deepEqual(started, [0, 1, 2]);
  gates[0].reject(new Error('x'));
  await assert.rejects(runs[0], /x/);
  await settle();
  assert.deepEqual(started, [0, 1, 2, 3]);
  gates[2].resolve();
  gates[3].resolve();
  assert.deepEqual(await Promise.all(runs.slice(1)), [1, 2, 3]);
  assert.equal(limiter.running, 0);
});

/**
 * @param {string} chat
 * @param {string} id
 */
function entry(chat, id) {
  const key = { remoteJid: chat, fromMe: false, id };
  return {
    frame: /** @type {import('../protocol.js').MessageEvent} */ ({
      type: 'message', upsert: 'notify', key, content_type: 'conversation', echo: false, message: { key },
    }),
    msg: { key, media: id.startsWith('M') },
  };
}

test('pipeline: media and group names join their frame; order per chat; other chats go first', async () => {
  const { validateFrame } = await schema();
  /** @type {any[]} */
  const written = [];
  /** @type {Map<string, ReturnType<typeof deferred>>} */
  const downloads = new Map();
  const nameLookup = deferred();
  const pipeline = createMessagePipeline({
    write: async (frame) => { written.push(frame); },
    media: (msg) => {
      if (!msg.media) return null;
      const d = deferred();
      downloads.set(msg.key.id, d);
      return d.promise;
    },
    chatName: async (jid) => (jid === '120363000000000001@g.us' ? nameLookup.promise : null),
  });
  const alice = '5511988887777@s.whatsapp.net';
  const bob = '5511977776666@s.whatsapp.net';
  const group = '120363000000000001@g.us';
  pipeline.push([entry(alice, 'M1'), entry(alice, 'T2'), entry(bob, 'T3'), entry(group, 'T4')]);
  pipeline.push([entry(alice, 'T5'), entry(bob, 'M6')]);
  await settle();
  assert.deepEqual(written.map((f) => f.key.id), ['T3']);
  assert.equal(pipeline.chats, 3);
  // Only the first media of a chat downloads now; the second waits for its turn.
  assert.deepEqual([...downloads.keys()].sort(), ['M1', 'M6']);

  downloads.get('M6')?.resolve({ path: '/spool/M6.jpg', mimetype: 'image/jpeg', size: 3, file_name: null });
  nameLookup.resolve('Equipe de vendas');
  await settle();
  // Across chats there is no order to keep.
  assert.deepEqual(written.map((f) => f.key.id).sort(), ['M6', 'T3', 'T4']);
  const byId = (/** @type {string} */ id) => written.find((f) => f.key.id === id);
  assert.equal(byId('T4').chat_name, 'Equipe de vendas');
  assert.equal(byId('M6').chat_name, undefined, 'no name for a 1:1 chat');
  assert.equal(byId('M6').media.path, '/spool/M6.jpg');

  downloads.get('M1')?.resolve({ error: 'too_large', mimetype: 'video/mp4', size: 99, file_name: null, message: 'larger than 1 bytes' });
  assert.equal(await pipeline.drain(1000), true);
  assert.deepEqual(written.slice(3).map((f) => f.key.id), ['M1', 'T2', 'T5']);
  for (const frame of written) assert.ok(validateFrame(frame), JSON.stringify(validateFrame.errors));
  assert.equal(pipeline.pending, 0);
  assert.equal(pipeline.chats, 0);
});

test('pipeline: echoes (our own sends) are not downloaded again', async () => {
  /** @type {any[]} */
  const written = [];
  let downloads = 0;
  const pipeline = createMessagePipeline({
    write: async (frame) => { written.push(frame); },
    media: async () => { downloads += 1; return { path: '/spool/x.jpg', mimetype: 'image/jpeg', size: 1, file_name: null }; },
  });
  const echo = entry('a@s.whatsapp.net', 'Mecho');
  echo.frame.echo = true;
  pipeline.push([echo, entry('a@s.whatsapp.net', 'Mphone')]);
  await pipeline.drain(1000);
  assert.equal(downloads, 1);
  assert.deepEqual(written.map((f) => [f.key.id, Boolean(f.media)]), [['Mecho', false], ['Mphone', true]]);
});

test('pipeline: a failing media step still writes the frame; drain gives up after its timeout', async () => {
  /** @type {any[]} */
  const written = [];
  /** @type {unknown[]} */
  const errors = [];
  const never = deferred();
  const pipeline = createMessagePipeline({
    write: async (frame) => { written.push(frame); },
    media: (msg) => (msg.key.id === 'Mbad' ? Promise.reject(new Error('bug')) : msg.key.id === 'Mstuck' ? never.promise : null),
    onError: (err) => errors.push(err),
  });
  pipeline.push([entry('a@s.whatsapp.net', 'Mbad'), entry('a@s.whatsapp.net', 'T1'), entry('b@s.whatsapp.net', 'Mstuck')]);
  const started = Date.now();
  assert.equal(await pipeline.drain(100), false);
  assert.ok(Date.now() - started < 1000);
  assert.deepEqual(written.map((f) => f.key.id), ['Mbad', 'T1']);
  assert.equal(written[0].media, undefined);
  assert.equal(errors.length, 1);
  assert.equal(pipeline.pending, 1);
  never.resolve(null);
  assert.equal(await pipeline.drain(1000), true);
});

test('pipeline: a status frame follows its message even when its key names the chat differently', async () => {
  const { validateFrame } = await schema();
  /** @type {any[]} */
  const written = [];
  const download = deferred();
  const pipeline = createMessagePipeline({
    write: async (frame) => { written.push(frame); },
    media: (msg) => (msg.media ? download.promise : null),
  });
  const pn = '5511988887777@s.whatsapp.net';
  const lid = '123456789012345@lid';
  /** @param {string} remoteJid @param {string} id @param {string} status */
  const status = (remoteJid, id, status) => /** @type {any} */ ({ type: 'message_status', key: { remoteJid, fromMe: true, id }, status });
  // The chat waits for a download; our send is queued behind it.
  pipeline.push([entry(pn, 'Mslow'), entry(pn, 'Tours')]);
  // Its receipt came by LID: it must not overtake the message frame in the PN chat's queue.
  pipeline.pushAfter([status(lid, 'Tours', 'delivered')]);
  // A receipt for an older message, long written: its own chat's queue (the LID chat is idle).
  pipeline.pushAfter([status(lid, 'Told', 'read')]);
  await settle();
  assert.deepEqual(written.map((f) => f.status ?? f.key.id), ['read']);
  download.resolve({ path: '/spool/Mslow.jpg', mimetype: 'image/jpeg', size: 1, file_name: null });
  await pipeline.drain(1000);
  assert.deepEqual(written.map((f) => `${f.key.id}:${f.status ?? f.type}`), ['Told:read', 'Mslow:message', 'Tours:message', 'Tours:delivered']);
  for (const frame of written) assert.ok(validateFrame(frame), JSON.stringify(validateFrame.errors));

  // Once written, the message is forgotten: a later status goes by its own key's chat, and a
  // download held in the PN chat does not hold it.
  const hold = deferred();
  const later = createMessagePipeline({ write: async (frame) => { written.push(frame); }, media: () => hold.promise });
  later.push([entry(pn, 'Mnext')]);
  later.pushAfter([status(lid, 'Tours', 'read')]);
  await settle();
  assert.equal(`${written.at(-1).key.id}:${written.at(-1).status}`, 'Tours:read');
  hold.resolve(null);
  await later.drain(1000);
  assert.equal(written.at(-1).key.id, 'Mnext');
});

test('serializeListeners: a slow first emission is not overtaken, and a failure does not stall the rest', async () => {
  const { EventEmitter } = await import('node:events');
  const emitter = new EventEmitter();
  /** @type {string[]} */
  const handled = [];
  // Like Baileys' handler: the first message of a contact awaits more before it is handled.
  emitter.on('CB:message', async (/** @type {{id: string, delay: number, fail?: boolean}} */ node) => {
    await new Promise((resolve) => { setTimeout(resolve, node.delay); });
    if (node.fail) throw new Error('bad node');
    handled.push(node.id);
  });
  assert.equal(serializeListeners(emitter, 'CB:message'), 1);
  assert.equal(serializeListeners(emitter, 'nothing'), 0);
  emitter.emit('CB:message', { id: 'first', delay: 40 });
  emitter.emit('CB:message', { id: 'broken', delay: 1, fail: true });
  emitter.emit('CB:message', { id: 'second', delay: 1 });
  await new Promise((resolve) => { setTimeout(resolve, 120); });
  assert.deepEqual(handled, ['first', 'second']);
});
