/**
 * Fused cross-entropy from logits, mean over the rows whose target is not ignoreIndex.
 *
 *   logits: (..., V)   targets: Int32Array with one id per row   -> scalar
 *
 * ignoreIndex (default -100, as PyTorch and Hugging Face) masks rows out, e.g. the prompt
 * tokens in instruction tuning. With no counted rows the loss is 0.
 */
import { allocFloats } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError } from '../tensor.js';

export const IGNORE_INDEX = -100;

export interface CrossEntropyOptions {
  ignoreIndex?: number;
}

export function crossEntropy(logits: Tensor, targets: Int32Array, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
  const V = logits.lastDim;
  const rows = logits.size / V;
  if (targets.length !== rows) shapeError('crossEntropy', `${targets.length} targets for ${rows} rows of logits`);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t !== ignoreIndex && (t < 0 || t >= V)) shapeError('crossEntropy', `target ${t} at row ${r} is outside [0, ${V})`);
  }
  const be = backend();
  const losses = allocFloats(rows);
  const count = be.crossEntropyForward(logits.data, targets, losses, rows, V, ignoreIndex);
  let total = 0;
  for (let r = 0; r < rows; r++) total += losses[r];
  const out = Tensor.fromArray([count > 0 ? total / count : 0], []);
  return record(out, [logits], () => {
    if (count === 0) return;
    be.crossEntropyBackward(logits.data, targets, logits.ensureGrad(), rows, V, ignoreIndex, out.grad![0] / count);
  });
}
