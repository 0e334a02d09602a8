/**
 * An adapter applied for inference (loadAdapterForInference, what `llmts run|chat --adapter` do):
 * over float weights it is merged, so every layer runs in the fused decode program, and decoding
 * gives the logits and greedy tokens of the unmerged adapter model decoded op by op; over GGUF
 * Q8_0 weights it stays beside them and decodes op by op, agreeing with its own full forward.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backend } from '../../src/backend/index.js';
import { exportGgufModel, importGgufModel } from '../../src/formats/gguf-model.js';
import { loadAdapterForInference, saveLoraAdapter } from '../../src/formats/peft.js';
import { generateTokens } from '../../src/generate/generate.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import type { ModelConfig } from '../../src/model/config.js';
import { LORA_MODULES, loraLayers, loraLinears } from '../../src/model/lora.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad, Tensor } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { LORA_GPT2, LORA_LLAMA, maxAbsDiff, randomTokens } from '../helpers/lora-cases.js';
import { scaledModel } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

function copyParams(params: Map<string, Tensor>): Map<string, Tensor> {
  return new Map([...params].map(([k, t]) => [k, new Tensor(Float32Array.from(t.data), t.shape)]));
}

/** A scaled base, and an unmerged LoRA model on all its linear modules (random B) over a copy of it, its adapter saved in dir. */
function baseAndAdapter(cfg: ModelConfig, dir: string) {
  const base = scaledModel(cfg, { seed: 4, gain: 3, jitter: 0.2 });
  const lora = new Transformer(cfg, copyParams(base.params), {
    layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: [...LORA_MODULES[cfg.family]], rslora: cfg.family === 'gpt2', rng: new Rng(3) }),
  });
  const rng = new Rng(9);
  for (const l of loraLinears(lora)) for (let i = 0; i < l.B.size; i++) l.B.data[i] = (2 * rng.uniform() - 1) * 0.5;
  lora.eval();
  saveLoraAdapter(dir, lora);
  return { base, lora };
}

/** Logits of each token fed one at a time through forwardCached (prefill of the first, then decode steps). */
function decodeLogits(model: Transformer, ids: Int32Array): Float32Array[] {
  const cache = new KvCache(model.config);
  return [...ids].map((t) => model.forwardCached(Int32Array.of(t), cache).slice());
}

const scaleOf = (a: Float32Array[]): number => Math.max(1, ...a.map((r) => Math.max(...r.map(Math.abs))));

describe(`adapters for inference (${backend().name} backend)`, () => {
  for (const cfg of [LORA_LLAMA, LORA_GPT2]) {
    it(`${cfg.family}: merged into float weights: fused decode program, same logits and greedy tokens as the adapter beside the weights`, () => {
      const dir = tmpDir('peft-infer');
      const { base, lora } = baseAndAdapter(cfg, dir);
      const { model, merged } = loadAdapterForInference(dir, cfg, copyParams(base.params));
      assert.equal(merged, true);
      // every layer can run inside the decode program now; the unmerged one cannot
      assert.ok(model.linears().every((l) => l.decodeWeight() !== null));
      assert.ok(loraLinears(lora).every((l) => l.decodeWeight() === null));
      const ids = randomTokens(cfg, 12, 5);
      const want = decodeLogits(lora, ids); // op by op, adapter beside the base
      const got = decodeLogits(model, ids); // decode program over merged weights
      const scale = scaleOf(want);
      for (let t = 0; t < ids.length; t++) assert.ok(maxAbsDiff(got[t], want[t]) < 1e-4 * scale, `position ${t}: ${maxAbsDiff(got[t], want[t])}`);
      // and the program is what ran: op by op over the merged weights gives the same as the program
      model.useDecodeProgram = false;
      const opByOp = decodeLogits(model, ids);
      for (let t = 0; t < ids.length; t++) assert.ok(maxAbsDiff(opByOp[t], got[t]) < 1e-4 * scale);
      model.useDecodeProgram = true;
      // the adapter matters
      assert.ok(maxAbsDiff(decodeLogits(base, ids)[11], want[11]) > 1e-2);
      const prompt = [...ids.subarray(0, 3)];
      const opts = { maxTokens: 16, temperature: 0, topK: 0, seed: 1 };
      assert.deepEqual([...generateTokens(model, prompt, opts)], [...generateTokens(lora, prompt, opts)]);
    });
  }

  it('over GGUF Q8_0 weights the adapter stays beside them: op-by-op decode equals the full forward, near the float model', () => {
    const cfg = LORA_LLAMA;
    const dir = tmpDir('peft-infer-q8');
    const { base, lora } = baseAndAdapter(cfg, join(dir, 'adapter'));
    const file = join(dir, 'base-q8.gguf');
    exportGgufModel(file, cfg, base.params, { quant: 'q8_0' });
    const g = importGgufModel(file, { keepQuantized: true });
    assert.ok(g.quantized.size > 0);
    const { model, merged } = loadAdapterForInference(join(dir, 'adapter'), g.config, g.params, g.quantized);
    assert.equal(merged, false);
    // (down_proj's 48 columns are no multiple of 32: that layer is stored f16 and comes back float)
    assert.ok(loraLinears(model).every((l) => !l.merged) && loraLinears(model).filter((l) => l.base.quantized !== null).length >= 12);
    const ids = randomTokens(cfg, 10, 6);
    const full = noGrad(() => model.forward(ids, 1, ids.length).logits.data);
    const steps = decodeLogits(model, ids);
    const V = cfg.vocabSize;
    const scale = scaleOf(steps);
    for (let t = 0; t < ids.length; t++) assert.ok(maxAbsDiff(steps[t], full.subarray(t * V, (t + 1) * V)) < 1e-4 * scale, `position ${t}`);
    // Q8_0 rounding only: close to the float base + adapter
    const float = decodeLogits(lora, ids);
    for (let t = 0; t < ids.length; t++) assert.ok(maxAbsDiff(steps[t], float[t]) < 0.05 * scale, `position ${t}: ${maxAbsDiff(steps[t], float[t])}`);
  });
});
