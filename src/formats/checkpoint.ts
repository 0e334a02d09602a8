/**
 * llm.ts checkpoints: ONE safetensors file, written atomically (temp file + rename), so a
 * crash mid-write never leaves a broken checkpoint behind.
 *
 *   tensors:   every named parameter of the model under its name -- the base parameters of the
 *              config (Hugging Face names: the file opens in any safetensors reader) first, then
 *              any extra tensors the model registers (heads, adapters) -- plus the AdamW moments of
 *              the trained ones as `optimizer.m.<name>` / `optimizer.v.<name>`
 *   metadata:  format, config (JSON), tokenizer (JSON), trainer state (JSON: step, RNG states,
 *              options, objective...), optimizer hyperparameters and step count, and the
 *              model's own chat template (chat_template: Jinja source) when it has one
 *
 *   saveCheckpoint('out/ckpt.safetensors', { config, params, tokenizer: tok.toJSON(), trainer: { step: 10 },
 *     optimizer: { step: 10, m, v, hyper: { beta1: 0.9 } } });      // m, v: Map<name, Float32Array>
 *   const ck = loadCheckpoint('out/ckpt.safetensors');
 *   ck.params;   // Map: the config's base parameters, checked against it
 *   ck.extras;   // Map: every other parameter in the file (e.g. 'score.weight'), for whoever registers it
 *
 * The format needs nothing from the trainer: moments are plain arrays by parameter name (the
 * shape of AdamW's state), so frozen parameters simply have none.
 */
import { existsSync } from 'node:fs';
import type { FileSourceMode } from './file-source.js';
import {
  loadSafetensors, readSafetensorsHeader, readSafetensorsMetadata, saveSafetensors, type SafetensorsEntry, type TensorToWrite,
} from './safetensors.js';
import { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import { isJsonObject, parseJsonText, preview } from '../util/regular-file.js';
import { validateConfig, type ModelConfig } from '../model/config.js';
import { parameterSpecs } from '../model/parameters.js';

export const CHECKPOINT_FORMAT = 'llmts-checkpoint-v1';
const M_PREFIX = 'optimizer.m.';
const V_PREFIX = 'optimizer.v.';

/** Optimizer state as saved: update count, hyperparameters, and both moments of each trained parameter by name. */
export interface CheckpointOptimizer {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
  hyper: Record<string, number>;
}

export interface CheckpointData {
  config: ModelConfig;
  /** the config's base parameters (parameterSpecs), by name; saving may add others here too */
  params: Map<string, Tensor>;
  /**
   * Parameters beyond the config's base ones (a reward head, LoRA adapters...). loadCheckpoint
   * hands back every such tensor of the file here; saveCheckpoint writes them after the base ones.
   */
  extras?: Map<string, Tensor>;
  tokenizer: unknown;
  /** free-form trainer state (step, RNG states, options...) */
  trainer: Record<string, unknown>;
  /** optional: absent in inference-only exports */
  optimizer?: CheckpointOptimizer;
  /**
   * the model's own chat template (Jinja source, as in a Hugging Face tokenizer_config.json or
   * GGUF tokenizer.chat_template), kept so that llmts chat on a fine-tuned model renders it
   */
  chatTemplate?: string;
  /** set by loadCheckpoint: 'mmap' when the tensors are views into a copy-on-write mapping of the file */
  source?: FileSourceMode;
}

/**
 * Write a checkpoint: the config's base parameters (each must be in ck.params, of the config's
 * shape) in spec order, then every other parameter of ck.params and ck.extras, each followed by
 * its moments when ck.optimizer has them. A moment must belong to a written parameter.
 */
export function saveCheckpoint(path: string, ck: CheckpointData): void {
  const all = new Map<string, Tensor>();
  const specs = parameterSpecs(ck.config);
  for (const s of specs) {
    const t = ck.params.get(s.name);
    if (!t) throw new LlmError(`saveCheckpoint ${path}: the model has no parameter '${s.name}', which its config needs`);
    if (!sameShape(t.shape, s.shape)) {
      throw new LlmError(`saveCheckpoint ${path}: parameter '${s.name}' has shape [${t.shape.join(', ')}], the config needs [${s.shape.join(', ')}]`);
    }
    all.set(s.name, t);
  }
  for (const name of ck.extras?.keys() ?? []) {
    if (ck.params.has(name)) throw new LlmError(`saveCheckpoint ${path}: parameter '${name}' is given twice (in params and in extras)`);
  }
  for (const [name, t] of [...ck.params, ...(ck.extras ?? [])]) if (!all.has(name)) all.set(name, t);
  const opt = ck.optimizer;
  if (opt) {
    for (const name of new Set([...opt.m.keys(), ...opt.v.keys()])) {
      const t = all.get(name);
      if (!t) throw new LlmError(`saveCheckpoint ${path}: the optimizer has moments for '${name}', which is not among the parameters written`);
      const m = opt.m.get(name);
      const v = opt.v.get(name);
      if (!m || !v) throw new LlmError(`saveCheckpoint ${path}: the optimizer has only one of the two moments of '${name}'`);
      if (m.length !== t.size || v.length !== t.size) {
        throw new LlmError(`saveCheckpoint ${path}: the moments of '${name}' hold ${m.length} and ${v.length} values, the parameter ${t.size}`);
      }
    }
  }
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of all) {
    tensors[name] = { dtype: 'F32', shape: [...t.shape], data: t.data };
    const m = opt?.m.get(name);
    if (m) {
      tensors[M_PREFIX + name] = { dtype: 'F32', shape: [...t.shape], data: m };
      tensors[V_PREFIX + name] = { dtype: 'F32', shape: [...t.shape], data: opt!.v.get(name)! };
    }
  }
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(ck.config),
    tokenizer: JSON.stringify(ck.tokenizer),
    trainer: JSON.stringify(ck.trainer),
  };
  if (opt) metadata.optimizer = JSON.stringify({ step: opt.step, ...opt.hyper });
  if (ck.chatTemplate !== undefined) metadata.chat_template = ck.chatTemplate;
  saveSafetensors(path, tensors, metadata);
}

