/**
 * Causal self-attention as ONE op: scaled dot product, causal mask, softmax and the
 * weighted sum of values, with grouped-query heads.
 *
 *   q: (B, T, nHead*hs)   k, v: (B, T, nKvHead*hs)   ->   (B, T, nHead*hs)
 *
 * Only the per-row log-sum-exp (B, nHead, T) is kept for the backward pass; the T x T
 * attention matrix is recomputed there (see backend/reference/attention.ts).
 *
 * Packed rows: with segmentStart (B*T, the row position where each token's example starts), a
 * token attends to its own example's earlier tokens only (AttentionShape.segmentStart).
 */
import { allocFloats } from '../storage.js';
import { backend } from '../../backend/index.js';
import type { AttentionShape } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export interface AttentionOptions {
  nHead: number;
  /** defaults to nHead (multi-head attention) */
  nKvHead?: number;
  /** defaults to 1/sqrt(headDim) */
  scale?: number;
  /** packed rows: (B*T) first key position of each token, 0 <= segmentStart[b*T+t] <= t; null: causal */
  segmentStart?: Int32Array | null;
}

export function causalSelfAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  const nHead = opts.nHead;
  const nKvHead = opts.nKvHead ?? nHead;
  if (q.ndim !== 3 || k.ndim !== 3 || v.ndim !== 3) {
    shapeError('attention', `q, k, v must be (B, T, heads*hs); got ${shapeToString(q.shape)}, ${shapeToString(k.shape)}, ${shapeToString(v.shape)}`);
  }
  const [B, T, qDim] = q.shape;
  const headDim = qDim / nHead;
  if (!Number.isInteger(headDim) || nHead % nKvHead !== 0) {
    shapeError('attention', `q width ${qDim} with ${nHead} heads and ${nKvHead} kv heads is not a valid head layout`);
  }
  const kvShape = [B, T, nKvHead * headDim];
  if (k.shape.some((d, i) => d !== kvShape[i]) || v.shape.some((d, i) => d !== kvShape[i])) {
    shapeError('attention', `k and v must be ${shapeToString(kvShape)}; got ${shapeToString(k.shape)}, ${shapeToString(v.shape)}`);
  }
  const s: AttentionShape = { B, T, nHead, nKvHead, headDim, scale: opts.scale ?? 1 / Math.sqrt(headDim) };
  if (opts.segmentStart) {
    if (opts.segmentStart.length !== B * T) shapeError('attention', `segmentStart holds ${opts.segmentStart.length} entries, the batch has ${B * T} tokens`);
    s.segmentStart = opts.segmentStart;
  }
  const be = backend();
  const out = Tensor.empty(q.shape);
  const lse = allocFloats(B * nHead * T);
  be.attentionForward(q.data, k.data, v.data, out.data, lse, s);
  return record(out, [q, k, v], () => {
    be.attentionBackward(
      q.data, k.data, v.data, out.data, lse, out.grad!,
      q.requiresGrad ? q.ensureGrad() : null,
      k.requiresGrad ? k.ensureGrad() : null,
      v.requiresGrad ? v.ensureGrad() : null,
      s,
    );
  });
}
