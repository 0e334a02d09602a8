/**
 * The native elementwise, activation, normalisation, softmax, rope, embedding, cross-entropy and
 * AdamW kernels against the reference backend, on random inputs of awkward sizes (1, 7, 63, 65,
 * 257, 1000 and > 100K elements for the threaded paths), with null optional buffers and
 * pre-filled gradient buffers (backward kernels accumulate).
 *
 * Every SIMD path is checked: this file re-runs itself as a child process with LLMTS_SIMD=portable
 * and LLMTS_SIMD=avx2 (the addon reads it once at load) and LLMTS_KERNEL_CHILD=1, in which mode it
 * registers no tests but prints the worst error of each kernel as JSON. A child with
 * LLMTS_THREADS=1 must produce bit-identical outputs (reductions never depend on the thread count).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  nativeBackend, nativeBackendInfo, nativeLoadError, referenceBackend, type Backend,
} from '../../src/backend/index.js';
import { Rng } from '../../src/util/rng.js';

/** Tolerance on max|a-b| / max(1e-6, max|ref|) per kernel family. */
const TOL = {
  elementwise: 1e-5, activation: 1e-5, embedding: 1e-5, adamw: 1e-5, crossEntropy: 1e-5, rope: 1e-5,
  norm: 1e-4, softmax: 1e-4,
} as const;
type Family = keyof typeof TOL;

/** kernel name -> its family (for the tolerance) */
const FAMILY: Record<string, Family> = {
  add: 'elementwise', mul: 'elementwise', axpy: 'elementwise', scale: 'elementwise', addBias: 'elementwise',
  sumRows: 'elementwise', sumSquares: 'elementwise',
  geluForward: 'activation', geluBackward: 'activation', siluForward: 'activation', siluBackward: 'activation',
  swigluForward: 'activation', swigluBackward: 'activation',
  layerNormForward: 'norm', layerNormBackward: 'norm', rmsNormForward: 'norm', rmsNormBackward: 'norm',
  softmaxForward: 'softmax', softmaxBackward: 'softmax',
  rope: 'rope',
  embeddingForward: 'embedding', embeddingBackward: 'embedding',
  crossEntropyForward: 'crossEntropy', crossEntropyBackward: 'crossEntropy',
  adamw: 'adamw',
};

const SIZES = [1, 7, 63, 65, 257, 1000, 150_001];
/** rows x dim: dims that are not multiples of 8/16, and one > 100K elements */
const ROW_SHAPES: [number, number][] = [[1, 1], [3, 7], [5, 63], [4, 65], [2, 257], [7, 1000], [300, 517]];
const CE_SHAPES: [number, number][] = [[1, 1], [3, 7], [5, 63], [4, 65], [2, 257], [7, 1000], [768, 65], [40, 5003]];
/** [B, T, nHeads, headDim] */
const ROPE_SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 2], [2, 5, 3, 14], [2, 9, 2, 34], [1, 7, 1, 130], [3, 37, 4, 64], [2, 128, 6, 66],
];
/** [vocab, n, dim]: n > vocab forces repeated ids */
const EMB_SHAPES: [number, number, number][] = [
  [1, 1, 1], [5, 7, 3], [11, 63, 17], [50, 65, 65], [7, 257, 33], [100, 1000, 7], [300, 600, 257],
];
const IGNORE = -100;

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

function relErr(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  assert.equal(got.length, ref.length);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i];
    const g = got[i];
    if (Number.isNaN(r) !== Number.isNaN(g)) return Infinity;
    if (Number.isNaN(r)) continue;
    maxDiff = Math.max(maxDiff, Math.abs(r - g));
    maxRef = Math.max(maxRef, Math.abs(r));
  }
  return maxDiff / Math.max(1e-6, maxRef);
}

interface CheckResult {
  /** worst relative error per kernel */
  errors: Record<string, number>;
  /** FNV-1a hash of every native output, to compare runs bit for bit */
  digest: string;
}

