/**
 * The objective-agnostic TrainingLoop, AdamW keyed by name and the checkpoint's extra tensors,
 * through a toy SFT-like objective: fixed sequences whose first targets are masked (so
 * micro-batches differ in weight), served in epochs shuffled by the loop's data rng, with the
 * epoch position as the objective's own resume state.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transformer } from '../../src/model/transformer.js';
import { IGNORE_INDEX, Tensor, add, mean, mul, scale } from '../../src/tensor/index.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { AdamW } from '../../src/train/adamw.js';
import { TrainingLoop, type LoopOptions, type Objective, type ObjectiveLoss } from '../../src/train/loop.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { DEFAULT_TRAIN_OPTIONS } from '../../src/train/trainer.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { tmpDir } from '../helpers/tmp.js';
import { tinyConfig, tinyData, trainingText } from '../helpers/tiny-run.js';

const data = tinyData(trainingText(20_000));
const T = 16;

interface Sequence { x: Int32Array; y: Int32Array }
interface SeqBatch { x: Int32Array; y: Int32Array; rows: number; targets: number }
type ToyEval = { valLoss: number };

/** Sequence i: T tokens and their next tokens, the first (i * 5) % (T - 3) targets masked. */
function sequences(tokens: ArrayLike<number>, n: number, offset = 0): Sequence[] {
  return Array.from({ length: n }, (_, i) => {
    const start = offset + i * (T + 1);
    const x = Int32Array.from({ length: T }, (_, t) => tokens[start + t]);
    const y = Int32Array.from({ length: T }, (_, t) => (t < (i * 5) % (T - 3) ? IGNORE_INDEX : tokens[start + t + 1]));
    return { x, y };
  });
}

/** SFT-shaped: masked targets, weight = unmasked targets, epochs of the pool in rng order. */
class ToySft implements Objective<SeqBatch, ToyEval> {
  readonly name = 'toy-sft';
  private order: number[] = [];
  private cursor = 0;
  private epoch = 0;
  lossCalls = 0;

  constructor(readonly pool: Sequence[], readonly rows: number, readonly val: Sequence[], readonly nanAtCall = -1) {}

  nextBatch(rng: Rng): SeqBatch {
    const x = new Int32Array(this.rows * T);
    const y = new Int32Array(this.rows * T);
    let targets = 0;
    for (let r = 0; r < this.rows; r++) {
      if (this.cursor >= this.order.length) this.newEpoch(rng);
      const s = this.pool[this.order[this.cursor++]];
      x.set(s.x, r * T);
      y.set(s.y, r * T);
      for (const t of s.y) if (t !== IGNORE_INDEX) targets++;
    }
    return { x, y, rows: this.rows, targets };
  }

  private newEpoch(rng: Rng): void {
    this.order = this.pool.map((_, i) => i);
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
    }
    this.cursor = 0;
    this.epoch++;
  }

  weight(b: SeqBatch): number {
    return b.targets;
  }

  loss(model: Transformer, b: SeqBatch): ObjectiveLoss {
    const out = model.forward(b.x, b.rows, T, b.y);
    const V = model.config.vocabSize;
    let right = 0;
    for (let i = 0; i < b.y.length; i++) {
      if (b.y[i] === IGNORE_INDEX) continue;
      let best = 0;
      for (let v = 1; v < V; v++) if (out.logits.data[i * V + v] > out.logits.data[i * V + best]) best = v;
      if (best === b.y[i]) right++;
    }
    const loss = ++this.lossCalls === this.nanAtCall ? scale(out.loss!, NaN) : out.loss!;
    return { loss, tokens: b.rows * T, metrics: { mean_token_accuracy: right / b.targets, num_tokens: b.targets } };
  }

  evaluate(model: Transformer, { iters }: { iters: number }): ToyEval {
    let total = 0;
    for (let i = 0; i < iters; i++) {
      const s = this.val[i % this.val.length];
      total += model.forward(s.x, 1, T, s.y).loss!.item();
    }
    return { valLoss: total / iters };
  }

  state(): unknown {
    return { order: this.order, cursor: this.cursor, epoch: this.epoch };
  }

  restore(s: unknown): void {
    const st = s as { order: number[]; cursor: number; epoch: number };
    this.order = [...st.order];
    this.cursor = st.cursor;
    this.epoch = st.epoch;
  }
}

