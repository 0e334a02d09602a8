/**
 * PEFT LoRA adapter directories (src/formats/peft.ts): save -> load round trip, the config and key
 * names PEFT writes, malformed directories refused in one line, and parity with PEFT itself
 * (test/fixtures/peft/, written by scripts/make_peft_fixture.py: a tiny Llama and GPT-2 saved by
 * transformers, a LoRA adapter saved by PEFT, and PEFT's logits).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backend } from '../../src/backend/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { loraLayers, loraLinears } from '../../src/model/lora.js';
import { Transformer } from '../../src/model/transformer.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, applyLoraAdapter, loadLoraAdapter, readPeftAdapterConfig, saveLoraAdapter } from '../../src/formats/peft.js';
import { importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { readSafetensorsHeader, saveSafetensors } from '../../src/formats/safetensors.js';
import { Tensor, noGrad } from '../../src/tensor/index.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';
import { LORA_GPT2, LORA_LLAMA, maxAbsDiff, randomTokens } from '../helpers/lora-cases.js';

const LLAMA = LORA_LLAMA;
const GPT2 = LORA_GPT2;
const FIXTURES = new URL('../../../test/fixtures/peft/', import.meta.url).pathname;

const tokens = randomTokens;

function copyParams(m: Transformer): Map<string, Tensor> {
  return new Map([...m.params].map(([k, t]) => [k, new Tensor(Float32Array.from(t.data), t.shape)]));
}

/** A LoRA model with random (non-zero) adapters over a scaled base, and that base's parameters. */
function trainedLora(cfg: ModelConfig, targets: string[], opts: { rslora?: boolean } = {}) {
  const base = scaledModel(cfg, { seed: 2, gain: 3, jitter: 0.2 });
  const model = new Transformer(cfg, copyParams(base), {
    layers: loraLayers({ r: 4, alpha: 8, dropout: 0.05, targets, rslora: opts.rslora, rng: new Rng(7) }),
  });
  model.eval();
  const rng = new Rng(5);
  for (const l of loraLinears(model)) for (let i = 0; i < l.B.size; i++) l.B.data[i] = rng.normal() * 0.3;
  return { base, model };
}

function oneLine(pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof LlmError, String(e));
    assert.ok(!e.message.includes('\n'), e.message);
    assert.match(e.message, pattern);
    return true;
  };
}

