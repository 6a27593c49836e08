// Shared by the sidecar tests: spawning the real process and checking its stdout against the
// protocol schema. Lives outside sidecar/test/ because `node --test <dir>` runs every .js file
// under a directory named test.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { compileSchema } from '../protocol.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN = join(ROOT, 'sidecar', 'main.js');

/** @type {Promise<Awaited<ReturnType<typeof compileSchema>>> | undefined} */
let compiled;
/** The protocol schema, compiled once per test file. */
export function schema() {
  compiled ??= compileSchema();
  return compiled;
}

/** @param {string} [prefix] */
export function tempDir(prefix = 'ponte-sidecar-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A TCP port on loopback that nothing listens on (bound, then released). */
export async function closedPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(() => resolve(undefined)));
  return port;
}

/**
 * A server that accepts TCP connections and never answers, so Baileys stays in `connecting`
 * (the WebSocket upgrade waits for connectTimeoutMs).
 */
export async function silentServer() {
  /** @type {Set<net.Socket>} */
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  return {
    url: `ws://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve(undefined));
    }),
  };
}

/**
 * The real sidecar as a child process, with helpers to wait for frames.
 * @param {Record<string, string>} env  PONTE_* variables (merged over PATH/HOME)
 * @param {string[]} [nodeArgs]          extra node options, e.g. a preload
 */
export function startSidecar(env, nodeArgs = []) {
  const child = spawn(process.execPath, [...nodeArgs, MAIN], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PONTE_INSTANCE_ID: 'test', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  /** @type {any[]} */
  const frames = [];
  /** @type {Array<() => void>} */
  let waiters = [];
  const wake = () => {
    const current = waiters;
    waiters = [];
    for (const w of current) w();
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    const lines = stdout.split('\n');
    const complete = lines.slice(0, -1);
    for (let i = frames.length; i < complete.length; i += 1) {
      try {
        frames.push(JSON.parse(complete[i]));
      } catch {
        frames.push({ unparsable: complete[i] });
      }
    }
    wake();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  /** @type {Promise<{code: number | null, signal: NodeJS.Signals | null}>} */
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    // 'exit' can precede the last 'data' event; 'close' waits for the pipes.
    child.on('close', () => { wake(); resolve({ code, signal }); });
  }));
  let done = false;
  void exited.then(() => { done = true; wake(); });

  return {
    child,
    frames,
    exited,
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    /** @param {unknown} value */
    send(value) {
      child.stdin.write(typeof value === 'string' ? value : `${JSON.stringify(value)}\n`);
    },
    /**
     * Resolves with the first frame (from the start) matching pred.
     * @param {(frame: any) => boolean} pred
     * @param {number} [timeoutMs]
     */
    async waitFor(pred, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = frames.find(pred);
        if (found) return found;
        if (done) throw new Error(`sidecar exited before the frame arrived; frames: ${JSON.stringify(frames)}; stderr: ${stderr.slice(-2000)}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for a frame; frames: ${JSON.stringify(frames)}`);
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => { clearTimeout(timer); resolve(undefined); });
        });
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * Asserts stdout is nothing but newline-terminated frames valid under the schema.
 * @param {string} stdout
 * @param {(frame: unknown) => boolean} validate
 * @returns {any[]} the frames
 */
export function framesOf(stdout, validate) {
  if (stdout !== '' && !stdout.endsWith('\n')) throw new Error(`stdout ends mid-line: ${JSON.stringify(stdout.slice(-200))}`);
  const lines = stdout.split('\n').slice(0, -1);
  return lines.map((line) => {
    const frame = JSON.parse(line);
    if (!validate(frame)) {
      throw new Error(`frame does not match the schema: ${line}\n${JSON.stringify(/** @type {any} */ (validate).errors)}`);
    }
    return frame;
  });
}
