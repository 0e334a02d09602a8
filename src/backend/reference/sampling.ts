/**
 * Sampling kernels over one vocabulary of logits (see Backend): argmax, log-sum-exp, top-k
 * selection and a sort-free softmax draw. Readable reference versions of native/sampling.c.
 *
 *   argmax([1, 3, 3, 2], 4)                 -> 1   (first of the equal maxima)
 *   topK([1, 3, 3, 2], 4, 3, ids)           -> ids = [1, 2, 3]
 *   sampleSoftmax([0, 0], 2, 1, 0.7)        -> 1   (cumulative 0.5, 1.0; 0.7 falls in the second)
 */
import { LlmError } from '../../util/errors.js';

export function argmax(x: Float32Array, n: number): number {
  if (n === 0) return -1;
  let best = 0;
  for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i;
  return best;
}

export function logSumExp(x: Float32Array, n: number): number {
  if (n === 0) return -Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[i] > max) max = x[i];
  if (!Number.isFinite(max)) return max;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(x[i] - max);
  return max + Math.log(sum);
}

export function topK(x: Float32Array, n: number, k: number, ids: Int32Array): void {
  if (k > n) throw new LlmError(`topK: k = ${k} exceeds n = ${n}`);
  if (k === 0) return;
  if (k > 256) {
    const all = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => (x[a] > x[b] ? -1 : x[a] < x[b] ? 1 : a - b));
    ids.set(all.subarray(0, k));
    return;
  }
  // a sorted buffer of the best k so far: after the first k, most values fail the threshold test
  let have = 0;
  for (let i = 0; i < n; i++) {
    const v = x[i];
    if (have === k && !(v > x[ids[k - 1]])) continue;
    let j = have < k ? have++ : k - 1;
    while (j > 0 && x[ids[j - 1]] < v) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = i;
  }
}

export function sampleSoftmax(x: Float32Array, n: number, invTemperature: number, u: number): number {
  if (n === 0) return -1;
  if (!(invTemperature > 0) || !(u >= 0 && u < 1)) throw new LlmError(`sampleSoftmax: needs invTemperature > 0 and 0 <= u < 1 (got ${invTemperature}, ${u})`);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, x[i] * invTemperature);
  if (!Number.isFinite(max)) return argmax(x, n);
  const p = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) total += p[i] = Math.exp(x[i] * invTemperature - max);
  const target = u * total;
  let cum = 0;
  let last = 0;
  for (let i = 0; i < n; i++) {
    if (p[i] <= 0) continue;
    cum += p[i];
    last = i;
    if (target < cum) return i;
  }
  return last;
}
