// Per-chat ordering of message frames (docs/protocol.md "Media and order"): within one chat,
// frames leave in Baileys' order even when an earlier one waits for a media download or a group
// name; other chats never wait for it. No Baileys here: the queue and the limiter are generic,
// and createMessagePipeline takes everything it needs as functions, so tests can drive it with
// fakes.

/**
 * One promise chain per key (chat): a task starts when the previous task of the same key has
 * settled, tasks of different keys run independently. A key's entry is dropped as soon as its
 * chain is idle, so the map holds only chats with work in flight.
 */
export class ChatQueue {
  /** @type {Map<string, {tail: Promise<void>, pending: number}>} */
  #chats = new Map();

  /**
   * Runs task after every earlier task of `key`. Never rejects: a failing task is reported to
   * onError and the chain goes on (one bad message must not stall its chat).
   * @param {string} key
   * @param {() => Promise<void> | void} task
   * @param {(err: unknown) => void} [onError]
   * @returns {Promise<void>} settles when this task has
   */
  run(key, task, onError) {
    let entry = this.#chats.get(key);
    if (!entry) {
      entry = { tail: Promise.resolve(), pending: 0 };
      this.#chats.set(key, entry);
    }
    const current = entry;
    current.pending += 1;
    const done = current.tail.then(task).catch((err) => {
      if (onError) onError(err);
    }).finally(() => {
      current.pending -= 1;
      if (current.pending === 0 && this.#chats.get(key) === current) this.#chats.delete(key);
    });
    current.tail = done;
    return done;
  }

  /** Chats with at least one task queued or running. */
  get size() {
    return this.#chats.size;
  }

  /** Tasks queued or running, all chats together. */
  get pending() {
    let total = 0;
    for (const entry of this.#chats.values()) total += entry.pending;
    return total;
  }

  /** Resolves when every task queued so far (and any queued meanwhile) has settled. */
  async idle() {
    while (this.#chats.size > 0) {
      await Promise.allSettled([...this.#chats.values()].map((entry) => entry.tail));
    }
  }
}

/** At most `limit` tasks at a time; the others wait in arrival order. */
export class Limiter {
  #running = 0;
  /** @type {Array<() => void>} */
  #waiting = [];

  /** @param {number} limit */
  constructor(limit) {
    this.limit = limit;
  }

  /**
   * @template T
   * @param {() => Promise<T>} task
   * @returns {Promise<T>}
   */
  async run(task) {
    if (this.#running >= this.limit) {
      await new Promise((resolve) => { this.#waiting.push(() => resolve(undefined)); });
    } else {
      this.#running += 1;
    }
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter; #running only drops when nobody waits.
      if (next) next();
      else this.#running -= 1;
    }
  }

  get running() {
    return this.#running;
  }
}

/**
 * @typedef {object} PipelineDeps
 * @property {(frame: import('./protocol.js').SidecarEvent) => Promise<void>} write   the frame writer
 * @property {(msg: any, frame: import('./protocol.js').MessageEvent) => (Promise<import('./protocol.js').MediaInfo> | null)} [media]
 *   starts the download of a media message; null when the message has no media
 * @property {(jid: string) => Promise<string | null>} [chatName]   a group's subject, or null
 * @property {(err: unknown, frame: import('./protocol.js').MessageEvent | import('./protocol.js').MessageStatusEvent) => void} [onError]
 */

/**
 * Delivers the message frames of upserts: each frame goes into its chat's queue, where its
 * media download and group name lookup complete before it is written. The frame writer is
 * only called with a finished frame, so slow downloads never hold stdout.
 * @param {PipelineDeps} deps
 */
export function createMessagePipeline(deps) {
  const queue = new ChatQueue();
  /** Message ids queued and not yet written -> their chat, for the status frames that follow them. */
  /** @type {Map<string, {chat: string, count: number}>} */
  const waiting = new Map();
  const settle = (/** @type {string} */ id) => {
    const entry = waiting.get(id);
    if (entry && --entry.count === 0) waiting.delete(id);
  };
  return {
    /**
     * Queues the frames in order. Returns at once; each frame is written when its chat allows.
     * @param {Array<{frame: import('./protocol.js').MessageEvent, msg: any}>} entries
     */
    push(entries) {
      for (const { frame, msg } of entries) {
        const chat = frame.key.remoteJid;
        const id = frame.key.id;
        const entry = waiting.get(id);
        if (entry) {
          entry.chat = chat;
          entry.count += 1;
        } else {
          waiting.set(id, { chat, count: 1 });
        }
        void queue.run(chat, async () => {
          try {
            const [media, name] = await Promise.all([
              // An echo is our own send: the bridge drops it (it has the file), so fetching the
              // media again would only leave an orphan in the spool.
              deps.media && !frame.echo ? deps.media(msg, frame) : null,
              deps.chatName && chat.endsWith('@g.us') ? deps.chatName(chat) : null,
            ]);
            if (name) frame.chat_name = name;
            if (media) frame.media = media;
          } catch (err) {
            // The frame still goes out: losing the message is worse than losing its extras.
            deps.onError?.(err, frame);
          }
          try {
            await deps.write(frame);
          } finally {
            settle(id);
          }
        }, (err) => deps.onError?.(err, frame));
      }
    },
    /**
     * Queues frames that must not overtake a message frame: a `message_status` goes behind the
     * message it is about while that one is still queued (the receipt's key may name the chat
     * differently, by LID instead of phone number), else behind its own chat's queue.
     * @param {import('./protocol.js').MessageStatusEvent[]} frames
     */
    pushAfter(frames) {
      for (const frame of frames) {
        const chat = waiting.get(frame.key.id)?.chat ?? frame.key.remoteJid;
        void queue.run(chat, () => deps.write(frame), (err) => deps.onError?.(err, frame));
      }
    },
    /**
     * Resolves when every queued frame is written, or after timeoutMs.
     * @param {number} timeoutMs
     * @returns {Promise<boolean>} true when drained
     */
    async drain(timeoutMs) {
      /** @type {NodeJS.Timeout | undefined} */
      let timer;
      const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
      try {
        return /** @type {boolean} */ (await Promise.race([queue.idle().then(() => true), timeout]));
      } finally {
        clearTimeout(timer);
      }
    },
    get pending() {
      return queue.pending;
    },
    get chats() {
      return queue.size;
    },
  };
}

/**
 * Makes an emitter's async listeners for `event` handle one emission at a time, in arrival
 * order. Baileys handles each incoming `message` stanza in its own promise and awaits the
 * LID-mapping store before taking its decrypt mutex; the first message of a new contact
 * does extra work there (store the mapping, migrate the session), so the contact's second
 * message could overtake it and reach Chatwoot first. Running the handlers in a chain
 * keeps WhatsApp's order; decryption was serial already, so little throughput is lost.
 * A failing handler does not stop the chain (Baileys reports its own errors).
 * @param {import('node:events').EventEmitter} emitter
 * @param {string} event
 * @returns {number} how many listeners were wrapped
 */
export function serializeListeners(emitter, event) {
  const listeners = /** @type {Array<(...args: any[]) => unknown>} */ (emitter.listeners(event));
  if (listeners.length === 0) return 0;
  emitter.removeAllListeners(event);
  /** @type {Promise<unknown>} */
  let tail = Promise.resolve();
  emitter.on(event, (...args) => {
    tail = tail.then(() => Promise.allSettled(listeners.map((listener) => listener(...args))));
  });
  return listeners.length;
}
