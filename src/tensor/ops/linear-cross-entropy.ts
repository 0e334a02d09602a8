/**
 * The LM head and its cross-entropy in one op, over chunks of rows: the (rows, V) logits matrix
 * is never materialised, only one chunk of it at a time, and each chunk's gradient is taken in
 * the same pass (the loss is the graph's end, so its gradient is known up to the upstream factor).
 *
 *   loss = reduction over rows r of CE(h_r · Wᵀ, targets_r)        h: (..., C)   W: (V, C) ('out_in')
 *
 * Per chunk of R rows: logits (R, V) = h_c Wᵀ; losses and, when a gradient is wanted, the logits
 * overwritten by (softmax - onehot) / divisor (Backend.crossEntropyFused); then dh_c = G W and
 * dW += Gᵀ h_c. The backward only scales dh and dW by the upstream gradient into h.grad and
 * W.grad. A V = 32000 head at 1024 rows keeps 33 MB of logits instead of 131 MB twice (logits
 * and their gradient), and each chunk's softmax reads logits still in cache.
 *
 * Same values as crossEntropy(linear(h, W), targets): the logits are the same dot products and
 * the per-row losses the same kernel; only dW sums its chunks in another order.
 */
import { allocFloatsUninit } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, isGradEnabled, record, shapeError, shapeToString } from '../tensor.js';
import { IGNORE_INDEX, type CrossEntropyReduction } from './cross-entropy.js';

export interface LinearCrossEntropyOptions {
  ignoreIndex?: number;
  /** 'mean' (default: over the rows that count) or 'sum' */
  reduction?: Exclude<CrossEntropyReduction, 'none'>;
  /** rows per chunk (default: as many as keep a chunk's logits near 8M floats, at least 16) */
  chunkRows?: number;
}

/** floats of logits per chunk by default (32 MB) */
const CHUNK_FLOATS = 8 << 20;

export function linearCrossEntropy(h: Tensor, weight: Tensor, targets: Int32Array, opts: LinearCrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum') shapeError('linearCrossEntropy', `reduction must be 'mean' or 'sum', not ${JSON.stringify(reduction)}`);
  if (weight.ndim !== 2 || h.ndim === 0 || h.lastDim !== weight.shape[1]) {
    shapeError('linearCrossEntropy', `hidden ${shapeToString(h.shape)} does not fit weight ${shapeToString(weight.shape)} (out_in)`);
  }
  const [V, C] = weight.shape;
  const rows = h.size / C;
  if (targets.length !== rows) shapeError('linearCrossEntropy', `${targets.length} targets for ${rows} rows`);
  let count = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    if (t < 0 || t >= V || !Number.isInteger(t)) shapeError('linearCrossEntropy', `target ${t} at row ${r} is outside [0, ${V})`);
    count++;
  }
  const divisor = reduction === 'mean' ? count : 1;
  const wantGrad = isGradEnabled() && (h.requiresGrad || weight.requiresGrad) && count > 0;
  const R = Math.max(1, Math.min(rows, opts.chunkRows ?? Math.max(16, Math.floor(CHUNK_FLOATS / V))));
  const be = backend();
  const logits = allocFloatsUninit(R * V); // (R, V), one chunk
  const losses = allocFloatsUninit(R);
  const dh = wantGrad && h.requiresGrad ? allocFloatsUninit(rows * C) : null; // (rows, C)
  const dw = wantGrad && weight.requiresGrad ? allocFloatsUninit(V * C) : null; // (V, C), written by the first chunk
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += R) {
    const r = Math.min(R, rows - r0);
    const chunkTargets = targets.subarray(r0, r0 + r);
    // logits (r, V) = h[r0 : r0+r] (r, C) · Wᵀ
    be.gemm({ M: r, N: V, K: C, a: h.data, aOffset: r0 * C, b: weight.data, c: logits, transB: true });
    if (wantGrad) be.crossEntropyFused(logits, chunkTargets, losses, r, V, ignoreIndex, 1 / divisor);
    else be.crossEntropyForward(logits, chunkTargets, losses, r, V, ignoreIndex);
    for (let i = 0; i < r; i++) total += losses[i];
    if (!wantGrad) continue;
    // dh (r, C) = G (r, V) · W (V, C);  dW (V, C) += Gᵀ (V, r) · h_c (r, C)
    if (dh) be.gemm({ M: r, N: C, K: V, a: logits, b: weight.data, c: dh, cOffset: r0 * C });
    if (dw) be.gemm({ M: V, N: C, K: r, a: logits, b: h.data, bOffset: r0 * C, c: dw, transA: true, beta: r0 === 0 ? 0 : 1 });
  }
  const out = Tensor.fromArray([count > 0 ? total / divisor : 0], []);
  if (!wantGrad) return out;
  return record(out, [h, weight], () => {
    const upstream = out.grad![0];
    if (dh) {
      const g = h.gradToWrite();
      if (g.fresh) be.scale(upstream, dh, g.grad, rows * C);
      else be.axpy(upstream, dh, g.grad, rows * C);
    }
    if (dw) {
      const g = weight.gradToWrite();
      if (g.fresh) be.scale(upstream, dw, g.grad, V * C);
      else be.axpy(upstream, dw, g.grad, V * C);
    }
  });
}
