/**
 * Checkpoints of a frozen quantized base (QLoRA runs): the Q8_0/Q4_0 blocks are written as U8
 * tensors under their parameter names with a 'quantized' metadata entry, and come back bit for
 * bit (ck.quantized), with the float parameters and the adapters beside them; a file whose
 * quantized entries disagree with the config or the header is a one-line error.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { readSafetensorsHeader, loadSafetensors, saveSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { quantizeBlockLinears, type QuantizedWeight } from '../../src/model/quantized.js';
import { Tensor } from '../../src/tensor/index.js';
import { LlmError } from '../../src/util/errors.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('checkpoint-quantized');
const LLAMA = tinyLlama({ vocabSize: 41, blockSize: 16, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
const GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 16, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 128 });

/** Rewrite a checkpoint file with `edit` applied to its tensors and metadata. */
function rewrite(src: string, dst: string, edit: (tensors: Record<string, TensorToWrite>, meta: Record<string, string>) => void): void {
  const file = loadSafetensors(src);
  const header = readSafetensorsHeader(src);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of file.tensors) tensors[name] = { dtype: t.dtype, shape: t.shape, data: t.data } as TensorToWrite;
  const meta = { ...header.metadata };
  edit(tensors, meta);
  saveSafetensors(dst, tensors, meta);
}

describe('checkpoints with a quantized base', () => {
  for (const [cfg, type] of [[LLAMA, 'q4_0'], [GPT2, 'q8_0']] as const) {
    it(`${cfg.family} ${type}: blocks, float parameters and extras come back bit for bit`, () => {
      const m = scaledModel(cfg, { seed: 4 });
      const { params, quantized } = quantizeBlockLinears(cfg, m.params, type);
      const extra = new Tensor(Float32Array.from({ length: 8 * 32 }, (_, i) => Math.sin(i)), [8, 32]);
      const path = join(dir, `${cfg.family}.safetensors`);
      saveCheckpoint(path, { config: cfg, params, quantized, extras: new Map([['model.layers.0.self_attn.q_proj.lora_A.weight', extra]]), tokenizer: null, trainer: { step: 3 } });
      const ck = loadCheckpoint(path);
      assert.equal(ck.quantized?.size, quantized.size);
      for (const [name, w] of quantized) {
        const got: QuantizedWeight = ck.quantized!.get(name)!;
        assert.deepEqual({ type: got.type, rows: got.rows, cols: got.cols }, { type: w.type, rows: w.rows, cols: w.cols }, name);
        assert.deepEqual(got.blocks, w.blocks, name);
        assert.ok(!ck.params.has(name), `${name} is not a float parameter`);
      }
      for (const [name, t] of params) assert.deepEqual(ck.params.get(name)!.data, t.data, name);
      assert.deepEqual(ck.extras.get('model.layers.0.self_attn.q_proj.lora_A.weight')!.data, extra.data);
    });
  }

  it('a float checkpoint has no quantized map', () => {
    const m = scaledModel(LLAMA, { seed: 5 });
    const path = join(dir, 'float.safetensors');
    saveCheckpoint(path, { config: LLAMA, params: m.params, tokenizer: null, trainer: {} });
    assert.equal(loadCheckpoint(path).quantized, undefined);
  });

  it('quantized entries that disagree with the config or the header are one-line errors', () => {
    const m = scaledModel(LLAMA, { seed: 6 });
    const { params, quantized } = quantizeBlockLinears(LLAMA, m.params, 'q4_0');
    const good = join(dir, 'good.safetensors');
    saveCheckpoint(good, { config: LLAMA, params, quantized, tokenizer: null, trainer: {} });
    const q = 'model.layers.0.self_attn.q_proj.weight';
    const cases: [string, (t: Record<string, TensorToWrite>, meta: Record<string, string>) => void, RegExp][] = [
      ['wrong type', (_t, meta) => { meta.quantized = meta.quantized.replace('"q4_0"', '"q5_0"'); }, /must be \{ type: 'q8_0' \| 'q4_0', rows, cols \}/],
      ['unknown name', (_t, meta) => { meta.quantized = JSON.stringify({ ...JSON.parse(meta.quantized), 'model.norm.weight': { type: 'q4_0', rows: 32, cols: 32 } }); }, /model\.norm\.weight.* is no matrix parameter of the config/],
      ['wrong dims', (_t, meta) => { meta.quantized = meta.quantized.replace('"rows":32,"cols":32', '"rows":16,"cols":64'); }, /is 16 x 64, the config needs 32 x 32/],
      ['stored as float', (t) => { t[q] = { dtype: 'F32', shape: [32, 32], data: new Float32Array(32 * 32) }; }, /quantized weight 'model\.layers\.0\.self_attn\.q_proj\.weight' must be a U8 tensor of shape \[32, 18\], it is F32/],
      ['metadata missing', (_t, meta) => { delete meta.quantized; }, /tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' has dtype U8, expected a float type/],
    ];
    for (const [label, edit, pattern] of cases) {
      const bad = join(dir, `bad-${label.replace(/ /g, '-')}.safetensors`);
      rewrite(good, bad, edit);
      assert.throws(() => loadCheckpoint(bad), (e: unknown) => e instanceof LlmError && pattern.test((e as Error).message) && !(e as Error).message.includes('\n'), label);
    }
    assert.throws(() => saveCheckpoint(join(dir, 'x.safetensors'), { config: LLAMA, params, quantized: new Map([['nope.weight', quantized.get(q)!]]), tokenizer: null, trainer: {} }), /'nope\.weight' is no parameter of the config/);
  });
});
