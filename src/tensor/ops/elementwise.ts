/**
 * Elementwise arithmetic with broadcasting: add, sub, mul, div, and scalar variants.
 * Equal shapes take the backend's fast kernels; other shapes go through an index map
 * (these are off the hot path: the model's bias adds and residuals have equal shapes or
 * use linear()).
 */
import { backend } from '../../backend/index.js';
import { Tensor, record } from '../tensor.js';
import { broadcastIndex, broadcastShapes, sameShape } from './broadcast.js';

type Binary = 'add' | 'sub' | 'mul' | 'div';

export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', a, b);
}
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary('sub', a, b);
}
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', a, b);
}
export function div(a: Tensor, b: Tensor): Tensor {
  return binary('div', a, b);
}

function binary(op: Binary, a: Tensor, b: Tensor): Tensor {
  if (sameShape(a.shape, b.shape)) return binarySameShape(op, a, b);
  if (op === 'add' && tilesTrailing(a.shape, b.shape)) return addTiled(a, b);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const ia = broadcastIndex(shape, a.shape);
  const ib = broadcastIndex(shape, b.shape);
  const out = Tensor.empty(shape);
  const x = a.data, y = b.data, o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = apply(op, x[ia[i]], y[ib[i]]);
  return record(out, [a, b], () => {
    const g = out.grad!;
    const ga = a.requiresGrad ? a.ensureGrad() : null;
    const gb = b.requiresGrad ? b.ensureGrad() : null;
    for (let i = 0; i < g.length; i++) {
      const xa = x[ia[i]], yb = y[ib[i]];
      if (ga) ga[ia[i]] += g[i] * dLeft(op, xa, yb);
      if (gb) gb[ib[i]] += g[i] * dRight(op, xa, yb);
    }
  });
}

/** b (leading 1s allowed) equals a's trailing dimensions: a + b adds b to every block of a. */
function tilesTrailing(a: readonly number[], b: readonly number[]): boolean {
  const core = [...b];
  while (core.length > 0 && core[0] === 1) core.shift();
  if (core.length > a.length) return false;
  return core.every((d, i) => d === a[a.length - core.length + i]) && b.length <= a.length;
}

/** a (rows, dim) + b (dim), e.g. adding position embeddings to a batch: one backend pass each way. */
function addTiled(a: Tensor, b: Tensor): Tensor {
  const be = backend();
  const dim = b.size;
  const rows = a.size / dim;
  const out = Tensor.empty(a.shape);
  be.addBias(a.data, b.data, out.data, rows, dim);
  return record(out, [a, b], () => {
    const g = out.grad!;
    if (a.requiresGrad) be.axpy(1, g, a.ensureGrad(), a.size);
    if (b.requiresGrad) be.sumRows(g, b.ensureGrad(), rows, dim);
  });
}

function binarySameShape(op: Binary, a: Tensor, b: Tensor): Tensor {
  const be = backend();
  const out = Tensor.empty(a.shape);
  const n = out.size;
  const x = a.data, y = b.data, o = out.data;
  if (op === 'add') be.add(x, y, o, n);
  else if (op === 'mul') be.mul(x, y, o, n);
  else for (let i = 0; i < n; i++) o[i] = apply(op, x[i], y[i]);
  return record(out, [a, b], () => {
    const g = out.grad!;
    if (op === 'add' || op === 'sub') {
      if (a.requiresGrad) be.axpy(1, g, a.ensureGrad(), n);
      if (b.requiresGrad) be.axpy(op === 'add' ? 1 : -1, g, b.ensureGrad(), n);
      return;
    }
    const ga = a.requiresGrad ? a.ensureGrad() : null;
    const gb = b.requiresGrad ? b.ensureGrad() : null;
    for (let i = 0; i < n; i++) {
      if (ga) ga[i] += g[i] * dLeft(op, x[i], y[i]);
      if (gb) gb[i] += g[i] * dRight(op, x[i], y[i]);
    }
  });
}

function apply(op: Binary, x: number, y: number): number {
  switch (op) {
    case 'add': return x + y;
    case 'sub': return x - y;
    case 'mul': return x * y;
    case 'div': return x / y;
  }
}

/** d(x op y)/dx */
function dLeft(op: Binary, _x: number, y: number): number {
  switch (op) {
    case 'add': return 1;
    case 'sub': return 1;
    case 'mul': return y;
    case 'div': return 1 / y;
  }
}

/** d(x op y)/dy */
function dRight(op: Binary, x: number, y: number): number {
  switch (op) {
    case 'add': return 1;
    case 'sub': return -1;
    case 'mul': return x;
    case 'div': return -x / (y * y);
  }
}

/** x * s for a number s. */
export function scale(x: Tensor, s: number): Tensor {
  const be = backend();
  const out = Tensor.empty(x.shape);
  be.scale(s, x.data, out.data, x.size);
  return record(out, [x], () => {
    be.axpy(s, out.grad!, x.ensureGrad(), x.size);
  });
}

/** x + s for a number s. */
export function addScalar(x: Tensor, s: number): Tensor {
  const out = Tensor.empty(x.shape);
  for (let i = 0; i < x.size; i++) out.data[i] = x.data[i] + s;
  return record(out, [x], () => {
    backend().axpy(1, out.grad!, x.ensureGrad(), x.size);
  });
}
