import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KNOWN_DATASETS, datasetCacheDir, datasetCachePath, resolveDataset } from '../../src/data/fetch.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('fetch');

/** Run `fn` with fetch replaced by one that fails the test if called. */
async function withoutNetwork<T>(fn: () => Promise<T>): Promise<T> {
  const real = globalThis.fetch;
  globalThis.fetch = (() => {
    throw new Error('fetch must not be called');
  }) as typeof fetch;
  try {
    return await fn();
  } finally {
    globalThis.fetch = real;
  }
}

test('an existing local path is returned as is', async () => {
  const p = join(dir, 'local.txt');
  writeFileSync(p, 'hello');
  assert.equal(await withoutNetwork(() => resolveDataset(p)), p);
});

test('a missing local path is an LlmError with the documented message', async () => {
  const p = join(dir, 'missing.txt');
  await assert.rejects(
    resolveDataset(p),
    (e: unknown) => e instanceof LlmError && e.message === `data file not found: ${p} (pass --data with a local file or a URL)`,
  );
});

test('a directory is rejected', async () => {
  await assert.rejects(resolveDataset(dir), /directory/);
});

test('a cached URL is served from the cache without network', async () => {
  const cacheDir = join(dir, 'cache');
  const url = 'http://unroutable.invalid/some%20dir/input.txt';
  const cached = datasetCachePath(url, { cacheDir });
  assert.match(cached, /[0-9a-f]{40}-input\.txt$/);
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(cached, 'cached text');
  assert.equal(await withoutNetwork(() => resolveDataset(url, { cacheDir })), cached);
  assert.equal(await withoutNetwork(() => resolveDataset(url, { cacheDir })), cached);
});

test('known dataset names resolve through the cache', async () => {
  const cacheDir = join(dir, 'known');
  const cached = datasetCachePath(KNOWN_DATASETS.tinyshakespeare, { cacheDir });
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(cached, 'First Citizen:');
  assert.equal(await withoutNetwork(() => resolveDataset('tinyshakespeare', { cacheDir })), cached);
});

test('LLMTS_CACHE sets the cache root', () => {
  const saved = process.env.LLMTS_CACHE;
  try {
    process.env.LLMTS_CACHE = join(dir, 'root');
    assert.equal(datasetCacheDir(), join(dir, 'root', 'datasets'));
    assert.equal(datasetCacheDir({ cacheDir: '/x' }), '/x');
  } finally {
    if (saved === undefined) delete process.env.LLMTS_CACHE;
    else process.env.LLMTS_CACHE = saved;
  }
});

test('a failed download is an LlmError naming the URL and leaves nothing in the cache', async () => {
  const cacheDir = join(dir, 'fail');
  const url = 'http://unroutable.invalid/x.txt';
  const real = globalThis.fetch;
  globalThis.fetch = (async () => new Response('nope', { status: 404, statusText: 'Not Found' })) as typeof fetch;
  try {
    await assert.rejects(resolveDataset(url, { cacheDir }), (e: unknown) => e instanceof LlmError && e.message.includes(url) && e.message.includes('404'));
  } finally {
    globalThis.fetch = real;
  }
});

test('a download is streamed into the cache (stubbed fetch, no network)', async () => {
  const cacheDir = join(dir, 'dl');
  const url = 'https://example.invalid/data/tiny.txt';
  const real = globalThis.fetch;
  const stderrWrite = process.stderr.write;
  globalThis.fetch = (async () => new Response('to be or not to be', { headers: { 'content-length': '18' } })) as typeof fetch;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const p = await resolveDataset(url, { cacheDir });
    assert.equal(p, datasetCachePath(url, { cacheDir }));
    assert.equal(readFileSync(p, 'utf8'), 'to be or not to be');
    assert.deepEqual(readdirSync(cacheDir), [p.split('/').pop()]);
  } finally {
    globalThis.fetch = real;
    process.stderr.write = stderrWrite;
  }
});
