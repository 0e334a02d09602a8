/**
 * Where tensor memory comes from.
 *
 * Buffer reuse: inside `withBufferScope(fn)` every buffer the engine allocates (activations,
 * intermediate gradients, saved statistics) is recorded, and when fn returns they all go back
 * to a pool keyed by length, to be handed out again by the next scope. A training step is one
 * scope, so after the first step the step allocates no new memory and resident memory stays
 * flat. Buffers that must outlive a step (parameters, their gradients, optimizer state) are
 * allocated outside any scope. Nothing allocated inside a scope may be used after it ends.
 *
 *   const loss = withBufferScope(() => { const l = model.forward(x, B, T, y).loss!; l.backward(); return l.item(); });
 *
 * Shapes that keep changing (SFT batches padded to their longest example, prompts of every
 * length) would fill the pool with lengths that never come back, so it is bounded: when it holds
 * more than twice the largest set of buffers one scope has handed back, the lengths used least
 * recently are dropped. Steps of one shape reuse everything and drop nothing.
 *
 * Float64 storage: gradient checks switch the engine to Float64Array buffers (the reference
 * kernels compute in float64 unchanged), which makes finite differences exact to ~1e-9.
 */
let float64 = false;
/** free buffers by length; the Map's order is least recently used first */
const pool = new Map<number, Float32Array[]>();
const scopes: Float32Array[][] = [];
/** bytes in the pool */
let pooled = 0;
/** the most bytes one release has handed back (one scope's buffers): the pool keeps at most twice this */
let largestRelease = 0;

/** A zero-filled buffer of n floats (pooled inside a buffer scope). */
export function allocFloats(n: number): Float32Array {
  return take(n, true);
}

/**
 * A buffer of n floats with unspecified contents, for outputs that a kernel overwrites
 * completely (a recycled buffer is not cleared first).
 */
export function allocFloatsUninit(n: number): Float32Array {
  return take(n, false);
}

function take(n: number, zero: boolean): Float32Array {
  if (float64) return new Float64Array(n) as unknown as Float32Array;
  const scope = scopes[scopes.length - 1];
  if (!scope) return new Float32Array(n);
  const free = pool.get(n);
  let buf: Float32Array;
  if (free && free.length > 0) {
    buf = free.pop()!;
    pooled -= buf.byteLength;
    pool.delete(n); // most recently used: to the end of the order
    pool.set(n, free);
    if (zero) buf.fill(0);
  } else {
    buf = new Float32Array(n);
  }
  scope.push(buf);
  return buf;
}

/** A zero-filled buffer that outlives buffer scopes (parameter gradients, optimizer state). */
export function allocPersistentFloats(n: number): Float32Array {
  return float64 ? (new Float64Array(n) as unknown as Float32Array) : new Float32Array(n);
}

/** Run fn; every buffer allocated meanwhile returns to the pool when it ends. */
export function withBufferScope<T>(fn: () => T): T {
  const scope: Float32Array[] = [];
  scopes.push(scope);
  try {
    return fn();
  } finally {
    scopes.pop();
    release(scope);
  }
}

/**
 * withBufferScope for one stage of a no-grad pass (a layer of inference): every buffer fn
 * allocates returns to the pool when it ends, except the one(s) backing `keep(result)` (the stage's
 * output, which the next stage reads), which move to the enclosing scope. The next stage then
 * reuses this one's buffers, so a pass over many layers holds one layer's activations, not all.
 * Only for code without autograd: a buffer released here may be handed out again at once.
 */
export function withStageScope<T>(fn: () => T, keep: (result: T) => Float32Array): T {
  const scope: Float32Array[] = [];
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    release(scope);
    throw err;
  }
  scopes.pop();
  const kept = keep(result).buffer;
  const parent = scopes[scopes.length - 1];
  release(scope.filter((buf) => {
    if (buf.buffer !== kept) return true;
    parent?.push(buf);
    return false;
  }));
  return result;
}

function release(bufs: Float32Array[]): void {
  let bytes = 0;
  for (const buf of bufs) {
    let free = pool.get(buf.length);
    if (!free) pool.set(buf.length, (free = []));
    free.push(buf);
    bytes += buf.byteLength;
  }
  pooled += bytes;
  largestRelease = Math.max(largestRelease, bytes);
  // drop the least recently used lengths while the pool holds more than twice one scope's buffers
  for (const [length, free] of pool) {
    if (pooled <= 2 * largestRelease) break;
    for (const buf of free) pooled -= buf.byteLength;
    pool.delete(length);
  }
}

/** Bytes held by the pool (for tests and diagnostics). */
export function pooledBytes(): number {
  return pooled;
}

/** Drop all pooled buffers (after a model is discarded). */
export function clearBufferPool(): void {
  pool.clear();
  pooled = 0;
  largestRelease = 0;
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
