// Auth state on disk: PONTE_AUTH_DIR/creds.json plus one `<type>-<id>.json` per Signal key, the
// same layout and BufferJSON encoding as Baileys' useMultiFileAuthState (so existing session
// folders keep working), but with the three properties that store lacks:
//   - every write is atomic (temp file in the same directory, fsync, rename, directory fsync),
//     because a truncated creds.json or a lost session write unlinks the number or causes
//     "Bad MAC" decrypt failures;
//   - keys.set() resolves only once its files are on disk;
//   - an unreadable creds.json is fatal, never silently replaced by a new identity.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

import { BufferJSON, initAuthCreds, makeCacheableSignalKeyStore, proto } from './baileys.js';

export const CREDS_FILE = 'creds.json';
/** Temp files carry this prefix so a restart can remove the leftovers of a crash mid-write. */
export const TEMP_PREFIX = '.ponte-tmp-';
/** Bounds open file handles: the first login writes ~812 pre-keys in one keys.set(). */
const MAX_PARALLEL_FILE_OPS = 16;
/** What filesystems that refuse fsync on a directory answer; the rename is still atomic there. */
const DIR_FSYNC_UNSUPPORTED = ['EINVAL', 'EISDIR', 'EPERM', 'EBADF'];

/** creds.json exists but cannot be used: the caller must stop, not pair again. */
export class AuthUnreadableError extends Error {
  name = 'AuthUnreadableError';
}

/**
 * @typedef {object} Logger
 * @property {(obj: object, msg?: string) => void} warn
 * @property {(obj: object, msg?: string) => void} info
 * @property {(obj: object, msg?: string) => void} debug
 * @property {(obj: object, msg?: string) => void} trace
 */

/**
 * Maps a key to its file name exactly as useMultiFileAuthState does (ids hold `/` and `:`).
 * @param {string} type
 * @param {string} id
 */
