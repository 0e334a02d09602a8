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
  let start = 0;
  return sizes.map((w) => {
    const off = start;
    start += w;
    const out = Tensor.empty([...lead, w]);
    const src = x.data, dst = out.data;
    for (let r = 0; r < rows; r++) {
      const i = r * D + off, o = r * w;
      for (let j = 0; j < w; j++) dst[o + j] = src[i + j];
    }
    return record(out, [x], () => {
      const g = out.grad!;
      const gx = x.ensureGrad();
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < w; j++) gx[r * D + off + j] += g[r * w + j];
      }
    });
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
  let off = 0;
  const offsets = parts.map((p) => {
    const o = off;
    const src = p.data, dst = out.data, w = p.lastDim;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < w; j++) dst[r * D + o + j] = src[r * w + j];
    }
    off += p.lastDim;
    return o;
  });
  return record(out, parts, () => {
    const g = out.grad!;
    parts.forEach((p, k) => {
      if (!p.requiresGrad) return;
      const gp = p.ensureGrad();
      const w = p.lastDim;
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < w; j++) gp[r * w + j] += g[r * D + offsets[k] + j];
      }
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
