import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTokenShard, toTokenArray, writeTokenShard } from '../../src/train/token-shards.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('shards');

function expectError(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LlmError, `expected LlmError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" should contain "${p}"`);
    return true;
  });
}

test('version 1 round trip (uint16)', () => {
  const p = join(dir, 'v1.bin');
  writeTokenShard(p, [0, 1, 65535, 50256]);
  const back = readTokenShard(p);
  assert.ok(back instanceof Uint16Array);
  assert.deepEqual([...back], [0, 1, 65535, 50256]);
});

test('version 2 round trip (uint32), chosen when a token is >= 65536', () => {
  const p = join(dir, 'v2.bin');
  writeTokenShard(p, new Uint32Array([65536, 3, 128255, 4294967295]));
  const back = readTokenShard(p);
  assert.ok(back instanceof Uint32Array);
  assert.deepEqual([...back], [65536, 3, 128255, 4294967295]);
});

test('forcing a version', () => {
  const p = join(dir, 'forced.bin');
  writeTokenShard(p, [1, 2], { version: 2 });
  assert.ok(readTokenShard(p) instanceof Uint32Array);
  expectError(() => writeTokenShard(p, [70000], { version: 1 }), p, '>= 65536');
});

test('empty shard', () => {
  const p = join(dir, 'empty.bin');
  writeTokenShard(p, []);
  assert.equal(readFileSync(p).byteLength, 1024);
  assert.deepEqual([...readTokenShard(p)], []);
});

test('byte-level header layout', () => {
  const p = join(dir, 'layout.bin');
  writeTokenShard(p, [258, 7, 65535]);
  const buf = readFileSync(p);
  assert.equal(buf.byteLength, 1024 + 3 * 2);
  // 20240520 = 0x0134d888, little-endian.
  assert.deepEqual([...buf.subarray(0, 4)], [0x88, 0xd8, 0x34, 0x01]);
  assert.deepEqual([...buf.subarray(4, 8)], [1, 0, 0, 0]);
  assert.deepEqual([...buf.subarray(8, 12)], [3, 0, 0, 0]);
  assert.ok(buf.subarray(12, 1024).every((b) => b === 0));
  assert.deepEqual([...buf.subarray(1024)], [0x02, 0x01, 7, 0, 0xff, 0xff]);

  const p2 = join(dir, 'layout2.bin');
  writeTokenShard(p2, [0x01020304]);
  const b2 = readFileSync(p2);
  assert.deepEqual([...b2.subarray(4, 8)], [2, 0, 0, 0]);
  assert.deepEqual([...b2.subarray(1024)], [4, 3, 2, 1]);
});

test('truncated file: error names expected and actual size', () => {
  const p = join(dir, 'trunc.bin');
  writeTokenShard(p, [1, 2, 3, 4, 5]);
  truncateSync(p, 1024 + 6);
  expectError(() => readTokenShard(p), p, '5 tokens', '1034 bytes', 'but it is 1030 bytes');
  truncateSync(p, 100);
  expectError(() => readTokenShard(p), p, '100 bytes');
});

test('bad magic: says it is not an llm.c shard and shows the magic', () => {
  const p = join(dir, 'magic.bin');
  const header = new Int32Array(256);
  header[0] = 12345;
  header[1] = 1;
  writeFileSync(p, new Uint8Array(header.buffer));
  expectError(() => readTokenShard(p), p, 'not an llm.c token shard', 'magic number is 12345', '20240520');
});

test('bad version', () => {
  const p = join(dir, 'version.bin');
  const header = new Int32Array(256);
  header[0] = 20240520;
  header[1] = 7;
  writeFileSync(p, new Uint8Array(header.buffer));
  expectError(() => readTokenShard(p), p, 'version 7');
});

test('missing file and invalid tokens', () => {
  expectError(() => readTokenShard(join(dir, 'nope.bin')), 'nope.bin');
  expectError(() => writeTokenShard(join(dir, 'neg.bin'), [1, -1]), 'token 1 is -1');
  expectError(() => writeTokenShard(join(dir, 'frac.bin'), [0.5]), 'token 0 is 0.5');
});

test('toTokenArray picks the smallest array', () => {
  assert.ok(toTokenArray([1, 65535]) instanceof Uint16Array);
  assert.ok(toTokenArray([65536]) instanceof Uint32Array);
  const u16 = new Uint16Array([1]);
  assert.equal(toTokenArray(u16), u16);
});
