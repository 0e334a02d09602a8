/**
 * Rotary position embedding (rotate-half convention of Hugging Face Llama).
 *
 *   const tables = ropeTables(maxSeq, headDim, 10000);
 *   const qr = rope(q, nHead, tables);         // q: (B, T, nHead*headDim)
 *
 * Tables can be built lazily: ropeTables(context, headDim, theta, 0) computes no position up
 * front, and rope() (or reserveRope) extends them to the positions a call uses, doubling (from
 * 256) up to maxPos. A model with a context of 10^8 then costs nothing until it is used. Every
 * position's values are computed the same way whenever they are built, so lazy and eager tables
 * hold the same numbers bit for bit.
 */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError, shapeToString } from '../tensor.js';
import { allocFloats, allocPersistentFloats } from '../storage.js';

export interface RopeTables {
  /** positions the tables may hold (the context length) */
  readonly maxPos: number;
  readonly headDim: number;
  readonly theta: number;
  /** positions computed so far (cos and sin hold built x headDim/2 values); grows, never shrinks */
  built: number;
  /** (built, headDim/2); replaced by a longer array when the tables grow */
  cos: Float32Array;
  sin: Float32Array;
}

/** Smallest growth step of lazy tables, in positions. */
const MIN_GROWTH = 256;

/**
 * Tables for positions 0..maxPos-1; `reserve` of them are computed now (default all), the rest
 * on demand (reserveRope).
 */
export function ropeTables(maxPos: number, headDim: number, theta = 10000, reserve = maxPos): RopeTables {
  if (headDim % 2 !== 0) shapeError('rope', `head dimension ${headDim} must be even`);
  if (!Number.isSafeInteger(maxPos) || maxPos < 0) shapeError('rope', `table length ${maxPos} must be a non-negative integer`);
  const tables: RopeTables = { maxPos, headDim, theta, built: 0, cos: allocPersistentFloats(0), sin: allocPersistentFloats(0) };
  reserveRope(tables, Math.min(reserve, maxPos), true);
  return tables;
}

/**
 * Make positions 0..n-1 available (n <= maxPos), keeping what is built. Growth doubles (at least
 * MIN_GROWTH positions, at most maxPos) unless `exact`, so a long generation rebuilds O(log n) times.
 */
export function reserveRope(tables: RopeTables, n: number, exact = false): void {
  if (n <= tables.built) return;
  if (n > tables.maxPos) shapeError('rope', `position ${n} beyond the ${tables.maxPos} of the tables`);
  const to = exact ? n : Math.min(tables.maxPos, Math.max(n, 2 * tables.built, MIN_GROWTH));
  const half = tables.headDim / 2;
  // persistent (never pooled: a table outlives any buffer scope), of the storage type of the first
  // allocation (Float64Array under withFloat64Storage)
  const Ctor = tables.cos.constructor as Float32ArrayConstructor;
  const cos = new Ctor(to * half);
  const sin = new Ctor(to * half);
  cos.set(tables.cos);
  sin.set(tables.sin);
  const { headDim, theta } = tables;
  for (let i = 0; i < half; i++) {
    // same float32 rounding of the inverse frequency as PyTorch / HF
    const invFreq = Math.fround(1 / Math.pow(theta, (2 * i) / headDim));
    for (let p = tables.built; p < to; p++) {
      const angle = Math.fround(p * invFreq);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  tables.cos = cos;
  tables.sin = sin;
  tables.built = to;
}

/**
 * x (B, T, nHeads*headDim) rotated at positions posOffset + t, or at positions[b*T + t] when
 * given (B*T, packed rows: positions restart at 0 with every example).
 */
export function rope(x: Tensor, nHeads: number, tables: RopeTables, posOffset = 0, positions: Int32Array | null = null): Tensor {
  if (x.ndim !== 3) shapeError('rope', `expects (B, T, heads*headDim), got ${shapeToString(x.shape)}`);
  const [B, T, D] = x.shape;
  const headDim = D / nHeads;
  if (headDim !== tables.headDim) shapeError('rope', `head dim ${headDim} does not match tables (${tables.headDim})`);
  let end = posOffset + T; // positions used are below end
  if (positions) {
    if (positions.length !== B * T) shapeError('rope', `positions holds ${positions.length} entries, the batch has ${B * T} tokens`);
    end = 0;
    for (let i = 0; i < positions.length; i++) {
      if (!(positions[i] >= 0)) shapeError('rope', `position ${positions[i]} (entry ${i}) is negative`);
      if (positions[i] >= end) end = positions[i] + 1;
    }
  }
  if (end > tables.maxPos) shapeError('rope', `position ${end} beyond the ${tables.maxPos} precomputed`);
  reserveRope(tables, end);
  const { cos, sin } = tables;
  const be = backend();
  const out = Tensor.empty(x.shape);
  be.rope(x.data, out.data, cos, sin, B, T, nHeads, headDim, posOffset, false, positions);
  return record(out, [x], () => {
    const tmp = allocFloats(x.size);
    be.rope(out.grad!, tmp, cos, sin, B, T, nHeads, headDim, posOffset, true, positions);
    be.axpy(1, tmp, x.ensureGrad(), x.size);
  });
}
