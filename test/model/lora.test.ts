/**
 * LoRA (src/model/lora.ts): a fresh adapter is a no-op, gradients of A and B (float64 gradcheck),
 * only adapters train when the base is frozen, the trainable fraction, merge/unmerge round trip,
 * op-by-op decode with an active adapter, init and scaling, and target checks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend } from '../../src/backend/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { KvCache } from '../../src/model/kv-cache.js';
import { defaultLayers, type Linear, type LayerContext } from '../../src/model/layers.js';
import {
  LoraLinear, loraLayers, loraLinears, loraScaling, mergeLora, trainableParameterCount, unmergeLora,
} from '../../src/model/lora.js';
import { Transformer } from '../../src/model/transformer.js';
import { Tensor, mean, noGrad } from '../../src/tensor/index.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck } from '../helpers/gradcheck.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';
import { LORA_GPT2, LORA_LLAMA, maxAbsDiff, randomTokens } from '../helpers/lora-cases.js';

const LLAMA = LORA_LLAMA;
const GPT2 = LORA_GPT2;
const TARGETS: Record<string, string[]> = {
  llama: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  gpt2: ['c_attn', 'c_proj', 'c_fc'],
};

const tokens = randomTokens;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** A LoRA model over a copy of a scaled base model's weights (so merging never touches the base). */
function loraModel(cfg: ModelConfig, opts: { r?: number; alpha?: number; rslora?: boolean; targets?: string[]; seed?: number } = {}) {
  const base = scaledModel(cfg, { seed: 2, gain: 3, jitter: 0.2 });
  const params = new Map([...base.params].map(([k, t]) => [k, new Tensor(Float32Array.from(t.data), t.shape)]));
  const model = new Transformer(cfg, params, {
    layers: loraLayers({ r: opts.r ?? 4, alpha: opts.alpha ?? 8, dropout: 0, targets: opts.targets ?? TARGETS[cfg.family], rslora: opts.rslora, rng: new Rng(opts.seed ?? 11) }),
  });
  model.eval();
  return { base, model };
}

/** Random B everywhere, so the adapters change the function. */
function perturb(model: Transformer, seed = 5, std = 0.3): void {
  const rng = new Rng(seed);
  for (const l of loraLinears(model)) for (let i = 0; i < l.B.size; i++) l.B.data[i] = rng.normal() * std;
}

