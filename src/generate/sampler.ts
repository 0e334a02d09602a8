/**
 * Picking the next token from a row of logits.
 *
 *   sampleToken(logits, { temperature: 0.8, topK: 40, topP: 0.95 }, rng)      -> token id
 *   applyPenalties(logits, counts, { repetitionPenalty: 1.1, presencePenalty: 0.5 })
 *
 * Order (as llama.cpp and Hugging Face): penalties on the raw logits, then temperature,
 * top-k, top-p (nucleus: the smallest set whose probability reaches p), min-p (drop tokens
 * below min-p x the top probability), then a draw. Temperature 0 is greedy (argmax).
 */
import type { Rng } from '../util/rng.js';

export interface SamplingOptions {
  /** 0 picks the most likely token; higher values flatten the distribution */
  temperature: number;
  /** keep only the k most likely tokens (0 = all) */
  topK: number;
  /** keep the smallest set of tokens whose probabilities sum to at least topP (1 = all) */
  topP?: number;
  /** drop tokens whose probability is below minP x the most likely token's (0 = off) */
  minP?: number;
}

export interface PenaltyOptions {
  /** > 1 discourages tokens already generated: positive logits divided, negative multiplied (CTRL) */
  repetitionPenalty?: number;
  /** subtracted once from the logit of every token already present (OpenAI) */
  presencePenalty?: number;
  /** subtracted per occurrence (OpenAI) */
  frequencyPenalty?: number;
}

/** In place: penalise tokens by how often they already occur (counts: token id -> occurrences). */
export function applyPenalties(logits: Float32Array, counts: ReadonlyMap<number, number>, p: PenaltyOptions): void {
  const rep = p.repetitionPenalty ?? 1;
  const presence = p.presencePenalty ?? 0;
  const frequency = p.frequencyPenalty ?? 0;
  if (rep === 1 && presence === 0 && frequency === 0) return;
  for (const [id, n] of counts) {
    if (n <= 0 || id < 0 || id >= logits.length) continue;
    let v = logits[id];
    if (rep !== 1) v = v > 0 ? v / rep : v * rep;
    logits[id] = v - presence - frequency * n;
  }
}

export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, rng: Rng): number {
  const V = logits.length;
  if (opts.temperature <= 0) return argmax(logits);
  // candidates sorted by logit, descending (only as many as top-k needs)
  const k = opts.topK > 0 && opts.topK < V ? opts.topK : V;
  const ids = topIds(logits, k);
  const max = logits[ids[0]];
  const probs = new Float64Array(ids.length);
  let sum = 0;
  for (let i = 0; i < ids.length; i++) {
    probs[i] = Math.exp((logits[ids[i]] - max) / opts.temperature);
    sum += probs[i];
  }
  let keep = ids.length;
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    for (let i = 0; i < keep; i++) {
      cum += probs[i] / sum;
      if (cum >= topP) {
        keep = i + 1;
        break;
      }
    }
  }
  const minP = opts.minP ?? 0;
  if (minP > 0) {
    const floor = minP * probs[0];
    let i = 1;
    while (i < keep && probs[i] >= floor) i++;
    keep = i;
  }
  let total = 0;
  for (let i = 0; i < keep; i++) total += probs[i];
  let r = rng.uniform() * total;
  for (let i = 0; i < keep; i++) {
    r -= probs[i];
    if (r < 0) return ids[i];
  }
  return ids[keep - 1];
}

/** log-softmax of one token's logit (for per-token log-probabilities). */
export function logProb(logits: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return logits[id] - max - Math.log(sum);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Ids of the k largest values, largest first (ties: lower id first). */
function topIds(x: ArrayLike<number>, k: number): Int32Array {
  const all = Int32Array.from({ length: x.length }, (_, i) => i);
  if (k >= x.length) return all.sort((a, b) => x[b] - x[a] || a - b);
  // partial selection: keep a sorted buffer of the best k
  const best = new Int32Array(k);
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (n === k && v <= x[best[k - 1]]) continue;
    let j = n < k ? n++ : k - 1;
    while (j > 0 && x[best[j - 1]] < v) {
      best[j] = best[j - 1];
      j--;
    }
    best[j] = i;
  }
  return best;
}
