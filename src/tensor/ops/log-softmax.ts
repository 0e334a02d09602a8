/**
 * Log-probabilities from logits, over the last dimension.
 *
 *   logSoftmax(x)                       x: (..., V)  -> (..., V)   x - logsumexp(x)
 *   logSoftmaxGather(logits, targets)   logits: (..., V), one target per row -> (...)
 *                                       log p(target_r) = logits_r[target_r] - logsumexp(logits_r)
 *
 * logSoftmaxGather is what sequence log-probabilities (DPO, PPO ratios, KL to a reference) are
 * made of: it is the negative of crossEntropy(..., { reduction: 'none' }) and runs the same fused
 * kernels, so the (rows, V) log-softmax is never materialised. Rows whose target is ignoreIndex
 * (default -100) give 0 and receive no gradient, so summing a row range gives the log-probability
 * of the tokens that count:
 *
 *   const logp = logSoftmaxGather(logits, targets);   // (B, T)
 *   const seqLogp = sum(logp, [1]);                    // (B,)  log p(response | prompt)
 */
import { allocFloatsUninit } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError } from '../tensor.js';
import { IGNORE_INDEX, perRowCrossEntropy } from './cross-entropy.js';

export interface LogSoftmaxGatherOptions {
  ignoreIndex?: number;
}

/** log p(target) per row of logits (..., V) -> (...); 0 at rows whose target is ignoreIndex. */
export function logSoftmaxGather(logits: Tensor, targets: Int32Array, opts: LogSoftmaxGatherOptions = {}): Tensor {
  return perRowCrossEntropy('logSoftmaxGather', logits, targets, opts.ignoreIndex ?? IGNORE_INDEX, -1);
}

/**
 * Log-softmax over the last dimension, x - logsumexp(x) (the log-sum-exp taken after
 * subtracting the row maximum, so large logits do not overflow). -Infinity entries give
 * -Infinity; a row holding NaN or +Infinity, or only -Infinity, gives NaN throughout, as in
 * PyTorch. Backward: dx = dy - softmax(x) * sum(dy).
 */
export function logSoftmax(x: Tensor): Tensor {
  if (x.ndim === 0) shapeError('logSoftmax', 'needs at least one dimension, got a scalar');
  const be = backend();
  const V = x.lastDim;
  const rows = V === 0 ? 0 : x.size / V;
  const out = Tensor.empty(x.shape);
  const xs = x.data, o = out.data;
  for (let r = 0; r < rows; r++) {
    const base = r * V;
    const lse = be.logSumExp(xs.subarray(base, base + V), V);
    // a row holding +Infinity or NaN, or only -Infinity, has no log-softmax: NaN, as in PyTorch
    const shift = Number.isFinite(lse) ? lse : NaN;
    for (let j = 0; j < V; j++) o[base + j] = xs[base + j] - shift;
  }
  return record(out, [x], () => {
    const g = out.grad!;
    const gx = x.ensureGrad();
    // dx = dy - p * sum(dy) with p = softmax(x) from the backend kernel, one row at a time
    const p = allocFloatsUninit(x.size);
    be.softmaxForward(xs, p, rows, V);
    be.axpy(1, g, gx, x.size);
    for (let r = 0; r < rows; r++) {
      const base = r * V;
      let gsum = 0;
      for (let j = 0; j < V; j++) gsum += g[base + j];
      be.axpy(-gsum, p.subarray(base, base + V), gx.subarray(base, base + V), V);
    }
  });
}
