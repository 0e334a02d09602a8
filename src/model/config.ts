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

/**
 * Upper bounds of the integer fields (inclusive). Far above any released model (contexts of
 * 10M tokens, 256k vocabularies, a few hundred layers), they keep a hostile or mistyped value
 * from sizing an allocation: every integer must also be a safe integer (1e308 is an "integer").
 */
export const CONFIG_LIMITS: Readonly<Record<'vocabSize' | 'blockSize' | 'nLayer' | 'nHead' | 'nKvHead' | 'nEmbd' | 'hiddenDim', number>> = {
  vocabSize: 1 << 24,
  blockSize: 1 << 24,
  nLayer: 10_000,
  nHead: 1 << 16,
  nKvHead: 1 << 16,
  nEmbd: 1 << 24,
  hiddenDim: 1 << 24,
};

/** Accepted normEps: (0, MAX_NORM_EPS]. Models use 1e-5 or 1e-6 (1e-12 at the smallest); an epsilon of 3 swamps the statistics. */
export const MAX_NORM_EPS = 0.01;
/** Accepted ropeTheta: [MIN_ROPE_THETA, MAX_ROPE_THETA] (models use 1e4 to 5e6; below 1 the frequencies overflow to NaN). */
export const MIN_ROPE_THETA = 1;
export const MAX_ROPE_THETA = 1e12;

export interface ValidateOptions {
  /** prefixed to messages instead of 'invalid model config' (e.g. the file read) */
  source?: string;
  /** field names as the source spells them (e.g. { nLayer: 'num_hidden_layers' }) */
  names?: Partial<Record<keyof ModelConfig, string>>;
}

/** A value from a file for a message: short, one line. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : typeof v;
}

/**
 * Check a configuration; every problem is a one-line LlmError naming the field (in the
 * source's terms when opts.names says them). `cfg` may come from a file: anything that is not
 * an object of the right types and ranges is rejected, before anything is sized by it.
 */
export function validateConfig(cfg: ModelConfig, opts: ValidateOptions = {}): ModelConfig {
  const where = opts.source !== undefined ? `${opts.source}:` : 'invalid model config:';
  const name = (k: keyof ModelConfig): string => opts.names?.[k] ?? k;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) {
    throw new LlmError(`${where} the model config must be an object, got ${show(cfg)}`);
  }
  if (cfg.family !== 'gpt2' && cfg.family !== 'llama') {
    throw new LlmError(`${where} family ${show(cfg.family)} must be gpt2 or llama`);
  }
  for (const [k, max] of Object.entries(CONFIG_LIMITS) as [keyof typeof CONFIG_LIMITS, number][]) {
    const v: unknown = cfg[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new LlmError(`${where} ${name(k)} = ${show(v)} must be a positive integer`);
    }
    if (v > max) throw new LlmError(`${where} ${name(k)} = ${v} is more than the ${max} supported`);
  }
  for (const k of ['bias', 'tiedEmbeddings'] as const) {
    if (typeof cfg[k] !== 'boolean') throw new LlmError(`${where} ${name(k)} = ${show(cfg[k])} must be true or false`);
  }
  // the historical snake_case names where the caller gives none (messages tests and users know)
  const nEmbd = opts.names?.nEmbd ?? 'n_embd';
  const nHead = opts.names?.nHead ?? 'n_head';
  const nKvHead = opts.names?.nKvHead ?? 'n_kv_head';
  if (cfg.nEmbd % cfg.nHead !== 0) {
    throw new LlmError(`${where} ${nEmbd} ${cfg.nEmbd} is not divisible by ${nHead} ${cfg.nHead}`);
  }
  if (cfg.nHead % cfg.nKvHead !== 0) {
    throw new LlmError(`${where} ${nHead} ${cfg.nHead} is not divisible by ${nKvHead} ${cfg.nKvHead}`);
  }
  if (cfg.family === 'llama' && (cfg.nEmbd / cfg.nHead) % 2 !== 0) {
    throw new LlmError(`${where} head size ${cfg.nEmbd / cfg.nHead} must be even for rotary embeddings (${nEmbd} ${cfg.nEmbd} / ${nHead} ${cfg.nHead})`);
  }
  const num = (k: 'dropout' | 'normEps' | 'ropeTheta'): number => {
    const v: unknown = cfg[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new LlmError(`${where} ${name(k)} = ${show(v)} must be a finite number`);
    return v;
  };
  const dropout = num('dropout');
  if (!(dropout >= 0 && dropout < 1)) throw new LlmError(`${where} ${name('dropout')} ${dropout} must be in [0, 1)`);
  const eps = num('normEps');
  if (!(eps > 0 && eps <= MAX_NORM_EPS)) throw new LlmError(`${where} ${name('normEps')} ${eps} must be in (0, ${MAX_NORM_EPS}]`);
  const theta = num('ropeTheta');
  if (!(theta >= MIN_ROPE_THETA && theta <= MAX_ROPE_THETA)) {
    throw new LlmError(`${where} ${name('ropeTheta')} ${theta} must be in [${MIN_ROPE_THETA}, ${MAX_ROPE_THETA}]`);
  }
  return cfg;
}

export function headDim(cfg: ModelConfig): number {
  return cfg.nEmbd / cfg.nHead;
}
