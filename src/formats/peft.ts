/**
 * LoRA adapters in PEFT's directory layout (what `PeftModel.save_pretrained` writes and
 * `PeftModel.from_pretrained` reads):
 *
 *   adapter_config.json        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": [...], ...}
 *   adapter_model.safetensors  base_model.model.<layer>.lora_A.weight (r, in)
 *                              base_model.model.<layer>.lora_B.weight (out, r)     metadata {"format": "pt"}
 *
 * <layer> is the Hugging Face module path, which is our layer name ('model.layers.0.self_attn.q_proj',
 * 'transformer.h.0.attn.c_attn'); the adapter name ('default') is not in the saved keys. GPT-2's
 * Conv1D weights are (in, out): fan_in_fan_out true; A and B keep the shapes above either way.
 *
 *   saveLoraAdapter('out/adapter', model);                            // a model built with loraLayers
 *   const model = loadLoraAdapter('out/adapter', config, baseParams);  // base + adapter, ready to run
 *   applyLoraAdapter(model, 'out/adapter');                           // into a model of the same LoRA shape
 *   const { model, merged } = loadAdapterForInference('out/adapter', config, params, quantized);  // llmts run --adapter
 *
 * Supported: plain LoRA on linear modules named by a list (no DoRA, no bias, no rank/alpha
 * patterns, no modules_to_save, no layers_to_transform). Anything else is refused with one line.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Family, ModelConfig } from '../model/config.js';
import type { Params, QuantMap } from '../model/layers.js';
import { LORA_MODULES, loraLayers, loraLinears, mergeLora, moduleName, type LoraLinear } from '../model/lora.js';
import { Transformer } from '../model/transformer.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import { isJsonObject, preview, readJsonFile } from '../util/regular-file.js';
import { Rng } from '../util/rng.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, type TensorToWrite } from './safetensors.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
/** What PeftModel (base_model) -> LoraModel (model) put before the wrapped model's module path. */
export const PEFT_PREFIX = 'base_model.model.';

/** The adapter_config.json fields we read and write. */
export interface PeftLoraConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  targetModules: string[];
  useRslora: boolean;
  fanInFanOut: boolean;
  baseModelNameOrPath: string | null;
}

export interface SaveAdapterOptions {
  /** adapter_config.json base_model_name_or_path (default null) */
  baseModelNameOrPath?: string;
}

/** The PEFT key of an adapter tensor: base_model.model.<layer>.lora_{A,B}.weight */
export function peftKey(layer: string, which: 'A' | 'B'): string {
  return `${PEFT_PREFIX}${layer}.lora_${which}.weight`;
}

/** The adapter_config.json PEFT writes for this LoRA setup. */
export function peftAdapterConfig(model: Transformer, opts: SaveAdapterOptions = {}): Record<string, unknown> {
  const layers = loraLinears(model);
  if (layers.length === 0) throw new LlmError('cannot save a LoRA adapter: the model has no LoRA layers (build it with loraLayers)');
  const o = layers[0].opts;
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: opts.baseModelNameOrPath ?? null,
    bias: 'none',
    fan_in_fan_out: model.config.family === 'gpt2',
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: o.alpha,
    lora_bias: false,
    lora_dropout: o.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: o.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...o.targets].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: o.rslora ?? false,
  };
}

/** Write adapter_config.json and adapter_model.safetensors (float32) into dir, each atomically. */
export function saveLoraAdapter(dir: string, model: Transformer, opts: SaveAdapterOptions = {}): void {
  const config = peftAdapterConfig(model, opts);
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const l of loraLinears(model)) {
    tensors[peftKey(l.name, 'A')] = { dtype: 'F32', shape: [...l.A.shape], data: l.A.data };
    tensors[peftKey(l.name, 'B')] = { dtype: 'F32', shape: [...l.B.shape], data: l.B.data };
  }
  saveSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(config, null, 2) + '\n');
}

