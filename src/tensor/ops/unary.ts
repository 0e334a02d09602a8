/**
 * Elementwise functions of one tensor: exp, log, logsigmoid, clamp. Same shape out as in.
 *
 *   exp(x)               e^x                       d/dx = e^x
 *   log(x)               ln x                      d/dx = 1/x
 *   logsigmoid(x)        log(1 / (1 + e^-x))       d/dx = sigmoid(-x)
 *   clamp(x, min, max)   min(max(x, min), max)     d/dx = 1 where min <= x <= max, else 0
 *
 * These act on per-token or per-sequence tensors (losses, log-probability ratios, rewards), not
 * on (rows, V) logits, so they are plain loops (the float math in double, stored as float).
 *
 * Non-finite values follow IEEE arithmetic, as PyTorch does: log(0) = -Infinity, log(x < 0) =
 * NaN, exp(x > ~88.7) = Infinity in float32, and NaN in gives NaN out (clamp too). Gradients are
 * the plain formulas (log at 0: dy/0 = ±Infinity, or NaN when dy = 0), with no special cases,
 * so mask a value before log rather than after (see where in select.ts).
 */
import { Tensor, record, shapeError } from '../tensor.js';

/** e^x elementwise. */
export function exp(x: Tensor): Tensor {
  const out = Tensor.empty(x.shape);
  const xs = x.data, o = out.data;
  for (let i = 0; i < xs.length; i++) o[i] = Math.exp(xs[i]);
  return record(out, [x], () => {
    const g = out.grad!, gx = x.ensureGrad();
    for (let i = 0; i < g.length; i++) gx[i] += g[i] * o[i];
  });
}

/** Natural logarithm elementwise: -Infinity at 0, NaN below 0. */
export function log(x: Tensor): Tensor {
  const out = Tensor.empty(x.shape);
  const xs = x.data, o = out.data;
  for (let i = 0; i < xs.length; i++) o[i] = Math.log(xs[i]);
  return record(out, [x], () => {
    const g = out.grad!, gx = x.ensureGrad();
    for (let i = 0; i < g.length; i++) gx[i] += g[i] / xs[i];
  });
}

/**
 * log(sigmoid(x)) = -softplus(-x), computed as min(x, 0) - log1p(e^-|x|) so that no
 * intermediate overflows: logsigmoid(1000) = 0, logsigmoid(-1000) = -1000, gradients 0 and 1.
 * The reward-model loss is -logsigmoid(r_chosen - r_rejected).
 */
export function logsigmoid(x: Tensor): Tensor {
  const out = Tensor.empty(x.shape);
  const xs = x.data, o = out.data;
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i];
    o[i] = Math.min(v, 0) - Math.log1p(Math.exp(-Math.abs(v)));
  }
  return record(out, [x], () => {
    const g = out.grad!, gx = x.ensureGrad();
    for (let i = 0; i < g.length; i++) gx[i] += g[i] * sigmoidOfMinus(xs[i]);
  });
}

/** sigmoid(-v) = 1 / (1 + e^v), without overflow for large |v|. */
function sigmoidOfMinus(v: number): number {
  if (v >= 0) {
    const e = Math.exp(-v);
    return e / (1 + e);
  }
  return 1 / (1 + Math.exp(v));
}

/**
 * Limit x to [min, max] elementwise (either bound may be omitted, not both), as torch.clamp:
 * the result is min(max(x, min), max), so min > max gives max everywhere; NaN stays NaN.
 * The gradient passes where min <= x <= max, boundaries included (PyTorch's convention: a value
 * sitting exactly on a bound still gets its gradient), and is 0 outside and at NaN. The bounds
 * are first rounded to the tensor's precision (float32), as PyTorch casts them.
 * PPO clips its ratio with clamp(ratio, 1 - eps, 1 + eps).
 */
export function clamp(x: Tensor, min?: number, max?: number): Tensor {
  if (min === undefined && max === undefined) shapeError('clamp', 'give at least one of min and max');
  // bounds in the tensor's precision, as PyTorch casts them: clamp(x, undefined, 1.2) keeps the
  // gradient of an x that holds float32(1.2)
  const precision = x.data instanceof Float32Array ? Math.fround : (v: number): number => v;
  const lo = precision(min ?? -Infinity);
  const hi = precision(max ?? Infinity);
  const out = Tensor.empty(x.shape);
  const xs = x.data, o = out.data;
  for (let i = 0; i < xs.length; i++) o[i] = Math.min(Math.max(xs[i], lo), hi);
  return record(out, [x], () => {
    const g = out.grad!, gx = x.ensureGrad();
    for (let i = 0; i < g.length; i++) {
      const v = xs[i];
      if (v >= lo && v <= hi) gx[i] += g[i];
    }
  });
}