/** Runs every kernel on both backends; returns the worst error per kernel and a digest of the native outputs. */
function runChecks(native: Backend): CheckResult {
  const ref = referenceBackend;
  const rng = new Rng(20240611);
  const errors: Record<string, number> = {};
  let hash = 0x811c9dc5;
  const digest = (a: Float32Array | number): void => {
    const bytes = typeof a === 'number' ? new Uint8Array(new Float64Array([a]).buffer) : new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193) >>> 0;
  };
  /** compare outputs (reference first) and record the worst error of `kernel` */
  const cmp = (kernel: string, pairs: [ArrayLike<number>, Float32Array | number][]): void => {
    for (const [r, g] of pairs) {
      const e = typeof g === 'number' ? relErr(r, [g]) : relErr(r, g);
      errors[kernel] = Math.max(errors[kernel] ?? 0, e);
      digest(g);
    }
  };
  const copy = (a: Float32Array): Float32Array => a.slice();

  // ---- elementwise ----
  for (const n of SIZES) {
    const a = randn(rng, n);
    const b = randn(rng, n);
    for (const op of ['add', 'mul'] as const) {
      const r = new Float32Array(n);
      const g = new Float32Array(n).fill(NaN);
      ref[op](a, b, r, n);
      native[op](a, b, g, n);
      cmp(op, [[r, g]]);
    }
    const y = randn(rng, n);
    const ry = copy(y);
    const gy = copy(y);
    ref.axpy(0.37, a, ry, n);
    native.axpy(0.37, a, gy, n);
    cmp('axpy', [[ry, gy]]);
    const rs = new Float32Array(n);
    const gs = new Float32Array(n);
    ref.scale(-1.7, a, rs, n);
    native.scale(-1.7, a, gs, n);
    cmp('scale', [[rs, gs]]);
    cmp('sumSquares', [[[ref.sumSquares(a, n)], native.sumSquares(a, n)]]);
  }
  for (const [rows, dim] of ROW_SHAPES) {
    const x = randn(rng, rows * dim);
    const bias = randn(rng, dim);
    const r = new Float32Array(rows * dim);
    const g = new Float32Array(rows * dim);
    ref.addBias(x, bias, r, rows, dim);
    native.addBias(x, bias, g, rows, dim);
    cmp('addBias', [[r, g]]);
    const db = randn(rng, dim);
    const rdb = copy(db);
    const gdb = copy(db);
    ref.sumRows(x, rdb, rows, dim);
    native.sumRows(x, gdb, rows, dim);
    cmp('sumRows', [[rdb, gdb]]);
  }

  // ---- activations ----
  for (const n of SIZES) {
    const x = randn(rng, n, 3);
    if (n > 4) x.set([12, -12, 40, -40]); // saturated tails
    const up = randn(rng, n);
    const dout = randn(rng, n);
    const acc = randn(rng, n);
    for (const [fwd, bwd] of [['geluForward', 'geluBackward'], ['siluForward', 'siluBackward']] as const) {
      const r = new Float32Array(n);
      const g = new Float32Array(n);
      ref[fwd](x, r, n);
      native[fwd](x, g, n);
      cmp(fwd, [[r, g]]);
      const rdx = copy(acc);
      const gdx = copy(acc);
      ref[bwd](x, dout, rdx, n);
      native[bwd](x, dout, gdx, n);
      cmp(bwd, [[rdx, gdx]]);
    }
    const r = new Float32Array(n);
    const g = new Float32Array(n);
    ref.swigluForward(x, up, r, n);
    native.swigluForward(x, up, g, n);
    cmp('swigluForward', [[r, g]]);
    for (const [withGate, withUp] of [[true, true], [true, false], [false, true], [false, false]]) {
      const acc2 = randn(rng, n);
      const rg = withGate ? copy(acc) : null;
      const gg = withGate ? copy(acc) : null;
      const ru = withUp ? copy(acc2) : null;
      const gu = withUp ? copy(acc2) : null;
      ref.swigluBackward(x, up, dout, rg, ru, n);
      native.swigluBackward(x, up, dout, gg, gu, n);
      if (rg && gg) cmp('swigluBackward', [[rg, gg]]);
      if (ru && gu) cmp('swigluBackward', [[ru, gu]]);
    }
  }

  // ---- normalisation ----
  for (const [rows, dim] of ROW_SHAPES) {
    const n = rows * dim;
    const x = randn(rng, n, 2);
    for (let i = 0; i < n; i++) x[i] += 0.5; // a non-zero mean
    const w = randn(rng, dim);
    const b = randn(rng, dim);
    const dout = randn(rng, n);
    const eps = 1e-5;
    for (const [hasW, hasB] of [[true, true], [true, false], [false, true], [false, false]]) {
      const weight = hasW ? w : null;
      const bias = hasB ? b : null;
      const r = [new Float32Array(n), new Float32Array(rows), new Float32Array(rows)] as const;
      const g = [new Float32Array(n), new Float32Array(rows), new Float32Array(rows)] as const;
      ref.layerNormForward(x, weight, bias, r[0], r[1], r[2], rows, dim, eps);
      native.layerNormForward(x, weight, bias, g[0], g[1], g[2], rows, dim, eps);
      cmp('layerNormForward', [[r[0], g[0]], [r[1], g[1]], [r[2], g[2]]]);
      if (hasB) continue; // the backward does not see the bias
      for (let mask = 0; mask < 8; mask++) {
        const dx = mask & 1 ? randn(rng, n) : null;
        const dw = mask & 2 ? randn(rng, dim) : null;
        const db = mask & 4 ? randn(rng, dim) : null;
        const rx = dx && copy(dx);
        const rw = dw && copy(dw);
        const rb = db && copy(db);
        ref.layerNormBackward(dout, x, weight, r[1], r[2], rx, rw, rb, rows, dim);
        native.layerNormBackward(dout, x, weight, r[1], r[2], dx, dw, db, rows, dim);
        if (rx && dx) cmp('layerNormBackward', [[rx, dx]]);
        if (rw && dw) cmp('layerNormBackward', [[rw, dw]]);
        if (rb && db) cmp('layerNormBackward', [[rb, db]]);
      }
    }
    for (const hasW of [true, false]) {
      const weight = hasW ? w : null;
      const r = [new Float32Array(n), new Float32Array(rows)] as const;
      const g = [new Float32Array(n), new Float32Array(rows)] as const;
      ref.rmsNormForward(x, weight, r[0], r[1], rows, dim, eps);
      native.rmsNormForward(x, weight, g[0], g[1], rows, dim, eps);
      cmp('rmsNormForward', [[r[0], g[0]], [r[1], g[1]]]);
      for (let mask = 0; mask < 4; mask++) {
        const dx = mask & 1 ? randn(rng, n) : null;
        const dw = mask & 2 ? randn(rng, dim) : null;
        const rx = dx && copy(dx);
        const rw = dw && copy(dw);
        ref.rmsNormBackward(dout, x, weight, r[1], rx, rw, rows, dim);
        native.rmsNormBackward(dout, x, weight, r[1], dx, dw, rows, dim);
        if (rx && dx) cmp('rmsNormBackward', [[rx, dx]]);
        if (rw && dw) cmp('rmsNormBackward', [[rw, dw]]);
      }
    }
  }

  // ---- softmax ----
  for (const [rows, dim] of ROW_SHAPES) {
    const n = rows * dim;
    const x = randn(rng, n, 4);
    if (dim > 3) x[1] = -Infinity; // a masked position
    const r = new Float32Array(n);
    const g = new Float32Array(n);
    ref.softmaxForward(x, r, rows, dim);
    native.softmaxForward(x, g, rows, dim);
    cmp('softmaxForward', [[r, g]]);
    const dy = randn(rng, n);
    const dx = randn(rng, n);
    const rdx = copy(dx);
    ref.softmaxBackward(r, dy, rdx, rows, dim);
    native.softmaxBackward(r, dy, dx, rows, dim);
    cmp('softmaxBackward', [[rdx, dx]]);
  }

  // ---- cross-entropy ----
  for (const [rows, vocab] of CE_SHAPES) {
    const logits = randn(rng, rows * vocab, 3);
    const targets = new Int32Array(rows);
    for (let r = 0; r < rows; r++) targets[r] = rows > 1 && rng.uniform() < 0.2 ? IGNORE : rng.int(vocab);
    const rl = new Float32Array(rows);
    const gl = new Float32Array(rows).fill(NaN);
    const rc = ref.crossEntropyForward(logits, targets, rl, rows, vocab, IGNORE);
    const gc = native.crossEntropyForward(logits, targets, gl, rows, vocab, IGNORE);
    assert.equal(gc, rc, `crossEntropyForward count ${rows}x${vocab}`);
    cmp('crossEntropyForward', [[rl, gl]]);
    const d = randn(rng, rows * vocab, 0.01);
    const rd = copy(d);
    ref.crossEntropyBackward(logits, targets, rd, rows, vocab, IGNORE, 1 / Math.max(1, rc));
    native.crossEntropyBackward(logits, targets, d, rows, vocab, IGNORE, 1 / Math.max(1, rc));
    cmp('crossEntropyBackward', [[rd, d]]);
    // per-row scales (per-token losses, log-probabilities with scale -1); rows scaled by 0 are skipped
    const rowScales = randn(rng, rows);
    for (let r = 0; r < rows; r += 3) rowScales[r] = 0;
    const d2 = randn(rng, rows * vocab, 0.01);
    const rd2 = copy(d2);
    ref.crossEntropyBackward(logits, targets, rd2, rows, vocab, IGNORE, -1, rowScales);
    native.crossEntropyBackward(logits, targets, d2, rows, vocab, IGNORE, -1, rowScales);
    cmp('crossEntropyBackward', [[rd2, d2]]);
  }

  // ---- rope ----
  for (const [B, T, nHeads, headDim] of ROPE_SHAPES) {
    const half = headDim / 2;
    for (const posOffset of [0, 3]) {
      const maxPos = posOffset + T + 2;
      const cos = new Float32Array(maxPos * half);
      const sin = new Float32Array(maxPos * half);
      for (let p = 0; p < maxPos; p++) {
        for (let i = 0; i < half; i++) {
          const angle = p * Math.pow(10000, (-2 * i) / headDim);
          cos[p * half + i] = Math.cos(angle);
          sin[p * half + i] = Math.sin(angle);
        }
      }
      const n = B * T * nHeads * headDim;
      const x = randn(rng, n);
      for (const inverse of [false, true]) {
        const r = new Float32Array(n);
        const g = new Float32Array(n);
        ref.rope(x, r, cos, sin, B, T, nHeads, headDim, posOffset, inverse);
        native.rope(x, g, cos, sin, B, T, nHeads, headDim, posOffset, inverse);
        const inPlace = copy(x);
        native.rope(inPlace, inPlace, cos, sin, B, T, nHeads, headDim, posOffset, inverse);
        cmp('rope', [[r, g], [r, inPlace]]);
      }
    }
  }

  // ---- embedding ----
  for (const [vocab, n, dim] of EMB_SHAPES) {
    const weight = randn(rng, vocab * dim);
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = rng.int(vocab);
    const r = new Float32Array(n * dim);
    const g = new Float32Array(n * dim);
    ref.embeddingForward(weight, ids, r, n, dim);
    native.embeddingForward(weight, ids, g, n, dim);
    cmp('embeddingForward', [[r, g]]);
    const dout = randn(rng, n * dim);
    const dw = randn(rng, vocab * dim);
    const rdw = copy(dw);
    ref.embeddingBackward(dout, ids, rdw, n, dim);
    native.embeddingBackward(dout, ids, dw, n, dim);
    cmp('embeddingBackward', [[rdw, dw]]);
  }

  // ---- AdamW ----
  for (const n of SIZES) {
    for (const step of [1, 10]) {
      const p = randn(rng, n);
      const grad = randn(rng, n);
      const m = randn(rng, n, 0.1);
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) v[i] = rng.uniform() * 0.01;
      const [rp, rm, rv] = [copy(p), copy(m), copy(v)];
      // a gradient scale (clipping folded into the update) on the second step count
      const gradScale = step === 1 ? 1 : 0.37;
      const [sp, sm, sv] = [copy(p), copy(m), copy(v)];
      ref.adamw(rp, grad, rm, rv, n, 1e-3, 0.9, 0.999, 1e-8, 0.1, step, gradScale);
      native.adamw(p, grad, m, v, n, 1e-3, 0.9, 0.999, 1e-8, 0.1, step, gradScale);
      cmp('adamw', [[rp, p], [rm, m], [rv, v]]);
      // the same as scaling the gradient in a pass of its own, bit for bit
      const scaled = new Float32Array(n);
      native.scale(gradScale, grad, scaled, n);
      native.adamw(sp, scaled, sm, sv, n, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
      assert.deepEqual([sp, sm, sv], [p, m, v], `adamw n=${n}: gradScale differs from a separate scale pass`);
    }
  }

  return { errors, digest: hash.toString(16) };
}

