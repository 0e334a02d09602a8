/**
 * Affine layer y = x W (+ bias) over the last dimension of x.
 *
 * The weight layout follows the checkpoint the parameter comes from, so no weight is ever
 * copied or transposed on load/export:
 *   'out_in' (torch.nn.Linear, Llama):   W stored (out, in), y = x · Wᵀ
 *   'in_out' (GPT-2's Conv1D):           W stored (in, out), y = x · W
 */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export type WeightLayout = 'out_in' | 'in_out';

export function linear(x: Tensor, weight: Tensor, bias: Tensor | null, layout: WeightLayout = 'out_in'): Tensor {
  const transB = layout === 'out_in';
  const inDim = transB ? weight.shape[1] : weight.shape[0];
  const outDim = transB ? weight.shape[0] : weight.shape[1];
  if (weight.ndim !== 2 || x.lastDim !== inDim) {
    shapeError('linear', `input ${shapeToString(x.shape)} does not fit weight ${shapeToString(weight.shape)} (${layout})`);
  }
  if (bias && (bias.ndim !== 1 || bias.size !== outDim)) shapeError('linear', `bias ${shapeToString(bias.shape)} should be [${outDim}]`);
  const rows = x.size / inDim;
  const out = Tensor.empty([...x.shape.slice(0, -1), outDim]);
  const be = backend();
  be.gemm({ M: rows, N: outDim, K: inDim, a: x.data, b: weight.data, c: out.data, transB });
  if (bias) be.addBias(out.data, bias.data, out.data, rows, outDim);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, inputs, () => {
    const dy = out.grad!;
    if (x.requiresGrad) {
      // dx (rows, in) += dy (rows, out) · op(W)^T
      be.gemm({ M: rows, N: inDim, K: outDim, a: dy, b: weight.data, c: x.ensureGrad(), transB: !transB, beta: 1 });
    }
    if (weight.requiresGrad) {
      if (transB) be.gemm({ M: outDim, N: inDim, K: rows, a: dy, b: x.data, c: weight.ensureGrad(), transA: true, beta: 1 });
      else be.gemm({ M: inDim, N: outDim, K: rows, a: x.data, b: dy, c: weight.ensureGrad(), transA: true, beta: 1 });
    }
    if (bias && bias.requiresGrad) be.sumRows(dy, bias.ensureGrad(), rows, outDim);
  });
}
