/**
 * Where tensor memory comes from.
 *
 * Buffer reuse: inside `withBufferScope(fn)` every buffer the engine allocates (activations,
 * intermediate gradients, saved statistics) is recorded, and when fn returns they all go back
 * to a pool keyed by length, to be handed out again by the next scope. A training step is one
 * scope, so after the first step the step allocates no new memory and resident memory stays
 * flat. Steps whose sizes vary (SFT batches padded to their longest example, a loss over a
 * varying number of trained positions) reuse buffers too: a request the pool has no buffer of
 * that exact length for takes the smallest free one of up to twice the length and hands out a
 * view of its first n floats (only when none fits is new memory allocated, which the first
 * write then faults in page by page). A free buffer that no step has taken for IDLE_STEPS
 * outermost scopes is dropped, so a run whose sizes drift (short batches, then long ones) holds
 * what its recent steps use, not every size it ever saw. Buffers that must outlive a step
 * (parameters, their gradients, optimizer state) are allocated outside any scope. Nothing
 * allocated inside a scope may be used after it ends.
 *
 *   const loss = withBufferScope(() => { const l = model.forward(x, B, T, y).loss!; l.backward(); return l.item(); });
 *
 * Float64 storage: gradient checks switch the engine to Float64Array buffers (the reference
 * kernels compute in float64 unchanged), which makes finite differences exact to ~1e-9.
 */
let float64 = false;
/** a free buffer and the outermost scope count when it was released */
interface FreeBuffer {
  buf: Float32Array;
  released: number;
}
const pool = new Map<number, FreeBuffer[]>();
const scopes: Float32Array[][] = [];
/** outermost scopes ended so far */
let generation = 0;
/** a free buffer idle for this many outermost scopes is dropped */
const IDLE_STEPS = 8;

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
  const buf = takeFree(n);
  if (!buf) {
    const fresh = new Float32Array(n);
    scope.push(fresh);
    return fresh;
  }
  scope.push(buf); // the whole buffer goes back to the pool with the scope
  const view = buf.length === n ? buf : buf.subarray(0, n);
  if (zero) view.fill(0);
  return view;
}

/** A free pooled buffer of exactly n floats, else the smallest one of n..2n floats; null if none. */
function takeFree(n: number): Float32Array | null {
  const exact = pool.get(n);
  if (exact && exact.length > 0) return exact.pop()!.buf;
  let best = 0;
  for (const [length, free] of pool) {
    if (free.length > 0 && length > n && length <= 2 * n && (best === 0 || length < best)) best = length;
  }
  return best === 0 ? null : pool.get(best)!.pop()!.buf;
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
    if (scopes.length === 0) endOfStep();
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
  for (const buf of bufs) {
    let free = pool.get(buf.length);
    if (!free) pool.set(buf.length, (free = []));
    free.push({ buf, released: generation });
  }
}

/** An outermost scope ended: drop the free buffers no step has taken for IDLE_STEPS of them. */
function endOfStep(): void {
  generation++;
  if (generation % IDLE_STEPS !== 0) return;
  const oldest = generation - IDLE_STEPS;
  for (const [length, free] of pool) {
    // each list is a stack: the buffers released longest ago are at its bottom
    let idle = 0;
    while (idle < free.length && free[idle].released < oldest) idle++;
    if (idle === free.length) pool.delete(length);
    else if (idle > 0) free.splice(0, idle);
  }
}

/** Bytes held by the pool (for tests and diagnostics). */
export function pooledBytes(): number {
  let n = 0;
  for (const list of pool.values()) for (const b of list) n += b.buf.byteLength;
  return n;
}

/** Drop all pooled buffers (after a model is discarded). */
export function clearBufferPool(): void {
  pool.clear();
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