describe(`LoRA (${backend().name} backend)`, () => {
  it('scaling is alpha / r, alpha / sqrt(r) with rsLoRA', () => {
    assert.equal(loraScaling(8, 16), 2);
    assert.equal(loraScaling(16, 16, true), 4);
  });

  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family}: adapters on the targeted modules only, PEFT shapes, Kaiming-uniform A, zero B; a fresh adapter gives the base's logits`, () => {
      const { base, model } = loraModel(cfg, { targets: cfg.family === 'llama' ? ['q_proj', 'v_proj'] : ['c_attn'] });
      const layers = loraLinears(model);
      assert.equal(layers.length, cfg.nLayer * (cfg.family === 'llama' ? 2 : 1));
      for (const l of layers) {
        assert.match(l.name, cfg.family === 'llama' ? /\.(q|v)_proj$/ : /\.c_attn$/);
        assert.deepEqual(l.A.shape, [4, l.inDim]);
        assert.deepEqual(l.B.shape, [l.outDim, 4]);
        assert.equal(l.inDim, cfg.nEmbd);
        const bound = 1 / Math.sqrt(l.inDim);
        assert.ok(maxAbs(l.A.data) <= bound && maxAbs(l.A.data) > 0.8 * bound);
        assert.ok(l.B.data.every((v) => v === 0));
        assert.equal(l.scaling, 2);
      }
      const extra = model.namedParameters().slice(model.specs.length);
      assert.deepEqual(extra.map((p) => p.name), layers.flatMap((l) => [`${l.name}.lora_A.weight`, `${l.name}.lora_B.weight`]));
      assert.ok(extra.every((p) => !p.decay && p.trainable));
      const ids = tokens(cfg, 2 * 6);
      noGrad(() => assert.deepEqual(model.forward(ids, 2, 6).logits.data, base.forward(ids, 2, 6).logits.data));
    });

    it(`${cfg.family}: with the base frozen only adapter tensors get gradients`, () => {
      const { model } = loraModel(cfg);
      perturb(model);
      model.freeze((n) => !n.includes('lora_'));
      const ids = tokens(cfg, 2 * 6);
      const targets = tokens(cfg, 2 * 6, 4);
      model.forward(ids, 2, 6, targets).loss!.backward();
      for (const p of model.namedParameters()) {
        assert.equal(p.trainable, p.name.includes('.lora_'), p.name);
        assert.equal(p.tensor.grad !== null, p.name.includes('.lora_'), p.name);
      }
      // B is non-zero, so both A and B receive signal
      for (const l of loraLinears(model)) {
        assert.ok(l.A.grad!.some((g) => g !== 0), `${l.name} A`);
        assert.ok(l.B.grad!.some((g) => g !== 0), `${l.name} B`);
      }
    });

    it(`${cfg.family}: merge then unmerge restores the weights; merged logits equal the adapter's; merged layers decode in the program`, () => {
      const { model } = loraModel(cfg);
      perturb(model);
      const before = new Map([...model.params].map(([k, t]) => [k, Float32Array.from(t.data)]));
      const ids = tokens(cfg, 7);
      const unmerged = noGrad(() => model.forward(ids, 1, 7).logits.data.slice());
      mergeLora(model);
      assert.ok(loraLinears(model).every((l) => l.merged && l.decodeWeight() !== null));
      const changed = [...model.params].filter(([k, t]) => maxAbsDiff(t.data, before.get(k)!) > 0).map(([k]) => k);
      assert.equal(changed.length, loraLinears(model).length);
      const merged = noGrad(() => model.forward(ids, 1, 7).logits.data.slice());
      assert.ok(maxAbsDiff(merged, unmerged) < 1e-3 * Math.max(1, maxAbs(unmerged)), `merged vs unmerged ${maxAbsDiff(merged, unmerged)}`);
      // decode program (merged) vs the full forward
      const cache = new KvCache(cfg);
      let last: Float32Array = new Float32Array(0);
      for (const t of ids) last = model.forwardCached(Int32Array.of(t), cache);
      assert.ok(maxAbsDiff(last, merged.subarray(6 * cfg.vocabSize)) < 1e-3 * Math.max(1, maxAbs(merged)));
      // training a merged adapter is refused
      assert.throws(() => model.forward(ids, 1, 7), (e: unknown) => e instanceof LlmError && /unmerge/.test((e as Error).message));
      unmergeLora(model);
      assert.ok(loraLinears(model).every((l) => !l.merged && l.decodeWeight() === null));
      let worst = 0;
      for (const [k, t] of model.params) worst = Math.max(worst, maxAbsDiff(t.data, before.get(k)!));
      assert.ok(worst < 1e-5, `round trip max abs diff ${worst}`);
      const again = noGrad(() => model.forward(ids, 1, 7).logits.data.slice());
      assert.ok(maxAbsDiff(again, unmerged) < 1e-3 * Math.max(1, maxAbs(unmerged)));
      // merging twice is one merge
      mergeLora(model);
      mergeLora(model);
      unmergeLora(model);
      for (const [k, t] of model.params) assert.ok(maxAbsDiff(t.data, before.get(k)!) < 1e-5, k);
    });

    it(`${cfg.family}: forwardCached with an active adapter (op-by-op decode) equals forward`, () => {
      const { model } = loraModel(cfg);
      perturb(model);
      const ids = tokens(cfg, 9);
      const full = noGrad(() => model.forward(ids, 1, 9).logits.data.slice());
      // prefill 4, then one token at a time
      const cache = new KvCache(cfg);
      const pre = model.forwardCached(ids.subarray(0, 4), cache, { allLogits: true });
      assert.ok(maxAbsDiff(pre, full.subarray(0, 4 * cfg.vocabSize)) < 1e-3 * Math.max(1, maxAbs(full)));
      for (let t = 4; t < 9; t++) {
        const step = model.forwardCached(ids.subarray(t, t + 1), cache);
        const want = full.subarray(t * cfg.vocabSize, (t + 1) * cfg.vocabSize);
        assert.ok(maxAbsDiff(step, want) < 1e-3 * Math.max(1, maxAbs(want)), `position ${t}: ${maxAbsDiff(step, want)}`);
      }
      // the adapter matters: the base's logits differ
      const plain = new Transformer(cfg, model.params);
      const baseLogits = noGrad(() => plain.forward(ids, 1, 9).logits.data);
      assert.ok(maxAbsDiff(baseLogits, full) > 1e-2);
    });
  }

  for (const layout of ['out_in', 'in_out'] as const) {
    it(`float64 gradcheck of a LoRA linear (${layout}): x, A and B`, () => {
      const inDim = 5, outDim = 4, r = 3;
      gradcheck(`lora ${layout}`, (rng) => {
        const w = Tensor.randn(layout === 'out_in' ? [outDim, inDim] : [inDim, outDim], rng, 0.5);
        const bias = Tensor.randn([outDim], rng, 0.5);
        const params = new Map([['l.weight', w], ['l.bias', bias]]);
        const ctx = { cfg: LLAMA, quantized: new Map(), training: false, rng, rope: null, factory: defaultLayers, register: () => {} } as unknown as LayerContext;
        const layer = new LoraLinear(defaultLayers.linear(params, 'l', layout, ctx) as Linear, layout, { r, alpha: 6, dropout: 0, targets: ['l'] }, ctx, rng);
        for (let i = 0; i < layer.B.size; i++) layer.B.data[i] = rng.normal();
        const x = Tensor.randn([2, 3, inDim], rng, 1, true);
        gradcheckLayers.set(x, layer);
        return [x, layer.A, layer.B];
      }, ([x]) => gradcheckLayers.get(x)!.forward(x));
    });
  }

  it('rsLoRA scales by alpha / sqrt(r): the delta is (sqrt(r)) times the plain one', () => {
    const ids = tokens(LLAMA, 5);
    const plain = loraModel(LLAMA, { r: 4, alpha: 8 });
    const rs = loraModel(LLAMA, { r: 4, alpha: 8, rslora: true });
    perturb(plain.model);
    perturb(rs.model);
    assert.equal(loraLinears(rs.model)[0].scaling, 4);
    // with one targeted module the delta of the first layer's q output is linear in scaling
    const l1 = loraLinears(plain.model)[0], l2 = loraLinears(rs.model)[0];
    const x = Tensor.randn([1, 2, LLAMA.nEmbd], new Rng(1));
    const base = noGrad(() => l1.base.forward(x).data);
    const d1 = noGrad(() => l1.forward(x).data).map((v, i) => v - base[i]);
    const d2 = noGrad(() => l2.forward(x).data).map((v, i) => v - base[i]);
    for (let i = 0; i < d1.length; i++) assert.ok(Math.abs(d2[i] - 2 * d1[i]) < 1e-4 * Math.max(1, Math.abs(d1[i])));
    noGrad(() => rs.model.forward(ids, 1, 5));
  });

  it('dropout applies to the adapter input in training mode only', () => {
    const { model } = loraModel(LLAMA);
    const m2 = new Transformer(LLAMA, model.params, {
      layers: loraLayers({ r: 4, alpha: 8, dropout: 0.5, targets: ['q_proj'], rng: new Rng(11) }),
    });
    perturb(m2);
    const ids = tokens(LLAMA, 6);
    const evalA = noGrad(() => m2.forward(ids, 1, 6).logits.data.slice());
    const evalB = noGrad(() => m2.forward(ids, 1, 6).logits.data.slice());
    assert.deepEqual(evalA, evalB);
    m2.train(new Rng(3));
    const trainA = noGrad(() => m2.forward(ids, 1, 6).logits.data.slice());
    assert.ok(maxAbsDiff(trainA, evalA) > 0);
  });

  it('reports the trainable fraction: under 2% for llama-15m-like dims with r = 8 on all linear modules', () => {
    // stories15M: dim 288, 6 layers, 6 heads, hidden 768, vocab 32000
    const cfg = tinyLlama({ vocabSize: 32000, blockSize: 256, nLayer: 6, nHead: 6, nKvHead: 6, nEmbd: 288, hiddenDim: 768 });
    const model = new Transformer(cfg, new Rng(1), { layers: loraLayers({ r: 8, alpha: 16, dropout: 0, targets: TARGETS.llama, rng: new Rng(2) }) });
    model.freeze((n) => !n.includes('lora_'));
    const { trainable, total, fraction } = trainableParameterCount(model);
    // per layer: 4 attention (8·288 + 288·8) + gate/up (8·288 + 768·8) x2 + down (8·768 + 288·8)
    const perLayer = 4 * (2 * 8 * 288) + 2 * (8 * 288 + 8 * 768) + (8 * 768 + 8 * 288);
    assert.equal(trainable, 6 * perLayer);
    console.log(`LoRA r=8, all linear modules, llama-15m dims: ${trainable} of ${total} parameters trainable (${(100 * fraction).toFixed(3)}%)`);
    assert.ok(fraction < 0.02, `fraction ${fraction}`);
    const qv = new Transformer(cfg, model.params, { layers: loraLayers({ r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'v_proj'], rng: new Rng(2) }) });
    qv.freeze((n) => !n.includes('lora_'));
    const f2 = trainableParameterCount(qv);
    console.log(`LoRA r=8, q_proj+v_proj: ${f2.trainable} of ${f2.total} (${(100 * f2.fraction).toFixed(3)}%)`);
    assert.equal(f2.trainable, 6 * 2 * (2 * 8 * 288));
  });

  it('refuses targets that are no linear module of the family, and bad options, in one line', () => {
    const params = scaledModel(GPT2).params;
    assert.throws(() => new Transformer(GPT2, params, { layers: loraLayers({ r: 2, alpha: 4, dropout: 0, targets: ['q_proj'], rng: new Rng(1) }) }),
      (e: unknown) => e instanceof LlmError && /'q_proj' is not a linear module of a gpt2 model/.test((e as Error).message) && !(e as Error).message.includes('\n'));
    assert.throws(() => loraLayers({ r: 0, alpha: 4, dropout: 0, targets: ['c_attn'], rng: new Rng(1) }), /rank r must be a positive integer/);
    assert.throws(() => loraLayers({ r: 2, alpha: 4, dropout: 1, targets: ['c_attn'], rng: new Rng(1) }), /dropout/);
    assert.throws(() => loraLayers({ r: 2, alpha: 4, dropout: 0, targets: [], rng: new Rng(1) }), /at least one target/);
    assert.throws(() => mergeLora(new Transformer(GPT2, params)), /no LoRA layers/);
  });

  it('a LoRA model trains: a few SGD steps on the adapters lower the loss, the base unchanged', () => {
    const { model } = loraModel(LLAMA);
    model.freeze((n) => !n.includes('lora_'));
    const before = new Map([...model.params].map(([k, t]) => [k, Float32Array.from(t.data)]));
    const ids = tokens(LLAMA, 2 * 8);
    const targets = tokens(LLAMA, 2 * 8, 9);
    const loss0 = model.forward(ids, 2, 8, targets).loss!.data[0];
    for (let step = 0; step < 20; step++) {
      for (const p of model.parameters()) p.grad = null;
      const { loss } = model.forward(ids, 2, 8, targets);
      mean(loss!).backward();
      for (const p of model.parameters()) for (let i = 0; i < p.size; i++) p.data[i] -= 0.05 * p.grad![i];
    }
    const loss1 = noGrad(() => model.forward(ids, 2, 8, targets).loss!.data[0]);
    assert.ok(loss1 < loss0 - 0.05, `${loss0} -> ${loss1}`);
    for (const [k, t] of model.params) assert.deepEqual(t.data, before.get(k), k);
  });
});

/** The layer each gradcheck input set belongs to (the checked function receives the inputs only). */
const gradcheckLayers = new Map<Tensor, LoraLinear>();
