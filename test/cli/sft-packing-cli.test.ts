/**
 * llmts sft --packing end to end on a tiny Llama (context 64) and "reverse w" rows of words of 1 to
 * 8 letters: the banner reports the rows and the padding over an epoch (far less than unpacked),
 * metrics.jsonl logs each step's padding, the loss falls, and a stopped and resumed packed run
 * ends bit-identical to an uninterrupted one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { Transformer } from '../../src/model/transformer.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { Rng } from '../../src/util/rng.js';
import { runCli } from '../helpers/cli.js';
import { tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('sft-packing-cli');
const LETTERS = 'abcdefgh';
const data = join(dir, 'reverse.jsonl');
const base = join(dir, 'base.safetensors');

{
  const rng = new Rng(11);
  const lines: string[] = [];
  for (let i = 0; i < 150; i++) {
    let w = '';
    for (let k = 0, n = 1 + rng.int(8); k < n; k++) w += LETTERS[rng.int(LETTERS.length)];
    lines.push(JSON.stringify({ instruction: `reverse ${w}`, output: [...w].reverse().join('') }));
  }
  writeFileSync(data, lines.join('\n') + '\n');
  const tok = CharTokenizer.fromText(`QA: \n${LETTERS}reverse`);
  const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
  const m = new Transformer(cfg, new Rng(1));
  saveCheckpoint(base, { config: cfg, params: new Map(m.namedParameters().map((p) => [p.name, p.tensor])), tokenizer: tok.toJSON(), trainer: {} });
}

const COMMON = ['-m', base, '--data', data, '--template', 'qa', '--lr', '3e-3', '-b', '4', '--eval-split', '0.1', '-t', '2',
  '--decay-iters', '24', '--warmup-iters', '2', '--eval-interval', '8', '--eval-iters', '2'];

const percent = (out: string, what: RegExp): number => {
  const m = what.exec(out);
  assert.ok(m, `no ${what} in:\n${out}`);
  return Number(m[1]);
};

describe('llmts sft --packing', () => {
  it('reports padding packed and unpacked; logs it per step; the loss falls', () => {
    const packed = runCli(['sft', ...COMMON, '--packing', '-o', join(dir, 'packed'), '--max-iters', '24']);
    assert.equal(packed.code, 0, packed.stderr);
    const rows = /packing: (\d+) examples in (\d+) rows of up to 64 tokens \(best-fit decreasing\), 4 rows a micro-batch; padding: (\d+\.\d)% of batch tokens over an epoch/.exec(packed.stdout);
    assert.ok(rows, packed.stdout);
    assert.ok(Number(rows[2]) * 2 < Number(rows[1]), `${rows[1]} examples in ${rows[2]} rows`);
    const unpacked = runCli(['sft', ...COMMON, '-o', join(dir, 'unpacked'), '--max-iters', '2']);
    assert.equal(unpacked.code, 0, unpacked.stderr);
    const padUnpacked = percent(unpacked.stdout, /batches: 4 examples a micro-batch, padded to the longest; padding: (\d+\.\d)% of batch tokens over an epoch/);
    const padPacked = Number(rows[3]);
    assert.ok(padPacked < 10 && padUnpacked > 2 * padPacked, `padding ${padPacked}% packed, ${padUnpacked}% unpacked`);
    const ran = percent(packed.stdout, /padding: (\d+\.\d)% of the \d+ batch tokens of this run's 24 steps/);
    assert.ok(ran < 15, `${ran}% of this run's batch tokens`);

    const log = readMetrics(join(dir, 'packed', 'metrics.jsonl'));
    const steps = log.filter((m) => m.type === 'train');
    assert.equal(steps.length, 24);
    assert.ok(steps.every((m) => typeof m.padding === 'number' && m.padding >= 0 && m.padding < 0.5), 'every step logs its padding');
    const evals = log.filter((m) => m.type === 'eval');
    assert.ok((evals.at(-1)!.valLoss as number) < (steps[0].loss as number) * 0.8, `val loss ${evals.at(-1)!.valLoss} after a first loss of ${steps[0].loss}`);
  });

  it('a stopped and resumed packed run ends bit-identical to an uninterrupted one', () => {
    const whole = join(dir, 'whole');
    const parts = join(dir, 'parts');
    assert.equal(runCli(['sft', ...COMMON, '--packing', '-o', whole, '--max-iters', '24']).code, 0);
    const first = runCli(['sft', ...COMMON, '--packing', '-o', parts, '--max-iters', '11']);
    assert.equal(first.code, 0, first.stderr);
    const again = runCli(['sft', '-o', parts, '--resume', '--packing']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /--packing cannot change/);
    const resumed = runCli(['sft', '-o', parts, '--resume', '--max-iters', '24', '-t', '2']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming from step 11/);
    assert.match(resumed.stdout, /packing: \d+ examples in \d+ rows/);
    const strip = (path: string) => readMetrics(path).map(({ rss: _r, time: _t, tokensPerSec: _s, ...rest }) => rest);
    const partsLog = strip(join(parts, 'metrics.jsonl')).filter((m) => !(m.type === 'eval' && m.step === 11));
    assert.deepEqual(partsLog, strip(join(whole, 'metrics.jsonl')));
    const a = loadCheckpoint(join(whole, 'ckpt.safetensors'));
    const b = loadCheckpoint(join(parts, 'ckpt.safetensors'));
    for (const [name, t] of a.params) assert.deepEqual(b.params.get(name)!.data, t.data, name);
    assert.deepEqual((b.trainer as { objectiveState: unknown }).objectiveState, (a.trainer as { objectiveState: unknown }).objectiveState);
  });
});
