/** Reference softmax over the last dimension (max-subtracted for stability). */

export function softmaxForward(x: Float32Array, out: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let max = -Infinity;
    for (let j = 0; j < dim; j++) if (x[o + j] > max) max = x[o + j];
    let sum = 0;
    for (let j = 0; j < dim; j++) {
      const e = Math.exp(x[o + j] - max);
      out[o + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < dim; j++) out[o + j] *= inv;
  }
}

export function softmaxBackward(y: Float32Array, dy: Float32Array, dx: Float32Array, rows: number, dim: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += dy[o + j] * y[o + j];
    for (let j = 0; j < dim; j++) dx[o + j] += y[o + j] * (dy[o + j] - dot);
  }
}