export function keyFileName(type, id) {
  return `${type}-${id}.json`.replace(/\//g, '__').replace(/:/g, '-');
}

/**
 * Serialised, atomic file operations inside one directory, with a record of what is in flight.
 */
export class FileStore {
  /** @type {Map<string, Promise<void>>} name -> tail of that file's operation chain */
  #locks = new Map();
  /** @type {Set<Promise<unknown>>} */
  #pending = new Set();
  #active = 0;
  /** @type {Array<() => void>} */
  #waiting = [];
  #tempCounter = 0;
  /** @type {Map<string, number>} name -> writeSync() count: older async writes must not land after one */
  #syncWrites = new Map();

  /** @param {string} dir */
  constructor(dir) {
    this.dir = dir;
  }

  /** Number of names with a queued or running operation (the lock map is pruned as chains end). */
  get lockCount() {
    return this.#locks.size;
  }

  /**
   * Runs fn after every earlier operation on the same file. The map entry is removed when the
   * chain drains, so one entry per key ever touched does not pile up.
   * @template T
   * @param {string} name
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  locked(name, fn) {
    return this.serial(name, () => this.#limited(fn));
  }

  /**
   * Like locked() but outside the open-file limit: for a chain whose steps call locked()
   * themselves (holding a slot while waiting for another could starve the pool).
   * @template T
   * @param {string} name
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  serial(name, fn) {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const run = previous.then(fn);
    const tail = run.then(() => {}, () => {});
    this.#locks.set(name, tail);
    void tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return this.track(run);
  }

  /**
   * Records a promise as pending until it settles; flush() waits for all of them.
   * @template T
   * @param {Promise<T>} promise
   * @returns {Promise<T>}
   */
  track(promise) {
    this.#pending.add(promise);
    const done = () => this.#pending.delete(promise);
    promise.then(done, done);
    return promise;
  }

  /** Resolves once nothing is in flight, including work queued while waiting. */
  async flush() {
    while (this.#pending.size > 0) {
      await Promise.allSettled([...this.#pending]);
    }
  }

  /**
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  async #limited(fn) {
    if (this.#active < MAX_PARALLEL_FILE_OPS) {
      this.#active += 1;
    } else {
      // The finishing operation hands its slot over, so #active never overshoots.
      await new Promise((resolve) => this.#waiting.push(() => resolve(undefined)));
    }
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#active -= 1;
    }
  }

  /**
   * @param {string} name
   * @returns {Promise<string | undefined>} undefined when the file does not exist
   */
  read(name) {
    return this.locked(name, async () => {
      try {
        return await readFile(join(this.dir, name), 'utf8');
      } catch (err) {
        if (errno(err) === 'ENOENT') return undefined;
        throw err;
      }
    });
  }

  /**
   * Replaces the file atomically. Does not fsync the directory: callers batch that (syncDir).
   * @param {string} name
   * @param {string} text
   */
  write(name, text) {
    // Taken at call time, with the text: a writeSync() after this call holds newer content.
    const generation = this.#syncWrites.get(name) ?? 0;
    return this.locked(name, async () => {
      const temp = this.#tempPath();
      let handle;
      try {
        handle = await open(temp, 'wx', 0o600);
        await handle.writeFile(text, 'utf8');
        await handle.sync();
        await handle.close();
        handle = undefined;
        if ((this.#syncWrites.get(name) ?? 0) !== generation) {
          // writeSync() replaced the file meanwhile with newer content: this text is stale.
          await unlink(temp).catch(() => {});
          return;
        }
        await rename(temp, join(this.dir, name));
      } catch (err) {
        await handle?.close().catch(() => {});
        await unlink(temp).catch(() => {});
        throw err;
      }
    });
  }

  /**
   * write(), but blocking: the file and its directory entry are on disk when this returns, before
   * any other JavaScript runs. Only for a moment when code we do not control acts on the data right
   * after handing it to us (AuthStore.saveCredsSync). An async write() called earlier is dropped
   * instead of landing after this one; one whose rename is already under way can still land
   * after it, so follow this with a regular write() of the same content.
   * @param {string} name
   * @param {string} text
   */
  writeSync(name, text) {
    this.#syncWrites.set(name, (this.#syncWrites.get(name) ?? 0) + 1);
    const temp = this.#tempPath();
    /** @type {number | undefined} */
    let fd;
    try {
      fd = openSync(temp, 'wx', 0o600);
      writeFileSync(fd, text, 'utf8');
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(temp, join(this.dir, name));
    } catch (err) {
      if (fd !== undefined) {
        try { closeSync(fd); } catch { /* already failing */ }
      }
      try { unlinkSync(temp); } catch { /* never created */ }
      throw err;
    }
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } catch (err) {
      if (!DIR_FSYNC_UNSUPPORTED.includes(errno(err))) throw err;
    } finally {
      closeSync(dirFd);
    }
  }

  #tempPath() {
    return join(this.dir, `${TEMP_PREFIX}${process.pid}-${++this.#tempCounter}-${randomBytes(4).toString('hex')}`);
  }

  /** @param {string} name */
  remove(name) {
    return this.locked(name, async () => {
      try {
        await unlink(join(this.dir, name));
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
      }
    });
  }

  /** Makes renames and unlinks durable: they live in the directory entry, not the file. */
  syncDir() {
    return this.track((async () => {
      const handle = await open(this.dir, 'r');
      try {
        await handle.sync();
      } catch (err) {
        // Some filesystems refuse fsync on a directory; the rename is still atomic there.
        if (!DIR_FSYNC_UNSUPPORTED.includes(errno(err))) throw err;
      } finally {
        await handle.close();
      }
    })());
  }

  /** Removes temp files left by a process that died mid-write; their targets are intact. */
  async removeStaleTemps() {
    const names = await readdir(this.dir);
    const stale = names.filter((name) => name.startsWith(TEMP_PREFIX));
    await Promise.all(stale.map((name) => unlink(join(this.dir, name)).catch(() => {})));
    return stale.length;
  }
}

/**
 * @typedef {object} AuthStore
 * @property {import('@whiskeysockets/baileys').AuthenticationCreds} creds  mutated by Baileys in place
 * @property {import('@whiskeysockets/baileys').SignalKeyStore} keys         cached; hand this to Baileys
 * @property {import('@whiskeysockets/baileys').SignalKeyStore} diskKeys     the uncached file store
 * @property {boolean} isNew            creds.json did not exist: a new identity, pairing by QR
 * @property {() => Promise<void>} saveCreds   persists the whole creds (call on every creds.update)
 * @property {() => void} saveCredsSync   persists the whole creds before returning (blocking; see there)
 * @property {() => Promise<void>} flush       resolves when every write started so far is on disk
 * @property {FileStore} files
 */

/**
 * Opens the auth state in an existing directory.
 * @param {string} dir
 * @param {Logger} logger
 * @returns {Promise<AuthStore>}
 * @throws {AuthUnreadableError} when creds.json exists but is not a usable identity
 */
export async function openAuthStore(dir, logger) {
  const files = new FileStore(dir);
  const staleTemps = await files.removeStaleTemps();
  if (staleTemps > 0) logger.warn({ count: staleTemps }, 'removed temp files left by an interrupted write');

  const { creds, isNew } = await loadCreds(files);

  /** @type {Promise<void> | null} a save queued behind the running one, shared by later calls */
  let queuedSave = null;
  const saveCreds = () => {
    // Coalesced: creds.update can fire in bursts, and each write serialises the latest creds.
    if (queuedSave) return queuedSave;
    const save = files.serial(`${CREDS_FILE}#save`, async () => {
      queuedSave = null;
      await files.write(CREDS_FILE, JSON.stringify(creds, BufferJSON.replacer));
      await files.syncDir();
    });
    queuedSave = save;
    return save;
  };

  /**
   * The blocking variant, for the pairing: Baileys emits creds.update with the new account and
   * sends pair-device-sign in the same tick, and the signature makes the phone list the device as
   * linked. If the process died before an async save landed, the next start would show a QR for a
   * forgotten or even brand-new identity while the phone keeps a ghost device.
   */
  const saveCredsSync = () => {
    files.writeSync(CREDS_FILE, JSON.stringify(creds, BufferJSON.replacer));
  };

  /** @type {import('@whiskeysockets/baileys').SignalKeyStore} */
  const diskKeys = {
    async get(type, ids) {
      /** @type {Record<string, any>} */
      const data = {};
      await Promise.all(ids.map(async (id) => {
        const text = await files.read(keyFileName(type, id));
        if (text === undefined) return;
        let value;
        try {
          value = JSON.parse(text, BufferJSON.reviver);
        } catch {
          // A lost key is recoverable (Baileys renegotiates); refusing every decrypt is not.
          logger.warn({ type }, 'ignoring an unparsable key file');
          return;
        }
        if (type === 'app-state-sync-key' && value) {
          value = proto.Message.AppStateSyncKeyData.fromObject(value);
        }
        data[id] = value;
      }));
      return data;
    },
    async set(data) {
      /** @type {Promise<void>[]} */
      const tasks = [];
      for (const [type, entries] of Object.entries(data)) {
        for (const [id, value] of Object.entries(entries ?? {})) {
          const name = keyFileName(type, id);
          tasks.push(value == null ? files.remove(name) : files.write(name, JSON.stringify(value, BufferJSON.replacer)));
        }
      }
      if (tasks.length === 0) return;
      await Promise.all(tasks);
      await files.syncDir();
    },
  };

  return {
    creds,
    keys: makeCacheableSignalKeyStore(diskKeys, /** @type {any} */ (logger)),
    diskKeys,
    isNew,
    saveCreds,
    saveCredsSync,
    flush: () => files.flush(),
    files,
  };
}

/**
 * @param {FileStore} files
 * @returns {Promise<{creds: import('@whiskeysockets/baileys').AuthenticationCreds, isNew: boolean}>}
 */
async function loadCreds(files) {
  let text;
  try {
    text = await files.read(CREDS_FILE);
  } catch (err) {
    throw new AuthUnreadableError(`creds.json cannot be read (${errno(err)}); refusing to create a new identity`);
  }
  if (text === undefined) return { creds: initAuthCreds(), isNew: true };
  if (text.trim() === '') {
    throw new AuthUnreadableError('creds.json is empty; refusing to create a new identity');
  }
  let creds;
  try {
    creds = JSON.parse(text, BufferJSON.reviver);
  } catch {
    throw new AuthUnreadableError('creds.json is not valid JSON; refusing to create a new identity');
  }
  const missing = missingCredsField(creds);
  if (missing) {
    throw new AuthUnreadableError(`creds.json has no valid ${missing}; refusing to create a new identity`);
  }
  return { creds, isNew: false };
}

/**
 * The fields without which Baileys cannot log in or pair (see initAuthCreds).
 * @param {any} creds
 * @returns {string | null} the first missing field, or null
 */
export function missingCredsField(creds) {
  if (creds === null || typeof creds !== 'object' || Array.isArray(creds)) return 'object';
  const isKey = (/** @type {unknown} */ v) => Buffer.isBuffer(v) && v.length === 32;
  const isPair = (/** @type {any} */ p) => isKey(p?.private) && isKey(p?.public);
  if (!isPair(creds.noiseKey)) return 'noiseKey';
  if (!isPair(creds.signedIdentityKey)) return 'signedIdentityKey';
  if (!isPair(creds.signedPreKey?.keyPair) || !Buffer.isBuffer(creds.signedPreKey?.signature)
    || !Number.isInteger(creds.signedPreKey?.keyId)) return 'signedPreKey';
  if (!Number.isInteger(creds.registrationId)) return 'registrationId';
  if (typeof creds.advSecretKey !== 'string' || creds.advSecretKey === '') return 'advSecretKey';
  return null;
}

/** @param {unknown} err */
function errno(err) {
  return /** @type {NodeJS.ErrnoException} */ (err)?.code ?? 'unknown';
}
