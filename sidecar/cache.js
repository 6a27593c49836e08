// A small TTL map implementing Baileys' CacheStore, for the message-retry counters. One instance
// lives for the whole process so retry counts survive the 515 reconnect; bounded so a flood of
// failing decrypts cannot grow it without limit. No timers: entries expire when looked at or
// when the map is full.

export class TtlCache {
  /** @type {Map<string, {value: unknown, expires: number}>} */
  #entries = new Map();

  /**
   * @param {{ttlMs?: number, maxEntries?: number, now?: () => number}} [options]
   */
  constructor({ ttlMs = 60 * 60 * 1000, maxEntries = 10_000, now = Date.now } = {}) {
    this.ttlMs = ttlMs;
    this.maxEntries = maxEntries;
    this.now = now;
  }

  /**
   * @template T
   * @param {string} key
   * @returns {T | undefined}
   */
  get(key) {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return /** @type {T} */ (entry.value);
  }

  /**
   * @param {string} key
   * @param {unknown} value
   */
  set(key, value) {
    this.#entries.delete(key);
    this.#entries.set(key, { value, expires: this.now() + this.ttlMs });
    if (this.#entries.size > this.maxEntries) this.#prune();
    return true;
  }

  /** @param {string} key */
  del(key) {
    return this.#entries.delete(key);
  }

  flushAll() {
    this.#entries.clear();
  }

  get size() {
    return this.#entries.size;
  }

  // Drops expired entries, then the oldest-written ones (Map keeps insertion order).
  #prune() {
    const now = this.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expires <= now) this.#entries.delete(key);
    }
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.maxEntries) break;
      this.#entries.delete(key);
    }
  }
}
