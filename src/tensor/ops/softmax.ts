/** Softmax over the last dimension. */
import { backend } from '../../backend/index.js';
import { Tensor, record } from '../tensor.js';

export function softmax(x: Tensor): Tensor {
  const be = backend();
  const dim = x.lastDim;
  const rows = x.size / dim;
  const out = Tensor.empty(x.shape);
  be.softmaxForward(x.data, out.data, rows, dim);
  return record(out, [x], () => be.softmaxBackward(out.data, out.grad!, x.ensureGrad(), rows, dim));
}
