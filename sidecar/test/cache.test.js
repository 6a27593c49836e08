import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TtlCache } from '../cache.js';

test('entries expire after the TTL', () => {
  let now = 1000;
  const cache = new TtlCache({ ttlMs: 100, now: () => now });
  cache.set('a', 1);
  assert.equal(cache.get('a'), 1);
  now += 99;
  assert.equal(cache.get('a'), 1);
  now += 1;
  assert.equal(cache.get('a'), undefined);
  assert.equal(cache.size, 0);
});

test('the map is bounded: expired first, then the oldest written', () => {
  let now = 0;
  const cache = new TtlCache({ ttlMs: 50, maxEntries: 3, now: () => now });
  cache.set('old', 1);
  now = 60;
  cache.set('b', 2);
  cache.set('c', 3);
  cache.set('d', 4); // 'old' expired: pruned, the others stay
  assert.deepEqual(['b', 'c', 'd'].map((k) => cache.get(k)), [2, 3, 4]);
  cache.set('e', 5); // nothing expired: the oldest written ('b') goes
  assert.equal(cache.size, 3);
  assert.equal(cache.get('b'), undefined);
  cache.set('c', 30); // rewriting refreshes the position
  cache.set('f', 6);
  assert.equal(cache.get('c'), 30);
  assert.equal(cache.get('d'), undefined);
});

test('del and flushAll, as Baileys uses them for retry counters', () => {
  const cache = new TtlCache();
  cache.set('msg1', 1);
  cache.set('msg2', 2);
  assert.equal(cache.del('msg1'), true);
  assert.equal(cache.get('msg1'), undefined);
  cache.flushAll();
  assert.equal(cache.get('msg2'), undefined);
});
