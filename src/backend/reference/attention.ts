/**
 * Reference fused causal self-attention with grouped-query heads.
 *
 * Layouts (no transposes needed after the q/k/v projections):
 *   q, out: (B, T, nHead * hs)     k, v: (B, T, nKvHead * hs)     lse: (B, nHead, T)
 * Query head h reads key/value head floor(h / (nHead / nKvHead)).
 *
 * Forward, per query row t:  s_j = scale * q_t·k_j (j <= t),  p = softmax(s),  out_t = sum_j p_j v_j,
 * and lse_t = log(sum_j exp(s_j)) is saved. Backward recomputes p_j = exp(s_j - lse_t), so the
 * T x T probability matrix is never stored:
 *   dv_j += p_j dout_t;   dp_j = dout_t·v_j;   ds_j = p_j (dp_j - dout_t·out_t)
 *   dq_t += scale * sum_j ds_j k_j;   dk_j += scale * ds_j q_t
 *
 * Packed rows (s.segmentStart): query t of row b sees keys j = segmentStart[b*T+t] .. t only,
 * so examples sharing a row never attend to each other; every sum above runs over those j.
 */
import type { AttentionShape } from '../backend.js';

/** First key each query of row b may see: segmentStart[b*T+t] (checked: 0 <= it <= t), or 0. */
export function firstKey(s: AttentionShape, b: number, t: number): number {
  const seg = s.segmentStart;
  if (!seg) return 0;
  const j0 = seg[b * s.T + t];
  if (!(j0 >= 0 && j0 <= t)) throw new RangeError(`attention: segmentStart[${b * s.T + t}] = ${j0} must lie in [0, ${t}] (the token's own position in its row)`);
  return j0;
}

/** segmentStart must hold one entry per token when given. */
function checkSegments(s: AttentionShape): void {
  if (s.segmentStart && s.segmentStart.length < s.B * s.T) {
    throw new RangeError(`attention: segmentStart holds ${s.segmentStart.length} entries, ${s.B * s.T} (B*T) needed`);
  }
}

export function attentionForward(
  q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, s: AttentionShape,
): void {
  const { B, T, nHead, nKvHead, headDim: hs, scale } = s;
  const group = nHead / nKvHead;
  const qRow = nHead * hs;
  const kvRow = nKvHead * hs;
  const scores = new Float64Array(T);
  checkSegments(s);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      const kvOff = (h / group | 0) * hs;
      for (let t = 0; t < T; t++) {
        const qo = (b * T + t) * qRow + h * hs;
        const j0 = firstKey(s, b, t);
        let max = -Infinity;
        for (let j = j0; j <= t; j++) {
          const ko = (b * T + j) * kvRow + kvOff;
          let dot = 0;
          for (let d = 0; d < hs; d++) dot += q[qo + d] * k[ko + d];
          dot *= scale;
          scores[j] = dot;
          if (dot > max) max = dot;
        }
        let sum = 0;
        for (let j = j0; j <= t; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        const inv = 1 / sum;
        for (let d = 0; d < hs; d++) out[qo + d] = 0;
        const acc = new Float64Array(hs);
        for (let j = j0; j <= t; j++) {
          const p = scores[j] * inv;
          const vo = (b * T + j) * kvRow + kvOff;
          for (let d = 0; d < hs; d++) acc[d] += p * v[vo + d];
        }
        for (let d = 0; d < hs; d++) out[qo + d] = acc[d];
        lse[(b * nHead + h) * T + t] = max + Math.log(sum);
      }
    }
  }
}

export function attentionBackward(
  q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, dout: Float32Array,
  dq: Float32Array | null, dk: Float32Array | null, dv: Float32Array | null, s: AttentionShape,
): void {
  const { B, T, nHead, nKvHead, headDim: hs, scale } = s;
  const group = nHead / nKvHead;
  const qRow = nHead * hs;
  const kvRow = nKvHead * hs;
  const dqAcc = new Float64Array(hs);
  checkSegments(s);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      const kvOff = (h / group | 0) * hs;
      for (let t = 0; t < T; t++) {
        const qo = (b * T + t) * qRow + h * hs;
        const l = lse[(b * nHead + h) * T + t];
        let D = 0;
        for (let d = 0; d < hs; d++) D += dout[qo + d] * out[qo + d];
        dqAcc.fill(0);
        for (let j = firstKey(s, b, t); j <= t; j++) {
          const ko = (b * T + j) * kvRow + kvOff;
          let dot = 0;
          let dp = 0;
          for (let d = 0; d < hs; d++) {
            dot += q[qo + d] * k[ko + d];
            dp += dout[qo + d] * v[ko + d];
          }
          const p = Math.exp(dot * scale - l);
          const ds = p * (dp - D) * scale;
          if (dv) for (let d = 0; d < hs; d++) dv[ko + d] += p * dout[qo + d];
          if (dk) for (let d = 0; d < hs; d++) dk[ko + d] += ds * q[qo + d];
          for (let d = 0; d < hs; d++) dqAcc[d] += ds * k[ko + d];
        }
        if (dq) for (let d = 0; d < hs; d++) dq[qo + d] += dqAcc[d];
      }
    }
  }
}
