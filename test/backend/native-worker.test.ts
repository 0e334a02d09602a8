/**
 * The native addon in worker threads (llmts serve runs the model in one): its thread pool works
 * there, and a worker that exits does not take the process down with it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nativeSkipReason } from '../helpers/native-under-test.js';

test('the addon runs in a worker thread, and two workers that load it and exit leave the process alive', { skip: nativeSkipReason }, () => {
  const child = fileURLToPath(new URL('../helpers/native-worker-child.js', import.meta.url));
  const r = spawnSync(process.execPath, [child], { encoding: 'utf8', env: { ...process.env, LLMTS_THREADS: '2', LLMTS_BACKEND: '' }, timeout: 60_000 });
  assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout) as string[];
  assert.equal(results.length, 2);
  for (const line of results) assert.match(line, /^native \(\w+, 2 threads\) ok$/);
});
