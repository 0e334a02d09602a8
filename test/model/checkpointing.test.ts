/**
 * Activation checkpointing (Transformer.gradientCheckpointing, tensor/ops/checkpoint.ts): the same
 * loss and gradients, bit for bit, as without it, in training mode with dropout (the recomputation
 * replays the masks), for full training and for LoRA on a quantized base; and a step holds fewer
 * buffers (the pool after a step is what the step needed at most).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend } from '../../src/backend/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { loraLayers } from '../../src/model/lora.js';
import { quantizeBlockLinears } from '../../src/model/quantized.js';
import { Transformer } from '../../src/model/transformer.js';
import { Tensor, clearBufferPool, pooledBytes, withBufferScope } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { randomTokens } from '../helpers/lora-cases.js';
import { tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const LLAMA = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 3, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 }, { dropout: 0.1 });
const GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 24, nLayer: 3, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 128 }, { dropout: 0.1 });

/** A model over a fresh copy of seeded weights: full training, or LoRA (dropout 0.1) over a Q8_0 base. */
function build(cfg: ModelConfig, kind: 'full' | 'qlora'): Transformer {
  const init = new Transformer(cfg, new Rng(2));
  const params = new Map([...init.params].map(([k, t]) => [k, new Tensor(Float32Array.from(t.data), t.shape)]));
  if (kind === 'full') return new Transformer(cfg, params);
  const targets = cfg.family === 'gpt2' ? ['c_attn', 'c_proj', 'c_fc'] : ['q_proj', 'v_proj', 'down_proj'];
  const { params: rest, quantized } = quantizeBlockLinears(cfg, params, 'q8_0');
  const m = new Transformer(cfg, rest, { quantized, layers: loraLayers({ r: 4, alpha: 8, dropout: 0.1, targets, rng: new Rng(5) }) });
  m.freeze((n) => !n.includes('.lora_'));
  const rng = new Rng(6);
  for (const p of m.namedParameters()) if (p.name.endsWith('lora_B.weight')) for (let i = 0; i < p.tensor.size; i++) p.tensor.data[i] = rng.normal() * 0.2;
  return m;
}

/** Two training steps' losses and final gradients, and the pool's size after them. */
function run(cfg: ModelConfig, kind: 'full' | 'qlora', checkpointing: boolean): { losses: number[]; grads: Float32Array[]; pooled: number } {
  const model = build(cfg, kind);
  model.gradientCheckpointing = checkpointing;
  model.train(new Rng(11));
  const B = 2, T = 12;
  const losses: number[] = [];
  const params = model.parameters();
  clearBufferPool();
  for (let step = 0; step < 2; step++) {
    for (const p of params) p.grad = null;
    const ids = randomTokens(cfg, B * T, 20 + step);
    const targets = randomTokens(cfg, B * T, 30 + step);
    losses.push(withBufferScope(() => {
      const { loss } = model.forward(ids, B, T, targets);
      loss!.backward();
      return loss!.item();
    }));
  }
  return { losses, grads: params.map((p) => Float32Array.from(p.grad!)), pooled: pooledBytes() };
}

describe(`activation checkpointing (${backend().name} backend)`, () => {
  for (const cfg of [LLAMA, GPT2]) {
    for (const kind of ['full', 'qlora'] as const) {
      it(`${cfg.family} ${kind}: the same losses and gradients, bit for bit, with dropout; fewer buffers held`, (t) => {
        const plain = run(cfg, kind, false);
        const ckpt = run(cfg, kind, true);
        assert.deepEqual(ckpt.losses, plain.losses);
        assert.equal(ckpt.grads.length, plain.grads.length);
        ckpt.grads.forEach((g, i) => assert.deepEqual(g, plain.grads[i], `gradient ${i}`));
        t.diagnostic(`pooled after a step: ${plain.pooled} bytes without, ${ckpt.pooled} with checkpointing`);
        assert.ok(ckpt.pooled < plain.pooled, `${ckpt.pooled} >= ${plain.pooled}`);
      });
    }
  }
});
