import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transformer } from '../../src/model/transformer.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { Trainer } from '../../src/train/trainer.js';
import { pooledBytes } from '../../src/tensor/index.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { tmpDir } from '../helpers/tmp.js';
import { shakespeare, tinyConfig, tinyData, tinyOptions, trainingText } from '../helpers/tiny-run.js';

const data = tinyData(trainingText(60_000));

describe('Trainer', () => {
  for (const family of ['gpt2', 'llama'] as const) {
    it(`${family}: a run stopped at step 3 and resumed gives bit-identical losses (dropout on)`, async () => {
      const cfg = tinyConfig(family, data.tokenizer.vocabSize, { dropout: 0.1 });
      const dirA = tmpDir('resume-a');
      const full = await new Trainer(new Transformer(cfg, new Rng(5)), data.tokenizer, data, tinyOptions(dirA)).run();
      assert.equal(full.losses.length, 8);

      const dirB = tmpDir('resume-b');
      const first = new Trainer(new Transformer(cfg, new Rng(5)), data.tokenizer, data, tinyOptions(dirB));
      const part = await first.run({ shouldStop: () => first.step === 3 });
      assert.equal(part.interrupted, true);
      assert.equal(part.step, 3);

      const ck = loadCheckpoint(join(dirB, 'ckpt.safetensors'));
      assert.equal((ck.trainer as { step: number }).step, 3);
      const resumed = new Trainer(new Transformer(ck.config, ck.params), data.tokenizer, data, tinyOptions(dirB), ck);
      const rest = await resumed.run();
      assert.deepEqual([...part.losses, ...rest.losses], full.losses);
      assert.deepEqual(rest.lastEval, full.lastEval);
      // the metrics log of the resumed run has each step exactly once
      const steps = readMetrics(join(dirB, 'metrics.jsonl')).filter((r) => r.type === 'train').map((r) => r.step);
      assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.ok(existsSync(join(dirB, 'loss.svg')));
    });
  }

  it('a NaN loss stops the run, names the step and keeps the last good checkpoint', async () => {
    const cfg = tinyConfig('gpt2', data.tokenizer.vocabSize);
    const dir = tmpDir('nan');
    const model = new Transformer(cfg, new Rng(1));
    await new Trainer(model, data.tokenizer, data, tinyOptions(dir, { maxIters: 2, evalInterval: 1 })).run();
    const ckPath = join(dir, 'ckpt.safetensors');
    const before = readFileSync(ckPath);
    const ck = loadCheckpoint(ckPath);
    ck.params.get('transformer.ln_f.weight')!.data[0] = NaN; // poison the model in memory only
    const trainer = new Trainer(new Transformer(ck.config, ck.params), data.tokenizer, data, tinyOptions(dir, { maxIters: 4, evalInterval: 1 }), ck);
    await assert.rejects(trainer.run(), (err: unknown) => {
      assert.ok(err instanceof LlmError);
      assert.match(err.message, /loss became NaN at step 3/);
      assert.match(err.message, /last good checkpoint \(step 2\)/);
      return true;
    });
    assert.deepEqual(readFileSync(ckPath), before);
  });

  it('reuses its buffers: after the first steps a step allocates no new tensor memory', async () => {
    const cfg = tinyConfig('llama', data.tokenizer.vocabSize);
    const trainer = new Trainer(new Transformer(cfg, new Rng(2)), data.tokenizer, data, tinyOptions(tmpDir('pool'), { maxIters: 12, evalInterval: 100 }));
    const pooled: number[] = [];
    await trainer.run({ onStep: () => pooled.push(pooledBytes()) });
    assert.ok(pooled[2] > 0, 'steps run inside a buffer scope');
    // no step after the first ones allocates: the pool never grows (it may shrink when a buffer
    // only the first steps used goes idle and is dropped)
    for (let i = 3; i < pooled.length; i++) assert.ok(pooled[i] <= pooled[i - 1], `pool size per step: ${pooled.join(', ')}`);
    assert.ok(pooled[pooled.length - 1] > 0.9 * pooled[2], `the steps' own buffers stay pooled: ${pooled.join(', ')}`);
  });

  it('rejects a training block size beyond the model context', () => {
    const cfg = tinyConfig('gpt2', data.tokenizer.vocabSize);
    assert.throws(
      () => new Trainer(new Transformer(cfg, new Rng(1)), data.tokenizer, data, tinyOptions(tmpDir('bs'), { blockSize: 64 })),
      /exceeds the model's context length 32/,
    );
  });

  for (const family of ['gpt2', 'llama'] as const) {
    it(`${family}: learns Tiny Shakespeare (val loss falls well below the unigram level)`, async (t) => {
      const text = shakespeare();
      if (!text) return t.skip('shared/data/tinyshakespeare not available');
      const d = tinyData(text.slice(0, 300_000));
      const cfg = tinyConfig(family, d.tokenizer.vocabSize);
      const trainer = new Trainer(new Transformer(cfg, new Rng(3)), d.tokenizer, d, tinyOptions(tmpDir('learn'), {
        maxIters: 300, warmupIters: 20, decayIters: 300, lr: 1e-2, minLr: 1e-3, evalInterval: 300, evalIters: 10, batchSize: 16,
      }));
      const start = trainer.evaluate(10).valLoss;
      const result = await trainer.run();
      const end = result.lastEval!.valLoss;
      t.diagnostic(`${family}: val loss ${start.toFixed(3)} -> ${end.toFixed(3)} in 300 steps, ${Math.round(result.tokensPerSec)} tok/s`);
      assert.ok(start > 3.9, `initial loss ${start} should be near ln(${cfg.vocabSize})`);
      // a unigram model of these characters scores about 3.3; bigram statistics about 2.5
      assert.ok(end < 2.55, `val loss after training is ${end}`);
    });
  }
});
