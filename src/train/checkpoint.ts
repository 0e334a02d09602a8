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
import { loadSafetensors, readSafetensorsMetadata, saveSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
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

export function loadCheckpoint(path: string): CheckpointData {
  if (!existsSync(path)) throw new LlmError(`checkpoint not found: ${path}`);
  const file = loadSafetensors(path);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new LlmError(`${path} is not an llm.ts checkpoint (metadata format is ${meta.format ?? 'missing'})`);
  }
  const config = validateConfig(parseJson(path, 'config', meta.config) as ModelConfig);
  const specs = parameterSpecs(config);
  const params = new Map<string, Tensor>();
  const m: Float32Array[] = [];
  const v: Float32Array[] = [];
  for (const s of specs) {
    params.set(s.name, toTensor(path, file.tensors, s.name, s.shape));
    const tm = file.tensors.get(M_PREFIX + s.name);
    const tv = file.tensors.get(V_PREFIX + s.name);
    if (tm && tv) {
      m.push(toTensor(path, file.tensors, M_PREFIX + s.name, s.shape).data);
      v.push(toTensor(path, file.tensors, V_PREFIX + s.name, s.shape).data);
    }
  }
  const ck: CheckpointData = {
    source: file.source,
    config,
    params,
    tokenizer: parseJson(path, 'tokenizer', meta.tokenizer),
    trainer: (parseJson(path, 'trainer', meta.trainer ?? '{}') ?? {}) as Record<string, unknown>,
  };
  if (meta.optimizer && m.length === specs.length) {
    const { step, ...hyper } = parseJson(path, 'optimizer', meta.optimizer) as { step: number } & Record<string, number>;
    ck.optimizer = { step, m, v, hyper };
  }
  return ck;
}

/** The tokenizer (JSON) of an llm.ts checkpoint, reading only the file's header. */
export function loadCheckpointTokenizer(path: string): unknown {
  if (!existsSync(path)) throw new LlmError(`checkpoint not found: ${path}`);
  const meta = readSafetensorsMetadata(path);
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new LlmError(`${path} is not an llm.ts checkpoint (metadata format is ${meta.format ?? 'missing'})`);
  }
  return parseJson(path, 'tokenizer', meta.tokenizer);
}

function parseJson(path: string, key: string, text: string | undefined): unknown {
  if (text === undefined) throw new LlmError(`checkpoint ${path} has no '${key}' metadata; the file is incomplete or not from llm.ts`);
  try {
    return JSON.parse(text);
  } catch {
    throw new LlmError(`checkpoint ${path} has corrupt '${key}' metadata (not valid JSON)`);
  }
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
