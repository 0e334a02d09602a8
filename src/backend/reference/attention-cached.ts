/**
 * Reference attention of new queries over a KV cache (inference; no backward).
 *
 *   q, out: (Tq, nHead*hs), rows for positions pos..pos+Tq-1
 *   kCache, vCache: (maxT, nKvHead*hs), rows 0..pos+Tq-1 filled
 *
 * Query row i (position pos+i) attends to cache rows 0..pos+i; query head h reads kv head
 * floor(h / (nHead / nKvHead)). Scores and sums in float64.
 */
import type { CachedAttentionShape } from '../backend.js';

export function attentionCached(
  q: Float32Array, kCache: Float32Array, vCache: Float32Array, out: Float32Array, s: CachedAttentionShape,
): void {
  const { Tq, pos, nHead, nKvHead, headDim: hs, scale } = s;
  const group = nHead / nKvHead;
  const qRow = nHead * hs;
  const kvRow = nKvHead * hs;
  const scores = new Float64Array(pos + Tq);
  const acc = new Float64Array(hs);
  for (let h = 0; h < nHead; h++) {
    const kvOff = (h / group | 0) * hs;
    for (let i = 0; i < Tq; i++) {
      const qo = i * qRow + h * hs;
      const L = pos + i + 1;
      let max = -Infinity;
      for (let j = 0; j < L; j++) {
        const ko = j * kvRow + kvOff;
        let dot = 0;
        for (let d = 0; d < hs; d++) dot += q[qo + d] * kCache[ko + d];
        dot *= scale;
        scores[j] = dot;
        if (dot > max) max = dot;
      }
      let sum = 0;
      for (let j = 0; j < L; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      acc.fill(0);
      for (let j = 0; j < L; j++) {
        const p = scores[j] / sum;
        const vo = j * kvRow + kvOff;
        for (let d = 0; d < hs; d++) acc[d] += p * vCache[vo + d];
      }
      for (let d = 0; d < hs; d++) out[qo + d] = acc[d];
    }
  }
}