const pool = sequences(data.train, 10);
const val = sequences(data.val, 4);

function loopOptions(outDir: string, extra: Partial<LoopOptions> = {}): LoopOptions {
  return {
    ...DEFAULT_TRAIN_OPTIONS, maxIters: 6, warmupIters: 2, decayIters: 6, lr: 3e-3, minLr: 3e-4,
    evalInterval: 4, evalIters: 2, outDir, ...extra,
  };
}

function model(seed: number, dropout = 0): Transformer {
  return new Transformer({ ...tinyConfig('llama', data.tokenizer.vocabSize), dropout }, new Rng(seed));
}

describe('TrainingLoop', () => {
  it('accumulating micro-batches of different weights gives the gradient of one big batch', async () => {
    const grads = async (rows: number, gradAccum: number): Promise<{ loss: number; gradNorm: number; g: Float32Array[]; acc: number }> => {
      const loop = new TrainingLoop(model(7), new ToySft(pool, rows, val), loopOptions(tmpDir('accum'), { maxIters: 1, gradAccum, gradClip: 1e9 }), { tokenizer: data.tokenizer });
      let g: Float32Array[] = [];
      let acc = NaN;
      const r = await loop.run({
        onStep: (s) => {
          g = loop.trainable.map((t) => Float32Array.from(t.grad!));
          acc = s.metrics!.mean_token_accuracy;
        },
      });
      const gradNorm = readMetrics(loop.metricsPath).find((x) => x.type === 'train')!.gradNorm as number;
      return { loss: r.losses[0], gradNorm, g, acc };
    };
    const big = await grads(6, 1);
    const accum = await grads(2, 3);
    // the three micro-batches hold different numbers of targets: a plain mean of means would differ
    const close = (a: number, b: number, rel: number): boolean => Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b));
    assert.ok(close(big.loss, accum.loss, 1e-5), `loss ${big.loss} vs ${accum.loss}`);
    assert.ok(close(big.gradNorm, accum.gradNorm, 1e-4), `grad norm ${big.gradNorm} vs ${accum.gradNorm}`);
    assert.ok(big.acc >= 0 && big.acc <= 1);
    let maxDiff = 0;
    let maxAbs = 0;
    big.g.forEach((g, i) => g.forEach((v, j) => {
      maxDiff = Math.max(maxDiff, Math.abs(v - accum.g[i][j]));
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }));
    assert.ok(maxDiff <= 1e-5 * maxAbs, `gradients differ by ${maxDiff} (largest ${maxAbs})`);
  });

  it('a run stopped at step 3 and resumed gives bit-identical losses, metrics and evals (objective state, dropout)', async () => {
    const run = (outDir: string, ck?: ReturnType<typeof loadCheckpoint>) => {
      const m = ck ? new Transformer(ck.config, ck.params) : model(5, 0.1);
      return new TrainingLoop(m, new ToySft(pool, 3, val), loopOptions(outDir, { gradAccum: 2 }), { tokenizer: data.tokenizer, resume: ck });
    };
    const dirA = tmpDir('loop-a');
    const full = await run(dirA).run();
    assert.equal(full.losses.length, 6);

    const dirB = tmpDir('loop-b');
    const first = run(dirB);
    const part = await first.run({ shouldStop: () => first.step === 3 });
    assert.equal(part.interrupted, true);
    const ck = loadCheckpoint(join(dirB, 'ckpt.safetensors'));
    const trainerState = ck.trainer as { step: number; objective: string; objectiveState: { cursor: number } };
    assert.equal(trainerState.step, 3);
    assert.equal(trainerState.objective, 'toy-sft');
    assert.equal(trainerState.objectiveState.cursor, (3 * 2 * 3) % 10, '18 sequences drawn: 8 into the second epoch');
    const rest = await run(dirB, ck).run();
    assert.deepEqual([...part.losses, ...rest.losses], full.losses);
    assert.deepEqual(rest.lastEval, full.lastEval);

    const strip = (rs: Record<string, unknown>[]) => rs.map(({ rss: _r, time: _t, tokensPerSec: _s, ...r }) => r);
    const a = strip(readMetrics(join(dirA, 'metrics.jsonl')));
    const b = strip(readMetrics(join(dirB, 'metrics.jsonl')));
    assert.deepEqual(b, a);
    assert.deepEqual(b.filter((r) => r.type === 'train').map((r) => r.step), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Object.keys(readMetrics(join(dirA, 'metrics.jsonl'))[0]),
      ['type', 'step', 'loss', 'lr', 'gradNorm', 'tokensPerSec', 'mean_token_accuracy', 'num_tokens', 'rss', 'time']);
    assert.deepEqual(a.filter((r) => r.type === 'eval').map((r) => Object.keys(r)), [['type', 'step', 'valLoss'], ['type', 'step', 'valLoss']]);
    assert.ok(existsSync(join(dirB, 'loss.svg')));
  });

  it('a NaN loss stops the run, names the step and keeps the last good checkpoint', async () => {
    const dir = tmpDir('loop-nan');
    await new TrainingLoop(model(1), new ToySft(pool, 2, val), loopOptions(dir, { maxIters: 2, gradAccum: 2 }), { tokenizer: data.tokenizer }).run();
    const ckPath = join(dir, 'ckpt.safetensors');
    const before = readFileSync(ckPath);
    const ck = loadCheckpoint(ckPath);
    // loss() is called twice a step (gradAccum 2): the resumed run's call 1 is step 3's first micro-batch
    const poisoned = new ToySft(pool, 2, val, 1);
    const loop = new TrainingLoop(new Transformer(ck.config, ck.params), poisoned, loopOptions(dir, { maxIters: 4, gradAccum: 2, evalInterval: 1 }), { tokenizer: data.tokenizer, resume: ck });
    await assert.rejects(loop.run(), (err: unknown) => {
      assert.ok(err instanceof LlmError);
      assert.match(err.message, /loss became NaN at step 3/);
      assert.match(err.message, /last good checkpoint \(step 2\)/);
      return true;
    });
    assert.deepEqual(readFileSync(ckPath), before);
    assert.deepEqual(readMetrics(join(dir, 'metrics.jsonl')).filter((r) => r.type === 'train').map((r) => r.step), [1, 2]);
  });

  it('refuses to resume a checkpoint of another objective', async () => {
    const dir = tmpDir('loop-other');
    await new TrainingLoop(model(2), new ToySft(pool, 2, val), loopOptions(dir, { maxIters: 1 }), { tokenizer: data.tokenizer }).run();
    const ck = loadCheckpoint(join(dir, 'ckpt.safetensors'));
    const other: Objective<null> = { name: 'dpo', nextBatch: () => null, loss: () => { throw new Error('unused'); } };
    assert.throws(
      () => new TrainingLoop(new Transformer(ck.config, ck.params), other, loopOptions(dir), { tokenizer: data.tokenizer, resume: ck }),
      (err: unknown) => err instanceof LlmError && /from a 'toy-sft' run and cannot resume as 'dpo'/.test(err.message),
    );
  });

  it('frozen parameters get no moments, no update and are still checkpointed; resuming with other trainable parameters is refused', async () => {
    const dir = tmpDir('loop-frozen');
    const m = model(3);
    const frozen = 'model.norm.weight';
    m.params.get(frozen)!.requiresGrad = false;
    const before = Float32Array.from(m.params.get(frozen)!.data);
    const loop = new TrainingLoop(m, new ToySft(pool, 2, val), loopOptions(dir, { maxIters: 2 }), { tokenizer: data.tokenizer });
    assert.equal(loop.optimizer.m.has(frozen), false);
    assert.equal(loop.optimizer.m.size, m.specs.length - 1);
    await loop.run();
    assert.deepEqual(m.params.get(frozen)!.data, before);
    const ck = loadCheckpoint(join(dir, 'ckpt.safetensors'));
    assert.ok(ck.params.has(frozen));
    assert.equal(ck.optimizer!.m.has(frozen), false);
    assert.equal(ck.optimizer!.m.size, m.specs.length - 1);

    // the same checkpoint into a model that trains everything: one parameter has no moments
    assert.throws(
      () => new TrainingLoop(new Transformer(ck.config, ck.params), new ToySft(pool, 2, val), loopOptions(dir, { maxIters: 4 }), { tokenizer: data.tokenizer, resume: ck }),
      (err: unknown) => err instanceof LlmError && /no moments for 1 trainable parameter of this model \('model\.norm\.weight'\)/.test(err.message),
    );
  });
});

