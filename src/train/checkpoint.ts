/**
 * Training checkpoints: ONE safetensors file, written atomically (temp file + rename), so a
 * crash mid-write never leaves a broken checkpoint behind.
 *
 *   tensors:   the parameters under their Hugging Face names (the file opens in any
 *              safetensors reader), plus optimizer moments as `optimizer.m.<name>` / `optimizer.v.<name>`
 *   metadata:  format, config (JSON), tokenizer (JSON), trainer state (JSON: step, RNG states,
 *              options, losses), optimizer hyperparameters and step count
 */
import { existsSync } from 'node:fs';
import type { FileSourceMode } from '../formats/file-source.js';
import {
  loadSafetensors, readSafetensorsHeader, readSafetensorsMetadata, saveSafetensors, type SafetensorsEntry, type TensorToWrite,
} from '../formats/safetensors.js';
import { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import { isJsonObject, parseJsonText, preview } from '../util/regular-file.js';
import { validateConfig, type ModelConfig } from '../model/config.js';
import { parameterSpecs } from '../model/parameters.js';
import type { AdamWState } from './adamw.js';

export const CHECKPOINT_FORMAT = 'llmts-checkpoint-v1';
const M_PREFIX = 'optimizer.m.';
const V_PREFIX = 'optimizer.v.';

export interface CheckpointData {
  config: ModelConfig;
  params: Map<string, Tensor>;
  tokenizer: unknown;
  /** free-form trainer state (step, RNG states, options...) */
  trainer: Record<string, unknown>;
  /** optional: absent in inference-only exports */
  optimizer?: AdamWState & { hyper: Record<string, number> };
  /** set by loadCheckpoint: 'mmap' when the tensors are views into a copy-on-write mapping of the file */
  source?: FileSourceMode;
}

export function saveCheckpoint(path: string, ck: CheckpointData): void {
  const tensors: Record<string, TensorToWrite> = {};
  const specs = parameterSpecs(ck.config);
  specs.forEach((s, i) => {
    const t = ck.params.get(s.name)!;
    tensors[s.name] = { dtype: 'F32', shape: [...t.shape], data: t.data };
    if (ck.optimizer) {
      tensors[M_PREFIX + s.name] = { dtype: 'F32', shape: [...t.shape], data: ck.optimizer.m[i] };
      tensors[V_PREFIX + s.name] = { dtype: 'F32', shape: [...t.shape], data: ck.optimizer.v[i] };
    }
  });
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(ck.config),
    tokenizer: JSON.stringify(ck.tokenizer),
    trainer: JSON.stringify(ck.trainer),
  };
  if (ck.optimizer) {
    metadata.optimizer = JSON.stringify({ step: ck.optimizer.step, ...ck.optimizer.hyper });
  }
  saveSafetensors(path, tensors, metadata);
}

/**
 * Read a checkpoint. The header is checked first (format, config, the layers and every
 * parameter's dtype and shape against the config), before any data is read or anything is
 * built per layer.
 */
export function loadCheckpoint(path: string): CheckpointData {
  if (!existsSync(path)) throw new LlmError(`checkpoint not found: ${path}`);
  const header = readSafetensorsHeader(path);
  const meta = header.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new LlmError(`${path} is not an llm.ts checkpoint (metadata format is ${meta.format === undefined ? 'missing' : preview(meta.format)})`);
  }
  const config = validateConfig(parseJson(path, 'config', meta.config) as ModelConfig, { source: `checkpoint ${path}: config metadata` });
  checkLayers(path, config, [...header.tensors.keys()]);
  const specs = parameterSpecs(config);
  const hasMoments = specs.every((s) => header.tensors.has(M_PREFIX + s.name) && header.tensors.has(V_PREFIX + s.name));
  for (const s of specs) {
    checkEntry(path, header.tensors, s.name, s.shape);
    if (hasMoments) {
      checkEntry(path, header.tensors, M_PREFIX + s.name, s.shape);
      checkEntry(path, header.tensors, V_PREFIX + s.name, s.shape);
    }
  }
  const tokenizer = parseJson(path, 'tokenizer', meta.tokenizer);
  const trainer = parseJson(path, 'trainer', meta.trainer ?? '{}') ?? {};
  if (!isJsonObject(trainer)) throw new LlmError(`checkpoint ${path}: 'trainer' metadata must be a JSON object, got ${preview(trainer)}`);
  const optimizer = meta.optimizer ? optimizerHyper(path, parseJson(path, 'optimizer', meta.optimizer)) : null;

  const file = loadSafetensors(path);
  const params = new Map<string, Tensor>();
  const m: Float32Array[] = [];
  const v: Float32Array[] = [];
  for (const s of specs) {
    params.set(s.name, toTensor(path, file.tensors, s.name, s.shape));
    if (hasMoments) {
      m.push(toTensor(path, file.tensors, M_PREFIX + s.name, s.shape).data);
      v.push(toTensor(path, file.tensors, V_PREFIX + s.name, s.shape).data);
    }
  }
  const ck: CheckpointData = { source: file.source, config, params, tokenizer, trainer };
  if (optimizer && hasMoments) ck.optimizer = { step: optimizer.step, m, v, hyper: optimizer.hyper };
  return ck;
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

/** A parameter's header entry: present, float, of the shape the config needs. */
function checkEntry(path: string, tensors: Map<string, SafetensorsEntry>, name: string, shape: number[]): void {
  const t = tensors.get(name);
  if (!t) throw new LlmError(`checkpoint ${path} is missing tensor '${name}'`);
  if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') throw new LlmError(`checkpoint ${path}: tensor '${name}' has dtype ${t.dtype}, expected a float type`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new LlmError(`checkpoint ${path}: tensor '${name}' has shape ${preview(t.shape)}, the config needs [${shape.join(', ')}]`);
  }
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
  path: string, tensors: ReturnType<typeof loadSafetensors>['tensors'], name: string, shape: number[],
): Tensor {
  const t = tensors.get(name);
  if (!t) throw new LlmError(`checkpoint ${path} is missing tensor '${name}'`);
  if (t.data instanceof Float32Array === false) throw new LlmError(`checkpoint ${path}: tensor '${name}' has dtype ${t.dtype}, expected a float type`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new LlmError(`checkpoint ${path}: tensor '${name}' has shape [${t.shape.join(', ')}], the config needs [${shape.join(', ')}]`);
  }
  return new Tensor(t.data as Float32Array, shape, true);
}