/** Read and check an adapter_config.json (PEFT's defaults for missing keys: r 8, lora_alpha 8, lora_dropout 0). */
export function readPeftAdapterConfig(dir: string): PeftLoraConfig {
  const path = join(dir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw new LlmError(`${dir} has no ${ADAPTER_CONFIG} (expected a PEFT adapter directory)`);
  const j = readJsonFile(path, 'adapter config');
  if (!isJsonObject(j)) throw new LlmError(`${path}: expected a JSON object`);
  const bad = (key: string, why: string) => new LlmError(`${path}: ${key} ${preview(j[key])} ${why}`);
  if (j.peft_type !== 'LORA') throw bad('peft_type', 'is not supported (only "LORA")');
  const num = (key: string, dflt: number): number => {
    const v = j[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(key, 'must be a number');
    return v;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = j[key] ?? dflt;
    if (typeof v !== 'boolean') throw bad(key, 'must be true or false');
    return v;
  };
  const r = num('r', 8);
  if (!Number.isInteger(r) || r < 1) throw bad('r', 'must be a positive integer');
  const loraAlpha = num('lora_alpha', 8);
  if (loraAlpha <= 0) throw bad('lora_alpha', 'must be positive');
  const loraDropout = num('lora_dropout', 0);
  if (!(loraDropout >= 0 && loraDropout < 1)) throw bad('lora_dropout', 'must be in [0, 1)');
  const tm = j.target_modules;
  if (!Array.isArray(tm) || tm.length === 0 || !tm.every((t) => typeof t === 'string')) {
    throw bad('target_modules', 'is not supported (a non-empty list of module names is; regexes and "all-linear" are not)');
  }
  if (bool('use_dora', false)) throw bad('use_dora', 'is not supported (plain LoRA only)');
  if ((j.bias ?? 'none') !== 'none') throw bad('bias', 'is not supported (only "none")');
  if (j.lora_bias !== undefined && j.lora_bias !== false) throw bad('lora_bias', 'is not supported (only false)');
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const v = j[key];
    if (v !== undefined && v !== null && !(isJsonObject(v) && Object.keys(v).length === 0)) throw bad(key, 'is not supported (per-module ranks and alphas)');
  }
  if (bool('use_qalora', false)) throw bad('use_qalora', 'is not supported (plain LoRA only)');
  for (const key of ['modules_to_save', 'layers_to_transform', 'layer_replication', 'trainable_token_indices', 'exclude_modules', 'target_parameters', 'alora_invocation_tokens']) {
    const v = j[key];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) throw bad(key, 'is not supported');
  }
  const base = j.base_model_name_or_path;
  return {
    r, loraAlpha, loraDropout,
    targetModules: tm as string[],
    useRslora: bool('use_rslora', false),
    fanInFanOut: bool('fan_in_fan_out', false),
    baseModelNameOrPath: typeof base === 'string' ? base : null,
  };
}

/** ' (adapter_config.json says it was trained on X)', or '' when it names no base. */
function trainedOn(a: PeftLoraConfig): string {
  return a.baseModelNameOrPath ? ` (its adapter_config.json says it was trained on ${preview(a.baseModelNameOrPath)})` : '';
}

/** The family whose linear modules include every target, if another than `family`. */
function familyOf(targets: readonly string[], family: Family): Family | undefined {
  return (Object.keys(LORA_MODULES) as Family[]).find((f) => f !== family && targets.every((t) => LORA_MODULES[f].includes(t)));
}

/** Check an adapter config against a model config (target modules, fan_in_fan_out). */
function checkArchitecture(dir: string, a: PeftLoraConfig, cfg: ModelConfig): void {
  const path = join(dir, ADAPTER_CONFIG);
  const known = LORA_MODULES[cfg.family];
  const other = a.targetModules.find((t) => !known.includes(t));
  if (other !== undefined) {
    const family = familyOf(a.targetModules, cfg.family);
    const what = family ? `the adapter is for a ${family} model` : 'an adapter for another architecture?';
    throw new LlmError(`${path}: target module '${other}' is not a linear module of a ${cfg.family} model (its modules: ${known.join(', ')}): ${what}${trainedOn(a)}; apply it to the model it was trained on`);
  }
  // PEFT sets fan_in_fan_out itself for GPT-2's Conv1D; Llama's nn.Linear never has it
  if (cfg.family === 'llama' && a.fanInFanOut) {
    throw new LlmError(`${path}: fan_in_fan_out true is for Conv1D weights (GPT-2), not a llama model${trainedOn(a)}; apply it to the model it was trained on, or set fan_in_fan_out to false if its weights are nn.Linear's`);
  }
}

/**
 * A model of `config` over `params` (the base weights) with the adapter in dir: built with
 * loraLayers matching the adapter's config, then the adapter weights copied in. The base is
 * frozen (only the adapter tensors trainable), the model in eval mode.
 */
export function loadLoraAdapter(dir: string, config: ModelConfig, params: Params, opts: { quantized?: QuantMap } = {}): Transformer {
  const a = readPeftAdapterConfig(dir);
  checkArchitecture(dir, a, config);
  const model = new Transformer(config, params, {
    quantized: opts.quantized,
    layers: loraLayers({ r: a.r, alpha: a.loraAlpha, dropout: a.loraDropout, targets: a.targetModules, rslora: a.useRslora, rng: new Rng(0) }),
  });
  copyAdapterWeights(dir, model, a);
  model.freeze((n) => !n.includes('.lora_'));
  model.eval();
  return model;
}

/**
 * A model for inference: the base (float or GGUF-quantized weights) with the adapter in dir
 * applied. Float base weights get the adapter merged in (W += scaling · B A, in place: `params`
 * are changed), so the layers are plain linears again and decode in the fused decode program;
 * over quantized weights it stays beside them (base(x) + scaling · B A x, decoded op by op).
 */
export function loadAdapterForInference(dir: string, config: ModelConfig, params: Params, quantized?: QuantMap): { model: Transformer; merged: boolean } {
  const model = loadLoraAdapter(dir, config, params, { quantized });
  const merged = loraLinears(model).every((l) => l.base.weight !== null);
  if (merged) mergeLora(model);
  return { model, merged };
}

