// The sidecar side of the seam (docs/protocol.md, docs/protocol.schema.json). Names mirror
// bridge/sidecar/protocol.py; the JSON Schema is the single source of truth for what is valid.
import { readFileSync } from 'node:fs';

/** Major protocol version announced in `ready`. */
export const PROTOCOL_VERSION = 1;

export const SCHEMA_URL = new URL('../docs/protocol.schema.json', import.meta.url);

/** The sidecar's own version: the project's package.json. */
export const SIDECAR_VERSION = /** @type {string} */ (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version
);

export const COMMAND_TYPES = /** @type {const} */ (['send_text', 'send_media', 'revoke', 'mark_read', 'profile_picture', 'logout', 'shutdown']);

const COMMAND_ID = /^[A-Za-z0-9_-]{1,64}$/;
// Last resort for lines that are not JSON at all: an id we can still answer under.
const LOOSE_ID = /"id"\s*:\s*"([A-Za-z0-9_-]{1,64})"/;

// ---------------------------------------------------------------------------------------------
// Events (sidecar -> bridge)

/**
 * First frame of every process: Baileys is loaded and the protocol major is known.
 * @typedef {{type: 'ready', protocol: number, sidecar: string, baileys: string, pid: number}} ReadyEvent
 */
/**
 * A QR reference to show to the phone (carries pairing secrets: never logged).
 * @typedef {{type: 'qr', qr: string}} QrEvent
 */
/**
 * The code to type on the phone (Linked devices → Link with phone number), sent instead of QR
 * codes when PONTE_PAIRING_PHONE is set.
 * @typedef {{type: 'pairing_code', code: string, phone: string}} PairingCodeEvent
 */
/**
 * The linked account, on `open`.
 * @typedef {{id: string, lid: string | null, name: string | null}} Me
 */
/**
 * The WhatsApp connection changed state; `close` carries the code and whether we reconnect (515 only).
 * @typedef {object} ConnectionEvent
 * @property {'connection'} type
 * @property {'connecting' | 'open' | 'close'} state
 * @property {Me} [me]
 * @property {boolean} [is_new_login]
 * @property {number | null} [status_code]
 * @property {string} [reason]
 * @property {string | null} [message]
 * @property {boolean} [will_reconnect]
 */
/**
 * The key fields of a WhatsApp message, copied from Baileys' `WAMessageKey`.
 * @typedef {{remoteJid: string, fromMe: boolean, id: string, participant?: string | null,
 *   remoteJidAlt?: string | null, participantAlt?: string | null, addressingMode?: string | null}} WaMessageKey
 */
/**
 * One message of a Baileys `messages.upsert`, its WAMessage JSON untouched.
 * @typedef {object} MessageEvent
 * @property {'message'} type
 * @property {'notify' | 'append'} upsert
 * @property {WaMessageKey} key
 * @property {string | null} content_type
 * @property {boolean} echo     true when this process sent it (send_text, send_media, revoke)
 * @property {MediaInfo} [media]  media messages only: the file in the spool, or why there is none
 * @property {string | null} [chat_name]  group chats only: the subject, when known
 * @property {Record<string, unknown>} message
 */
/**
 * A downloaded media file in PONTE_MEDIA_DIR (`path` absolute, mode 0600; the bridge deletes it
 * after use), or why there is none: `too_large` (over PONTE_MEDIA_MAX_BYTES; `size` is the
 * declared length, or the bytes seen when the declared length lied) or `download_failed`.
 * @typedef {{path: string, mimetype: string, size: number, file_name: string | null}
 *   | {error: 'too_large' | 'download_failed', mimetype: string, size: number | null, file_name: string | null,
 *      message: string}} MediaInfo
 */
/**
 * A LID and a phone number are the same person; both without device suffix.
 * @typedef {{type: 'lid_mapping', lid: string, pn: string}} LidMappingEvent
 */
/**
 * What WhatsApp says happened to a message (Baileys `WAMessageStatus` 0-5 by name).
 * @typedef {'error' | 'pending' | 'server_ack' | 'delivered' | 'read' | 'played'} MessageStatus
 */
/**
 * A status change of a message, from `messages.update` or merged into an upserted message.
 * @typedef {{type: 'message_status', key: WaMessageKey, status: MessageStatus}} MessageStatusEvent
 */
/**
 * @typedef {'bad_command' | 'not_connected' | 'invalid_jid' | 'not_on_whatsapp' | 'bad_media' | 'send_failed'
 *   | 'internal'} ResultErrorCode
 */
