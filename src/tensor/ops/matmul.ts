/**
 * Matrix products.
 *
 * matmul(a, b): a (..., M, K) · b (K, N) -> (..., M, N)       (b shared by every leading index)
 *               a (..., M, K) · b (..., K, N) -> (..., M, N)  (batched, same leading dims)
 * With transA / transB the stored operand is the transpose: a (..., K, M), b (N, K).
 *
 * Backward, for C = op(A) op(B):  d op(A) = dC op(B)^T,   d op(B) = op(A)^T dC.
 */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.ndim < 2 || b.ndim < 2) shapeError('matmul', `operands need at least 2 dims, got ${shapeToString(a.shape)} and ${shapeToString(b.shape)}`);
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const Kb = transB ? bc : br;
  const N = transB ? br : bc;
  if (K !== Kb) shapeError('matmul', `inner dimensions differ: ${shapeToString(a.shape)}${transA ? 'ᵀ' : ''} · ${shapeToString(b.shape)}${transB ? 'ᵀ' : ''}`);
  const lead = a.shape.slice(0, -2);
  const batch = a.size / (ar * ac);
  let sharedB = b.ndim === 2;
  if (!sharedB) {
    const bLead = b.shape.slice(0, -2);
    if (bLead.length !== lead.length || bLead.some((d, i) => d !== lead[i])) {
      shapeError('matmul', `batch dimensions differ: ${shapeToString(a.shape)} and ${shapeToString(b.shape)}`);
    }
  }
  // A shared b with an untransposed a is one big (batch*M, K) x (K, N) product.
  const flat = sharedB && !transA;
  const out = Tensor.empty([...lead, M, N]);
  const be = backend();
  if (flat) {
    be.gemm({ M: batch * M, N, K, a: a.data, b: b.data, c: out.data, transB });
  } else {
    be.gemm({ M, N, K, a: a.data, b: b.data, c: out.data, transA, transB, batch, strideB: sharedB ? 0 : undefined });
  }
  return record(out, [a, b], () => {
    const dC = out.grad!;
    if (a.requiresGrad) {
      const dA = a.ensureGrad();
      if (flat) {
        // dA (rows, K) += dC (rows, N) · op(B)^T
        be.gemm({ M: batch * M, N: K, K: N, a: dC, b: b.data, c: dA, transB: !transB, beta: 1 });
      } else if (!transA) {
        be.gemm({ M, N: K, K: N, a: dC, b: b.data, c: dA, transB: !transB, beta: 1, batch, strideB: sharedB ? 0 : undefined });
      } else {
        // stored A is (K, M): dA += op(B) · dC^T
        be.gemm({ M: K, N: M, K: N, a: b.data, b: dC, c: dA, transA: transB, transB: true, beta: 1, batch, strideA: sharedB ? 0 : undefined });
      }
    }
    if (b.requiresGrad) {
      const dB = b.ensureGrad();
      if (flat) {
        if (!transB) be.gemm({ M: K, N, K: batch * M, a: a.data, b: dC, c: dB, transA: true, beta: 1 });
        else be.gemm({ M: N, N: K, K: batch * M, a: dC, b: a.data, c: dB, transA: true, beta: 1 });
      } else {
        // per batch item; a shared b sums the contributions of every item
        for (let i = 0; i < batch; i++) {
          const aOffset = i * M * K;
          const cOffset = i * M * N;
          const bOffset = sharedB ? 0 : i * K * N;
          if (!transB) {
            be.gemm({ M: K, N, K: M, a: a.data, b: dC, c: dB, transA: !transA, beta: 1, aOffset, bOffset: cOffset, cOffset: bOffset });
          } else {
            be.gemm({ M: N, N: K, K: M, a: dC, b: a.data, c: dB, transA: true, transB: transA, beta: 1, aOffset: cOffset, bOffset: aOffset, cOffset: bOffset });
          }
        }
      }
    }
  });
}