/** Transformer.registerParameter where this build has it (heads and adapters register their tensors). */
type Registering = Transformer & { registerParameter?: (name: string, t: Tensor, o: { decay: boolean; trainable?: boolean }) => void };

describe('TrainingLoop with a registered extra parameter', () => {
  it('optimises, checkpoints and resumes it by name (bit-identical)', async (t) => {
    if (typeof (model(1) as Registering).registerParameter !== 'function') return t.skip('this build has no Transformer.registerParameter');
    const C = tinyConfig('llama', data.tokenizer.vocabSize).nEmbd;
    const build = (ck?: ReturnType<typeof loadCheckpoint>): { m: Transformer; extra: Tensor } => {
      const m = (ck ? new Transformer(ck.config, ck.params) : model(6)) as Registering;
      const extra = ck ? ck.extras.get('score.weight')! : Tensor.full([1, C], 0.5, true);
      m.registerParameter!('score.weight', extra, { decay: true });
      return { m, extra };
    };
    /** the toy loss plus a small penalty on the extra tensor, so it gets a gradient */
    const withPenalty = (extra: Tensor): ToySft => {
      const o = new ToySft(pool, 2, val);
      const base = o.loss.bind(o);
      o.loss = (m, b) => { const r = base(m, b); return { ...r, loss: add(r.loss, scale(mean(mul(extra, extra)), 0.1)) }; };
      return o;
    };
    const runLoop = (dir: string, ck?: ReturnType<typeof loadCheckpoint>) => {
      const { m, extra } = build(ck);
      return new TrainingLoop(m, withPenalty(extra), loopOptions(dir, { maxIters: 4 }), { tokenizer: data.tokenizer, resume: ck });
    };
    const full = await runLoop(tmpDir('extra-a')).run();
    const dir = tmpDir('extra-b');
    const first = runLoop(dir);
    assert.ok(first.optimizer.m.has('score.weight'));
    const part = await first.run({ shouldStop: () => first.step === 2 });
    const ck = loadCheckpoint(join(dir, 'ckpt.safetensors'));
    assert.deepEqual([...ck.extras.keys()], ['score.weight']);
    assert.ok(ck.optimizer!.m.has('score.weight'));
    assert.notEqual(ck.extras.get('score.weight')!.data[0], 0.5, 'the extra was trained');
    const rest = await runLoop(dir, ck).run();
    assert.deepEqual([...part.losses, ...rest.losses], full.losses);

    // without registering it, the model's trainable parameters do not match the checkpoint's
    assert.throws(
      () => new TrainingLoop(new Transformer(ck.config, ck.params), new ToySft(pool, 2, val), loopOptions(dir, { maxIters: 6 }), { tokenizer: data.tokenizer, resume: ck }),
      /moments for 1 parameter this model does not train \('score\.weight'\)/,
    );
  });
});

