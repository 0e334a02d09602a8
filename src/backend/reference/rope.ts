/**
 * Reference rotary position embedding, rotate-half convention (Hugging Face Llama):
 * for every head and i < hs/2, the pair (x_i, x_{i+hs/2}) at position p is rotated by
 * angle p * theta^(-2i/hs):  (a, b) -> (a cos - b sin, a sin + b cos).
 * The inverse rotation (negative angle) is the backward pass, since rotations are orthogonal.
 * Row (b, t) is at position posOffset + t, or positions[b*T+t] when given (packed rows).
 */
export function rope(
  x: Float32Array, out: Float32Array, cos: Float32Array, sin: Float32Array,
  B: number, T: number, nHeads: number, headDim: number, posOffset: number, inverse: boolean,
  positions?: Int32Array | null,
): void {
  const half = headDim >> 1;
  const sign = inverse ? -1 : 1;
  if (positions && positions.length < B * T) throw new RangeError(`rope: positions holds ${positions.length} entries, ${B * T} (B*T) needed`);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = positions ? positions[b * T + t] : posOffset + t;
      if (positions && !(pos >= 0 && (pos + 1) * half <= cos.length)) throw new RangeError(`rope: position ${pos} of row ${b * T + t} is outside the tables (${cos.length / half} positions)`);
      const tab = pos * half;
      const rowOff = (b * T + t) * nHeads * headDim;
      for (let h = 0; h < nHeads; h++) {
        const o = rowOff + h * headDim;
        for (let i = 0; i < half; i++) {
          const c = cos[tab + i];
          const s = sign * sin[tab + i];
          const a = x[o + i];
          const bb = x[o + i + half];
          out[o + i] = a * c - bb * s;
          out[o + i + half] = a * s + bb * c;
        }
      }
    }
  }
}
