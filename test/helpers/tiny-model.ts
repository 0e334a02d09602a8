/**
 * Small model configurations and random models for the inference, format and CLI tests.
 *
 *   const cfg = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });
 *   const model = scaledModel(cfg, { seed: 3, gain: 4 });
 *
 * Random init gives near-uniform logits, where greedy decoding is decided by rounding noise;
 * scaling every matrix by `gain` spreads the logits so that paths which compute the same function
 * (cached and uncached, fused and op by op, exported and re-imported) pick the same tokens.
 */
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { Rng } from '../../src/util/rng.js';

export type ModelSizes = Pick<ModelConfig, 'vocabSize' | 'blockSize' | 'nLayer' | 'nHead' | 'nKvHead' | 'nEmbd' | 'hiddenDim'>;

const COMMON = { normEps: 1e-5, ropeTheta: 10000, dropout: 0 };

/** A Llama-family config (RMSNorm, RoPE, SwiGLU, no biases, untied embeddings) of these sizes. */
export function tinyLlama(sizes: ModelSizes, extra: Partial<ModelConfig> = {}): ModelConfig {
  return { ...COMMON, family: 'llama', bias: false, tiedEmbeddings: false, ...sizes, ...extra };
}

/** A GPT-2-family config (LayerNorm, learned positions, GELU, biases, tied embeddings) of these sizes. */
export function tinyGpt2(sizes: ModelSizes, extra: Partial<ModelConfig> = {}): ModelConfig {
  return { ...COMMON, family: 'gpt2', bias: true, tiedEmbeddings: true, ...sizes, ...extra };
}

export interface ScaledModelOptions {
  /** seed of the random init (default 1) */
  seed?: number;
  /** factor on every matrix (default 4) */
  gain?: number;
  /** when > 0, every vector (norm gains, biases) moves off its init (1 or 0) by a uniform draw in
   * [-jitter/2, jitter/2), so that a dropped or misplaced one changes the output */
  jitter?: number;
}

/** A random model of `cfg` with its matrices scaled by `gain`, in eval mode. */
export function scaledModel(cfg: ModelConfig, opts: ScaledModelOptions = {}): Transformer {
  const seed = opts.seed ?? 1;
  const gain = opts.gain ?? 4;
  const m = new Transformer(cfg, new Rng(seed));
  for (const p of m.parameters()) if (p.shape.length === 2) for (let i = 0; i < p.data.length; i++) p.data[i] *= gain;
  if (opts.jitter) {
    const rng = new Rng(seed + 100);
    for (const p of m.parameters()) if (p.shape.length === 1) for (let i = 0; i < p.data.length; i++) p.data[i] += opts.jitter * (rng.uniform() - 0.5);
  }
  m.eval();
  return m;
}