/**
 * The answer to the command with the same id.
 * @typedef {{type: 'result', id: string, ok: true, data: Record<string, unknown>}
 *   | {type: 'result', id: string, ok: false, error: {code: ResultErrorCode, message: string}}} Result
 */
/**
 * The sidecar cannot run this instance and exits 78 right after.
 * @typedef {{type: 'fatal', code: 'auth_unreadable' | 'bad_config' | 'internal', message: string}} FatalEvent
 */
/**
 * @typedef {ReadyEvent | QrEvent | PairingCodeEvent | ConnectionEvent | MessageEvent | LidMappingEvent
 *   | MessageStatusEvent | Result | FatalEvent} SidecarEvent
 */

// ---------------------------------------------------------------------------------------------
// Commands (bridge -> sidecar)

/**
 * The message a send answers: WhatsApp shows it quoted above the new one. `text` stands in for
 * its content (the phone may no longer have it); `participant` is the author in groups.
 * @typedef {{id: string, from_me: boolean, participant?: string | null, text?: string | null}} Quote
 */
/**
 * Send a text message to a chat.
 * @typedef {{type: 'send_text', id: string, jid: string, text: string, quote?: Quote}} SendTextCommand
 */
/**
 * Send a file of the media spool (only regular files whose real path is inside PONTE_MEDIA_DIR).
 * @typedef {object} SendMediaCommand
 * @property {'send_media'} type
 * @property {string} id
 * @property {string} jid
 * @property {string} path
 * @property {string} mimetype
 * @property {'image' | 'video' | 'audio' | 'document' | 'sticker'} kind
 * @property {string | null} [file_name]   documents: the name the recipient sees
 * @property {string | null} [caption]     not for stickers (nor audio, where WhatsApp shows none)
 * @property {boolean} [ptt]               audio as a voice note
 * @property {Quote} [quote]
 */
/**
 * Delete a message this number sent, for everyone.
 * @typedef {{type: 'revoke', id: string, jid: string, message_id: string}} RevokeCommand
 */
/**
 * Read receipts for messages the customer sent (`participant`: their author, in groups).
 * @typedef {{type: 'mark_read', id: string, jid: string, message_ids: string[], participant?: string | null}} MarkReadCommand
 */
/**
 * The chat's current profile picture URL, or null (none, or hidden by privacy).
 * @typedef {{type: 'profile_picture', id: string, jid: string}} ProfilePictureCommand
 */
/**
 * Unlink this device; the connection then closes with 401.
 * @typedef {{type: 'logout', id: string}} LogoutCommand
 */
/**
 * Finish pending auth writes, close the socket without unlinking, exit 0.
 * @typedef {{type: 'shutdown', id: string}} ShutdownCommand
 */
/**
 * @typedef {SendTextCommand | SendMediaCommand | RevokeCommand | MarkReadCommand | ProfilePictureCommand | LogoutCommand | ShutdownCommand}
 *   SidecarCommand
 */

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Converts a value to the wire's JSON conventions: Buffers/Uint8Arrays as Baileys' BufferJSON
 * `{type:'Buffer', data:<base64>}`, protobuf Longs and bigints as numbers.
 *
 * Protobuf objects are walked field by field on purpose: their own `toJSON` (protobufjs
 * `toJSONOptions`) would turn bytes into bare base64 strings, enums into names and Longs into
 * strings, which is not "Baileys' own WAMessage JSON".
 * @param {unknown} value
 * @returns {unknown}
 */
export function toWire(value) {
  return convert(value, new Set());
}

/**
 * @param {unknown} value
 * @param {Set<object>} ancestors  guards against cycles, which JSON cannot express
 * @returns {unknown}
 */
function convert(value, ancestors) {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'bigint') return Number(value);
    if (typeof value === 'number' && !Number.isFinite(value)) return null;
    if (typeof value === 'function' || typeof value === 'symbol') return undefined;
    return value;
  }
  if (value instanceof Uint8Array) {
    return { type: 'Buffer', data: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  // A Buffer that already went through Buffer#toJSON: {type:'Buffer', data:[bytes]}.
  const maybeBuffer = /** @type {{type?: unknown, data?: unknown}} */ (value);
  if (maybeBuffer.type === 'Buffer' && Array.isArray(maybeBuffer.data)) {
    return { type: 'Buffer', data: Buffer.from(/** @type {number[]} */ (maybeBuffer.data)).toString('base64') };
  }
  const long = longToNumber(value);
  if (long !== undefined) return long;
  if (value instanceof Date) return value.toISOString();
  if (ancestors.has(value)) return null;
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      return value.map((item) => {
        const converted = convert(item, ancestors);
        return converted === undefined ? null : converted;
      });
    }
    // protobufjs constructors set every repeated field to [] as an own property; its toObject
    // leaves empty ones out, and so do we (ten empty arrays on every message are noise).
    const isProtobuf = typeof (/** @type {any} */ (value).constructor?.encode) === 'function';
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (isProtobuf && Array.isArray(item) && item.length === 0) continue;
      const converted = convert(item, ancestors);
      if (converted !== undefined) out[key] = converted;
    }
    return out;
  } finally {
    ancestors.delete(value);
  }
}

