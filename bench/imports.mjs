// What each part of the sidecar's import graph adds to a Node process, in the order the sidecar
// loads them (sidecar/main.js): each step imports one more module, whatever it pulls in that is
// not loaded yet, and then reads process.memoryUsage() after two full GCs. The last step is
// Baileys' package index, which the sidecar does not load (sidecar/baileys.js): what that saves.
// Prints one JSON line per step. Run with `node --expose-gc bench/imports.mjs` (python -m bench
// runs it with the production command's node options).
const STEPS = [
  ['sidecar/console.js + protocol.js (Node built-ins)', ['../sidecar/console.js', '../sidecar/protocol.js']],
  ['protobufjs + the WAProto bundle (WhatsApp protobuf classes)', ['@whiskeysockets/baileys/WAProto/index.js']],
  ['libsignal (Signal protocol, JS)', ['libsignal']],
  ['whatsapp-rust-bridge (WebAssembly, embedded as base64)', ['whatsapp-rust-bridge']],
  ['the Baileys socket and utilities (sidecar/baileys.js)', ['../sidecar/baileys.js']],
  ['pino', ['pino']],
  ["the sidecar's own modules", ['../sidecar/events.js', '../sidecar/auth.js', '../sidecar/outgoing.js',
    '../sidecar/media.js', '../sidecar/ordering.js', '../sidecar/groups.js', '../sidecar/commands.js']],
  ['ajv + the compiled command validators', ['ajv/dist/2020.js'], async () => {
    const { compileCommandValidators } = await import('../sidecar/protocol.js');
    globalThis.keep = await compileCommandValidators();
  }],
  ["Baileys' package index (not loaded by the sidecar: lib/WAM's tables)", ['@whiskeysockets/baileys']],
];

// sidecar/console.js sends later stdout writes to stderr: keep the real one.
const print = process.stdout.write.bind(process.stdout);

function reading(label, ms) {
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { step: label, ms, rss: m.rss, heap_total: m.heapTotal, heap_used: m.heapUsed, external: m.external };
}

const out = [reading('bare node', 0)];
for (const [label, specs, then] of STEPS) {
  const begun = performance.now();
  for (const spec of specs) {
    await import(spec.startsWith('.') ? new URL(spec, import.meta.url).href : import.meta.resolve(spec));
  }
  await then?.();
  out.push(reading(label, performance.now() - begun));
}
for (const r of out) print(`${JSON.stringify(r)}\n`);
