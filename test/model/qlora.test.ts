/**
 * QLoRA: autograd through frozen quantized (Q8_0/Q4_0) weights and LoRA adapters over them.
 *
 * - quantizedLinear's input and bias gradients: float64 gradcheck, and equal to a float64 linear
 *   on the dequantized weight; the native backward product equals the float one.
 * - LoRA on a quantized base against LoRA on the same base dequantized to float, same adapters:
 *   logits, loss and every adapter gradient (tight on the reference backend, whose quantized
 *   forward keeps float activations; within int8-activation error on the native one).
 * - Decoding with an active adapter on a quantized base (prefill, op-by-op decode, with and
 *   without the decode program) against the dequantized float model + adapter, and the merged
 *   copy (mergedParameters) against both.
 * - A GGUF base kept quantized (token embedding and lm_head in Q4_0 too, GPT-2's tied head):
 *   the gradient flows through the quantized head; adapters train, the loss falls.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backend, referenceBackend, setBackend, type Backend, type QuantType } from '../../src/backend/index.js';
import { exportGgufModel, importGgufModel } from '../../src/formats/gguf-model.js';
import type { ModelConfig } from '../../src/model/config.js';
import { countParameters } from '../../src/model/parameters.js';
import { KvCache } from '../../src/model/kv-cache.js';
import { loraLayers, loraLinears, mergeLora, mergedParameters, trainableParameterCount } from '../../src/model/lora.js';
import { dequantizeToParameter, quantizeBlockLinears, quantizeWeight, unquantizableLinear, type QuantizedWeight } from '../../src/model/quantized.js';
import { Transformer } from '../../src/model/transformer.js';
import { Tensor, linear, noGrad, quantizedLinear, withFloat64Storage } from '../../src/tensor/index.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck } from '../helpers/gradcheck.js';
import { maxAbsDiff, randomTokens } from '../helpers/lora-cases.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const LLAMA = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
const GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 128 });
const TARGETS: Record<string, string[]> = {
  llama: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  gpt2: ['c_attn', 'c_proj', 'c_fc'],
};
/** the reference backend keeps float activations in the quantized forward: the two models agree to rounding */
const REFERENCE = backend().name === 'reference';

/** fn with `be` as the backend (float64 storage runs on the reference kernels only). */
function onBackend<T>(be: Backend, fn: () => T): T {
  const previous = backend();
  setBackend(be);
  try {
    return fn();
  } finally {
    setBackend(previous);
  }
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(1e-30, maxAbs(b));
}

/** The float weights of a quantized map, in each parameter's own layout. */
function dequantizedParams(cfg: ModelConfig, params: Map<string, Tensor>, quantized: Map<string, QuantizedWeight>): Map<string, Tensor> {
  const out = new Map(params);
  const shapes = new Map(new Transformer(cfg, new Rng(0)).specs.map((s) => [s.name, s.shape]));
  for (const [name, q] of quantized) out.set(name, new Tensor(dequantizeToParameter(cfg, name, q), shapes.get(name)!));
  return out;
}

/** A LoRA model (base frozen, r = 4, no dropout) over these weights, every B random so the adapters matter. */
function loraOver(cfg: ModelConfig, params: Map<string, Tensor>, quantized?: Map<string, QuantizedWeight>): Transformer {
  const model = new Transformer(cfg, params, { quantized, layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: TARGETS[cfg.family], rng: new Rng(11) }) });
  model.freeze((n) => !n.includes('.lora_'));
  const rng = new Rng(5);
  for (const l of loraLinears(model)) for (let i = 0; i < l.B.size; i++) l.B.data[i] = rng.normal() * 0.3;
  model.eval();
  return model;
}

/** The same adapters over a quantized base and over that base dequantized to float. */
function qloraPair(cfg: ModelConfig, type: QuantType): { q: Transformer; f: Transformer } {
  const base = scaledModel(cfg, { seed: 2, gain: 3, jitter: 0.2 });
  const { params, quantized } = quantizeBlockLinears(cfg, base.params, type);
  return { q: loraOver(cfg, params, quantized), f: loraOver(cfg, dequantizedParams(cfg, params, quantized)) };
}

/** Loss and the gradient of every adapter tensor, by name. */
function adapterGrads(model: Transformer, ids: Int32Array, targets: Int32Array, B: number, T: number): { loss: number; grads: Map<string, Float32Array> } {
  for (const p of model.namedParameters()) p.tensor.grad = null;
  const { loss } = model.forward(ids, B, T, targets);
  loss!.backward();
  const grads = new Map<string, Float32Array>();
  for (const p of model.namedParameters()) if (p.trainable) grads.set(p.name, Float32Array.from(p.tensor.grad!));
  return { loss: loss!.item(), grads };
}

