// Group metadata cache: the subject for `chat_name` on group message frames, and Baileys'
// `cachedGroupMetadata` (consulted before every group send instead of a w:g2 query). Fed by
// groups.upsert / groups.update; a miss asks WhatsApp once (time-bounded, shared by concurrent
// lookups). Participant changes drop the cached participant list, so a send never goes to a
// stale member list: Baileys then fetches a fresh one itself.

export const DEFAULT_TTL_MS = 60 * 60 * 1000;
export const DEFAULT_MAX_GROUPS = 1000;
export const DEFAULT_FETCH_TIMEOUT_MS = 5000;
/** After a failed lookup, the group goes without a name this long instead of waiting again. */
export const DEFAULT_FAILURE_TTL_MS = 5 * 60 * 1000;

/** Fields of a groups.update entry that describe who changed something, not the group. */
const EVENT_ONLY = new Set(['author', 'authorPn', 'authorUsername']);

/**
 * @typedef {object} GroupEntry
 * @property {Record<string, any>} meta   what is known (a full GroupMetadata when `participants` is an array)
 * @property {number} expires
 */

export class GroupCache {
  /** @type {Map<string, GroupEntry>} least recently used first */
  #entries = new Map();
  /** @type {Map<string, Promise<string | null>>} */
  #fetching = new Map();
  /** @type {Map<string, number>} jid -> until when lookups are not retried */
  #failed = new Map();

  /**
   * @param {object} options
   * @param {(jid: string) => Promise<any>} options.fetch   sock.groupMetadata of the current socket
   * @param {number} [options.ttlMs]
   * @param {number} [options.maxGroups]
   * @param {number} [options.fetchTimeoutMs]
   * @param {number} [options.failureTtlMs]
   * @param {() => number} [options.now]
   * @param {(jid: string, err: unknown) => void} [options.onFetchError]
   */
  constructor({
    fetch, ttlMs = DEFAULT_TTL_MS, maxGroups = DEFAULT_MAX_GROUPS, fetchTimeoutMs = DEFAULT_FETCH_TIMEOUT_MS,
    failureTtlMs = DEFAULT_FAILURE_TTL_MS, now = Date.now, onFetchError,
  }) {
    this.fetch = fetch;
    this.ttlMs = ttlMs;
    this.maxGroups = maxGroups;
    this.fetchTimeoutMs = fetchTimeoutMs;
    this.failureTtlMs = failureTtlMs;
    this.now = now;
    this.onFetchError = onFetchError;
  }

  /**
   * groups.upsert: full metadata of groups joined or created.
   * @param {any[]} groups
   */
  upsert(groups) {
    for (const group of groups ?? []) {
      if (typeof group?.id !== 'string') continue;
      this.#store(group.id, { ...group });
    }
  }

  /**
   * groups.update: partial changes (a new subject, announce, …), or full metadata after
   * groupFetchAllParticipating. Unknown groups are remembered only when the update has a subject.
   * @param {any[]} updates
   */
  update(updates) {
    for (const update of updates ?? []) {
      if (typeof update?.id !== 'string') continue;
      const current = this.#get(update.id, false);
      /** @type {Record<string, any>} */
      const changes = {};
      for (const [key, value] of Object.entries(update)) {
        if (!EVENT_ONLY.has(key) && value !== undefined) changes[key] = value;
      }
      if (current) this.#store(update.id, { ...current.meta, ...changes });
      else if (typeof changes.subject === 'string' || Array.isArray(changes.participants)) this.#store(update.id, changes);
    }
  }

  /**
   * group-participants.update: the cached member list is stale; keep the rest (the subject).
   * @param {{id?: string}} update
   */
  participantsChanged(update) {
    if (typeof update?.id !== 'string') return;
    const current = this.#entries.get(update.id);
    if (!current) return;
    const { participants: _dropped, size: _size, ...rest } = current.meta;
    current.meta = rest;
  }

  /**
   * For Baileys' `cachedGroupMetadata`: full metadata only (with participants), else undefined,
   * which makes Baileys query WhatsApp itself.
   * @param {string} jid
   * @returns {Promise<any>}
   */
  async metadata(jid) {
    const entry = this.#get(jid, true);
    return entry && Array.isArray(entry.meta.participants) ? entry.meta : undefined;
  }

  /**
   * The group's subject: from the cache, else from one lookup (at most fetchTimeoutMs); null
   * when unknown. Never rejects.
   * @param {string} jid
   * @returns {Promise<string | null>}
   */
  async subject(jid) {
    const entry = this.#get(jid, true);
    if (entry && typeof entry.meta.subject === 'string') return entry.meta.subject;
    const failedUntil = this.#failed.get(jid);
    if (failedUntil !== undefined) {
      if (failedUntil > this.now()) return null;
      this.#failed.delete(jid);
    }
    let pending = this.#fetching.get(jid);
    if (!pending) {
      pending = this.#lookup(jid).finally(() => this.#fetching.delete(jid));
      this.#fetching.set(jid, pending);
    }
    return pending;
  }

  get size() {
    return this.#entries.size;
  }

  /** @param {string} jid */
  async #lookup(jid) {
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    try {
      const meta = await Promise.race([
        Promise.resolve().then(() => this.fetch(jid)),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no group metadata in ${this.fetchTimeoutMs} ms`)), this.fetchTimeoutMs);
        }),
      ]);
      if (!meta || typeof meta.subject !== 'string') throw new Error('group metadata without a subject');
      // A groups.update may have arrived meanwhile; it is newer than what the lookup saw.
      const current = this.#get(jid, false);
      this.#store(jid, current ? { ...meta, ...current.meta } : { ...meta });
      return /** @type {string} */ (this.#get(jid, false)?.meta.subject ?? meta.subject);
    } catch (err) {
      this.#failed.set(jid, this.now() + this.failureTtlMs);
      if (this.#failed.size > this.maxGroups) this.#failed.delete(/** @type {string} */ (this.#failed.keys().next().value));
      this.onFetchError?.(jid, err);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * @param {string} jid
   * @param {boolean} touch  move to most recently used
   */
  #get(jid, touch) {
    const entry = this.#entries.get(jid);
    if (!entry) return undefined;
    if (entry.expires <= this.now()) {
      this.#entries.delete(jid);
      return undefined;
    }
    if (touch) {
      this.#entries.delete(jid);
      this.#entries.set(jid, entry);
    }
    return entry;
  }

  /**
   * @param {string} jid
   * @param {Record<string, any>} meta
   */
  #store(jid, meta) {
    this.#entries.delete(jid);
    this.#entries.set(jid, { meta, expires: this.now() + this.ttlMs });
    this.#failed.delete(jid);
    while (this.#entries.size > this.maxGroups) {
      this.#entries.delete(/** @type {string} */ (this.#entries.keys().next().value));
    }
  }
}
