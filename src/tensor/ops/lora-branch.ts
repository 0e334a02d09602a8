/**
 * A LoRA branch added to a base layer's output, fused (Hu et al. 2021; PEFT's lora.Linear):
 *
 *   out = y + scaling · (drop(x) · Aᵀ) · Bᵀ        x (..., in), A (r, in), B (out, r), y (..., out)
 *
 * Written as separate ops, the branch keeps for the backward pass, per adapted layer, drop(x) and
 * its float mask (rows x in each), then x Aᵀ Bᵀ, its scaled copy and the sum (rows x out each),
 * and their gradients: more than the base layer's own activations (LoRA on every projection of a
 * 110M Llama then needed more memory than full fine-tuning). Here the branch keeps only
 * h = drop(x) · Aᵀ (rows x r) and a two-word key: the dropout mask (Backend.dropoutMask, a
 * counter-based hash of the key and each element's index) is drawn a chunk of rows at a time into
 * scratch, and drawn again in the backward pass, so it costs no memory and no per-element
 * JavaScript. h · Bᵀ
 * is added into y's buffer, which the result takes over (y must be a fresh output that nothing
 * else reads: the base layer's), its gradient passed to y as it is.
 *
 * Dropout draws its key and mask as dropout() does, so the result equals the separate ops' up to
 * float rounding, and the generator continues after the key.
 *
 *   backward:  dB += s · doutᵀ h      dh = s · dout · B
 *              dA += dhᵀ · drop(x)    dx += drop'(dh · A)      dy = dout
 */
import { backend } from '../../backend/index.js';
import type { Rng } from '../../util/rng.js';
import { allocFloats } from '../storage.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

/** elements of drop(x) formed at a time (whole rows; at least one row) */
const CHUNK_ELEMENTS = 1 << 18;

let scratchX = new Float32Array(0);
let scratchMask = new Float32Array(0);

/** Scratch buffers of n floats of x's kind (float64 storage in gradient checks): [values, mask]. */
function scratchFor(x: Float32Array, n: number): [Float32Array, Float32Array] {
  if (!(x instanceof Float32Array)) return [new Float64Array(n) as unknown as Float32Array, new Float64Array(n) as unknown as Float32Array];
  if (scratchX.length < n) {
    scratchX = new Float32Array(n);
    scratchMask = new Float32Array(n);
  }
  return [scratchX, scratchMask];
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
  const keep = drop ? 1 / (1 - drop.p) : 1;
  const chunkRows = Math.max(1, Math.floor(CHUNK_ELEMENTS / inDim));
  let maskKey: [number, number] | null = null; // the dropout mask's key
  if (!drop) {
    be.gemm({ M: rows, N: r, K: inDim, a: x.data, b: A.data, c: h, transB: true });
  } else {
    maskKey = [drop.rng.nextU32(), drop.rng.nextU32()];
    const [xd, mask] = scratchFor(x.data, Math.min(rows, chunkRows) * inDim);
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0) * inDim;
      be.dropoutMask(mask, n, drop.p, keep, maskKey[0], maskKey[1], r0 * inDim); // 0 or keep
      be.mul(x.data.subarray(r0 * inDim, r0 * inDim + n), mask, xd, n);
      be.gemm({ M: n / inDim, N: r, K: inDim, a: xd, b: A.data, c: h, cOffset: r0 * r, transB: true });
    }
  }
  be.gemm({ M: rows, N: outDim, K: r, a: h, b: B.data, c: y.data, transB: true, alpha: scaling, beta: 1 }); // y += s · h Bᵀ
  const out = new Tensor(y.data, y.shape);

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
    if (!maskKey) {
      if (A.requiresGrad) be.gemm({ M: r, N: inDim, K: rows, a: dh, b: x.data, c: A.ensureGrad(), transA: true, beta: 1 });
      if (x.requiresGrad) be.gemm({ M: rows, N: inDim, K: r, a: dh, b: A.data, c: x.ensureGrad(), beta: 1 });
      return;
    }
    const key = maskKey; // the forward pass's mask, drawn again
    const [tmp, mask] = scratchFor(x.data, Math.min(rows, chunkRows) * inDim);
    const gA = A.requiresGrad ? A.ensureGrad() : null;
    const gx = x.requiresGrad ? x.ensureGrad() : null;
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0) * inDim;
      const m = n / inDim;
      be.dropoutMask(mask, n, drop!.p, keep, key[0], key[1], r0 * inDim);
      if (gA) {
        be.mul(x.data.subarray(r0 * inDim, r0 * inDim + n), mask, tmp, n); // drop(x) rows
        be.gemm({ M: r, N: inDim, K: m, a: dh, aOffset: r0 * r, b: tmp, c: gA, transA: true, beta: 1 });
      }
      if (gx) {
        be.gemm({ M: m, N: inDim, K: r, a: dh, aOffset: r0 * r, b: A.data, c: tmp }); // (m, in)
        be.mul(tmp, mask, tmp, n);
        const gxRows = gx.subarray(r0 * inDim, r0 * inDim + n);
        be.add(gxRows, tmp, gxRows, n);
      }
    }
  });
}
