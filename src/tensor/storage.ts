/**
 * Where tensor memory comes from. Normally float32. Gradient checks switch the whole
 * engine to float64 storage (the reference kernels are written over plain indexable arrays,
 * so they compute in float64 unchanged), which lets finite differences be exact to ~1e-9.
 *
 *   withFloat64Storage(() => gradcheck(...));   // tests only
 */
let float64 = false;

export function allocFloats(n: number): Float32Array {
  return float64 ? (new Float64Array(n) as unknown as Float32Array) : new Float32Array(n);
}

/** Run fn with every tensor allocated as Float64Array (reference backend only; for tests). */
export function withFloat64Storage<T>(fn: () => T): T {
  const prev = float64;
  float64 = true;
  try {
    return fn();
  } finally {
    float64 = prev;
  }
}