/**
 * Recognises Long objects (long.js or protobufjs' plain `{low, high, unsigned}`) without
 * importing either library.
 * @param {object} value
 * @returns {number | undefined}
 */
function longToNumber(value) {
  const v = /** @type {{low?: unknown, high?: unknown, unsigned?: unknown, __isLong__?: unknown}} */ (value);
  if (typeof v.low !== 'number' || typeof v.high !== 'number') return undefined;
  if (v.__isLong__ !== true) {
    const keys = Object.keys(value);
    if (!keys.every((k) => k === 'low' || k === 'high' || k === 'unsigned')) return undefined;
  }
  const high = v.unsigned ? v.high >>> 0 : v.high | 0;
  return high * 4294967296 + (v.low >>> 0);
}

/**
 * One frame as one line. U+2028/U+2029/U+0085 are legal in JSON but some line readers split
 * on them (Python's str.splitlines), so they go out escaped.
 * @param {SidecarEvent} frame
 * @returns {string}
 */
export function encodeFrame(frame) {
  return JSON.stringify(frame).replace(/[\u2028\u2029\u0085]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n';
}

/**
 * @typedef {object} FrameWriter
 * @property {(frame: SidecarEvent) => Promise<void>} write   resolves once the line is handed to the OS
 * @property {() => Promise<void>} flush                      resolves once every earlier line is
 */

/**
 * The one writer of stdout. Each frame is a single write() of a whole line, so lines never
 * interleave; flush() lets the process exit only after the last one left.
 * @param {(chunk: string, callback: (err?: Error | null) => void) => unknown} writeChunk
 * @param {(err: Error) => void} [onError]  e.g. EPIPE when the bridge went away
 * @returns {FrameWriter}
 */
export function createFrameWriter(writeChunk, onError) {
  /** @type {Promise<void>} */
  let last = Promise.resolve();
  return {
    write(frame) {
      const line = encodeFrame(frame);
      last = new Promise((resolve) => {
        writeChunk(line, (err) => {
          if (err && onError) onError(err);
          resolve();
        });
      });
      return last;
    },
    flush() {
      return last;
    },
  };
}

/**
 * @typedef {object} LineSplitter
 * @property {(chunk: Buffer) => void} push
 * @property {() => void} end   delivers a last line without its newline
 */

/**
 * Splits stdin into lines of at most maxBytes. A longer line is never buffered whole: it is
 * dropped, and onOverlong gets its first bytes (enough to find the command id) and its length.
 * @param {number} maxBytes
 * @param {(line: string) => void} onLine
 * @param {(head: string, bytes: number) => void} onOverlong
 * @returns {LineSplitter}
 */
export function createLineSplitter(maxBytes, onLine, onOverlong) {
  const HEAD_BYTES = 256;
  /** @type {Buffer[]} */
  let parts = [];
  let size = 0;
  /** @type {string | null} the head of the line being discarded, once it is known to be too long */
  let overlongHead = null;

  const takeHead = () => Buffer.concat(parts).subarray(0, HEAD_BYTES).toString('utf8');
  const finishLine = (/** @type {Buffer} */ last) => {
    const total = size + last.length;
    if (overlongHead !== null || total > maxBytes) {
      onOverlong(overlongHead ?? Buffer.concat([...parts, last]).subarray(0, HEAD_BYTES).toString('utf8'), total);
    } else {
      onLine(Buffer.concat([...parts, last]).toString('utf8'));
    }
    parts = [];
    size = 0;
    overlongHead = null;
  };

  return {
    push(chunk) {
      let start = 0;
      let newline;
      while ((newline = chunk.indexOf(10, start)) !== -1) {
        finishLine(chunk.subarray(start, newline));
        start = newline + 1;
      }
      const rest = chunk.subarray(start);
      if (rest.length === 0) return;
      if (overlongHead === null && size + rest.length > maxBytes) {
        parts.push(rest);
        overlongHead = takeHead();
        parts = [];
      } else if (overlongHead === null) {
        // Copied: the stream may reuse the chunk's memory.
        parts.push(Buffer.from(rest));
      }
      size += rest.length;
    },
    end() {
      if (size > 0) finishLine(Buffer.alloc(0));
    },
  };
}

/**
 * The command id of a line that cannot be parsed as JSON, if one is plainly written in it.
 * @param {string} text
 * @returns {string | null}
 */
export function readLooseId(text) {
  return LOOSE_ID.exec(text)?.[1] ?? null;
}

// ---------------------------------------------------------------------------------------------
// Validation

/** @returns {Record<string, any>} the parsed docs/protocol.schema.json */
export function loadSchema() {
  return JSON.parse(readFileSync(SCHEMA_URL, 'utf8'));
}

/**
 * Compiles the whole protocol schema, checked against the JSON Schema 2020-12 meta-schema: for
 * tests and tools. The sidecar itself only needs compileCommandValidators().
 * @param {Record<string, any>} [schema]
 * @returns {Promise<{validateFrame: import('ajv').ValidateFunction, validateCommand: Record<string, import('ajv').ValidateFunction>}>}
 */
export async function compileSchema(schema = loadSchema()) {
  const { default: Ajv2020 } = await import('ajv/dist/2020.js');
  const ajv = new Ajv2020({ allErrors: false });
  ajv.addSchema(schema);
  const validateFrame = /** @type {import('ajv').ValidateFunction} */ (ajv.getSchema(schema.$id));
  /** @type {Record<string, import('ajv').ValidateFunction>} */
  const validateCommand = {};
  for (const type of COMMAND_TYPES) {
    validateCommand[type] = /** @type {import('ajv').ValidateFunction} */ (ajv.getSchema(`${schema.$id}#/$defs/${type}`));
  }
  return { validateFrame, validateCommand };
}

/**
 * One validator per command type, compiled from the schema file's own definitions. Start-up
 * cost matters here (every restart pays it): compiling just the command definitions, without
 * the meta-schema check that compileSchema does in the tests, takes ~40 ms instead of ~300 ms.
 * ajv is loaded lazily so that a missing ajv is reported by the caller (as `fatal`) instead of
 * crashing at import time.
 * @param {Record<string, any>} [schema]
 * @returns {Promise<Record<string, import('ajv').ValidateFunction>>}
 */
export async function compileCommandValidators(schema = loadSchema()) {
  const { default: Ajv2020 } = await import('ajv/dist/2020.js');
  const ajv = new Ajv2020({ allErrors: false, validateSchema: false });
  /** @type {Record<string, import('ajv').ValidateFunction>} */
  const validateCommand = {};
  for (const type of COMMAND_TYPES) {
    validateCommand[type] = ajv.compile({ $defs: schema.$defs, $ref: `#/$defs/${type}` });
  }
  return validateCommand;
}

/**
 * @typedef {{ok: true, command: SidecarCommand} | {ok: false, id: string | null, message: string}} DecodedCommand
 */

/**
 * Parses and validates one stdin line. On failure, `id` is the command id when one can be read,
 * so the caller can answer `bad_command`; `message` never quotes the line (it may hold a text).
 * @param {string} line
 * @param {Record<string, import('ajv').ValidateFunction>} validateCommand
 * @returns {DecodedCommand}
 */
export function decodeCommand(line, validateCommand) {
  let parsed;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { ok: false, id: readLooseId(line), message: 'command is not valid JSON' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, id: null, message: 'command is not a JSON object' };
  }
  const id = typeof parsed.id === 'string' && COMMAND_ID.test(parsed.id) ? parsed.id : null;
  const validate = typeof parsed.type === 'string' && Object.hasOwn(validateCommand, parsed.type)
    ? validateCommand[parsed.type]
    : undefined;
  if (!validate) {
    return { ok: false, id, message: `unknown command type ${describeType(parsed.type)}` };
  }
  if (!validate(parsed)) {
    const err = validate.errors?.[0];
    const where = err?.instancePath || '/';
    return { ok: false, id, message: `invalid ${parsed.type} command: ${where} ${err?.message ?? 'is invalid'}` };
  }
  return { ok: true, command: /** @type {SidecarCommand} */ (parsed) };
}

/** @param {unknown} type */
function describeType(type) {
  return typeof type === 'string' ? JSON.stringify(type.slice(0, 40)) : typeof type;
}

/**
 * @param {string} id
 * @param {Record<string, unknown>} [data]
 * @returns {Result}
 */
export function okResult(id, data = {}) {
  return { type: 'result', id, ok: true, data };
}

/**
 * @param {string} id
 * @param {ResultErrorCode} code
 * @param {string} message
 * @returns {Result}
 */
export function errorResult(id, code, message) {
  return { type: 'result', id, ok: false, error: { code, message } };
}