function assertWithinTolerance(errors: Record<string, number>, label: string): void {
  for (const kernel of Object.keys(FAMILY)) {
    const err = errors[kernel];
    assert.ok(err !== undefined, `${label}: ${kernel} was not checked`);
    const tol = TOL[FAMILY[kernel]];
    assert.ok(err < tol, `${label}: ${kernel}: rel err ${err} >= ${tol}`);
  }
}

interface ChildReport extends CheckResult {
  simd: string;
  threads: number;
}

function runChild(env: Record<string, string>): ChildReport {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [script], {
    encoding: 'utf8', env: { ...process.env, ...env, LLMTS_KERNEL_CHILD: '1' }, maxBuffer: 1 << 24,
  });
  assert.equal(r.status, 0, `child ${JSON.stringify(env)} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildReport;
}

if (process.env.LLMTS_KERNEL_CHILD === '1') {
  const native = nativeBackend();
  if (!native) throw new Error(nativeLoadError() ?? 'native backend not available');
  const info = nativeBackendInfo()!;
  const report: ChildReport = { simd: info.simd, threads: info.threads, ...runChecks(native) };
  process.stdout.write(JSON.stringify(report));
} else {
  describe('native kernels (elementwise, activations, norms, softmax, rope, embedding, cross-entropy, AdamW)', () => {
    const native = nativeBackend();
    let mainRun: CheckResult | null = null;

    it('the addon is built (Linux) and provides every kernel natively', (t) => {
      if (!native) {
        if (process.platform === 'linux') assert.fail(nativeLoadError() ?? 'native backend missing');
        return t.skip(nativeLoadError() ?? '');
      }
      const provided = new Set(nativeBackendInfo()!.nativeKernels);
      for (const k of Object.keys(FAMILY)) assert.ok(provided.has(k), `${k} is not native`);
    });

    it(`match the reference at the default SIMD level (${nativeBackendInfo()?.simd ?? 'n/a'})`, (t) => {
      if (!native) return t.skip('native backend not available');
      mainRun = runChecks(native);
      assertWithinTolerance(mainRun.errors, nativeBackendInfo()!.simd);
      t.diagnostic(JSON.stringify(mainRun.errors));
    });

    it('give bit-identical results on a second run and with one thread', (t) => {
      if (!native) return t.skip('native backend not available');
      const first = mainRun ?? runChecks(native);
      assert.equal(runChecks(native).digest, first.digest, 'a second run differs');
      const single = runChild({ LLMTS_THREADS: '1' });
      assert.equal(single.threads, 1);
      assert.equal(single.simd, nativeBackendInfo()!.simd);
      assert.equal(single.digest, first.digest, 'the single-threaded run differs');
    });

    for (const simd of ['portable', 'avx2']) {
      it(`match the reference on the ${simd} path`, (t) => {
        if (!native) return t.skip('native backend not available');
        const child = runChild({ LLMTS_SIMD: simd });
        // a CPU without AVX2 runs the portable path when asked for avx2
        assert.equal(child.simd, simd === 'avx2' && nativeBackendInfo()!.simd === 'portable' ? 'portable' : simd);
        assertWithinTolerance(child.errors, simd);
        t.diagnostic(JSON.stringify(child.errors));
      });
    }

    it('reject out-of-range ids and targets, naming them, instead of touching memory', (t) => {
      if (!native) return t.skip('native backend not available');
      const w = new Float32Array(10 * 4);
      const out = new Float32Array(3 * 4);
      assert.throws(() => native.embeddingForward(w, new Int32Array([1, 10, 2]), out, 3, 4), (e: Error) =>
        e instanceof RangeError && /id 10 at position 1/.test(e.message));
      assert.throws(() => native.embeddingBackward(out, new Int32Array([0, 1, -1]), w, 3, 4), (e: Error) =>
        e instanceof RangeError && /id -1 at position 2/.test(e.message));
      const logits = new Float32Array(2 * 5);
      assert.throws(() => native.crossEntropyForward(logits, new Int32Array([IGNORE, 5]), new Float32Array(2), 2, 5, IGNORE),
        (e: Error) => e instanceof RangeError && /target 5 at row 1/.test(e.message));
      assert.throws(() => native.crossEntropyBackward(logits, new Int32Array([-3, 0]), new Float32Array(10), 2, 5, IGNORE, 1),
        (e: Error) => e instanceof RangeError && /target -3 at row 0/.test(e.message));
      // ignored rows count for nothing and get loss 0
      const losses = new Float32Array([7, 7]);
      assert.equal(native.crossEntropyForward(logits, new Int32Array([IGNORE, IGNORE]), losses, 2, 5, IGNORE), 0);
      assert.deepEqual([...losses], [0, 0]);
    });

    it('reject arrays too short for the sizes and negative sizes with a TypeError', (t) => {
      if (!native) return t.skip('native backend not available');
      const a = new Float32Array(8);
      assert.throws(() => native.add(a, a, new Float32Array(7), 8), (e: Error) => e instanceof TypeError && /shorter/.test(e.message));
      assert.throws(() => native.layerNormForward(a, null, null, a, new Float32Array(1), new Float32Array(1), 2, 4, 1e-5),
        (e: Error) => e instanceof TypeError && /shorter/.test(e.message));
      assert.throws(() => native.softmaxForward(a, a, -1, -8), TypeError);
      assert.throws(() => native.crossEntropyBackward(a, new Int32Array(2), a, 2, 4, IGNORE, 1, new Float32Array(1)),
        (e: Error) => e instanceof TypeError && /argument 7 is shorter/.test(e.message));
      assert.throws(() => native.rope(a, a, new Float32Array(2), new Float32Array(2), 1, 2, 1, 4, 1, false), TypeError);
      assert.throws(() => native.swigluBackward(a, a, a, new Float32Array(4), null, 8), TypeError);
      assert.throws(() => native.sumSquares(new Int32Array(8) as unknown as Float32Array, 8), TypeError);
    });
  });
}
