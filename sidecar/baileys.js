// The parts of Baileys the sidecar uses, imported from the modules that define them instead of
// the package's index. The index also re-exports lib/WAM: WhatsApp's analytics event tables, an
// 830 KB module that neither the socket nor the sidecar uses, ~2.7 MB of heap in every process
// (docs/benchmarks.md, "Sidecar memory"). Everything else the index re-exports is imported by
// the socket anyway. These are the same
// module instances the index re-exports (sidecar/test/baileys.test.js checks it), so `proto`,
// `BufferJSON` etc. are identical to `import { ... } from '@whiskeysockets/baileys'`.
// Baileys has no `exports` map, so its files resolve by path (the version is pinned exactly).
export { default as makeWASocket } from '@whiskeysockets/baileys/lib/Socket/index.js';
export {
  Browsers,
  BufferJSON,
  downloadMediaMessage,
  generateMessageIDV2,
  getContentType,
  initAuthCreds,
  makeCacheableSignalKeyStore,
  normalizeMessageContent,
} from '@whiskeysockets/baileys/lib/Utils/index.js';
export { jidDecode, jidNormalizedUser } from '@whiskeysockets/baileys/lib/WABinary/index.js';
export { proto } from '@whiskeysockets/baileys/WAProto/index.js';
