// The group metadata cache. The WhatsApp simulator has no groups (tests/simulator/README.md "Not
// built"), so group names are tested here with a fake groupMetadata; the pipeline test in
// ordering.test.js shows chat_name reaching a group's frame.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GroupCache } from '../groups.js';

const G = '120363025246125486@g.us';
const meta = (/** @type {string} */ subject, participants = [{ id: '5511977776666@s.whatsapp.net', admin: null }]) => ({
  id: G, subject, participants, addressingMode: 'pn', owner: undefined,
});

test('a miss asks once (concurrent lookups share it); later hits are cached', async () => {
  let calls = 0;
  const cache = new GroupCache({ fetch: async () => { calls += 1; return meta('Equipe de vendas'); } });
  const names = await Promise.all([cache.subject(G), cache.subject(G), cache.subject(G)]);
  assert.deepEqual(names, ['Equipe de vendas', 'Equipe de vendas', 'Equipe de vendas']);
  assert.equal(await cache.subject(G), 'Equipe de vendas');
  assert.equal(calls, 1);
  // A fetched entry is full metadata: Baileys may send to the group without asking again.
  assert.equal((await cache.metadata(G))?.participants.length, 1);
});

test('groups.upsert and groups.update feed it; subject changes apply; author fields are dropped', async () => {
  const cache = new GroupCache({ fetch: async () => { throw new Error('must not be asked'); } });
  cache.upsert([meta('Antigo')]);
  assert.equal(await cache.subject(G), 'Antigo');
  cache.update([{ id: G, subject: 'Novo nome', author: '5511@s.whatsapp.net', authorPn: undefined }]);
  assert.equal(await cache.subject(G), 'Novo nome');
  const full = await cache.metadata(G);
  assert.equal(full.subject, 'Novo nome');
  assert.equal(full.author, undefined);
  assert.equal(full.participants.length, 1);
  // An update for a group not cached yet: its subject is enough for names, not for sending.
  const other = '120363000000000002@g.us';
  cache.update([{ id: other, subject: 'Outro' }, { id: '120363000000000003@g.us', announce: true }, { subject: 'no id' }]);
  assert.equal(await cache.subject(other), 'Outro');
  assert.equal(await cache.metadata(other), undefined);
  assert.equal(cache.size, 2);
});

test('participant changes drop the member list (Baileys refetches) but keep the name', async () => {
  const cache = new GroupCache({ fetch: async () => { throw new Error('offline'); } });
  cache.upsert([meta('Equipe')]);
  cache.participantsChanged({ id: G });
  assert.equal(await cache.metadata(G), undefined);
  assert.equal(await cache.subject(G), 'Equipe');
  cache.participantsChanged({ id: 'unknown@g.us' });
});

test('failures and timeouts give null, quickly, and are not retried for a while', async () => {
  let now = 1_000_000;
  let calls = 0;
  /** @type {unknown[]} */
  const errors = [];
  const cache = new GroupCache({
    fetch: () => { calls += 1; return new Promise(() => {}); },
    fetchTimeoutMs: 50, failureTtlMs: 60_000, now: () => now, onFetchError: (_jid, err) => errors.push(err),
  });
  const started = Date.now();
  assert.equal(await cache.subject(G), null);
  assert.ok(Date.now() - started < 1000);
  assert.equal(await cache.subject(G), null);
  assert.equal(calls, 1, 'the failure is remembered');
  now += 61_000;
  assert.equal(await cache.subject(G), null);
  assert.equal(calls, 2);
  assert.match(String(errors[0]), /no group metadata in 50 ms/);

  const throwing = new GroupCache({ fetch: () => { throw new Error('connection is not open'); } });
  assert.equal(await throwing.subject(G), null);
  const nameless = new GroupCache({ fetch: async () => ({ id: G }) });
  assert.equal(await nameless.subject(G), null);
});

test('entries expire after the TTL and the least recently used go first', async () => {
  let now = 0;
  const cache = new GroupCache({ fetch: async (jid) => ({ id: jid, subject: `fetched ${jid}`, participants: [] }), ttlMs: 1000, maxGroups: 2, now: () => now });
  cache.upsert([{ id: 'a@g.us', subject: 'A', participants: [] }, { id: 'b@g.us', subject: 'B', participants: [] }]);
  assert.equal(await cache.subject('a@g.us'), 'A'); // a is now the most recently used
  cache.upsert([{ id: 'c@g.us', subject: 'C', participants: [] }]);
  assert.equal(cache.size, 2);
  assert.equal(await cache.metadata('b@g.us'), undefined, 'b was evicted');
  assert.equal(await cache.subject('a@g.us'), 'A');
  now += 1001;
  assert.equal(await cache.metadata('a@g.us'), undefined);
  assert.equal(await cache.subject('a@g.us'), 'fetched a@g.us');
});
