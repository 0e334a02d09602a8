/**
 * Shape ops. reshape is a view (shares data); splitLastDim and concatLastDim copy,
 * because a slice of the last dimension is not contiguous.
 */
import { Tensor, record, shapeError, shapeSize, shapeToString } from '../tensor.js';
import { backend } from '../../backend/index.js';

/** Same data, new shape; one dimension may be -1. */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const s = [...shape];
  const free = s.indexOf(-1);
  if (free >= 0) s[free] = x.size / shapeSize(s.filter((d) => d !== -1));
  if (shapeSize(s) !== x.size || s.some((d) => !Number.isInteger(d) || d < 0)) {
    shapeError('reshape', `cannot view ${shapeToString(x.shape)} as ${shapeToString(shape)}`);
  }
  const out = new Tensor(x.data, s);
  return record(out, [x], () => {
    backend().axpy(1, out.grad!, x.ensureGrad(), x.size);
  });
}

/** Split the last dimension into pieces of the given sizes: [.., 3C] -> [.., C] x 3. */
export function splitLastDim(x: Tensor, sizes: number[]): Tensor[] {
  const D = x.lastDim;
  if (sizes.reduce((p, c) => p + c, 0) !== D) shapeError('splitLastDim', `sizes ${sizes.join('+')} do not add up to ${D}`);
  const rows = x.size / D;
  const lead = x.shape.slice(0, -1);
  const be = backend();
  let start = 0;
  return sizes.map((w) => {
    const off = start;
    start += w;
    const out = Tensor.empty([...lead, w]);
    be.copyRows(x.data, off, D, out.data, 0, w, rows, w, false);
    return record(out, [x], () => be.copyRows(out.grad!, 0, w, x.ensureGrad(), off, D, rows, w, true));
  });
}

/** Concatenate along the last dimension; leading dimensions must match. */
export function concatLastDim(parts: Tensor[]): Tensor {
  const lead = parts[0].shape.slice(0, -1);
  const rows = shapeSize(lead);
  for (const p of parts) {
    if (p.ndim !== lead.length + 1 || p.shape.slice(0, -1).some((d, i) => d !== lead[i])) {
      shapeError('concatLastDim', `leading dims differ: ${parts.map((q) => shapeToString(q.shape)).join(', ')}`);
    }
  }
  const D = parts.reduce((s, p) => s + p.lastDim, 0);
  const out = Tensor.empty([...lead, D]);
  const be = backend();
  let off = 0;
  const offsets = parts.map((p) => {
    const o = off;
    be.copyRows(p.data, 0, p.lastDim, out.data, o, D, rows, p.lastDim, false);
    off += p.lastDim;
    return o;
  });
  return record(out, parts, () => {
    parts.forEach((p, k) => {
      if (p.requiresGrad) be.copyRows(out.grad!, offsets[k], D, p.ensureGrad(), 0, p.lastDim, rows, p.lastDim, true);
    });
  });
}

/** Rows [start, start+length) of the first dimension, as a view sharing x's data: [N, ...] -> [length, ...]. */
export function narrow(x: Tensor, start: number, length: number): Tensor {
  const N = x.shape[0];
  if (x.ndim < 1 || start < 0 || length < 0 || start + length > N || !Number.isInteger(start) || !Number.isInteger(length)) {
    shapeError('narrow', `rows [${start}, ${start + length}) are outside ${shapeToString(x.shape)}`);
  }
  const row = x.size / N;
  const out = new Tensor(x.data.subarray(start * row, (start + length) * row), [length, ...x.shape.slice(1)]);
  return record(out, [x], () => {
    backend().axpy(1, out.grad!, x.ensureGrad().subarray(start * row), out.size);
  });
}
