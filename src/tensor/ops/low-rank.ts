/**
 * A low-rank update added in place: out = y + s · u · Bᵀ, written into y's buffer (out shares it).
 * This is a LoRA layer's output: y the base layer's (..., out), u = dropout(x) · Aᵀ (..., r),
 * B (out, r), s the scaling; one matrix product accumulates into y, with no (..., out) delta,
 * scaled copy or sum allocated beside it, forward or backward.
 *
 *   const y = linear(x, W, null);                        // (..., out), read by nothing else
 *   const out = addLowRank(y, linear(xd, A, null), B, s);  // y + s · (xd Aᵀ) Bᵀ
 *
 * y must be a fresh result that nothing else reads (its values change). Backward: dy = dout (the
 * same array), du += s · dout · B, dB += s · doutᵀ · u.
 */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export function addLowRank(y: Tensor, u: Tensor, B: Tensor, s: number): Tensor {
  const out = y.lastDim;
  if (B.ndim !== 2 || B.shape[0] !== out || u.lastDim !== B.shape[1] || u.size / u.lastDim !== y.size / out) {
    shapeError('addLowRank', `y ${shapeToString(y.shape)}, u ${shapeToString(u.shape)} and B ${shapeToString(B.shape)} do not fit (y (..., out), u (..., r), B (out, r))`);
  }
  const r = B.shape[1];
  const rows = y.size / out;
  const be = backend();
  // y (rows, out) += s · u (rows, r) · Bᵀ
  be.gemm({ M: rows, N: out, K: r, a: u.data, b: B.data, c: y.data, transB: true, alpha: s, beta: 1 });
  const result = new Tensor(y.data, y.shape);
  return record(result, [y, u, B], () => {
    const g = result.grad!;
    if (u.requiresGrad) be.gemm({ M: rows, N: r, K: out, a: g, b: B.data, c: u.ensureGrad(), alpha: s, beta: 1 });
    if (B.requiresGrad) be.gemm({ M: out, N: r, K: rows, a: g, b: u.data, c: B.ensureGrad(), transA: true, alpha: s, beta: 1 });
    if (y.requiresGrad) {
      if (y.grad === null) y.grad = g; // y feeds this op only: its gradient is this one
      else be.axpy(1, g, y.grad, y.size);
    }
  });
}
