/**
 * llmts sft --epochs N: the step count is N passes over the training examples (after the eval
 * split), the schedule's defaults follow it, a resumed run can be given more epochs, and
 * --epochs with --max-iters is refused in one line.
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
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('sft-epochs');
const data = join(dir, 'reverse.jsonl');
const base = join(dir, 'base.safetensors');
{
  const rng = new Rng(11);
  const rows: string[] = [];
  for (let i = 0; i < 90; i++) {
    const w = Array.from({ length: 3 }, () => 'abcdef'[rng.int(6)]).join('');
    rows.push(JSON.stringify({ instruction: `reverse ${w}`, output: [...w].reverse().join('') }));
  }
  writeFileSync(data, rows.join('\n') + '\n');
  const tok = CharTokenizer.fromText('QA: \nabcdefreverse');
  const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 32 });
  const m = new Transformer(cfg, new Rng(1));
  saveCheckpoint(base, { config: cfg, params: new Map(m.namedParameters().map((p) => [p.name, p.tensor])), tokenizer: tok.toJSON(), trainer: {} });
}
const COMMON = ['-m', base, '--data', data, '--template', 'qa', '--lr', '3e-3', '-b', '8', '--grad-accum', '2', '--eval-split', '0.1', '--eval-interval', '100', '--eval-iters', '1', '-t', '1'];

describe('llmts sft --epochs', () => {
  it('trains N passes over the training examples; the warmup and decay follow; a resumed run takes more epochs', () => {
    const out = join(dir, 'two');
    const r = runCli(['sft', ...COMMON, '--epochs', '2', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    const train = Number(/(\d+) train \//.exec(r.stdout)![1]);
    const steps = Math.ceil((2 * train) / 16);
    assert.match(r.stdout, new RegExp(`--epochs 2: ${steps} steps of 16 examples \\(8 x 2 grad accum\\) over ${train} training examples`));
    const final = /final: step (\d+), epoch (\d+\.\d+)/.exec(r.stdout)!;
    assert.equal(Number(final[1]), steps);
    assert.ok(Number(final[2]) >= 2 && Number(final[2]) < 2 + 16 / train, `ended at epoch ${final[2]}`);
    assert.equal(readMetrics(join(out, 'metrics.jsonl')).filter((m) => m.type === 'train').length, steps);
    const options = (loadCheckpoint(join(out, 'ckpt.safetensors')).trainer as { options: Record<string, unknown> }).options;
    assert.equal(options.epochs, 2);
    assert.equal(options.maxIters, steps);
    assert.equal(options.decayIters, steps, 'the cosine decay spans the epochs');
    assert.equal(options.warmupIters, Math.floor(steps / 10));

    const more = runCli(['sft', '-o', out, '--resume', '--epochs', '3', '-t', '1']);
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, new RegExp(`resuming from step ${steps}`));
    assert.match(more.stdout, new RegExp(`final: step ${Math.ceil((3 * train) / 16)}, epoch 3\\.`));
  });

  it('--epochs with --max-iters is refused in one line, for a new run and a resumed one', () => {
    assertOneLineError(runCli(['sft', ...COMMON, '--epochs', '2', '--max-iters', '5', '-o', join(dir, 'both')]), /--epochs sets the step count from the data and --max-iters sets it directly: give one of the two/);
    assertOneLineError(runCli(['sft', '-o', join(dir, 'two'), '--resume', '--epochs', '4', '--max-iters', '50']), /give one of the two/);
    assertOneLineError(runCli(['sft', ...COMMON, '--epochs', '0', '-o', join(dir, 'zero')]), /--epochs/);
  });
});