describe('AdamW by name', () => {
  const param = (n: number, v = 1): Tensor => Tensor.full([n], v, true);

  it('keeps moments for the parameters it is given, by name, and restores them by name', () => {
    const a = param(3);
    const b = param(2);
    const opt = new AdamW([{ name: 'a', tensor: a, decay: true }, { name: 'b', tensor: b, decay: false }]);
    a.grad = Float32Array.from([1, 2, 3]);
    b.grad = Float32Array.from([-1, 1]);
    opt.step(0.1);
    const state = opt.getState();
    assert.deepEqual([...state.m.keys()], ['a', 'b']);
    // a state listed in another order still lands on the right parameters
    const other = new AdamW([{ name: 'b', tensor: param(2), decay: false }, { name: 'a', tensor: param(3), decay: true }]);
    other.setState({ step: state.step, m: new Map([...state.m].reverse()), v: new Map([...state.v].reverse()) });
    assert.deepEqual(other.m.get('a'), state.m.get('a'));
    assert.deepEqual(other.v.get('b'), state.v.get('b'));
    assert.equal(other.stepCount, 1);
  });

  it('a state with a renamed or missing parameter is a clear LlmError', () => {
    const opt = new AdamW([{ name: 'score.weight', tensor: param(4), decay: true }, { name: 'lm_head.weight', tensor: param(2), decay: true }]);
    const renamed = { step: 1, m: new Map([['lm_head.weight', new Float32Array(2)], ['value_head.weight', new Float32Array(4)]]), v: new Map([['lm_head.weight', new Float32Array(2)], ['value_head.weight', new Float32Array(4)]]) };
    assert.throws(() => opt.setState(renamed, 'checkpoint x'), (err: unknown) => {
      assert.ok(err instanceof LlmError);
      assert.match(err.message, /^checkpoint x does not fit this model's trainable parameters/);
      assert.match(err.message, /no moments for 1 trainable parameter of this model \('score\.weight'\)/);
      assert.match(err.message, /moments for 1 parameter this model does not train \('value_head\.weight'\)/);
      return true;
    });
    const missing = { step: 1, m: new Map([['lm_head.weight', new Float32Array(2)]]), v: new Map([['lm_head.weight', new Float32Array(2)]]) };
    assert.throws(() => opt.setState(missing), /no moments for 1 trainable parameter of this model \('score\.weight'\)/);
    const resized = { step: 1, m: new Map([['lm_head.weight', new Float32Array(3)], ['score.weight', new Float32Array(4)]]), v: new Map([['lm_head.weight', new Float32Array(3)], ['score.weight', new Float32Array(4)]]) };
    assert.throws(() => opt.setState(resized), /the moments of 'lm_head\.weight' hold 3 and 3 values, the parameter has 2/);
    assert.throws(() => new AdamW([{ name: 'a', tensor: param(1), decay: true }, { name: 'a', tensor: param(1), decay: true }]), /'a' is given twice/);
  });
});

describe('checkpoint extras', () => {
  it('round-trips a tensor beyond the base parameters and its moments; the base loads as before', () => {
    const m = model(4);
    const C = m.config.nEmbd;
    const score = Tensor.fromArray(Array.from({ length: C }, (_, i) => i / C), [1, C], true);
    const base = m.specs.map((s) => s.name);
    const moments = (names: string[], fill: number) => new Map(names.map((n, i) => [n, new Float32Array(n === 'score.weight' ? C : m.params.get(n)!.size).fill(fill + i)]));
    const names = [...base, 'score.weight'];
    const file = join(tmpDir('ck-extra'), 'ckpt.safetensors');
    saveCheckpoint(file, {
      config: m.config, params: m.params, extras: new Map([['score.weight', score]]), tokenizer: data.tokenizer.toJSON(), trainer: { step: 1 },
      optimizer: { step: 1, m: moments(names, 1), v: moments(names, 100), hyper: { beta1: 0.9 } },
    });
    const ck = loadCheckpoint(file);
    assert.deepEqual([...ck.params.keys()], base);
    assert.deepEqual([...ck.extras.keys()], ['score.weight']);
    assert.deepEqual(ck.extras.get('score.weight')!.shape, [1, C]);
    assert.deepEqual(ck.extras.get('score.weight')!.data, score.data);
    assert.deepEqual([...ck.optimizer!.m.keys()], names);
    assert.equal(ck.optimizer!.v.get('score.weight')![0], 100 + base.length);
    for (const n of base) assert.deepEqual(ck.params.get(n)!.data, m.params.get(n)!.data);
    // the file opens as a plain model: the extra is simply not part of it
    assert.doesNotThrow(() => new Transformer(ck.config, ck.params));

    // saving what was loaded writes the same tensors again
    const again = join(tmpDir('ck-extra2'), 'ckpt.safetensors');
    saveCheckpoint(again, ck);
    assert.deepEqual(loadCheckpoint(again).extras.get('score.weight')!.data, score.data);
  });

  it('a moment of a tensor the file lacks, or without its twin, is a clear LlmError (saving and loading)', () => {
    const m = model(4);
    const file = join(tmpDir('ck-bad'), 'ckpt.safetensors');
    const one = (name: string, n: number) => new Map([[name, new Float32Array(n)]]);
    assert.throws(
      () => saveCheckpoint(file, { config: m.config, params: m.params, tokenizer: {}, trainer: {}, optimizer: { step: 1, m: one('ghost', 2), v: one('ghost', 2), hyper: {} } }),
      /the optimizer has moments for 'ghost', which is not among the parameters written/,
    );
    assert.throws(
      () => saveCheckpoint(file, { config: m.config, params: m.params, extras: new Map([['model.norm.weight', m.params.get('model.norm.weight')!]]), tokenizer: {}, trainer: {} }),
      /'model\.norm\.weight' is given twice/,
    );
    // files edited after saving
    saveCheckpoint(file, { config: m.config, params: m.params, tokenizer: {}, trainer: {} });
    const edited = (extra: Record<string, TensorToWrite>): string => {
      const st = loadSafetensors(file);
      const tensors: Record<string, TensorToWrite> = {};
      for (const [name, t] of st.tensors) tensors[name] = { dtype: 'F32', shape: t.shape, data: (t.data as Float32Array).slice() };
      const out = join(tmpDir('ck-edit'), 'ckpt.safetensors');
      saveSafetensors(out, { ...tensors, ...extra }, st.metadata);
      return out;
    };
    const C = m.config.nEmbd;
    const f32 = (n: number): TensorToWrite => ({ dtype: 'F32', shape: [n], data: new Float32Array(n) });
    assert.throws(() => loadCheckpoint(edited({ 'optimizer.m.ghost': f32(2), 'optimizer.v.ghost': f32(2) })), /tensor 'optimizer\.m\.ghost' is an optimizer moment of a parameter the file does not hold/);
    assert.throws(() => loadCheckpoint(edited({ 'optimizer.m.model.norm.weight': f32(C) })), /tensor 'optimizer\.m\.model\.norm\.weight' has no twin 'optimizer\.v\.model\.norm\.weight'/);
    assert.throws(() => loadCheckpoint(edited({ 'optimizer.m.model.norm.weight': f32(3), 'optimizer.v.model.norm.weight': f32(3) })), /tensor 'optimizer\.m\.model\.norm\.weight' has shape \[3\], its parameter has \[48\]/);
    assert.throws(() => loadCheckpoint(edited({ 'score.ids': { dtype: 'I32', shape: [2], data: new Int32Array(2) } })), /tensor 'score\.ids' has dtype I32, expected a float type/);
    assert.deepEqual([...loadCheckpoint(edited({ 'score.weight': f32(C) })).extras.keys()], ['score.weight']);
  });
});
