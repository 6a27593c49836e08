import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { proto } from '@whiskeysockets/baileys';

import {
  compileCommandValidators, createFrameWriter, createLineSplitter, decodeCommand, encodeFrame, errorResult, okResult,
  PROTOCOL_VERSION, readLooseId, SIDECAR_VERSION, toWire,
} from '../protocol.js';
import { ROOT, schema } from '../testing/helpers.js';

// long.js is protobufjs' dependency, not ours: take its class from a decoded uint64 field.
const Long = /** @type {any} */ (proto.WebMessageInfo.fromObject({ messageTimestamp: 1 }).messageTimestamp).constructor;

/** @param {string} name */
function goldenLines(name) {
  const text = readFileSync(join(ROOT, 'tests', 'golden', 'protocol', name), 'utf8');
  return text.split('\n').filter((line) => line.trim() !== '');
}

for (const file of ['events.jsonl', 'commands.jsonl']) {
  test(`every line of ${file} validates against the schema`, async () => {
    const { validateFrame } = await schema();
    const lines = goldenLines(file);
    assert.ok(lines.length > 0);
    for (const line of lines) {
      assert.ok(validateFrame(JSON.parse(line)), `${line}\n${JSON.stringify(validateFrame.errors)}`);
    }
  });
}

test('no line of invalid.jsonl validates against the schema', async () => {
  const { validateFrame } = await schema();
  const lines = goldenLines('invalid.jsonl');
  assert.ok(lines.length > 0);
  for (const line of lines) {
    assert.equal(validateFrame(JSON.parse(line)), false, line);
  }
});

test('golden commands decode; golden invalid commands are refused with their id', async () => {
  const { validateCommand } = await schema();
  for (const line of goldenLines('commands.jsonl')) {
    const decoded = decodeCommand(line, validateCommand);
    assert.equal(decoded.ok, true, line);
  }
  const bad = decodeCommand('{"type":"send_text","id":"c1","jid":"5511988887777","text":"hi"}', validateCommand);
  assert.deepEqual({ ok: bad.ok, id: !bad.ok && bad.id }, { ok: false, id: 'c1' });
  const extra = decodeCommand('{"type":"shutdown","id":"c2","force":true}', validateCommand);
  assert.deepEqual({ ok: extra.ok, id: !extra.ok && extra.id }, { ok: false, id: 'c2' });
  const unknown = decodeCommand('{"type":"teleport","id":"c3"}', validateCommand);
  assert.deepEqual({ ok: unknown.ok, id: !unknown.ok && unknown.id }, { ok: false, id: 'c3' });
});

test("the sidecar's fast command validators agree with the full schema", async () => {
  const { validateCommand: full } = await schema();
  const fast = await compileCommandValidators();
  const lines = [...goldenLines('commands.jsonl'), ...goldenLines('invalid.jsonl')];
  let checked = 0;
  for (const line of lines) {
    const value = JSON.parse(line);
    for (const type of Object.keys(full)) {
      assert.equal(fast[type](value), full[type](value), `${type}: ${line}`);
      checked += 1;
    }
  }
  assert.ok(checked > 0);
});

test('an id is read from a truncated line, but never an id the result could not carry', async () => {
  const { validateCommand } = await schema();
  const truncated = decodeCommand('{"type":"send_text","id":"c4","jid":"55@s.whats', validateCommand);
  assert.equal(!truncated.ok && truncated.id, 'c4');
  const noId = decodeCommand('{"type":"send_text",', validateCommand);
  assert.equal(!noId.ok && noId.id, null);
  const badId = decodeCommand('{"type":"shutdown","id":"c 1"}', validateCommand);
  assert.equal(!badId.ok && badId.id, null);
  const array = decodeCommand('[]', validateCommand);
  assert.equal(!array.ok && array.id, null);
});

test('error messages do not quote the command text', async () => {
  const { validateCommand } = await schema();
  const secret = 'my secret text';
  const decoded = decodeCommand(JSON.stringify({ type: 'send_text', id: 'c5', jid: 'nope', text: secret }), validateCommand);
  assert.equal(decoded.ok, false);
  assert.ok(!decoded.ok && !decoded.message.includes(secret));
});

test('results built by the helpers validate', async () => {
  const { validateFrame } = await schema();
  assert.ok(validateFrame(okResult('c1')));
  assert.ok(validateFrame(okResult('c1', { message_id: 'X', jid: '1@s.whatsapp.net', timestamp: 1 })));
  assert.ok(validateFrame(errorResult('c1', 'not_connected', 'connection is not open')));
  assert.equal(PROTOCOL_VERSION, 1);
  assert.match(SIDECAR_VERSION, /^\d+\.\d+\.\d+/);
});

