/** Reference elementwise kernels and small reductions. */

export function add(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] + b[i];
}

export function mul(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i] * b[i];
}

export function axpy(alpha: number, x: Float32Array, y: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) y[i] += alpha * x[i];
}

export function scale(alpha: number, x: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = alpha * x[i];
}

export function addBias(x: Float32Array, bias: Float32Array, out: Float32Array, rows: number, dim: number): void {
  for (let r = 0, p = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++, p++) out[p] = x[p] + bias[j];
  }
}

export function sumRows(dout: Float32Array, dbias: Float32Array, rows: number, dim: number): void {
  const acc = new Float64Array(dim);
  for (let r = 0, p = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++, p++) acc[j] += dout[p];
  }
  for (let j = 0; j < dim; j++) dbias[j] += acc[j];
}

export function copyRows(
  src: Float32Array, srcOffset: number, srcStride: number, dst: Float32Array, dstOffset: number, dstStride: number,
  rows: number, width: number, accumulate: boolean,
): void {
  for (let r = 0; r < rows; r++) {
    const s = srcOffset + r * srcStride;
    const d = dstOffset + r * dstStride;
    if (accumulate) for (let j = 0; j < width; j++) dst[d + j] += src[s + j];
    else for (let j = 0; j < width; j++) dst[d + j] = src[s + j];
  }
}

export function sumSquares(x: Float32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * x[i];
  return s;
}
