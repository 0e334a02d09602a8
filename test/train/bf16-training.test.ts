/**
 * Training in bf16 mixed precision (LoopOptions.dtype 'bf16', the portable path, which computes
 * the bf16 numbers on any CPU): the loss falls and tracks float32's; a stopped run resumes bit for
 * bit; the dtype is in the metrics and the checkpoint, and a resume that would change it is refused;
 * where bf16 is off (no AVX512-BF16/AMX, no override) a bf16 run is a float32 run, bit for bit.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setBf16Choice } from '../../src/backend/bf16.js';
import { Transformer } from '../../src/model/transformer.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { Trainer, type TrainOptions } from '../../src/train/trainer.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { tmpDir } from '../helpers/tmp.js';
import { tinyConfig, tinyData, tinyOptions, trainingText } from '../helpers/tiny-run.js';

const data = tinyData(trainingText(60_000));
const PORTABLE = { path: 'portable', kernel: null, reason: 'test' } as const;
const OFF = { path: 'off', kernel: null, reason: 'test' } as const;
after(() => setBf16Choice(null));

async function train(family: 'gpt2' | 'llama', extra: Partial<TrainOptions>, dir = tmpDir(`bf16-${family}`)) {
  const trainer = new Trainer(new Transformer(tinyConfig(family, data.tokenizer.vocabSize), new Rng(5)), data.tokenizer, data, tinyOptions(dir, extra));
  return { trainer, result: await trainer.run(), dir };
}

describe('bf16 training (portable path)', () => {
  for (const family of ['gpt2', 'llama'] as const) {
    it(`${family}: the loss falls and tracks float32 within 0.02 at every step`, async (t) => {
      setBf16Choice(PORTABLE);
      const opts = { maxIters: 40, decayIters: 40, evalInterval: 40, evalIters: 4 };
      const fp32 = await train(family, opts);
      const bf16 = await train(family, { ...opts, dtype: 'bf16' });
      assert.equal(bf16.trainer.loop.dtype, 'bf16');
      const a = fp32.result.losses, b = bf16.result.losses;
      assert.notDeepEqual(b, a, 'bf16 products change the numbers');
      const tail = (l: number[]): number => l.slice(-5).reduce((s, x) => s + x, 0) / 5;
      assert.ok(tail(b) < b[0] - 0.8, `bf16 loss falls: ${b[0]} -> ${tail(b)}`);
      t.diagnostic(`largest step difference ${Math.max(...a.map((x, i) => Math.abs(x - b[i]))).toFixed(4)}; final val loss float32 ${fp32.result.lastEval!.valLoss.toFixed(4)}, bf16 ${bf16.result.lastEval!.valLoss.toFixed(4)}`);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 0.02, `step ${i + 1}: float32 ${a[i]}, bf16 ${b[i]}`);
      const valA = fp32.result.lastEval!.valLoss, valB = bf16.result.lastEval!.valLoss;
      assert.ok(Math.abs(valA - valB) < 0.02, `val loss: float32 ${valA}, bf16 ${valB}`);
    });
  }

  it('a bf16 run stopped at step 3 resumes bit for bit; metrics and checkpoint record bf16', async () => {
    setBf16Choice(PORTABLE);
    const full = await train('llama', { dtype: 'bf16' });
    const dir = tmpDir('bf16-resume');
    const first = new Trainer(new Transformer(tinyConfig('llama', data.tokenizer.vocabSize), new Rng(5)), data.tokenizer, data, tinyOptions(dir, { dtype: 'bf16' }));
    const part = await first.run({ shouldStop: () => first.step === 3 });
    const ck = loadCheckpoint(join(dir, 'ckpt.safetensors'));
    assert.equal((ck.trainer as { dtype?: string }).dtype, 'bf16');
    const resumed = new Trainer(new Transformer(ck.config, ck.params), data.tokenizer, data, tinyOptions(dir, { dtype: 'bf16' }), ck);
    const rest = await resumed.run();
    assert.deepEqual([...part.losses, ...rest.losses], full.result.losses);
    const lines = readMetrics(join(dir, 'metrics.jsonl')).filter((r) => r.type === 'train');
    assert.deepEqual(lines.map((r) => r.dtype), Array(8).fill('bf16'));
    // a float32 run's lines are as before: no dtype field
    const plain = await train('llama', { maxIters: 2 });
    assert.ok(readMetrics(join(plain.dir, 'metrics.jsonl')).every((r) => !('dtype' in r)));
  });

  it('refuses to resume with another dtype, or where this CPU would compute another one', async () => {
    setBf16Choice(PORTABLE);
    const bf16 = await train('gpt2', { maxIters: 2, dtype: 'bf16' });
    const fp32 = await train('gpt2', { maxIters: 2 });
    const resume = (dir: string, dtype: 'bf16' | 'float32') => {
      const ck = loadCheckpoint(join(dir, 'ckpt.safetensors'));
      return new Trainer(new Transformer(ck.config, ck.params), data.tokenizer, data, tinyOptions(dir, { maxIters: 4, dtype }), ck);
    };
    assert.throws(() => resume(bf16.dir, 'float32'), (e: unknown) => e instanceof LlmError && /trained with dtype bf16.*asks for float32/.test(e.message));
    assert.throws(() => resume(fp32.dir, 'bf16'), (e: unknown) => e instanceof LlmError && /trained with dtype float32.*asks for bf16/.test(e.message));
    setBf16Choice(OFF);
    assert.throws(() => resume(bf16.dir, 'bf16'), (e: unknown) => e instanceof LlmError && /asks for bf16, which computes in float32 here/.test(e.message));
    setBf16Choice(PORTABLE);
    assert.equal(resume(bf16.dir, 'bf16').loop.dtype, 'bf16');
  });

  it('with bf16 off (a CPU without AVX512-BF16 or AMX), a bf16 run is the float32 run bit for bit', async () => {
    setBf16Choice(OFF);
    const asked = await train('gpt2', { maxIters: 4, dtype: 'bf16' });
    assert.equal(asked.trainer.loop.dtype, 'float32');
    const plain = await train('gpt2', { maxIters: 4 });
    assert.deepEqual(asked.result.losses, plain.result.losses);
  });
});
