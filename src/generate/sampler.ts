/**
 * Picking the next token from a row of logits: temperature (0 = greedy argmax) and top-k.
 *
 *   sampleToken(logits, { temperature: 0.8, topK: 200 }, rng)  -> token id
 */
import type { Rng } from '../util/rng.js';

export interface SamplingOptions {
  /** 0 picks the most likely token; higher values flatten the distribution */
  temperature: number;
  /** keep only the k most likely tokens (0 = all) */
  topK: number;
}

export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, rng: Rng): number {
  const V = logits.length;
  if (opts.temperature <= 0) return argmax(logits);
  let threshold = -Infinity;
  if (opts.topK > 0 && opts.topK < V) threshold = kthLargest(logits, opts.topK);
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  const probs = new Float64Array(V);
  let sum = 0;
  for (let i = 0; i < V; i++) {
    if (logits[i] < threshold) continue;
    probs[i] = Math.exp((logits[i] - max) / opts.temperature);
    sum += probs[i];
  }
  let r = rng.uniform() * sum;
  for (let i = 0; i < V; i++) {
    r -= probs[i];
    if (r < 0 && probs[i] > 0) return i;
  }
  return argmax(logits);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function kthLargest(x: ArrayLike<number>, k: number): number {
  const sorted = Float64Array.from(x).sort();
  return sorted[sorted.length - k];
}
