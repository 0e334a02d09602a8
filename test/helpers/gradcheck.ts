/**
 * Gradient check against central finite differences in float64.
 *
 * The whole engine runs with float64 storage inside the check (see tensor/storage.ts), so the
 * reference kernels compute in double precision and finite differences with h = 1e-6 agree
 * with exact gradients to ~1e-8. The scalar that is differentiated is L = sum(f(x) * R) for a
 * fixed random R, which exercises every output element.
 */
import assert from 'node:assert/strict';
import { Tensor, noGrad, withFloat64Storage } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { backend, referenceBackend, setBackend } from '../../src/backend/index.js';

export interface GradcheckOptions {
  h?: number;
  /** max |analytic - numeric| / max(1, max |numeric|) allowed */
  tol?: number;
  /** check at most this many elements per input (chosen at random) */
  maxElements?: number;
  seed?: number;
}

export function gradcheck(
  label: string,
  makeInputs: (rng: Rng) => Tensor[],
  f: (inputs: Tensor[]) => Tensor,
  opts: GradcheckOptions = {},
): void {
  const h = opts.h ?? 1e-6;
  const tol = opts.tol ?? 1e-6;
  const maxElements = opts.maxElements ?? 200;
  // float64 storage runs on the reference kernels only
  const previous = backend();
  setBackend(referenceBackend);
  try {
    gradcheckFloat64(label, makeInputs, f, h, tol, maxElements, opts.seed ?? 42);
  } finally {
    setBackend(previous);
  }
}

function gradcheckFloat64(
  label: string, makeInputs: (rng: Rng) => Tensor[], f: (inputs: Tensor[]) => Tensor,
  h: number, tol: number, maxElements: number, seed: number,
): void {
  withFloat64Storage(() => {
    const rng = new Rng(seed);
    const inputs = makeInputs(rng);
    const out = f(inputs);
    const R = new Float64Array(out.size);
    for (let i = 0; i < R.length; i++) R[i] = rng.normal();
    const objective = (): number =>
      noGrad(() => {
        const y = f(inputs);
        let s = 0;
        for (let i = 0; i < y.size; i++) s += y.data[i] * R[i];
        return s;
      });
    out.backward(R as unknown as Float32Array);
    inputs.forEach((x, k) => {
      if (!x.requiresGrad) return;
      const analytic = x.grad ?? new Float64Array(x.size);
      const picks = pickIndices(x.size, maxElements, rng);
      let maxErr = 0;
      let maxRef = 0;
      let worst = -1;
      for (const i of picks) {
        const orig = x.data[i];
        x.data[i] = orig + h;
        const up = objective();
        x.data[i] = orig - h;
        const down = objective();
        x.data[i] = orig;
        const numeric = (up - down) / (2 * h);
        const err = Math.abs(analytic[i] - numeric);
        if (err > maxErr) {
          maxErr = err;
          worst = i;
        }
        maxRef = Math.max(maxRef, Math.abs(numeric));
      }
      const rel = maxErr / Math.max(1, maxRef);
      assert.ok(
        rel <= tol,
        `${label}: input ${k} grad mismatch, rel err ${rel.toExponential(2)} at element ${worst} ` +
          `(analytic ${analytic[worst]}, shape [${x.shape.join(', ')}])`,
      );
    });
  });
}

function pickIndices(n: number, max: number, rng: Rng): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const set = new Set<number>();
  while (set.size < max) set.add(rng.int(n));
  return [...set];
}

/** A leaf tensor with N(0, std) entries that requires grad. */
export function param(rng: Rng, shape: number[], std = 1): Tensor {
  return Tensor.randn(shape, rng, std, true);
}
