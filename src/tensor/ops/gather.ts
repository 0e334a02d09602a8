/**
 * Picking elements by flat index: out[i] = x.data[index[i]], the gradient scattered back (+=, so
 * an index picked twice gets both contributions).
 *
 *   const scores = head.forward(hidden);          // (B, T)  a score per position
 *   const last = Int32Array.from([4, 9]);          // each row's last real token
 *   gather(scores, Int32Array.from([0 * T + 4, 1 * T + 9]));   // (2,)  the reward per sequence
 *
 * Reward models read their score at each sequence's last token; PPO's value model reads every
 * response position. Both are this op over the (B, T) scores.
 */
import { Tensor, record, shapeError, shapeSize } from '../tensor.js';

/** x.data at the given flat indices, in the given shape (default [index.length]). */
export function gather(x: Tensor, index: Int32Array, shape: number[] = [index.length]): Tensor {
  if (shapeSize(shape) !== index.length) shapeError('gather', `shape [${shape.join(', ')}] does not hold ${index.length} indices`);
  const out = Tensor.empty(shape);
  const xs = x.data, o = out.data;
  for (let i = 0; i < index.length; i++) {
    const j = index[i];
    if (!(j >= 0 && j < x.size)) shapeError('gather', `index ${j} at position ${i} is outside [0, ${x.size})`);
    o[i] = xs[j];
  }
  return record(out, [x], () => {
    const g = out.grad!, gx = x.ensureGrad();
    for (let i = 0; i < index.length; i++) gx[index[i]] += g[i];
  });
}
