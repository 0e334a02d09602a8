/**
 * Fused cross-entropy from logits: loss_r = logsumexp(logits_r) - logits_r[target_r].
 *
 *   logits: (..., V)   targets: Int32Array with one id per row
 *   reduction 'mean' (default) -> scalar, mean over the rows whose target is not ignoreIndex
 *   reduction 'sum'            -> scalar, sum over those rows
 *   reduction 'none'           -> (...), one loss per row, 0 at ignored rows (per-token losses)
 *
 * ignoreIndex (default -100, as PyTorch and Hugging Face) masks rows out, e.g. the prompt
 * tokens in instruction tuning. With no counted rows 'mean' and 'sum' give 0. As in PyTorch,
 * 'none' keeps the leading dimensions: logits (B, T, V) give losses (B, T).
 */
import { allocFloats } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeSize } from '../tensor.js';

export const IGNORE_INDEX = -100;

export type CrossEntropyReduction = 'mean' | 'sum' | 'none';

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  /** 'mean' (default), 'sum' or 'none' */
  reduction?: CrossEntropyReduction;
}

export function crossEntropy(logits: Tensor, targets: Int32Array, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
  const reduction = opts.reduction ?? 'mean';
  if (reduction === 'none') return perRowCrossEntropy('crossEntropy', logits, targets, ignoreIndex, 1);
  if (reduction !== 'mean' && reduction !== 'sum') {
    shapeError('crossEntropy', `reduction must be 'mean', 'sum' or 'none', not ${JSON.stringify(reduction)}`);
  }
  const { rows, V } = checkTargets('crossEntropy', logits, targets, ignoreIndex);
  const be = backend();
  const losses = allocFloats(rows);
  const count = be.crossEntropyForward(logits.data, targets, losses, rows, V, ignoreIndex);
  let total = 0;
  for (let r = 0; r < rows; r++) total += losses[r];
  const divisor = reduction === 'mean' ? count : 1;
  const out = Tensor.fromArray([count > 0 ? total / divisor : 0], []);
  return record(out, [logits], () => {
    if (count === 0) return;
    be.crossEntropyBackward(logits.data, targets, logits.ensureGrad(), rows, V, ignoreIndex, out.grad![0] / divisor);
  });
}

/**
 * sign * cross-entropy of every row, shape logits.shape minus the last dimension, 0 at ignored
 * rows: sign 1 is crossEntropy's 'none', sign -1 is logSoftmaxGather (log p(target)). One fused
 * kernel call each way; the backward scales row r by its upstream gradient and skips rows whose
 * gradient is 0.
 */
export function perRowCrossEntropy(
  op: string, logits: Tensor, targets: Int32Array, ignoreIndex: number, sign: 1 | -1,
): Tensor {
  const { rows, V } = checkTargets(op, logits, targets, ignoreIndex);
  const be = backend();
  const losses = allocFloats(rows);
  be.crossEntropyForward(logits.data, targets, losses, rows, V, ignoreIndex);
  // 0 - loss keeps ignored rows at +0 rather than -0
  if (sign === -1) for (let r = 0; r < rows; r++) losses[r] = 0 - losses[r];
  const out = new Tensor(losses, logits.shape.slice(0, -1)); // (...)
  return record(out, [logits], () => {
    be.crossEntropyBackward(logits.data, targets, logits.ensureGrad(), rows, V, ignoreIndex, sign, out.grad!);
  });
}

/** rows and V of logits (..., V); every target is ignoreIndex or a class in [0, V). */
function checkTargets(
  op: string, logits: Tensor, targets: Int32Array, ignoreIndex: number,
): { rows: number; V: number } {
  if (logits.ndim === 0) shapeError(op, 'logits must have a class dimension, got a scalar');
  const V = logits.lastDim;
  const rows = shapeSize(logits.shape.slice(0, -1));
  if (targets.length !== rows) shapeError(op, `${targets.length} targets for ${rows} rows of logits`);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t !== ignoreIndex && (t < 0 || t >= V)) shapeError(op, `target ${t} at row ${r} is outside [0, ${V})`);
  }
  return { rows, V };
}
