import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as index from '@whiskeysockets/baileys';

import * as ours from '../baileys.js';

const run = promisify(execFile);

test('sidecar/baileys.js hands out the very objects the package index exports', () => {
  const names = Object.keys(ours);
  assert.ok(names.length >= 10);
  for (const name of names) {
    const indexName = name === 'makeWASocket' ? 'default' : name;
    assert.ok(ours[name] !== undefined, `${name} is undefined`);
    assert.equal(ours[name], /** @type {Record<string, unknown>} */ (index)[indexName], `${name} differs from the index's`);
  }
});

test('importing it does not load the WAM analytics tables', async () => {
  // A module hook in a child process lists every module file Node loads.
  const hook = `import { writeSync } from 'node:fs';
  export async function load(url, context, next) {
    writeSync(2, url + '\\n');
    return next(url, context);
  }`;
  const script = `
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
    await import(${JSON.stringify(new URL('../baileys.js', import.meta.url).href)});
  `;
  const { stderr } = await run(process.execPath, ['--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
  assert.match(stderr, /baileys\/lib\/Socket\/index\.js/);
  assert.doesNotMatch(stderr, /baileys\/lib\/WAM\/constants\.js/);
  assert.doesNotMatch(stderr, /baileys\/lib\/index\.js/);
});
