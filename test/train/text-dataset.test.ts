import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { BatchSampler, prepareTextDataset } from '../../src/train/text-dataset.js';
import { readTokenShard } from '../../src/train/token-shards.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('text-dataset');

test('prepareTextDataset splits 90/10 and writes both shards', () => {
  const text = 'abcdefghij'.repeat(5); // 50 tokens
  const tok = CharTokenizer.fromText(text);
  const out = join(dir, 'small');
  const { train, val, trainPath, valPath } = prepareTextDataset({ text, tokenizer: tok, outDir: out });
  assert.equal(train.length, 45);
  assert.equal(val.length, 5);
  assert.equal(trainPath, join(out, 'train.bin'));
  assert.deepEqual(readTokenShard(trainPath), train);
  assert.deepEqual(readTokenShard(valPath), val);
  assert.equal(tok.decode(train) + tok.decode(val), text);

  const half = prepareTextDataset({ text, tokenizer: tok, outDir: out, valFraction: 0.5 });
  assert.equal(half.val.length, 25);
  assert.throws(() => prepareTextDataset({ text, tokenizer: tok, outDir: out, valFraction: 1 }), LlmError);
  assert.throws(() => prepareTextDataset({ text: '', tokenizer: tok, outDir: out }), LlmError);
});

test('Tiny Shakespeare split matches nanoGPT shakespeare_char (1,003,854 / 111,540)', (t) => {
  const path = sharedDataPath('tinyshakespeare/input.txt');
  if (path === null) {
    t.skip('shared/data/tinyshakespeare/input.txt not found');
    return;
  }
  const text = readFileSync(path, 'utf8');
  const { train, val } = prepareTextDataset({ text, tokenizer: CharTokenizer.fromText(text), outDir: join(dir, 'shakespeare') });
  assert.equal(train.length, 1003854);
  assert.equal(val.length, 111540);
  assert.equal(readFileSync(join(dir, 'shakespeare', 'train.bin')).byteLength, 1024 + 2 * 1003854);
});

test('BatchSampler: y is x shifted by one, windows are contiguous', () => {
  const tokens = new Uint16Array(100).map((_, i) => i);
  const s = new BatchSampler(tokens, 8, 4, new Rng(1));
  for (let k = 0; k < 20; k++) {
    const { x, y } = s.next();
    assert.equal(x.length, 32);
    assert.equal(y.length, 32);
    for (let b = 0; b < 4; b++) {
      for (let t = 0; t < 8; t++) {
        assert.equal(y[b * 8 + t], x[b * 8 + t] + 1);
        if (t > 0) assert.equal(x[b * 8 + t], x[b * 8 + t - 1] + 1);
      }
      assert.ok(y[b * 8 + 7] <= 99);
    }
  }
});

test('BatchSampler: same seed gives the same batches, and the last window is reachable', () => {
  const tokens = Array.from({ length: 10 }, (_, i) => i);
  const a = new BatchSampler(tokens, 4, 3, new Rng(42));
  const b = new BatchSampler(tokens, 4, 3, new Rng(42));
  const starts = new Set<number>();
  for (let k = 0; k < 200; k++) {
    const ba = a.next();
    const bb = b.next();
    assert.deepEqual(ba, bb);
    for (let r = 0; r < 3; r++) starts.add(ba.x[r * 4]);
  }
  // len 10, block 4: starts 0..5 (the window starting at 5 needs y up to token 9).
  assert.deepEqual([...starts].sort(), [0, 1, 2, 3, 4, 5]);
  const c = new BatchSampler(tokens, 4, 3, new Rng(43));
  assert.notDeepEqual(c.next(), new BatchSampler(tokens, 4, 3, new Rng(42)).next());
});

test('BatchSampler: too-short data says how long it is and must be', () => {
  assert.throws(
    () => new BatchSampler([1, 2, 3, 4], 4, 1, new Rng(0)),
    (e: unknown) => e instanceof LlmError && e.message.includes('has 4 tokens') && e.message.includes('at least 5'),
  );
  new BatchSampler([1, 2, 3, 4, 5], 4, 1, new Rng(0)).next();
  assert.throws(() => new BatchSampler([1, 2, 3], 0, 1, new Rng(0)), LlmError);
  assert.throws(() => new BatchSampler([1, 2, 3], 1, 1.5, new Rng(0)), LlmError);
});
