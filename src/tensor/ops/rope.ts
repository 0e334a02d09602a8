/**
 * Rotary position embedding (rotate-half convention of Hugging Face Llama).
 *
 *   const tables = ropeTables(maxSeq, headDim, 10000);
 *   const qr = rope(q, nHead, tables);         // q: (B, T, nHead*headDim)
 */
import { allocFloats } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';

export interface RopeTables {
  maxPos: number;
  headDim: number;
  /** (maxPos, headDim/2) */
  cos: Float32Array;
  sin: Float32Array;
}

export function ropeTables(maxPos: number, headDim: number, theta = 10000): RopeTables {
  if (headDim % 2 !== 0) shapeError('rope', `head dimension ${headDim} must be even`);
  const half = headDim / 2;
  const cos = allocFloats(maxPos * half);
  const sin = allocFloats(maxPos * half);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      // same float32 rounding of the inverse frequency as PyTorch / HF
      const invFreq = Math.fround(1 / Math.pow(theta, (2 * i) / headDim));
      const angle = Math.fround(p * invFreq);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { maxPos, headDim, cos, sin };
}

export function rope(x: Tensor, nHeads: number, tables: RopeTables, posOffset = 0): Tensor {
  if (x.ndim !== 3) shapeError('rope', `expects (B, T, heads*headDim), got ${shapeToString(x.shape)}`);
  const [B, T, D] = x.shape;
  const headDim = D / nHeads;
  if (headDim !== tables.headDim) shapeError('rope', `head dim ${headDim} does not match tables (${tables.headDim})`);
  if (posOffset + T > tables.maxPos) shapeError('rope', `position ${posOffset + T} beyond the ${tables.maxPos} precomputed`);
  const be = backend();
  const out = Tensor.empty(x.shape);
  be.rope(x.data, out.data, tables.cos, tables.sin, B, T, nHeads, headDim, posOffset, false);
  return record(out, [x], () => {
    const tmp = allocFloats(x.size);
    be.rope(out.grad!, tmp, tables.cos, tables.sin, B, T, nHeads, headDim, posOffset, true);
    be.axpy(1, tmp, x.ensureGrad(), x.size);
  });
}