describe(`PEFT LoRA adapters (${backend().name} backend)`, () => {
  for (const [cfg, targets, rslora] of [[LLAMA, ['q_proj', 'v_proj', 'down_proj'], false], [GPT2, ['c_attn', 'c_proj'], true]] as const) {
    it(`${cfg.family}: save -> load gives identical logits; PEFT's file layout and config`, () => {
      const dir = tmpDir('peft');
      const { base, model } = trainedLora(cfg, [...targets], { rslora });
      saveLoraAdapter(dir, model, { baseModelNameOrPath: 'tiny-base' });
      const config = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG), 'utf8'));
      assert.equal(config.peft_type, 'LORA');
      assert.equal(config.task_type, 'CAUSAL_LM');
      assert.equal(config.r, 4);
      assert.equal(config.lora_alpha, 8);
      assert.equal(config.lora_dropout, 0.05);
      assert.equal(config.bias, 'none');
      assert.equal(config.use_rslora, rslora);
      assert.equal(config.fan_in_fan_out, cfg.family === 'gpt2');
      assert.equal(config.base_model_name_or_path, 'tiny-base');
      assert.deepEqual(config.target_modules, [...targets].sort());
      const { tensors, metadata } = readSafetensorsHeader(join(dir, ADAPTER_WEIGHTS));
      assert.deepEqual(metadata, { format: 'pt' });
      const layers = loraLinears(model);
      assert.equal(tensors.size, 2 * layers.length);
      for (const l of layers) {
        assert.deepEqual(tensors.get(`base_model.model.${l.name}.lora_A.weight`)?.shape, [4, l.inDim]);
        assert.deepEqual(tensors.get(`base_model.model.${l.name}.lora_B.weight`)?.shape, [l.outDim, 4]);
      }
      if (cfg.family === 'llama') assert.ok(tensors.has('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'));
      else assert.ok(tensors.has('base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight'));

      const loaded = loadLoraAdapter(dir, cfg, copyParams(base));
      assert.ok(loaded.namedParameters().every((p) => p.trainable === p.name.includes('.lora_')));
      const ids = tokens(cfg, 2 * 7);
      const want = noGrad(() => model.forward(ids, 2, 7).logits.data);
      assert.deepEqual(noGrad(() => loaded.forward(ids, 2, 7).logits.data), want);
      // applyLoraAdapter into a fresh LoRA model of the same shape
      const fresh = new Transformer(cfg, copyParams(base), { layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: [...targets], rslora, rng: new Rng(1) }) });
      applyLoraAdapter(fresh, dir);
      assert.deepEqual(noGrad(() => fresh.forward(ids, 2, 7).logits.data), want);
    });
  }

  it('malformed adapter directories are refused in one line naming the file and key', () => {
    const root = tmpDir('peft-bad');
    const { base, model } = trainedLora(LLAMA, ['q_proj', 'v_proj']);
    const good = join(root, 'good');
    saveLoraAdapter(good, model);
    const goodConfig = JSON.parse(readFileSync(join(good, ADAPTER_CONFIG), 'utf8'));
    let n = 0;
    /** A copy of the good adapter with its config edited (and optionally its weights replaced). */
    const variant = (edit: (c: Record<string, unknown>) => void, weights?: Record<string, { shape: number[] }>): string => {
      const dir = join(root, `v${n++}`);
      mkdirSync(dir);
      const c = structuredClone(goodConfig);
      edit(c);
      writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify(c));
      if (weights) {
        saveSafetensors(join(dir, ADAPTER_WEIGHTS), Object.fromEntries(Object.entries(weights).map(([k, w]) =>
          [k, { dtype: 'F32' as const, shape: w.shape, data: new Float32Array(w.shape.reduce((a, b) => a * b, 1)) }])));
      } else {
        copyFileSync(join(good, ADAPTER_WEIGHTS), join(dir, ADAPTER_WEIGHTS));
      }
      return dir;
    };
    const load = (dir: string) => () => loadLoraAdapter(dir, LLAMA, copyParams(base));
    const cfgFile = (dir: string) => new RegExp(`${join(dir, ADAPTER_CONFIG).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`);

    assert.throws(load(join(root, 'nowhere')), oneLine(/has no adapter_config\.json/));
    let d = variant((c) => { c.peft_type = 'IA3'; });
    assert.throws(load(d), oneLine(cfgFile(d)));
    assert.throws(load(d), oneLine(/peft_type "IA3" is not supported/));
    assert.throws(load(variant((c) => { c.use_dora = true; })), oneLine(/use_dora true is not supported/));
    assert.throws(load(variant((c) => { c.target_modules = '.*proj'; })), oneLine(/target_modules ".*proj" is not supported/));
    assert.throws(load(variant((c) => { c.r = 0; })), oneLine(/r 0 must be a positive integer/));
    assert.throws(load(variant((c) => { c.rank_pattern = { q_proj: 8 }; })), oneLine(/rank_pattern .* is not supported/));
    assert.throws(load(variant((c) => { c.modules_to_save = ['lm_head']; })), oneLine(/modules_to_save .* is not supported/));
    // another architecture: GPT-2 modules for a llama model, or GPT-2 weights under a llama config
    assert.throws(load(variant((c) => { c.target_modules = ['c_attn']; })), oneLine(/target module 'c_attn' is not a linear module of a llama model.*: the adapter is for a gpt2 model; apply it to the model it was trained on$/));
    assert.throws(load(variant((c) => { c.target_modules = ['q_proj', 'lm_head']; c.base_model_name_or_path = 'org/other-model'; })),
      oneLine(/target module 'lm_head' is not a linear module of a llama model.*another architecture\? \(its adapter_config\.json says it was trained on "org\/other-model"\); apply it to the model it was trained on$/));
    assert.throws(load(variant((c) => { c.fan_in_fan_out = true; })), oneLine(/fan_in_fan_out true is for Conv1D.*set fan_in_fan_out to false/));
    d = variant(() => {}, {
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { shape: [4, 32] },
      'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight': { shape: [4, 16] },
    });
    assert.throws(load(d), oneLine(/adapter_model\.safetensors: tensor 'base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight' is for module 'transformer\.h\.0\.attn\.c_attn'.*another architecture/));
    // more layers than the model
    const layers = loraLinears(model);
    const full = Object.fromEntries(layers.flatMap((l) => [
      [`base_model.model.${l.name}.lora_A.weight`, { shape: [4, l.inDim] }],
      [`base_model.model.${l.name}.lora_B.weight`, { shape: [l.outDim, 4] }],
    ]));
    assert.throws(load(variant(() => {}, { ...full, 'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight': { shape: [4, 32] } })),
      oneLine(/tensor 'base_model\.model\.model\.layers\.7\.self_attn\.q_proj\.lora_A\.weight' is for module .* has no LoRA layer/));
    // a missing module
    const missing = { ...full };
    delete missing['base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight'];
    assert.throws(load(variant(() => {}, missing)), oneLine(/adapter_model\.safetensors: tensor 'base_model\.model\.model\.layers\.1\.self_attn\.v_proj\.lora_B\.weight' is missing.*remove that module from target_modules/));
    // weights for a module of the model that target_modules does not list
    assert.throws(load(variant(() => {}, { ...full, 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight': { shape: [4, 32] } })),
      oneLine(/tensor 'base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight' is for module 'model\.layers\.0\.self_attn\.k_proj', whose name 'k_proj' adapter_config\.json's target_modules does not list: add it there$/));
    // rank mismatch (config says 4, weights are rank 8) and a wrong width
    const rank8 = Object.fromEntries(Object.entries(full).map(([k, v]) => [k, { shape: k.includes('lora_A') ? [8, v.shape[1]] : [v.shape[0], 8] }]));
    assert.throws(load(variant(() => {}, rank8)), oneLine(/lora_A\.weight' has shape \[8, 32\], the model needs \[4, 32\] \(rank 8, adapter_config\.json says r 4\): set "r": 8 in adapter_config\.json$/));
    const wide = { ...full, 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { shape: [4, 33] } };
    assert.throws(load(variant(() => {}, wide)), oneLine(/q_proj\.lora_A\.weight' has shape \[4, 33\], the model needs \[4, 32\]: an adapter for another architecture or size\?; apply it to the model it was trained on$/));
    // no weights file
    d = variant(() => {});
    rmSync(join(d, ADAPTER_WEIGHTS));
    assert.throws(load(d), oneLine(/has no adapter_model\.safetensors: copy the adapter directory whole/));
    writeFileSync(join(d, 'adapter_model.bin'), 'pickle');
    assert.throws(load(d), oneLine(/has no adapter_model\.safetensors \(adapter_model\.bin, a pickle, is not read: re-save it with .*safe_serialization=True\)/));
    // applying into a model of another rank or other targets
    const r8 = new Transformer(LLAMA, copyParams(base), { layers: loraLayers({ r: 8, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'], rng: new Rng(1) }) });
    assert.throws(() => applyLoraAdapter(r8, good), oneLine(/r 4 does not match the model's LoRA rank 8/));
    const qOnly = new Transformer(LLAMA, copyParams(base), { layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: ['q_proj'], rng: new Rng(1) }) });
    assert.throws(() => applyLoraAdapter(qOnly, good), oneLine(/target_modules \[q_proj, v_proj\] do not match the model's LoRA targets \[q_proj\]/));
    assert.throws(() => applyLoraAdapter(new Transformer(LLAMA, copyParams(base)), good), oneLine(/no LoRA layers/));
  });

  it('PEFT defaults for missing config keys (r 8, lora_alpha 8, dropout 0, use_rslora false)', () => {
    const dir = tmpDir('peft-min');
    writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify({ peft_type: 'LORA', target_modules: ['q_proj'] }));
    assert.deepEqual(readPeftAdapterConfig(dir), {
      r: 8, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj'], useRslora: false, fanInFanOut: false, baseModelNameOrPath: null,
    });
  });

  for (const family of ['llama', 'gpt2']) {
    const dir = join(FIXTURES, family);
    it(`${family}: an adapter saved by PEFT gives PEFT's logits (fixture)`, { skip: !existsSync(join(dir, 'logits.json')) && 'no fixture' }, () => {
      const fixture = JSON.parse(readFileSync(join(dir, 'logits.json'), 'utf8')) as { ids: number[]; logits: number[]; base_logits: number[] };
      const { config, params } = importHfCheckpoint(join(dir, 'base'));
      const model = loadLoraAdapter(join(dir, 'adapter'), config, params);
      const ids = Int32Array.from(fixture.ids);
      const T = ids.length;
      const logits = noGrad(() => model.forward(ids, 1, T).logits.data);
      const scale = Math.max(...fixture.logits.map(Math.abs));
      const d = maxAbsDiff(logits, fixture.logits);
      assert.ok(d < 1e-4 * Math.max(1, scale), `max abs diff ${d} (logits up to ${scale})`);
      // and the adapter matters
      assert.ok(maxAbsDiff(fixture.logits, fixture.base_logits) > 1e-2);
      const plain = new Transformer(config, model.params);
      assert.ok(maxAbsDiff(noGrad(() => plain.forward(ids, 1, T).logits.data), fixture.base_logits) < 1e-4 * Math.max(1, scale));
      // saving it again writes PEFT's keys and shapes
      const out = tmpDir('peft-resave');
      saveLoraAdapter(out, model);
      const ours = readSafetensorsHeader(join(out, ADAPTER_WEIGHTS)).tensors;
      const theirs = readSafetensorsHeader(join(dir, 'adapter', ADAPTER_WEIGHTS)).tensors;
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
      for (const [k, e] of theirs) assert.deepEqual(ours.get(k)!.shape, e.shape, k);
      const a = readPeftAdapterConfig(join(dir, 'adapter'));
      const b = readPeftAdapterConfig(out);
      assert.deepEqual({ ...b, baseModelNameOrPath: null }, { ...a, targetModules: [...a.targetModules].sort(), baseModelNameOrPath: null });
    });
  }
});
