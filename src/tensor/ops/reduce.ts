/**
 * Reductions: sum and mean over all elements or over chosen axes.
 *
 *   sum(x)                       -> shape []   (scalar)
 *   sum(x, [1])       x: [2,3,4] -> [2, 4]
 *   mean(x, [-1], true)          -> [2, 3, 1]  (keepDims)
 */
import { Tensor, record, shapeError, shapeSize } from '../tensor.js';
import { broadcastIndex } from './broadcast.js';

export function sum(x: Tensor, axes?: number[], keepDims = false): Tensor {
  return reduce(x, axes, keepDims, false);
}

export function mean(x: Tensor, axes?: number[], keepDims = false): Tensor {
  return reduce(x, axes, keepDims, true);
}

function reduce(x: Tensor, axes: number[] | undefined, keepDims: boolean, average: boolean): Tensor {
  const nd = x.ndim;
  const axisSet = new Set((axes ?? x.shape.map((_, i) => i)).map((a) => {
    const ax = a < 0 ? a + nd : a;
    if (ax < 0 || ax >= nd) shapeError('sum/mean', `axis ${a} out of range for ${nd} dims`);
    return ax;
  }));
  const kept = x.shape.map((d, i) => (axisSet.has(i) ? 1 : d));
  const outShape = keepDims ? kept : x.shape.filter((_, i) => !axisSet.has(i));
  const count = x.size / shapeSize(kept);
  const factor = average ? 1 / count : 1;
  // index[i] = output element that input element i contributes to
  const index = broadcastIndex(x.shape, kept);
  const acc = new Float64Array(shapeSize(kept));
  for (let i = 0; i < x.size; i++) acc[index[i]] += x.data[i];
  const out = Tensor.zeros(outShape);
  for (let i = 0; i < acc.length; i++) out.data[i] = acc[i] * factor;
  return record(out, [x], () => {
    const g = out.grad!;
    const gx = x.ensureGrad();
    for (let i = 0; i < x.size; i++) gx[i] += g[index[i]] * factor;
  });
}
