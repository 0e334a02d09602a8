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
import { backend } from '../backend/index.js';
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
  const x = asFloat32(logits);
  const V = x.length;
  const be = backend();
  if (opts.temperature <= 0) return be.argmax(x, V);
  const topP = opts.topP ?? 1;
  const minP = opts.minP ?? 0;
  const k = opts.topK > 0 && opts.topK < V ? opts.topK : V;
  // plain temperature sampling needs no ordering: one native pass over the vocabulary
  if (k === V && topP >= 1 && minP <= 0) return be.sampleSoftmax(x, V, 1 / opts.temperature, rng.uniform());
  // candidates sorted by logit, descending, and the normaliser of their probabilities
  const { ids, total: sum } = k < V ? topCandidates(x, k, opts.temperature) : nucleusCandidates(x, opts.temperature, topP, minP);
  const max = x[ids[0]];
  const probs = new Float64Array(ids.length);
  for (let i = 0; i < ids.length; i++) probs[i] = Math.exp((x[ids[i]] - max) / opts.temperature);
  let keep = ids.length;
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

/** top-k: the k best ids (native selection) and the sum of their exp((x - max) / T) */
function topCandidates(x: Float32Array, k: number, temperature: number): { ids: Int32Array; total: number } {
  const ids = new Int32Array(k);
  backend().topK(x, x.length, k, ids);
  const max = x[ids[0]];
  let total = 0;
  for (let i = 0; i < k; i++) total += Math.exp((x[ids[i]] - max) / temperature);
  return { ids, total };
}

/** x / T for nucleusCandidates, reused across tokens (one vocabulary row, grown on demand) */
let scratch = new Float32Array(0);

/**
 * No top-k: every token is a candidate, normalised over the whole vocabulary, but only those that
 * can survive top-p / min-p are sorted. A token with p < (1 - topP) / (V - 1) is never in the
 * nucleus (all such tokens together hold less than 1 - topP), and one with p < minP x p_max never
 * passes min-p; the rest are few.
 */
function nucleusCandidates(x: Float32Array, temperature: number, topP: number, minP: number): { ids: Int32Array; total: number } {
  const V = x.length;
  const be = backend();
  if (scratch.length < V) scratch = new Float32Array(V);
  const scaled = scratch.subarray(0, V);
  for (let i = 0; i < V; i++) scaled[i] = x[i] / temperature;
  const top = be.argmax(x, V);
  const logTotal = be.logSumExp(scaled, V) - scaled[top]; // log of sum(exp((x - max) / T))
  // keep p_i >= floor, i.e. (x_i - max) / T >= log(floor) + logTotal, with p relative to the top token
  let logFloor = -Infinity;
  if (topP < 1 && V > 1) logFloor = Math.log((1 - topP) / (V - 1)) + logTotal;
  if (minP > 0) logFloor = Math.max(logFloor, Math.log(minP));
  const cut = scaled[top] + logFloor - 1e-6;
  const kept: number[] = [];
  for (let i = 0; i < V; i++) if (scaled[i] >= cut) kept.push(i);
  kept.sort((a, b) => (x[a] > x[b] ? -1 : x[a] < x[b] ? 1 : a - b));
  return { ids: Int32Array.from(kept), total: Math.exp(logTotal) };
}

/** log-softmax of one token's logit (for per-token log-probabilities). */
export function logProb(logits: ArrayLike<number>, id: number): number {
  const x = asFloat32(logits);
  return x[id] - backend().logSumExp(x, x.length);
}

export function argmax(x: ArrayLike<number>): number {
  const f = asFloat32(x);
  return backend().argmax(f, f.length);
}

function asFloat32(x: ArrayLike<number>): Float32Array {
  return x instanceof Float32Array ? x : Float32Array.from(x);
}