/**
 * Read a checkpoint. The header is checked first (format, config, the layers, every base
 * parameter's dtype and shape against the config, every moment against its parameter), before
 * any data is read or anything is built per layer. Tensors that are neither base parameters nor
 * moments come back in `extras` (floats of any shape; per-layer names must still fit the
 * config's layers).
 */
export function loadCheckpoint(path: string): CheckpointData & { extras: Map<string, Tensor> } {
  if (!existsSync(path)) throw new LlmError(`checkpoint not found: ${path}`);
  const header = readSafetensorsHeader(path);
  const meta = header.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new LlmError(`${path} is not an llm.ts checkpoint (metadata format is ${meta.format === undefined ? 'missing' : preview(meta.format)})`);
  }
  const config = validateConfig(parseJson(path, 'config', meta.config) as ModelConfig, { source: `checkpoint ${path}: config metadata` });
  checkLayers(path, config, [...header.tensors.keys()]);
  const specs = parameterSpecs(config);
  for (const s of specs) checkEntry(path, header.tensors, s.name, s.shape);
  const { extraNames, momentNames } = classifyTensors(path, header.tensors, specs.map((s) => s.name));
  const tokenizer = parseJson(path, 'tokenizer', meta.tokenizer);
  const trainer = parseJson(path, 'trainer', meta.trainer ?? '{}') ?? {};
  if (!isJsonObject(trainer)) throw new LlmError(`checkpoint ${path}: 'trainer' metadata must be a JSON object, got ${preview(trainer)}`);
  const optimizer = meta.optimizer ? optimizerHyper(path, parseJson(path, 'optimizer', meta.optimizer)) : null;

  const file = loadSafetensors(path);
  const params = new Map<string, Tensor>();
  const extras = new Map<string, Tensor>();
  for (const s of specs) params.set(s.name, toTensor(path, file.tensors, s.name, s.shape));
  for (const name of extraNames) extras.set(name, toTensor(path, file.tensors, name, header.tensors.get(name)!.shape));
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const name of momentNames) {
    const shape = header.tensors.get(name)!.shape;
    m.set(name, toTensor(path, file.tensors, M_PREFIX + name, shape).data);
    v.set(name, toTensor(path, file.tensors, V_PREFIX + name, shape).data);
  }
  const ck: CheckpointData & { extras: Map<string, Tensor> } = { source: file.source, config, params, extras, tokenizer, trainer };
  if (meta.chat_template !== undefined) ck.chatTemplate = meta.chat_template;
  if (optimizer && m.size > 0) ck.optimizer = { step: optimizer.step, m, v, hyper: optimizer.hyper };
  return ck;
}

/**
 * Sort the header's tensors: extras (neither base parameters nor moments; must be floats), and
 * the parameters that have moments, in parameter order (base, then extras). Every moment needs
 * its twin and a parameter of its shape.
 */
