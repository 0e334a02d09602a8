import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEvalSplit, splitHash, splitTrainEval } from '../../src/data/split.js';
import { loadSftExamples } from '../../src/data/sft-examples.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';

const items = Array.from({ length: 2000 }, (_, i) => ({ kind: 'text' as const, text: `row ${i}` }));

test('about the asked fraction is held out, the same items every time, order kept', () => {
  const a = splitTrainEval(items, { fraction: 0.1, seed: 0 });
  const b = splitTrainEval(items, { fraction: 0.1, seed: 0 });
  assert.deepEqual(a, b);
  assert.equal(a.train.length + a.eval.length, items.length);
  assert.ok(a.eval.length > 150 && a.eval.length < 250, `${a.eval.length}`);
  const idx = a.eval.map((e) => items.indexOf(e));
  assert.deepEqual(idx, [...idx].sort((x, y) => x - y));
  const other = splitTrainEval(items, { fraction: 0.1, seed: 1 });
  assert.notDeepEqual(other.eval, a.eval, 'another seed holds out other items');
});

test('stable when rows are appended or reordered: no existing row changes side', () => {
  const base = splitTrainEval(items.slice(0, 1000), { fraction: 0.05, seed: 3 });
  const grown = splitTrainEval([...items].reverse(), { fraction: 0.05, seed: 3 });
  const heldGrown = new Set(grown.eval.map((e) => e.text));
  for (const e of base.eval) assert.ok(heldGrown.has(e.text), e.text);
  for (const e of base.train) assert.ok(!heldGrown.has(e.text), e.text);
});

test('identical rows land on the same side; a custom key decides', () => {
  const dup = [...items.slice(0, 300), ...items.slice(0, 300).map((e) => ({ ...e }))];
  const s = splitTrainEval(dup, { fraction: 0.2 });
  const held = new Set(s.eval.map((e) => e.text));
  for (const e of s.train) assert.ok(!held.has(e.text));
  const byLength = splitTrainEval(['a', 'b', 'cc', 'dd'], { fraction: 0.5, key: (x) => String(x.length) });
  for (const side of [byLength.train, byLength.eval]) assert.ok(!side.some((x) => x.length === 1) || side.filter((x) => x.length === 1).length === 2);
});

test('fraction 0 keeps everything in train; tiny data still gets one eval item; bad fractions refused', () => {
  assert.deepEqual(splitTrainEval(items.slice(0, 5), { fraction: 0 }), { train: items.slice(0, 5), eval: [] });
  const tiny = splitTrainEval(items.slice(0, 3), { fraction: 0.01 });
  assert.equal(tiny.eval.length, 1);
  assert.equal(tiny.train.length, 2);
  assert.deepEqual(splitTrainEval(items.slice(0, 1), { fraction: 0.01 }), { train: items.slice(0, 1), eval: [] });
  for (const f of [1, -0.1, NaN]) assert.throws(() => splitTrainEval(items, { fraction: f }), LlmError);
  assert.equal(parseEvalSplit('0.05'), 0.05);
  for (const s of ['', '1', 'abc', '-1']) assert.throws(() => parseEvalSplit(s), (e: unknown) => e instanceof LlmError && e.message.startsWith('--eval-split must be a fraction in [0, 1)'));
});

test('splitHash: in [0, 1), seeded, fixed values', () => {
  const u = splitHash('hello', 0);
  assert.ok(u >= 0 && u < 1);
  assert.equal(splitHash('hello', 0), u);
  assert.notEqual(splitHash('hello', 1), u);
  assert.equal(splitHash('hello', 0), HELLO_0);
});

// sha256("0\0hello"), first 6 bytes / 2^48
const HELLO_0 = Number.parseInt('1df2c3f7851b', 16) / 2 ** 48;

test('real data: GSM8K 5% held out', (t) => {
  const p = sharedDataPath('gsm8k-alpaca/gsm_8k_train.json');
  if (p === null) return t.skip('../shared/data/gsm8k-alpaca not available');
  const { examples } = loadSftExamples(p);
  const s = splitTrainEval(examples, { fraction: 0.05, seed: 0 });
  assert.deepEqual([s.train.length, s.eval.length], [7076, 397]);
});