test('toWire: Buffers as BufferJSON, Longs as numbers, protobuf objects walked not toJSON-ed', async () => {
  const msg = proto.WebMessageInfo.fromObject({
    key: { remoteJid: '5511988887777@s.whatsapp.net', fromMe: true, id: '3EB0AA' },
    messageTimestamp: 1764374460,
    status: 2,
    message: {
      extendedTextMessage: { text: 'Olá' },
      messageContextInfo: { messageSecret: Buffer.from('abcd') },
    },
  });
  // The precondition that makes walking necessary: protobufjs turns the timestamp into a Long.
  assert.ok(msg.messageTimestamp instanceof Long && Long.isLong(msg.messageTimestamp));
  const wire = /** @type {any} */ (toWire(msg));
  assert.equal(wire.messageTimestamp, 1764374460);
  assert.equal(wire.status, 2);
  assert.deepEqual(wire.message.messageContextInfo.messageSecret, { type: 'Buffer', data: Buffer.from('abcd').toString('base64') });
  assert.equal(wire.message.extendedTextMessage.text, 'Olá');
  assert.deepEqual(wire.key, { remoteJid: '5511988887777@s.whatsapp.net', fromMe: true, id: '3EB0AA' });
  // Empty repeated fields, which protobufjs puts on every instance, are left out like toObject does.
  assert.deepEqual(Object.keys(wire).sort(), ['key', 'message', 'messageTimestamp', 'status']);
  assert.deepEqual(toWire({ plain: [] }), { plain: [] });
});

test('toWire: generic Longs, bigints, Uint8Arrays, cycles', () => {
  assert.equal(toWire(Long.fromNumber(2 ** 40, true)), 2 ** 40);
  assert.equal(toWire(Long.fromNumber(-5)), -5);
  assert.equal(toWire({ low: -1, high: 0, unsigned: true }), 4294967295);
  assert.equal(toWire(12n), 12);
  assert.deepEqual(toWire(new Uint8Array([1, 2, 3])), { type: 'Buffer', data: 'AQID' });
  assert.deepEqual(toWire(Buffer.from([1, 2, 3]).toJSON()), { type: 'Buffer', data: 'AQID' });
  /** @type {any} */
  const cyclic = { a: 1 };
  cyclic.self = cyclic;
  assert.deepEqual(toWire(cyclic), { a: 1, self: null });
  assert.deepEqual(toWire({ a: undefined, b: () => 1, c: [undefined] }), { c: [null] });
});

test('encodeFrame: one line, with line separators escaped', () => {
  const line = encodeFrame({ type: 'qr', qr: 'a\nb\u2028c\u2029d\u0085e' });
  assert.equal(line.split('\n').length, 2);
  assert.ok(line.endsWith('\n'));
  assert.ok(!/[\u2028\u2029\u0085]/.test(line));
  assert.deepEqual(JSON.parse(line), { type: 'qr', qr: 'a\nb\u2028c\u2029d\u0085e' });
});

test('frame writer: whole lines in order; flush waits for the last', async () => {
  /** @type {string[]} */
  const chunks = [];
  /** @type {Array<() => void>} */
  const callbacks = [];
  const writer = createFrameWriter((chunk, cb) => {
    chunks.push(chunk);
    callbacks.push(() => cb());
  });
  void writer.write({ type: 'qr', qr: 'one' });
  void writer.write({ type: 'qr', qr: 'two' });
  let flushed = false;
  const flushing = writer.flush().then(() => { flushed = true; });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(flushed, false);
  for (const cb of callbacks) cb();
  await flushing;
  assert.deepEqual(chunks, ['{"type":"qr","qr":"one"}\n', '{"type":"qr","qr":"two"}\n']);
});

test('line splitter: lines across and within chunks, a last line without newline', () => {
  /** @type {string[]} */
  const lines = [];
  const splitter = createLineSplitter(100, (line) => lines.push(line), () => assert.fail('not overlong'));
  splitter.push(Buffer.from('{"a":1}\n{"b"'));
  splitter.push(Buffer.from(':2}\n\n{"c":3}\r\n{"d"'));
  // A multi-byte character split between chunks survives.
  const euro = Buffer.from('"€"');
  splitter.push(Buffer.concat([Buffer.from(':'), euro.subarray(0, 2)]));
  splitter.push(Buffer.concat([euro.subarray(2), Buffer.from('}')]));
  splitter.end();
  assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '', '{"c":3}\r', '{"d":"€"}']);
});

test('line splitter: an overlong line is dropped, its head kept for the id, the next line is fine', () => {
  /** @type {string[]} */
  const lines = [];
  /** @type {Array<[string, number]>} */
  const dropped = [];
  const splitter = createLineSplitter(64, (line) => lines.push(line), (head, bytes) => dropped.push([head, bytes]));
  const long = `{"type":"send_text","id":"c9","jid":"1@s.whatsapp.net","text":"${'x'.repeat(200)}"}`;
  for (let i = 0; i < long.length; i += 30) splitter.push(Buffer.from(long.slice(i, i + 30)));
  splitter.push(Buffer.from('\n{"type":"shutdown","id":"c10"}\n'));
  splitter.push(Buffer.from(`${long}\n`));
  assert.deepEqual(lines, ['{"type":"shutdown","id":"c10"}']);
  assert.equal(dropped.length, 2);
  for (const [head, bytes] of dropped) {
    assert.equal(bytes, long.length);
    assert.equal(readLooseId(head), 'c9');
  }
});