/** Copy the adapter in dir into a model built with loraLayers of the same rank and targets. */
export function applyLoraAdapter(model: Transformer, dir: string): void {
  const a = readPeftAdapterConfig(dir);
  checkArchitecture(dir, a, model.config);
  const layers = loraLinears(model);
  if (layers.length === 0) throw new LlmError(`${join(dir, ADAPTER_CONFIG)}: the model has no LoRA layers to load the adapter into (build it with loraLayers)`);
  const o = layers[0].opts;
  const path = join(dir, ADAPTER_CONFIG);
  if (o.r !== a.r) throw new LlmError(`${path}: r ${a.r} does not match the model's LoRA rank ${o.r}`);
  const mine = [...o.targets].sort().join(',');
  if (mine !== [...a.targetModules].sort().join(',')) {
    throw new LlmError(`${path}: target_modules [${[...a.targetModules].sort().join(', ')}] do not match the model's LoRA targets [${mine}]`);
  }
  if (o.alpha !== a.loraAlpha || (o.rslora ?? false) !== a.useRslora) {
    throw new LlmError(`${path}: lora_alpha ${a.loraAlpha} / use_rslora ${a.useRslora} do not match the model's (${o.alpha} / ${o.rslora ?? false})`);
  }
  copyAdapterWeights(dir, model, a);
}

/** Check the weights file's keys and shapes against the model's LoRA layers (header only), then copy. */
function copyAdapterWeights(dir: string, model: Transformer, a: PeftLoraConfig): void {
  const file = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(file)) {
    const bin = existsSync(join(dir, 'adapter_model.bin'));
    throw new LlmError(`${dir} has no ${ADAPTER_WEIGHTS}${bin ? ' (adapter_model.bin, a pickle, is not read: re-save it with save_pretrained(..., safe_serialization=True))' : ': copy the adapter directory whole (adapter_config.json and adapter_model.safetensors)'}`);
  }
  const header = readSafetensorsHeader(file).tensors;
  const layers = loraLinears(model);
  if (layers.some((l) => l.merged)) throw new LlmError(`${file}: cannot load an adapter into merged LoRA layers (unmergeLora first)`);
  const byKey = new Map<string, { layer: LoraLinear; which: 'A' | 'B' }>();
  for (const layer of layers) for (const which of ['A', 'B'] as const) byKey.set(peftKey(layer.name, which), { layer, which });
  const linearNames = new Set(model.linears().map((l) => l.name));
  const elsewhere = `: an adapter for another architecture or size?${trainedOn(a)}; apply it to the model it was trained on`;
  for (const [key, e] of header) {
    const want = byKey.get(key);
    if (!want) {
      const m = /^base_model\.model\.(.+)\.lora_[AB]\.weight$/.exec(key);
      let why: string;
      if (!m) why = 'is not a LoRA weight this loader knows (base_model.model.<module>.lora_A/B.weight; no embedding LoRA, DoRA or modules_to_save)';
      else if (linearNames.has(m[1])) why = `is for module '${m[1]}', whose name '${moduleName(m[1])}' adapter_config.json's target_modules does not list: add it there`;
      else why = `is for module '${m[1]}', which this ${model.config.family} model (${model.config.nLayer} layers) has no LoRA layer for${elsewhere}`;
      throw new LlmError(`${file}: tensor '${key}' ${why}`);
    }
    if (e.dtype !== 'F32' && e.dtype !== 'F16' && e.dtype !== 'BF16') throw new LlmError(`${file}: tensor '${key}' has dtype ${e.dtype}; adapter weights must be F32, F16 or BF16 (re-save the adapter in float32)`);
    const { layer, which } = want;
    const expect = which === 'A' ? [a.r, layer.inDim] : [layer.outDim, a.r];
    if (e.shape.length !== 2 || e.shape[0] !== expect[0] || e.shape[1] !== expect[1]) {
      const rank = e.shape.length === 2 ? (which === 'A' ? e.shape[0] : e.shape[1]) : NaN;
      const width = e.shape.length === 2 ? (which === 'A' ? e.shape[1] : e.shape[0]) : NaN;
      const rankOff = rank !== a.r && Number.isInteger(rank);
      const hint = rankOff && width === (which === 'A' ? layer.inDim : layer.outDim)
        ? ` (rank ${rank}, adapter_config.json says r ${a.r}): set "r": ${rank} in ${ADAPTER_CONFIG}`
        : rankOff ? ` (rank ${rank}, adapter_config.json says r ${a.r})${elsewhere}` : elsewhere;
      throw new LlmError(`${file}: tensor '${key}' has shape ${preview(e.shape)}, the model needs [${expect.join(', ')}]${hint}`);
    }
  }
  for (const key of byKey.keys()) {
    if (!header.has(key)) throw new LlmError(`${file}: tensor '${key}' is missing (target_modules in ${ADAPTER_CONFIG} names a module the weights do not cover): remove that module from target_modules, or re-save the adapter`);
  }
  const { tensors } = loadSafetensors(file);
  for (const [key, { layer, which }] of byKey) {
    const dst = which === 'A' ? layer.A : layer.B;
    dst.data.set(tensors.get(key)!.data as Float32Array);
  }
  model.resetDecodeProgram();
}