describe(`QLoRA (${backend().name} backend)`, () => {
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    it(`float64 gradcheck of quantizedLinear (${type}): input and bias`, () => {
      const N = 5, K = 64;
      const w = quantizeWeight(type, Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.7) * 0.8), N, K);
      gradcheck(`quantizedLinear ${type}`, (rng) => [Tensor.randn([2, 3, K], rng, 1, true), Tensor.randn([N], rng, 0.5, true)],
        ([x, bias]) => quantizedLinear(x, w, bias));
    });

    it(`quantizedLinear (${type}) has the input gradient of a float64 linear on the dequantized weight`, () => {
      const N = 7, K = 96;
      const w = quantizeWeight(type, Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 1.3)), N, K);
      const wf = dequantizeToParameter(LLAMA, 'lm_head.weight', w); // (N, K), rows = outputs
      onBackend(referenceBackend, () => withFloat64Storage(() => {
        const rng = new Rng(4);
        const x1 = Tensor.randn([3, K], rng, 1, true);
        const x2 = new Tensor(Float64Array.from(x1.data) as unknown as Float32Array, [3, K], true);
        const dy = Float64Array.from({ length: 3 * N }, (_, i) => Math.sin(i)) as unknown as Float32Array;
        quantizedLinear(x1, w, null).backward(dy);
        linear(x2, new Tensor(Float64Array.from(wf) as unknown as Float32Array, [N, K]), null, 'out_in').backward(dy);
        // the reference kernels run in float64 here: equal to rounding (no float32 step anywhere)
        assert.ok(maxAbsDiff(x1.grad!, x2.grad!) < 1e-12 * maxAbs(x2.grad!), `${maxAbsDiff(x1.grad!, x2.grad!)}`);
      }));
      // the backend under test (float32): its backward product against the float linear's
      const x = Tensor.randn([33, K], new Rng(6), 1, true);
      const y = Tensor.randn([33, K], new Rng(6), 1, true);
      const dy = Float32Array.from({ length: 33 * N }, (_, i) => Math.sin(i * 0.37));
      quantizedLinear(x, w, null).backward(dy);
      linear(y, new Tensor(wf, [N, K]), null, 'out_in').backward(dy);
      assert.ok(relDiff(x.grad!, y.grad!) < 1e-5, `${relDiff(x.grad!, y.grad!)}`);
    });
  }

  for (const cfg of [LLAMA, GPT2]) {
    for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
      it(`${cfg.family} ${type}: LoRA over the quantized base computes the dequantized float model's loss, logits and adapter gradients`, (t) => {
        const { q, f } = qloraPair(cfg, type);
        assert.ok(q.quantized.size > 0 && q.params.size < f.params.size);
        const B = 2, T = 9;
        const ids = randomTokens(cfg, B * T, 3);
        const targets = randomTokens(cfg, B * T, 4);
        const gq = adapterGrads(q, ids, targets, B, T);
        const gf = adapterGrads(f, ids, targets, B, T);
        let worst = 0;
        for (const [name, g] of gf.grads) {
          const e = relDiff(gq.grads.get(name)!, g);
          worst = Math.max(worst, e);
          if (REFERENCE) assert.ok(e < 1e-4, `${name}: ${e}`);
        }
        t.diagnostic(`loss ${gq.loss.toFixed(5)} vs ${gf.loss.toFixed(5)}; worst adapter gradient difference ${worst.toExponential(2)} of its largest entry`);
        assert.ok(Math.abs(gq.loss - gf.loss) < (REFERENCE ? 1e-5 : 0.02) * gf.loss);
        // int8 activations (native) move the gradients a little; the direction stays
        if (!REFERENCE) assert.ok(worst < 0.15, `worst adapter gradient difference ${worst}`);
        assert.equal(gq.grads.size, gf.grads.size);
        for (const p of q.namedParameters()) if (!p.name.includes('.lora_')) assert.equal(p.tensor.grad, null, `${p.name} is frozen`);
      });
    }

    it(`${cfg.family}: decoding with an active adapter on a Q4_0 base equals the dequantized float model + adapter on every path`, (t) => {
      const { q, f } = qloraPair(cfg, 'q4_0');
      const n = 10, pre = 4, V = cfg.vocabSize;
      const ids = randomTokens(cfg, n, 7);
      const want = noGrad(() => f.forward(ids, 1, n).logits.data.slice()); // (n, V)
      const tol = (REFERENCE ? 1e-4 : 0.05) * Math.max(1, maxAbs(want));
      let worst = 0;
      for (const program of [true, false]) {
        q.useDecodeProgram = program;
        const cache = new KvCache(cfg);
        const prefill = q.forwardCached(ids.subarray(0, pre), cache, { allLogits: true });
        worst = Math.max(worst, maxAbsDiff(prefill, want.subarray(0, pre * V)));
        for (let i = pre; i < n; i++) {
          const step = q.forwardCached(ids.subarray(i, i + 1), cache);
          worst = Math.max(worst, maxAbsDiff(step, want.subarray(i * V, (i + 1) * V)));
        }
        assert.ok(worst < tol, `decode program ${program}: logits differ by ${worst} (tolerance ${tol})`);
      }
      // the adapters matter (the base alone differs), and the merged float copy decodes the same
      const plain = noGrad(() => new Transformer(cfg, f.params).forward(ids, 1, n).logits.data);
      assert.ok(maxAbsDiff(plain, want) > 10 * tol);
      const merged = new Transformer(cfg, mergedParameters(q));
      merged.eval();
      const cache = new KvCache(cfg);
      merged.forwardCached(ids.subarray(0, pre), cache);
      for (let i = pre; i < n; i++) {
        const step = merged.forwardCached(ids.subarray(i, i + 1), cache); // float weights: the decode program
        assert.ok(maxAbsDiff(step, want.subarray(i * V, (i + 1) * V)) < 1e-3 * Math.max(1, maxAbs(want)));
      }
      t.diagnostic(`worst decode logit difference ${worst.toExponential(2)} (largest logit ${maxAbs(want).toFixed(2)})`);
    });
  }

  it('a quantized base merges into a float copy only: mergeLora refuses, mergedParameters leaves the model as it is', () => {
    const { q } = qloraPair(LLAMA, 'q8_0');
    const before = new Map([...q.quantized].map(([k, w]) => [k, w.blocks.slice()]));
    assert.throws(() => mergeLora(q), (e: unknown) => e instanceof LlmError && /quantized base weight/.test((e as Error).message));
    const merged = mergedParameters(q);
    assert.equal(merged.size, q.specs.length);
    for (const [k, b] of before) assert.deepEqual(q.quantized.get(k)!.blocks, b);
    assert.equal(merged.get('model.norm.weight'), q.params.get('model.norm.weight')); // shared, not copied
  });

  it('only the adapters train: trainable fraction, no gradient buffers for the base', () => {
    const { q } = qloraPair(LLAMA, 'q4_0');
    const c = trainableParameterCount(q);
    const adapters = loraLinears(q).reduce((n, l) => n + l.A.size + l.B.size, 0);
    assert.equal(c.trainable, adapters);
    assert.equal(c.total, countParameters(LLAMA) + adapters); // the quantized weights count in the total
    assert.ok(q.parameters().length === 2 * loraLinears(q).length);
  });

  it('a model whose linear layers have input features that are no multiple of 32 has no quantized path (one-line error)', () => {
    const cfg = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 1, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });
    assert.deepEqual(unquantizableLinear(cfg), { name: 'model.layers.0.mlp.down_proj.weight', inDim: 48 });
    assert.equal(unquantizableLinear(LLAMA), null);
    const m = scaledModel(cfg);
    assert.throws(() => quantizeBlockLinears(cfg, m.params, 'q4_0'),
      (e: unknown) => e instanceof LlmError && /down_proj.* 48 input features/.test((e as Error).message) && !(e as Error).message.includes('\n'));
  });

  describe('a GGUF base kept quantized (token embedding and lm_head in Q4_0 too)', () => {
    const dir = tmpDir('qlora-gguf');
    for (const cfg of [LLAMA, GPT2]) {
      it(`${cfg.family}: gradients flow through the quantized head; adapter gradients equal the dequantized import's; a few Adam steps lower the loss`, (t) => {
        const file = join(dir, `${cfg.family}.q4_0.gguf`);
        exportGgufModel(file, cfg, scaledModel(cfg, { seed: 3, gain: 2, jitter: 0.2 }).params, { quant: 'q4_0' });
        const kept = importGgufModel(file, { keepQuantized: true });
        const head = cfg.tiedEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight';
        assert.ok(kept.quantized.has(head), `${head} is quantized`);
        const q = loraOver(cfg, kept.params, kept.quantized);
        const f = loraOver(cfg, importGgufModel(file, { keepQuantized: false }).params);
        const B = 2, T = 8;
        const ids = randomTokens(cfg, B * T, 9);
        const targets = randomTokens(cfg, B * T, 10);
        const gq = adapterGrads(q, ids, targets, B, T);
        const gf = adapterGrads(f, ids, targets, B, T);
        let worst = 0;
        for (const [name, g] of gf.grads) worst = Math.max(worst, relDiff(gq.grads.get(name)!, g));
        t.diagnostic(`worst adapter gradient difference ${worst.toExponential(2)}`);
        assert.ok(worst < (REFERENCE ? 1e-4 : 0.15), `${worst}`);
        // plain Adam on the adapters: the loss on this batch falls
        const params = q.parameters();
        const m = params.map((p) => new Float32Array(p.size));
        const v = params.map((p) => new Float32Array(p.size));
        const first = gq.loss;
        let last = first;
        for (let step = 1; step <= 15; step++) {
          for (const p of params) p.grad = null;
          const { loss } = q.forward(ids, B, T, targets);
          loss!.backward();
          last = loss!.item();
          params.forEach((p, k) => backend().adamw(p.data, p.grad!, m[k], v[k], p.size, 1e-2, 0.9, 0.999, 1e-8, 0, step));
        }
        t.diagnostic(`loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
        assert.ok(last < first - 0.1, `loss ${first} -> ${last}`);
        for (const w of q.quantized.values()) assert.ok(w.blocks.length > 0);
      });
    }
  });
});
