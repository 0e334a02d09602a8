/**
 * The model as a trunk and heads (issue 15): hidden() is what the LM head reads, the scalar head's
 * gradient, named parameters and their flags, freezing (a frozen tensor never gets a gradient
 * buffer), registered tensors, a LayerFactory wrapping every linear layer (prefill, decode and the
 * decode-program fallback), and a reference model sharing the base weights.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend } from '../../src/backend/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { addScalarHead, ScalarHead, SCALAR_HEAD_NAME } from '../../src/model/heads.js';
import { KvCache } from '../../src/model/kv-cache.js';
import { KvCache as KvCacheReexported } from '../../src/generate/kv-cache.js';
import { defaultLayers, Linear, type LayerFactory, type LinearLayer } from '../../src/model/layers.js';
import { parameterSpecs } from '../../src/model/parameters.js';
import { Transformer } from '../../src/model/transformer.js';
import { Tensor, add, linear, mean, noGrad, withBufferScope, type WeightLayout } from '../../src/tensor/index.js';
import { WeightType } from '../../src/backend/decode-program.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck, param } from '../helpers/gradcheck.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const LLAMA = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });
const GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 64 });
const LLAMA_TIED = { ...LLAMA, tiedEmbeddings: true };
const GPT2_UNTIED = { ...GPT2, tiedEmbeddings: false };

function tokens(cfg: ModelConfig, n: number, seed = 3): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => rng.int(cfg.vocabSize));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Linear layers a config has, by parameter prefix, in parameter order. */
function linearNames(cfg: ModelConfig): string[] {
  const names: string[] = [];
  for (let l = 0; l < cfg.nLayer; l++) {
    if (cfg.family === 'gpt2') {
      for (const n of ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']) names.push(`transformer.h.${l}.${n}`);
    } else {
      for (const n of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
        names.push(`model.layers.${l}.${n}`);
      }
    }
  }
  return names;
}

/**
 * A LoRA-like factory: each linear layer is the default one plus x Aᵀ Bᵀ, A (r, in) random and
 * B (out, r) zeros, registered as `${name}.lora_A.weight` / `.lora_B.weight`. It counts the layers
 * built and their forward calls. merged: its decodeWeight() is W + (B A) in the weight's own
 * layout (a merged copy), else null (the model then decodes op by op).
 */
function loraFactory(opts: { merged: boolean; r?: number; seed?: number }) {
  const built: string[] = [];
  const calls = new Map<string, number>();
  const adapters = new Map<string, { A: Tensor; B: Tensor; base: Linear }>();
  const rng = new Rng(opts.seed ?? 9);
  const r = opts.r ?? 2;
  const factory: LayerFactory = {
    linear(params, name, layout: WeightLayout, ctx): LinearLayer {
      const base = defaultLayers.linear(params, name, layout, ctx) as Linear;
      const [d0, d1] = base.weight!.shape;
      const [inDim, outDim] = layout === 'out_in' ? [d1, d0] : [d0, d1];
      const A = Tensor.randn([r, inDim], rng, 0.5, true);
      const B = Tensor.zeros([outDim, r], true);
      ctx.register(`${name}.lora_A.weight`, A, { decay: false });
      ctx.register(`${name}.lora_B.weight`, B, { decay: false });
      built.push(name);
      adapters.set(name, { A, B, base });
      return {
        name,
        forward(x: Tensor): Tensor {
          calls.set(name, (calls.get(name) ?? 0) + 1);
          return add(base.forward(x), linear(linear(x, A, null, 'out_in'), B, null, 'out_in'));
        },
        decodeWeight() {
          if (!opts.merged) return null;
          const w = base.decodeWeight();
          const data = Float32Array.from(base.weight!.data);
          for (let o = 0; o < outDim; o++) {
            for (let i = 0; i < inDim; i++) {
              let d = 0;
              for (let k = 0; k < r; k++) d += B.data[o * r + k] * A.data[k * inDim + i];
              data[layout === 'out_in' ? o * inDim + i : i * outDim + o] += d;
            }
          }
          return { ...w, data };
        },
      };
    },
  };
  return { factory, built, calls, adapters };
}

/** Fill every lora_B with random values, so the adapters change the model's function. */
function perturbAdapters(adapters: Map<string, { B: Tensor }>, seed = 5): void {
  const rng = new Rng(seed);
  for (const { B } of adapters.values()) for (let i = 0; i < B.size; i++) B.data[i] = rng.normal() * 0.3;
}

describe(`trunk and heads (${backend().name} backend)`, () => {
  it('KvCache lives in model/ and is re-exported from generate/', () => {
    assert.equal(KvCacheReexported, KvCache);
  });

  for (const cfg of [LLAMA, GPT2, LLAMA_TIED, GPT2_UNTIED]) {
    const label = `${cfg.family}${cfg.tiedEmbeddings ? ' tied' : ' untied'}`;

    it(`${label}: forward's logits are the LM head applied to hidden(), bit for bit`, () => {
      const m = scaledModel(cfg, { seed: 2, gain: 3, jitter: 0.2 });
      const B = 2, T = 7;
      const ids = tokens(cfg, B * T);
      for (const lastOnly of [false, true]) {
        noGrad(() => {
          const h = m.hidden(ids, B, T, { lastOnly });
          assert.deepEqual(h.shape, [B, lastOnly ? 1 : T, cfg.nEmbd]);
          const logits = m.forward(ids, B, T, undefined, { lastOnly }).logits;
          assert.deepEqual(logits.data, m.lmHead.forward(h).data);
          // and the head is a plain product with its weight (tied: the token embedding itself)
          const w = m.params.get(cfg.tiedEmbeddings ? m.specs[0].name : 'lm_head.weight')!;
          assert.equal(m.lmHead.weight, w);
          assert.deepEqual(logits.data, linear(h, w, null, 'out_in').data);
        });
      }
      // with autograd on (no stage scopes), the same numbers
      withBufferScope(() => {
        const h = m.hidden(ids, B, T);
        assert.ok(h.requiresGrad);
        const ref = noGrad(() => m.hidden(ids, B, T));
        assert.deepEqual(h.data, ref.data);
      });
    });

    it(`${label}: namedParameters lists the spec table in order with its decay flags, then registered heads`, () => {
      const m = new Transformer(cfg, new Rng(1));
      const specs = parameterSpecs(cfg);
      const named = m.namedParameters();
      assert.deepEqual(named.map((p) => p.name), specs.map((s) => s.name));
      assert.deepEqual(named.map((p) => p.decay), specs.map((s) => s.decay));
      assert.ok(named.every((p) => p.trainable && p.tensor.requiresGrad && p.tensor === m.params.get(p.name) && p.tensor.name === p.name));
      assert.equal(named.some((p) => p.name === 'lm_head.weight'), !cfg.tiedEmbeddings);
      // the embedding and the matrices: decay only on linear weights (and an untied head)
      for (const p of named) {
        const matrix = /(_proj|c_attn|c_proj|c_fc|lm_head)\.weight$/.test(p.name);
        assert.equal(p.decay, matrix, p.name);
      }
      assert.deepEqual(m.parameters(), named.map((p) => p.tensor));
      const head = addScalarHead(m, { rng: new Rng(4) });
      const after = m.namedParameters();
      assert.equal(after.length, named.length + 1);
      assert.deepEqual(after.at(-1), { name: SCALAR_HEAD_NAME, tensor: head.weight, trainable: true, decay: true });
      assert.equal(m.parameters().at(-1), head.weight);
    });
  }

  it('ScalarHead: (B, T, C) -> (B, T); weight [1, C] named score.weight; init N(0, 1/sqrt(C+1)) or zeros', () => {
    const C = 400;
    const h = ScalarHead.create(C, { rng: new Rng(1) });
    assert.equal(h.name, 'score.weight');
    assert.deepEqual(h.weight.shape, [1, C]);
    let ss = 0;
    for (const v of h.weight.data) ss += v * v;
    const std = Math.sqrt(ss / C);
    assert.ok(Math.abs(std - 1 / Math.sqrt(C + 1)) < 0.01, `std ${std}`);
    assert.ok(ScalarHead.create(C, { init: 'zeros' }).weight.data.every((v) => v === 0));
    assert.throws(() => ScalarHead.create(C), LlmError);
    assert.throws(() => new ScalarHead(Tensor.zeros([2, C])), LlmError);
    const x = Tensor.randn([2, 3, C], new Rng(2));
    const y = h.forward(x);
    assert.deepEqual(y.shape, [2, 3]);
    let dot = 0;
    for (let c = 0; c < C; c++) dot += x.data[5 * C + c] * h.weight.data[c];
    assert.ok(Math.abs(y.data[5] - dot) < 1e-4);
  });

  it('ScalarHead gradcheck (float64): input and weight', () => {
    gradcheck('scalar head', (rng) => [param(rng, [2, 3, 8]), param(rng, [1, 8])], ([x, w]) => new ScalarHead(w).forward(x));
  });

  it('gradcheck (float64) through hidden() and a scalar head: the head, a norm gain and an attention weight', () => {
    let model: Transformer | null = null;
    const cfg = tinyLlama({ vocabSize: 11, blockSize: 8, nLayer: 1, nHead: 2, nKvHead: 1, nEmbd: 8, hiddenDim: 12 });
    const ids = tokens(cfg, 2 * 4);
    gradcheck('hidden + scalar head', (rng) => {
      model = new Transformer(cfg, new Rng(3));
      const head = addScalarHead(model, { rng });
      return [head.weight, model.params.get('model.norm.weight')!, model.params.get('model.layers.0.self_attn.k_proj.weight')!];
    }, ([w]) => new ScalarHead(w).forward(model!.hidden(ids, 2, 4)), { maxElements: 24 });
  });

  it('registerParameter: names and tensors must be new', () => {
    const m = new Transformer(LLAMA, new Rng(1));
    const t = () => Tensor.zeros([1, LLAMA.nEmbd], true);
    assert.throws(() => m.registerParameter('model.norm.weight', t(), { decay: false }), /already has a parameter/);
    assert.throws(() => m.registerParameter('x', m.params.get('model.norm.weight')!, { decay: false }), /already the model's 'model.norm.weight'/);
    const w = t();
    m.registerParameter('value.weight', w, { decay: true });
    assert.throws(() => m.registerParameter('value.weight', t(), { decay: true }), /already has a parameter/);
    assert.throws(() => m.registerParameter('other.weight', w, { decay: true }), /already the model's 'value.weight'/);
    addScalarHead(m, { init: 'zeros' });
    assert.throws(() => addScalarHead(m, { init: 'zeros' }), /already has a parameter/);
    assert.throws(() => addScalarHead(m, { init: 'zeros', name: 'v2.weight', weight: Tensor.zeros([1, 5]) }), /width/);
    const frozen = t();
    m.registerParameter('frozen.weight', frozen, { decay: false, trainable: false });
    assert.equal(frozen.requiresGrad, false);
    assert.deepEqual(m.namedParameters().slice(-3).map((p) => [p.name, p.trainable]), [['value.weight', true], ['score.weight', true], ['frozen.weight', false]]);
    // a model with an untied head cannot take lm_head.weight as an extra; a tied one has no such parameter
    assert.throws(() => m.registerParameter('lm_head.weight', t(), { decay: true }), /already has a parameter/);
  });

  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family}: everything frozen but the LM head: no gradient buffer for a frozen tensor, only the head changes`, () => {
      const m = new Transformer(cfg, new Rng(1));
      const headName = cfg.tiedEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight';
      m.freeze((name) => name !== headName);
      const named = m.namedParameters();
      assert.deepEqual(named.filter((p) => p.trainable).map((p) => p.name), [headName]);
      assert.deepEqual(m.parameters(), [m.params.get(headName)]);
      const before = new Map(named.map((p) => [p.name, Float32Array.from(p.tensor.data)]));
      const ids = tokens(cfg, 2 * 8);
      const targets = tokens(cfg, 2 * 8, 4);
      for (let step = 0; step < 2; step++) {
        withBufferScope(() => {
          const { loss } = m.forward(ids, 2, 8, targets);
          loss!.backward();
        });
        for (const p of m.namedParameters()) {
          if (p.trainable) assert.ok(p.tensor.grad && p.tensor.grad.some((g) => g !== 0), `${p.name} has a gradient`);
          else assert.equal(p.tensor.grad, null, `${p.name} got a gradient buffer`);
        }
        // plain SGD over what the model says is trainable
        for (const t of m.parameters()) {
          for (let i = 0; i < t.size; i++) t.data[i] -= 0.1 * t.grad![i];
          t.zeroGrad();
        }
      }
      for (const p of m.namedParameters()) {
        const same = before.get(p.name)!.every((v, i) => v === p.tensor.data[i]);
        assert.equal(same, !p.trainable, `${p.name} ${p.trainable ? 'did not change' : 'changed'}`);
      }
    });
  }

  it('freezing after the forward pass: backward still allocates no gradient for frozen tensors; unfreeze trains again', () => {
    const m = new Transformer(GPT2, new Rng(1));
    const ids = tokens(GPT2, 8);
    // a previous step left gradients: freeze() drops them
    withBufferScope(() => m.forward(ids, 1, 8, ids).loss!.backward());
    assert.ok(m.parameters().every((p) => p.grad !== null));
    withBufferScope(() => {
      const { loss } = m.forward(ids, 1, 8, ids); // recorded with every parameter trainable
      m.freeze((name) => name !== 'transformer.ln_f.weight');
      loss!.backward();
    });
    for (const p of m.namedParameters()) {
      if (p.name === 'transformer.ln_f.weight') assert.ok(p.tensor.grad, p.name);
      else assert.equal(p.tensor.grad, null, p.name);
    }
    m.unfreeze((name) => name.startsWith('transformer.h.1.'));
    assert.ok(m.namedParameters().every((p) => p.trainable === (p.name === 'transformer.ln_f.weight' || p.name.startsWith('transformer.h.1.'))));
    // all frozen: the loss does not depend on anything trainable
    m.freeze();
    assert.deepEqual(m.parameters(), []);
    withBufferScope(() => {
      const { loss } = m.forward(ids, 1, 8, ids);
      assert.equal(loss!.requiresGrad, false);
    });
  });

  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family}: a LayerFactory wraps every linear layer; zero adapters give identical logits, trained adapters decode correctly`, () => {
      const base = scaledModel(cfg, { seed: 2, gain: 3 });
      const { factory, built, calls, adapters } = loraFactory({ merged: false });
      const m = new Transformer(cfg, base.params, { layers: factory });
      m.eval();
      assert.deepEqual(built, linearNames(cfg));
      assert.deepEqual(m.linears().map((l) => l.name), linearNames(cfg));
      // adapters registered after the base, in the order the layers were built
      const named = m.namedParameters();
      assert.deepEqual(named.slice(0, m.specs.length).map((p) => p.name), m.specs.map((s) => s.name));
      assert.deepEqual(named.slice(m.specs.length).map((p) => p.name), built.flatMap((n) => [`${n}.lora_A.weight`, `${n}.lora_B.weight`]));

      const B = 2, T = 9;
      const ids = tokens(cfg, B * T);
      const want = noGrad(() => base.forward(ids, B, T).logits.data.slice());
      calls.clear();
      const got = noGrad(() => m.forward(ids, B, T).logits.data.slice());
      assert.deepEqual(got, want);
      assert.deepEqual([...calls.keys()], built);
      assert.ok([...calls.values()].every((n) => n === 1));

      // LoRA training: base frozen, only the adapters get gradients
      m.freeze((name) => !name.includes('.lora_'));
      withBufferScope(() => mean(m.forward(ids, B, T, ids).logits).backward());
      for (const p of m.namedParameters()) assert.equal(p.tensor.grad !== null, p.name.includes('.lora_'), p.name);
      assert.ok(m.namedParameters().some((p) => p.name.endsWith('lora_B.weight') && p.tensor.grad!.some((g) => g !== 0)));
      m.unfreeze();

      // adapters that change the function: prefill + single-token decode (op by op: the layers
      // cannot run in a decode program) against a full forward
      perturbAdapters(adapters);
      const full = noGrad(() => m.forward(ids.subarray(0, T), 1, T).logits.data.slice());
      assert.ok(maxAbsDiff(full, noGrad(() => base.forward(ids.subarray(0, T), 1, T).logits.data)) > 1e-2, 'the adapters matter');
      const V = cfg.vocabSize;
      const cache = new KvCache(cfg);
      const cached = new Float32Array(T * V);
      cached.set(m.forwardCached(ids.subarray(0, 4), cache, { allLogits: true }));
      calls.clear();
      for (let p = 4; p < T; p++) cached.set(m.forwardCached(ids.subarray(p, p + 1), cache), p * V);
      assert.ok(calls.size > 0 && [...calls.values()].every((n) => n === T - 4), 'single tokens ran through the wrapper');
      const d = maxAbsDiff(cached, full);
      assert.ok(d < 1e-4, `max |cached - full| = ${d}`);
    });

    it(`${cfg.family}: a wrapper that supplies a merged decode weight runs in the decode program`, () => {
      const base = scaledModel(cfg, { seed: 2, gain: 3 });
      const { factory, calls, adapters } = loraFactory({ merged: true });
      const m = new Transformer(cfg, base.params, { layers: factory });
      m.eval();
      perturbAdapters(adapters);
      const T = 9;
      const ids = tokens(cfg, T);
      const full = noGrad(() => m.forward(ids, 1, T).logits.data.slice());
      const V = cfg.vocabSize;
      const run = (useProgram: boolean): Float32Array => {
        m.useDecodeProgram = useProgram;
        const cache = new KvCache(cfg);
        const out = new Float32Array(T * V);
        out.set(m.forwardCached(ids.subarray(0, 3), cache, { allLogits: true }));
        calls.clear();
        for (let p = 3; p < T; p++) out.set(m.forwardCached(ids.subarray(p, p + 1), cache), p * V);
        return out;
      };
      const program = run(true);
      assert.equal(calls.size, 0, 'single tokens ran in the program, not through forward()');
      const opByOp = run(false);
      assert.ok(calls.size > 0);
      assert.ok(maxAbsDiff(program, full) < 1e-4, `program vs full ${maxAbsDiff(program, full)}`);
      assert.ok(maxAbsDiff(opByOp, full) < 1e-4);
      // the program holds the merged copies: after the adapters change, resetDecodeProgram() picks them up
      perturbAdapters(adapters, 6);
      const full2 = noGrad(() => m.forward(ids, 1, T).logits.data.slice());
      assert.ok(maxAbsDiff(run(true), full2) > 1e-3, 'a stale program');
      m.resetDecodeProgram();
      assert.ok(maxAbsDiff(run(true), full2) < 1e-4);
    });
  }

  it('a reference model shares the base weights, never records gradients and keeps its own (no) flags', () => {
    const { factory, adapters } = loraFactory({ merged: false });
    const base = scaledModel(LLAMA, { seed: 2, gain: 3 });
    const policy = new Transformer(LLAMA, base.params, { layers: factory });
    perturbAdapters(adapters);
    policy.freeze((name) => !name.includes('.lora_'));
    const ref = policy.shareBase();
    assert.equal(ref.reference, true);
    // the same tensors and arrays, nothing copied; the adapters are not part of the base
    assert.equal(ref.params, policy.params);
    for (const s of ref.specs) assert.equal(ref.params.get(s.name)!.data, base.params.get(s.name)!.data);
    assert.equal(ref.namedParameters().length, ref.specs.length);
    assert.ok(ref.namedParameters().every((p) => !p.trainable));
    assert.deepEqual(ref.parameters(), []);
    // building it changed no flag of the policy's
    assert.deepEqual(policy.parameters().length, 2 * linearNames(LLAMA).length);
    assert.ok(policy.namedParameters().every((p) => p.trainable === p.name.includes('.lora_')));

    const T = 8;
    const ids = tokens(LLAMA, 2 * T);
    withBufferScope(() => {
      const r = ref.forward(ids, 2, T, ids);
      assert.equal(r.logits.requiresGrad, false);
      assert.equal(ref.hidden(ids, 2, T).requiresGrad, false);
      assert.deepEqual(r.logits.data, noGrad(() => base.forward(ids, 2, T).logits.data));
      // the policy (adapters trained) differs from its reference
      const p = policy.forward(ids, 2, T, ids);
      assert.ok(p.logits.requiresGrad);
      assert.ok(maxAbsDiff(p.logits.data, r.logits.data) > 1e-2);
    });
    // unfreezing the policy's base does not make the reference record gradients
    policy.unfreeze();
    assert.ok(base.params.get('model.norm.weight')!.requiresGrad);
    withBufferScope(() => assert.equal(ref.forward(ids, 2, T).logits.requiresGrad, false));
    assert.ok(ref.namedParameters().every((p) => !p.trainable));
    // freezing the reference leaves the policy's flags alone; unfreezing it is refused
    ref.freeze();
    assert.ok(policy.namedParameters().every((p) => p.trainable));
    assert.throws(() => ref.unfreeze(), LlmError);
    // training the policy's base moves the reference too (shared storage); its own decode works
    const w = policy.params.get('model.layers.0.mlp.down_proj.weight')!;
    const one = ids.subarray(0, T);
    const before = noGrad(() => ref.forward(one, 1, T).logits.data.slice());
    for (let i = 0; i < w.size; i++) w.data[i] *= 1.5;
    assert.ok(maxAbsDiff(before, noGrad(() => ref.forward(one, 1, T).logits.data)) > 0);
    const cache = new KvCache(LLAMA);
    ref.forwardCached(ids.subarray(0, T - 1), cache);
    const last = ref.forwardCached(ids.subarray(T - 1, T), cache);
    const fullLast = noGrad(() => ref.forward(ids.subarray(0, T), 1, T).logits.data.subarray((T - 1) * LLAMA.vocabSize));
    assert.ok(maxAbsDiff(last, fullLast) < 1e-4);
  });

  it('a decode-program operand of the default Linear is its weight array (no copy)', () => {
    const m = new Transformer(GPT2, new Rng(1));
    const l = m.linears()[0] as Linear;
    const w = l.decodeWeight();
    assert.equal(w.data, l.weight!.data);
    assert.equal(w.type, WeightType.F32_IN_OUT);
  });
});