function classifyTensors(
  path: string, tensors: Map<string, SafetensorsEntry>, baseNames: string[],
): { extraNames: string[]; momentNames: string[] } {
  const base = new Set(baseNames);
  const isMoment = (name: string): boolean => name.startsWith(M_PREFIX) || name.startsWith(V_PREFIX);
  const extraNames = [...tensors.keys()].filter((name) => !base.has(name) && !isMoment(name));
  for (const name of extraNames) checkEntry(path, tensors, name, tensors.get(name)!.shape);
  for (const name of tensors.keys()) {
    if (!isMoment(name)) continue;
    const param = name.slice(M_PREFIX.length); // both prefixes have the same length
    const p = isMoment(param) ? undefined : tensors.get(param);
    const shown = name.length > 100 ? `${name.slice(0, 100)}...` : name;
    if (!p) throw new LlmError(`checkpoint ${path}: tensor '${shown}' is an optimizer moment of a parameter the file does not hold`);
    const twin = (name.startsWith(M_PREFIX) ? V_PREFIX : M_PREFIX) + param;
    if (!tensors.has(twin)) throw new LlmError(`checkpoint ${path}: tensor '${shown}' has no twin '${twin.length > 100 ? `${twin.slice(0, 100)}...` : twin}'; the optimizer state is incomplete`);
    checkEntry(path, tensors, name, p.shape, 'its parameter has');
  }
  const momentNames = [...baseNames, ...extraNames].filter((name) => tensors.has(M_PREFIX + name));
  return { extraNames, momentNames };
}

/** The 'optimizer' metadata: { step, ...hyperparameters }, all numbers. */
function optimizerHyper(path: string, json: unknown): { step: number; hyper: Record<string, number> } {
  if (!isJsonObject(json)) throw new LlmError(`checkpoint ${path}: 'optimizer' metadata must be a JSON object, got ${preview(json)}`);
  const { step, ...rest } = json;
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
    throw new LlmError(`checkpoint ${path}: 'optimizer' metadata step ${preview(step)} must be a non-negative integer`);
  }
  const hyper: Record<string, number> = {};
  for (const [k, val] of Object.entries(rest)) {
    if (typeof val !== 'number' || !Number.isFinite(val)) {
      throw new LlmError(`checkpoint ${path}: 'optimizer' metadata ${preview(k)} = ${preview(val)} must be a finite number`);
    }
    Object.defineProperty(hyper, k, { value: val, enumerable: true, writable: true, configurable: true });
  }
  return { step, hyper };
}

/** Layer index of a per-layer tensor name (parameters and optimizer moments), else null. */
function layerOf(name: string): number | null {
  const m = /^(?:optimizer\.[mv]\.)?(?:model\.layers|transformer\.h)\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** The tensors must hold exactly the config's layers (more is an error too). */
function checkLayers(path: string, config: ModelConfig, names: string[]): void {
  for (const n of names) {
    const l = layerOf(n);
    if (l !== null && l >= config.nLayer) {
      const shown = n.length > 100 ? `${n.slice(0, 100)}...` : n;
      throw new LlmError(`checkpoint ${path}: its config says ${config.nLayer} layers but it holds tensor '${shown}'; the config and the tensors disagree`);
    }
  }
  // fewer layers than declared: the first missing parameter is named by checkEntry
}

/** A tensor's header entry: present, float, of the shape needed. */
function checkEntry(
  path: string, tensors: Map<string, SafetensorsEntry>, name: string, shape: readonly number[], need = 'the config needs',
): void {
  const t = tensors.get(name);
  if (!t) throw new LlmError(`checkpoint ${path} is missing tensor '${name}'`);
  if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') throw new LlmError(`checkpoint ${path}: tensor '${name}' has dtype ${t.dtype}, expected a float type`);
  if (!sameShape(t.shape, shape)) {
    throw new LlmError(`checkpoint ${path}: tensor '${name}' has shape ${preview(t.shape)}, ${need} [${shape.join(', ')}]`);
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The tokenizer (JSON) of an llm.ts checkpoint, reading only the file's header. */
export function loadCheckpointTokenizer(path: string): unknown {
  if (!existsSync(path)) throw new LlmError(`checkpoint not found: ${path}`);
  const meta = readSafetensorsMetadata(path);
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new LlmError(`${path} is not an llm.ts checkpoint (metadata format is ${meta.format === undefined ? 'missing' : preview(meta.format)})`);
  }
  return parseJson(path, 'tokenizer', meta.tokenizer);
}

/** A metadata value as JSON: valid, no duplicate keys, not absurdly nested (shapes are checked by the caller). */
function parseJson(path: string, key: string, text: string | undefined): unknown {
  if (text === undefined) throw new LlmError(`checkpoint ${path} has no '${key}' metadata; the file is incomplete or not from llm.ts`);
  return parseJsonText(text, `checkpoint ${path}: '${key}' metadata`);
}

function toTensor(
  path: string, tensors: ReturnType<typeof loadSafetensors>['tensors'], name: string, shape: readonly number[],
): Tensor {
  const t = tensors.get(name);
  if (!t) throw new LlmError(`checkpoint ${path} is missing tensor '${name}'`);
  if (t.data instanceof Float32Array === false) throw new LlmError(`checkpoint ${path}: tensor '${name}' has dtype ${t.dtype}, expected a float type`);
  if (!sameShape(t.shape, shape)) {
    throw new LlmError(`checkpoint ${path}: tensor '${name}' has shape [${t.shape.join(', ')}], the config needs [${shape.join(', ')}]`);
  }
  return new Tensor(t.data as Float32Array, [...shape], true);
}
