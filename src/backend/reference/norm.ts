/**
 * Reference LayerNorm and RMSNorm over the last dimension, with saved statistics.
 *
 * LayerNorm: y = (x - mean) * rstd * w + b,  rstd = 1/sqrt(var + eps) (biased variance)
 * RMSNorm:   y = x * rstd * w,               rstd = 1/sqrt(mean(x^2) + eps)
 */

export function layerNormForward(
  x: Float32Array, weight: Float32Array | null, bias: Float32Array | null, out: Float32Array,
  mean: Float32Array, rstd: Float32Array, rows: number, dim: number, eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let m = 0;
    for (let j = 0; j < dim; j++) m += x[o + j];
    m /= dim;
    let v = 0;
    for (let j = 0; j < dim; j++) {
      const d = x[o + j] - m;
      v += d * d;
    }
    const s = 1 / Math.sqrt(v / dim + eps);
    for (let j = 0; j < dim; j++) {
      let y = (x[o + j] - m) * s;
      if (weight) y *= weight[j];
      if (bias) y += bias[j];
      out[o + j] = y;
    }
    mean[r] = m;
    rstd[r] = s;
  }
}

export function layerNormBackward(
  dout: Float32Array, x: Float32Array, weight: Float32Array | null, mean: Float32Array, rstd: Float32Array,
  dx: Float32Array | null, dweight: Float32Array | null, dbias: Float32Array | null, rows: number, dim: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    const m = mean[r];
    const s = rstd[r];
    // dxhat = dout * w;  dx = s * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    let sumD = 0;
    let sumDX = 0;
    for (let j = 0; j < dim; j++) {
      const xhat = (x[o + j] - m) * s;
      const dxhat = weight ? dout[o + j] * weight[j] : dout[o + j];
      sumD += dxhat;
      sumDX += dxhat * xhat;
      if (dweight) dweight[j] += dout[o + j] * xhat;
      if (dbias) dbias[j] += dout[o + j];
    }
    if (!dx) continue;
    sumD /= dim;
    sumDX /= dim;
    for (let j = 0; j < dim; j++) {
      const xhat = (x[o + j] - m) * s;
      const dxhat = weight ? dout[o + j] * weight[j] : dout[o + j];
      dx[o + j] += s * (dxhat - sumD - xhat * sumDX);
    }
  }
}

export function rmsNormForward(
  x: Float32Array, weight: Float32Array | null, out: Float32Array, rstd: Float32Array,
  rows: number, dim: number, eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[o + j] * x[o + j];
    const s = 1 / Math.sqrt(ss / dim + eps);
    for (let j = 0; j < dim; j++) out[o + j] = weight ? x[o + j] * s * weight[j] : x[o + j] * s;
    rstd[r] = s;
  }
}

export function rmsNormBackward(
  dout: Float32Array, x: Float32Array, weight: Float32Array | null, rstd: Float32Array,
  dx: Float32Array | null, dweight: Float32Array | null, rows: number, dim: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    const s = rstd[r];
    // dx = s * (dxhat - xhat * mean(dxhat * xhat)),  xhat = x * s
    let sumDX = 0;
    for (let j = 0; j < dim; j++) {
      const xhat = x[o + j] * s;
      const dxhat = weight ? dout[o + j] * weight[j] : dout[o + j];
      sumDX += dxhat * xhat;
      if (dweight) dweight[j] += dout[o + j] * xhat;
    }
    if (!dx) continue;
    sumDX /= dim;
    for (let j = 0; j < dim; j++) {
      const xhat = x[o + j] * s;
      const dxhat = weight ? dout[o + j] * weight[j] : dout[o + j];
      dx[o + j] += s * (dxhat - xhat * sumDX);
    }
  }
}
