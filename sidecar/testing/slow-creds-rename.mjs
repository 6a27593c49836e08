// Test-only preload (`node --import`): every async rename onto creds.json waits 500 ms first, so
// the async creds save is certainly not on disk yet when the phone's scan returns. That turns the
// pairing race (tests: sidecar/test/pairing-durability.test.js) from ~1 in 3 into every time.
// auth.js imports `rename` by name; syncBuiltinESMExports() makes that binding see the patch.
import fs from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { basename } from 'node:path';

const DELAY_MS = 500;
const rename = fs.rename;
fs.rename = async (from, to) => {
  if (basename(String(to)) === 'creds.json') await new Promise((resolve) => setTimeout(resolve, DELAY_MS));
  return rename(from, to);
};
syncBuiltinESMExports();
