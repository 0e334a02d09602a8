/**
 * Model configuration: one decoder-only Transformer, two families.
 *
 *   gpt2:  LayerNorm, learned positions, GELU MLP (4x), biases, tied input/output embeddings
 *   llama: RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention, no biases, separate head
 *
 *   const cfg = resolveConfig('shakespeare-char', { vocabSize: 65 });
 */
import { LlmError } from '../util/errors.js';

export type Family = 'gpt2' | 'llama';

export interface ModelConfig {
  family: Family;
  vocabSize: number;
  /** context length (maximum sequence length) */
  blockSize: number;
  nLayer: number;
  nHead: number;
  /** key/value heads (grouped-query attention); equals nHead for multi-head attention */
  nKvHead: number;
  nEmbd: number;
  /** inner width of the MLP */
  hiddenDim: number;
  /** biases in linear layers and LayerNorm (gpt2 only) */
  bias: boolean;
  tiedEmbeddings: boolean;
  normEps: number;
  ropeTheta: number;
  dropout: number;
}

export type ConfigOverrides = Partial<ModelConfig>;

function gpt2(o: ConfigOverrides & Pick<ModelConfig, 'nLayer' | 'nHead' | 'nEmbd' | 'blockSize' | 'vocabSize'>): ModelConfig {
  return {
    family: 'gpt2', nKvHead: o.nHead, hiddenDim: 4 * o.nEmbd, bias: true, tiedEmbeddings: true,
    normEps: 1e-5, ropeTheta: 10000, dropout: 0, ...o,
  };
}

function llama(o: ConfigOverrides & Pick<ModelConfig, 'nLayer' | 'nHead' | 'nEmbd' | 'blockSize' | 'vocabSize' | 'hiddenDim'>): ModelConfig {
  return {
    family: 'llama', nKvHead: o.nHead, bias: false, tiedEmbeddings: false,
    normEps: 1e-5, ropeTheta: 10000, dropout: 0, ...o,
  };
}

/** Named configurations. vocabSize of the char presets is replaced by the data's vocabulary. */
export const PRESETS: Record<string, ModelConfig> = {
  // nanoGPT's CPU Shakespeare run
  'shakespeare-char': gpt2({ nLayer: 4, nHead: 4, nEmbd: 128, blockSize: 64, vocabSize: 65 }),
  // nanoGPT's Shakespeare GPU config (the 6-layer/384-dim char model)
  'shakespeare-char-6l': gpt2({ nLayer: 6, nHead: 6, nEmbd: 384, blockSize: 256, vocabSize: 65, dropout: 0.2 }),
  'gpt2-124m': gpt2({ nLayer: 12, nHead: 12, nEmbd: 768, blockSize: 1024, vocabSize: 50257 }),
  // llama2.c's stories15M shapes
  'llama-15m': llama({ nLayer: 6, nHead: 6, nEmbd: 288, hiddenDim: 768, blockSize: 256, vocabSize: 32000 }),
  // llama2.c's stories110M shapes
  'llama-110m': llama({ nLayer: 12, nHead: 12, nEmbd: 768, hiddenDim: 2048, blockSize: 1024, vocabSize: 32000 }),
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** A preset with overrides applied, validated. */
export function resolveConfig(preset: string, overrides: ConfigOverrides = {}): ModelConfig {
  const base = PRESETS[preset];
  if (!base) throw new LlmError(`unknown preset '${preset}' (choose one of: ${presetNames().join(', ')})`);
  const cfg = { ...base, ...stripUndefined(overrides) };
  // a changed head count without an explicit kv-head count keeps multi-head attention
  if (overrides.nHead !== undefined && overrides.nKvHead === undefined && base.nKvHead === base.nHead) cfg.nKvHead = cfg.nHead;
  if (overrides.nEmbd !== undefined && overrides.hiddenDim === undefined && base.family === 'gpt2') cfg.hiddenDim = 4 * cfg.nEmbd;
  return validateConfig(cfg);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Check a configuration; every problem is a one-line LlmError naming the field. */
export function validateConfig(cfg: ModelConfig): ModelConfig {
  const positive: (keyof ModelConfig)[] = ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nKvHead', 'nEmbd', 'hiddenDim'];
  for (const k of positive) {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new LlmError(`invalid model config: ${k} = ${String(v)} must be a positive integer`);
    }
  }
  if (cfg.family !== 'gpt2' && cfg.family !== 'llama') {
    throw new LlmError(`invalid model config: family '${String(cfg.family)}' must be gpt2 or llama`);
  }
  if (cfg.nEmbd % cfg.nHead !== 0) {
    throw new LlmError(`invalid model config: n_embd ${cfg.nEmbd} is not divisible by n_head ${cfg.nHead}`);
  }
  if (cfg.nHead % cfg.nKvHead !== 0) {
    throw new LlmError(`invalid model config: n_head ${cfg.nHead} is not divisible by n_kv_head ${cfg.nKvHead}`);
  }
  if (cfg.family === 'llama' && (cfg.nEmbd / cfg.nHead) % 2 !== 0) {
    throw new LlmError(`invalid model config: head size ${cfg.nEmbd / cfg.nHead} must be even for rotary embeddings`);
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new LlmError(`invalid model config: dropout ${cfg.dropout} must be in [0, 1)`);
  }
  if (!(cfg.normEps > 0)) throw new LlmError(`invalid model config: normEps ${cfg.normEps} must be > 0`);
  return cfg;
}

export function headDim(cfg: ModelConfig): number {
  return cfg.nEmbd / cfg.nHead;
}
