/** Reference embedding gather (forward) and scatter-add (backward). */

export function embeddingForward(weight: Float32Array, ids: Int32Array, out: Float32Array, n: number, dim: number): void {
  for (let i = 0; i < n; i++) {
    const src = ids[i] * dim;
    out.set(weight.subarray(src, src + dim), i * dim);
  }
}

export function embeddingBackward(dout: Float32Array, ids: Int32Array, dweight: Float32Array, n: number, dim: number): void {
  for (let i = 0; i < n; i++) {
    const dst = ids[i] * dim;
    const src = i * dim;
    for (let j = 0; j < dim; j++) dweight[dst + j] += dout[src + j];
  }
}
