// Keeps stdout for protocol frames. This module must be evaluated before Baileys (and libsignal)
// load: libsignal prints whole session records, private ratchet keys included, with console.info,
// and Baileys has stray console.log calls. main.js imports it first and loads Baileys with a
// dynamic import() afterwards.
//
// Everything console.* would print goes to stderr as one JSON line (pino's shape, so the
// supervisor parses one format), objects are summarised rather than serialised, and libsignal's
// session dumps are dropped entirely.
import { Console } from 'node:console';
import { format } from 'node:util';

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** libsignal lines whose arguments are session records (key material): never printed. */
const SECRET_DUMPS = [
  /^Opening session/,
  /^Closing session/,
  /^Removing old closed session/,
  /^Session already closed/,
  /^Session already open/,
  /^Migrating session/,
  /^Unhandled bucket type/,
];

const threshold = LEVELS[process.env.PONTE_LOG_LEVEL ?? ''] ?? LEVELS.warn;

// Captured before anyone can replace it: the frame writer is the only code allowed on stdout.
const originalStdoutWrite = process.stdout.write.bind(process.stdout);
let stdoutClaimed = false;

/**
 * Hands out the real stdout writer, once. Afterwards any other `process.stdout.write` caller
 * (a dependency printing directly) lands on stderr instead of corrupting the frame stream.
 * @returns {(chunk: string, callback?: (err?: Error | null) => void) => boolean}
 */
export function claimStdout() {
  if (stdoutClaimed) throw new Error('stdout already claimed');
  stdoutClaimed = true;
  return (chunk, callback) => originalStdoutWrite(chunk, 'utf8', callback);
}

/**
 * Renders console arguments without serialising objects: a stray object may be a key store.
 * Errors keep their stack (no secrets there, and it is what makes a crash log useful).
 * @param {unknown[]} args
 * @returns {string}
 */
export function describeArgs(args) {
  return args
    .map((arg) => {
      if (typeof arg === 'string') return arg;
      if (arg instanceof Error) return arg.stack ?? `${arg.name}: ${arg.message}`;
      if (arg === null || typeof arg !== 'object') return format('%s', arg);
      return `[${arg.constructor?.name ?? 'Object'}]`;
    })
    .join(' ');
}

/**
 * @param {keyof typeof LEVELS} level
 * @returns {(...args: unknown[]) => void}
 */
function makeWriter(level) {
  const value = LEVELS[level];
  return (...args) => {
    if (value < threshold) return;
    if (typeof args[0] === 'string' && SECRET_DUMPS.some((re) => re.test(args[0]))) return;
    const line = JSON.stringify({ level: value, time: Date.now(), src: 'console', msg: describeArgs(args) });
    process.stderr.write(line + '\n');
  };
}

// Methods we do not filter (dir, table, trace, count, ...) still must not reach stdout.
const stderrConsole = new Console({ stdout: process.stderr, stderr: process.stderr });
for (const name of Object.keys(console)) {
  // @ts-ignore: indexing the global console by name
  if (typeof console[name] === 'function' && typeof stderrConsole[name] === 'function') {
    // @ts-ignore
    console[name] = stderrConsole[name].bind(stderrConsole);
  }
}
console.debug = makeWriter('debug');
console.log = makeWriter('info');
console.info = makeWriter('info');
console.warn = makeWriter('warn');
console.error = makeWriter('error');

process.stdout.write = /** @type {typeof process.stdout.write} */ (
  (/** @type {any} */ chunk, /** @type {any} */ encoding, /** @type {any} */ callback) =>
    process.stderr.write(chunk, encoding, callback)
);
