/**
 * Elementwise choices between tensors, broadcasting like add/mul (shapes align on the right, a
 * dimension of 1 stretches). A plain number stands for a constant of shape [] (no gradient).
 *
 *   minimum(a, b)        a: (B, T), b: (B, T) or (T) or 1.2  -> (B, T)   the smaller of each pair
 *   maximum(a, b)        likewise, the larger
 *   where(cond, a, b)    cond ? a : b; cond a Uint8Array of the output's size or a Tensor
 *                        that broadcasts (nonzero = true)
 *
 * Conventions (PyTorch's): on a tie (a == b) minimum and maximum split the gradient evenly,
 * half to each input; NaN in either input gives NaN out, and then both inputs get the whole
 * gradient. where sends each element's gradient to the chosen side only; the other side gets
 * exactly 0 (but an op before where still computes its own backward: 0 / 0 in log's is NaN, so
 * mask log's input, not only its output).
 *
 * PPO's clipped objective is minimum(ratio * adv, clamp(ratio, 1 - eps, 1 + eps) * adv);
 * masks over padding are where(mask, x, 0).
 */
import { Tensor, record, shapeError, shapeSize, shapeToString } from '../tensor.js';
import { broadcastIndex, broadcastShapes, sameShape } from './broadcast.js';

/** Elementwise min(a, b), broadcasting; gradient split evenly on ties. */
export function minimum(a: Tensor | number, b: Tensor | number): Tensor {
  return extremum('minimum', a, b);
}

/** Elementwise max(a, b), broadcasting; gradient split evenly on ties. */
export function maximum(a: Tensor | number, b: Tensor | number): Tensor {
  return extremum('maximum', a, b);
}

function extremum(op: 'minimum' | 'maximum', aIn: Tensor | number, bIn: Tensor | number): Tensor {
  const a = operand(aIn), b = operand(bIn);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const ia = indexMap(shape, a.shape), ib = indexMap(shape, b.shape);
  const out = Tensor.empty(shape);
  const x = a.data, y = b.data, o = out.data;
  const pick = op === 'minimum' ? Math.min : Math.max;
  for (let i = 0; i < o.length; i++) o[i] = pick(x[ia ? ia[i] : i], y[ib ? ib[i] : i]);
  return record(out, [a, b], () => {
    const g = out.grad!;
    const ga = a.requiresGrad ? a.ensureGrad() : null;
    const gb = b.requiresGrad ? b.ensureGrad() : null;
    for (let i = 0; i < g.length; i++) {
      const ka = ia ? ia[i] : i, kb = ib ? ib[i] : i;
      const u = x[ka], v = y[kb];
      // the losing input gets 0, a tie gives half to each, NaN (no order) gives both everything
      const aLoses = op === 'maximum' ? u < v : u > v;
      const bLoses = op === 'maximum' ? u > v : u < v;
      const share = u === v ? g[i] / 2 : g[i];
      if (ga && !aLoses) ga[ka] += share;
      if (gb && !bLoses) gb[kb] += share;
    }
  });
}

/**
 * cond ? a : b elementwise, broadcasting cond, a and b together. cond is a Uint8Array with one
 * entry per output element (row-major, the broadcast shape of a and b) or a Tensor (nonzero =
 * true, never differentiated). The gradient goes to a where cond holds, to b elsewhere.
 */
export function where(cond: Uint8Array | Tensor, aIn: Tensor | number, bIn: Tensor | number): Tensor {
  const a = operand(aIn), b = operand(bIn);
  const valueShape = broadcastShapes(a.shape, b.shape, 'where');
  let shape = valueShape;
  let mask: ArrayLike<number>;
  let ic: Int32Array | null = null;
  if (cond instanceof Tensor) {
    shape = broadcastShapes(cond.shape, valueShape, 'where');
    ic = indexMap(shape, cond.shape);
    mask = cond.data;
  } else {
    if (cond.length !== shapeSize(valueShape)) {
      shapeError('where', `a mask of ${cond.length} entries for values of shape ${shapeToString(valueShape)}`);
    }
    mask = cond;
  }
  const ia = indexMap(shape, a.shape), ib = indexMap(shape, b.shape);
  const out = Tensor.empty(shape);
  const x = a.data, y = b.data, o = out.data;
  const chosen = new Uint8Array(o.length); // 1 where the output came from a
  for (let i = 0; i < o.length; i++) {
    chosen[i] = mask[ic ? ic[i] : i] !== 0 ? 1 : 0;
    o[i] = chosen[i] ? x[ia ? ia[i] : i] : y[ib ? ib[i] : i];
  }
  return record(out, [a, b], () => {
    const g = out.grad!;
    const ga = a.requiresGrad ? a.ensureGrad() : null;
    const gb = b.requiresGrad ? b.ensureGrad() : null;
    for (let i = 0; i < g.length; i++) {
      if (chosen[i]) {
        if (ga) ga[ia ? ia[i] : i] += g[i];
      } else if (gb) {
        gb[ib ? ib[i] : i] += g[i];
      }
    }
  });
}

/** A tensor operand; a number becomes a constant of shape []. */
function operand(v: Tensor | number): Tensor {
  return typeof v === 'number' ? Tensor.fromArray([v], []) : v;
}

/** For each element of outShape, the index it reads in inShape; null when that is the identity. */
function indexMap(outShape: readonly number[], inShape: readonly number[]): Int32Array | null {
  return sameShape(outShape, inShape) ? null : broadcastIndex(outShape, inShape);
}
