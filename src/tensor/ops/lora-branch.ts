/**
 * A LoRA branch added to a base layer's output, fused (Hu et al. 2021; PEFT's lora.Linear):
 *
 *   out = y + scaling · (drop(x) · Aᵀ) · Bᵀ        x (..., in), A (r, in), B (out, r), y (..., out)
 *
 * Written as separate ops, the branch keeps for the backward pass, per adapted layer, drop(x) and
 * its float mask (rows x in each), then x Aᵀ Bᵀ, its scaled copy and the sum (rows x out each),
 * and their gradients: more than the base layer's own activations (LoRA on every projection of a
 * 110M Llama then needed more memory than full fine-tuning). Here the branch keeps only
 * h = drop(x) · Aᵀ (rows x r) and the dropout mask as bits: drop(x) is formed CHUNK rows at a time in
 * a scratch buffer, and h · Bᵀ is added into y's buffer, which the result takes over (y must be a
 * fresh output that nothing else reads: the base layer's), its gradient passed to y as it is.
 *
 * Dropout draws its mask as dropout() does (rng.uniform() per element, in element order), so the
 * result equals the separate ops' up to float rounding.
 *
 *   backward:  dB += s · doutᵀ h      dh = s · dout · B
 *              dA += dhᵀ · drop(x)    dx += drop'(dh · A)      dy = dout
 */
import { backend } from '../../backend/index.js';
import type { Rng } from '../../util/rng.js';
import { allocFloats } from '../storage.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

/** rows of drop(x) formed at a time */
const CHUNK = 64;

let scratch = new Float32Array(0);

/** A scratch buffer of n floats of x's kind (float64 storage in gradient checks). */
function scratchFor(x: Float32Array, n: number): Float32Array {
  if (!(x instanceof Float32Array)) return new Float64Array(n) as unknown as Float32Array;
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch;
}

export interface LoraDropout {
  /** probability of zeroing an input element, in (0, 1) */
  p: number;
  rng: Rng;
}

export function loraBranch(y: Tensor, x: Tensor, A: Tensor, B: Tensor, scaling: number, drop: LoraDropout | null): Tensor {
  const inDim = x.lastDim;
  const [r, aIn] = A.shape;
  const [outDim, bR] = B.shape;
  if (A.ndim !== 2 || B.ndim !== 2 || aIn !== inDim || bR !== r || y.lastDim !== outDim || y.size / outDim !== x.size / inDim) {
    shapeError('loraBranch', `x ${shapeToString(x.shape)}, A ${shapeToString(A.shape)}, B ${shapeToString(B.shape)} and y ${shapeToString(y.shape)} do not fit`);
  }
  if (drop && !(drop.p > 0 && drop.p < 1)) shapeError('loraBranch', `dropout probability ${drop.p} must be in (0, 1)`);
  const rows = x.size / inDim;
  const be = backend();
  const h = allocFloats(rows * r); // (rows, r)
  let bits: Uint8Array | null = null;
  const keep = drop ? 1 / (1 - drop.p) : 1;
  if (!drop) {
    be.gemm({ M: rows, N: r, K: inDim, a: x.data, b: A.data, c: h, transB: true });
  } else {
    bits = new Uint8Array(Math.ceil((rows * inDim) / 8));
    const xd = scratchFor(x.data, CHUNK * inDim);
    for (let r0 = 0; r0 < rows; r0 += CHUNK) {
      const n = Math.min(CHUNK, rows - r0);
      const base = r0 * inDim;
      for (let i = 0; i < n * inDim; i++) {
        const kept = !(drop.rng.uniform() < drop.p);
        if (kept) bits[(base + i) >> 3] |= 1 << ((base + i) & 7);
        xd[i] = kept ? x.data[base + i] * keep : 0;
      }
      be.gemm({ M: n, N: r, K: inDim, a: xd, b: A.data, c: h, cOffset: r0 * r, transB: true });
    }
  }
  be.gemm({ M: rows, N: outDim, K: r, a: h, b: B.data, c: y.data, transB: true, alpha: scaling, beta: 1 }); // y += s · h Bᵀ
  const out = new Tensor(y.data, y.shape);

  /** drop(x) rows r0 .. r0+n into dst (n x in) */
  const dropped = (r0: number, n: number, dst: Float32Array): void => {
    const base = r0 * inDim;
    for (let i = 0; i < n * inDim; i++) dst[i] = (bits![(base + i) >> 3] >> ((base + i) & 7)) & 1 ? x.data[base + i] * keep : 0;
  };

  return record(out, [y, x, A, B], () => {
    const g = out.grad!; // (rows, out)
    if (y.requiresGrad) {
      if (y.grad === null) y.grad = g; // y's only reader is this op: its gradient is dout
      else be.add(y.grad, g, y.grad, g.length);
    }
    if (B.requiresGrad) be.gemm({ M: outDim, N: r, K: rows, a: g, b: h, c: B.ensureGrad(), transA: true, alpha: scaling, beta: 1 });
    if (!A.requiresGrad && !x.requiresGrad) return;
    const dh = allocFloats(rows * r);
    be.gemm({ M: rows, N: r, K: outDim, a: g, b: B.data, c: dh, alpha: scaling }); // (rows, r)
    if (!bits) {
      if (A.requiresGrad) be.gemm({ M: r, N: inDim, K: rows, a: dh, b: x.data, c: A.ensureGrad(), transA: true, beta: 1 });
      if (x.requiresGrad) be.gemm({ M: rows, N: inDim, K: r, a: dh, b: A.data, c: x.ensureGrad(), beta: 1 });
      return;
    }
    const tmp = scratchFor(x.data, CHUNK * inDim);
    const gA = A.requiresGrad ? A.ensureGrad() : null;
    const gx = x.requiresGrad ? x.ensureGrad() : null;
    for (let r0 = 0; r0 < rows; r0 += CHUNK) {
      const n = Math.min(CHUNK, rows - r0);
      if (gA) {
        dropped(r0, n, tmp);
        be.gemm({ M: r, N: inDim, K: n, a: dh, aOffset: r0 * r, b: tmp, c: gA, transA: true, beta: 1 });
      }
      if (gx) {
        be.gemm({ M: n, N: inDim, K: r, a: dh, aOffset: r0 * r, b: A.data, c: tmp }); // (n, in)
        const base = r0 * inDim;
        for (let i = 0; i < n * inDim; i++) if ((bits[(base + i) >> 3] >> ((base + i) & 7)) & 1) gx[base + i] += tmp[i] * keep;
      }
    }
  });
}
