import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, writeFileAtomicParts } from '../../src/util/atomic-write.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('atomic');

test('writes a string, creating parent directories', () => {
  const p = join(dir, 'a', 'b', 'c.txt');
  writeFileAtomic(p, 'héllo\n');
  assert.equal(readFileSync(p, 'utf8'), 'héllo\n');
  assert.deepEqual(readdirSync(join(dir, 'a', 'b')), ['c.txt']);
});

test('overwrites an existing file with bytes', () => {
  const p = join(dir, 'over.bin');
  writeFileSync(p, 'old contents that are longer');
  writeFileAtomic(p, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...readFileSync(p)], [1, 2, 3]);
});

test('writes parts in order, honouring subarray views', () => {
  const p = join(dir, 'parts.bin');
  const big = new Uint8Array([9, 9, 4, 5, 9]);
  writeFileAtomicParts(p, [new Uint8Array([1, 2, 3]), big.subarray(2, 4), new Uint8Array(0), new Uint8Array([6])]);
  assert.deepEqual([...readFileSync(p)], [1, 2, 3, 4, 5, 6]);
});

test('on failure throws LlmError naming the path and leaves no temp file', () => {
  const sub = join(dir, 'fail');
  const target = join(sub, 'is-a-dir');
  mkdirSync(join(target, 'child'), { recursive: true });
  assert.throws(
    () => writeFileAtomic(target, 'x'),
    (e: unknown) => e instanceof LlmError && e.message.includes(target),
  );
  assert.deepEqual(readdirSync(sub), ['is-a-dir']);
});
