/**
 * Affine layer y = x W (+ bias) over the last dimension of x.
 *
 * The weight layout follows the checkpoint the parameter comes from, so no weight is ever
 * copied or transposed on load/export:
 *   'out_in' (torch.nn.Linear, Llama):   W stored (out, in), y = x · Wᵀ
 *   'in_out' (GPT-2's Conv1D):           W stored (in, out), y = x · W
 *
 * Inside withMatmulDtype('bf16', ...) (precision.ts) the three products -- y, dx and dW -- take
 * bfloat16 operands with float32 sums (bf16-gemm.ts), as torch.autocast runs nn.Linear; the bias,
 * the output and every gradient stay float32.
 */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';
import { matmulDtype } from '../precision.js';
import { bf16Available, gemmBf16, type Bf16Product } from './bf16-gemm.js';

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
  // the dtype is fixed when the op runs: its backward pass multiplies the same way
  const product = matmulDtype() === 'bf16' && bf16Available() ? gemmBf16 : gemmFloat32;
  product({ M: rows, N: outDim, K: inDim, a: x.data, b: weight, c: out.data, transB });
  if (bias) be.addBias(out.data, bias.data, out.data, rows, outDim);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, inputs, () => {
    const dy = out.grad!;
    if (x.requiresGrad) {
      // dx (rows, in) += dy (rows, out) · op(W)^T  (= when dx is new: no zero fill first)
      const dx = x.gradToWrite();
      product({ M: rows, N: inDim, K: outDim, a: dy, b: weight, c: dx.grad, transB: !transB, beta: dx.fresh ? 0 : 1 });
    }
    if (weight.requiresGrad) {
      // dW += dyᵀ x (or xᵀ dy); = right after zeroGrad
      const dw = weight.gradToWrite();
      const beta = dw.fresh ? 0 : 1;
      if (transB) product({ M: outDim, N: inDim, K: rows, a: dy, b: x.data, c: dw.grad, transA: true, beta });
      else product({ M: inDim, N: outDim, K: rows, a: x.data, b: dy, c: dw.grad, transA: true, beta });
    }
    if (bias && bias.requiresGrad) be.sumRows(dy, bias.ensureGrad(), rows, outDim);
  });
}

/** The float32 product (a weight operand is its data). */
function gemmFloat32(g: Bf16Product): void {
  const data = (x: Bf16Product['a']): Float32Array => (x instanceof Tensor ? x.data : x);
  backend().gemm({ M: g.M, N: g.N, K: g.K, a: data(g.a), b: data(g.b), c: g.c, transA: g.transA, transB: g.transB, beta: g.beta ?? 0 });
}
