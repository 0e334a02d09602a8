/**
 * The native matmulQuantized kernel (Q8_0 / Q4_0 weights as raw GGUF blocks, int8 activations)
 * against the reference: exact up to float summation order against matmulQuantizedQ8x (which
 * quantizes x the same way), within the activation-quantization error against the float-x
 * reference; awkward M and N, K = 32, 64, 288, 768; for the path this machine picks and, in
 * child processes, LLMTS_SIMD=portable, LLMTS_SIMD=avx2 and LLMTS_NO_VNNI=1 (AVX-512BW).
 *
 * matmulQuantizedTransposed (dx += dy · W, the input gradient through a quantized weight): the
 * reference against a float GEMM on the dequantized weight, the native kernel against the
 * reference, over shapes that cross its tiles (128 rows of W, 96 rows of dx, 64-column strips).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nativeBackendInfo, referenceBackend } from '../../src/backend/index.js';
import type { Backend, QuantType } from '../../src/backend/index.js';
import { addonFunction } from '../../src/backend/native.js';
import { matmulQuantizedQ8x } from '../../src/backend/reference/quant-matmul.js';
import { dequantizeQ4_0, dequantizeQ8_0 } from '../../src/formats/quant.js';
import { quantizeWeight, type QuantizedWeight } from '../../src/model/quantized.js';
import { lcgRandom, nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

const CHILD = process.env.LLMTS_QMM_TEST_CHILD;
const skipReason = nativeSkipReason;
const nb = nativeOrFail;
const random = lcgRandom;

function maxAbs(x: Float32Array): number {
  let m = 0;
  for (const v of x) m = Math.max(m, Math.abs(v));
  return m;
}

/** [worst rel. error vs the int8-x reference, worst rel. error vs the float-x reference] */
function checkAll(): [number, number] {
  const be = nb();
  let worstExact = 0;
  let worstFloat = 0;
  let seed = 1;
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    for (const K of [32, 64, 288, 768]) {
      for (const N of [1, 3, 17, 100]) {
        for (const M of [1, 2, 3, 5, 6, 33]) {
          const x = random(M * K, seed++, 2);
          if (M > 1) x.fill(0, K, K + 32); // an all-zero activation block (scale 0)
          const w = quantizeWeight(type, random(N * K, seed++, 0.5), N, K);
          if (type === 'q8_0') w.blocks[2 + 5] = 0x80; // -128 is a valid Q8_0 byte, though ggml never writes it
          const exact = new Float32Array(M * N);
          const float = new Float32Array(M * N);
          const got = new Float32Array(M * N).fill(Number.NaN);
          matmulQuantizedQ8x(x, w.blocks, type, exact, M, N, K);
          referenceBackend.matmulQuantized(x, w.blocks, type, float, M, N, K);
          be.matmulQuantized(x, w.blocks, type, got, M, N, K);
          const scale = maxAbs(float) + 1e-30;
          for (let i = 0; i < got.length; i++) {
            const e = Math.abs(got[i] - exact[i]) / scale;
            if (!(e < 1e-4)) assert.fail(`${type} M=${M} N=${N} K=${K}: element ${i}: native ${got[i]} vs int8-x reference ${exact[i]}`);
            worstExact = Math.max(worstExact, e);
            worstFloat = Math.max(worstFloat, Math.abs(got[i] - float[i]) / scale);
          }
        }
      }
    }
  }
  assert.ok(worstFloat < 0.08, `activation quantization error ${worstFloat} is too large`);
  checkPrefillShape(be, seed);
  checkRoundingOfHalves(be);
  return [worstExact, worstFloat];
}

/** A prompt-sized product (the panel GEMM: 4-row tiles and a 1-row tail; VNNI 32-row task panels, AVX2 8-row panels, and a tail). */
function checkPrefillShape(be: Backend, seed: number): void {
  const M = 37, N = 70, K = 2048;
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    const x = random(M * K, seed++, 3);
    const w = quantizeWeight(type, random(N * K, seed++, 0.5), N, K);
    const exact = new Float32Array(M * N);
    const got = new Float32Array(M * N).fill(Number.NaN);
    matmulQuantizedQ8x(x, w.blocks, type, exact, M, N, K);
    be.matmulQuantized(x, w.blocks, type, got, M, N, K);
    const scale = maxAbs(exact);
    for (let i = 0; i < got.length; i++) {
      if (!(Math.abs(got[i] - exact[i]) / scale < 1e-5)) assert.fail(`${type} M=${M} N=${N} K=${K}: element ${i}: native ${got[i]} vs ${exact[i]}`);
    }
  }
}

/**
 * Activations that land exactly on .5 after scaling (amax 127 gives scale 1) round away from zero,
 * as roundf: W has one-hot rows, so out[m][n] reads back the quantized x[m][n] (times 127 d_w).
 */
function checkRoundingOfHalves(be: Backend): void {
  const K = 32, N = 32, M = 8;
  const halves = [127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5, -126.5, 0.49999997, -0.49999997, 3.5000002, 64.5, -64.5];
  const x = new Float32Array(M * K);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) x[m * K + k] = k === 0 ? 127 : halves[(k + m) % halves.length] * (m % 2 ? -1 : 1);
  const eye = new Float32Array(N * K);
  for (let n = 0; n < N; n++) eye[n * K + n] = 1;
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    const w = quantizeWeight(type, eye, N, K);
    for (const rows of [1, M]) {
      const exact = new Float32Array(rows * N);
      const got = new Float32Array(rows * N);
      matmulQuantizedQ8x(x, w.blocks, type, exact, rows, N, K);
      be.matmulQuantized(x, w.blocks, type, got, rows, N, K);
      for (let i = 0; i < got.length; i++) {
        if (!(Math.abs(got[i] - exact[i]) < 1e-3)) assert.fail(`${type} rows=${rows}: element ${i} (x = ${x[i]}): native ${got[i]} vs ${exact[i]}`);
      }
    }
  }
}

function runChild(env: Record<string, string>): { out: string; status: number | null } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env: childEnv, encoding: 'utf8' });
  return { out: `${r.stdout ?? ''}${r.stderr ?? ''}`, status: r.status };
}

function pathName(): string {
  return addonFunction<() => string>('quantMatmulPath')?.() ?? '?';
}

test('matmulQuantized is native', { skip: skipReason }, () => {
  nb();
  assert.ok(nativeBackendInfo()?.nativeKernels.includes('matmulQuantized'));
  if (CHILD && process.env.LLMTS_SIMD === 'portable') assert.equal(pathName(), 'portable');
  if (CHILD && process.env.LLMTS_SIMD === 'avx2') assert.equal(pathName(), 'avx2');
});

test('native matmulQuantized matches the reference', { skip: skipReason }, (t) => {
  const [exact, float] = checkAll();
  const line = `QMM_MAXERR path=${pathName()} vs-int8x-ref ${exact.toExponential(2)} vs-float-ref ${float.toExponential(2)}`;
  if (CHILD) process.stdout.write(`${line}\n`);
  else t.diagnostic(line);
});

test('native matmulQuantized rejects bad arguments', { skip: skipReason }, () => {
  const be = nb();
  const w = quantizeWeight('q4_0', random(4 * 64, 3), 4, 64);
  const x = random(2 * 64, 4);
  const out = new Float32Array(8);
  be.matmulQuantized(x, w.blocks, 'q4_0', out, 2, 4, 64);
  assert.throws(() => be.matmulQuantized(x, w.blocks.subarray(1), 'q4_0', out, 2, 4, 64), TypeError);
  assert.throws(() => be.matmulQuantized(x.subarray(1), w.blocks, 'q4_0', out, 2, 4, 64), TypeError);
  assert.throws(() => be.matmulQuantized(x, w.blocks, 'q4_0', out.subarray(1), 2, 4, 64), TypeError);
  assert.throws(() => be.matmulQuantized(x, w.blocks, 'q8_0', out, 2, 4, 64), TypeError); // Q8_0 rows are longer
  assert.throws(() => be.matmulQuantized(x, w.blocks, 'q4_0', out, 2, 4, 48), RangeError);
});

/** W (N, K) of a quantized weight as floats (what the kernels must behave as). */
function dequantized(w: QuantizedWeight): Float32Array {
  const n = w.rows * w.cols;
  return w.type === 'q8_0' ? dequantizeQ8_0(w.blocks, n) : dequantizeQ4_0(w.blocks, n);
}

/** Shapes of dx += dy · W: (M, N, K), crossing the native kernel's tiles and strips. */
const TRANSPOSED_SHAPES: [number, number, number][] = [
  [1, 1, 32], [2, 3, 32], [5, 17, 64], [6, 130, 96], [7, 64, 288], [33, 129, 160], [97, 40, 64], [200, 300, 768],
];

test('reference matmulQuantizedTransposed equals a float GEMM on the dequantized weight', () => {
  let seed = 500;
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    for (const [M, N, K] of TRANSPOSED_SHAPES.slice(0, 7)) {
      const w = quantizeWeight(type, random(N * K, seed++, 0.5), N, K);
      const dy = random(M * N, seed++, 1);
      const dx0 = random(M * K, seed++, 1);
      const want = dx0.slice();
      referenceBackend.gemm({ M, N: K, K: N, a: dy, b: dequantized(w), c: want, beta: 1 }); // dx += dy (M, N) · W (N, K)
      const got = dx0.slice();
      referenceBackend.matmulQuantizedTransposed(dy, w.blocks, type, got, M, N, K);
      const scale = maxAbs(want);
      for (let i = 0; i < got.length; i++) {
        if (!(Math.abs(got[i] - want[i]) / scale < 1e-6)) assert.fail(`${type} M=${M} N=${N} K=${K}: element ${i}: ${got[i]} vs float GEMM ${want[i]}`);
      }
    }
  }
});

test('native matmulQuantizedTransposed matches the reference', { skip: skipReason }, (t) => {
  const be = nb();
  assert.ok(nativeBackendInfo()?.nativeKernels.includes('matmulQuantizedTransposed'));
  let worst = 0;
  let seed = 900;
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    for (const [M, N, K] of TRANSPOSED_SHAPES) {
      const w = quantizeWeight(type, random(N * K, seed++, 0.5), N, K);
      const dy = random(M * N, seed++, 1);
      if (M > 2) dy.fill(0, N, 2 * N); // a row of dy that is all zero
      const dx0 = random(M * K, seed++, 1);
      const want = dx0.slice();
      referenceBackend.matmulQuantizedTransposed(dy, w.blocks, type, want, M, N, K);
      const got = dx0.slice();
      be.matmulQuantizedTransposed(dy, w.blocks, type, got, M, N, K);
      const scale = maxAbs(want);
      for (let i = 0; i < got.length; i++) {
        const e = Math.abs(got[i] - want[i]) / scale;
        if (!(e < 1e-5)) assert.fail(`${type} M=${M} N=${N} K=${K}: element ${i}: native ${got[i]} vs reference ${want[i]}`);
        worst = Math.max(worst, e);
      }
    }
  }
  const line = `QMMT_MAXERR simd=${nativeBackendInfo()?.simd} vs-ref ${worst.toExponential(2)}`;
  if (CHILD) process.stdout.write(`${line}\n`);
  else t.diagnostic(line);
});

test('native matmulQuantizedTransposed rejects bad arguments', { skip: skipReason }, () => {
  const be = nb();
  const w = quantizeWeight('q4_0', random(4 * 64, 3), 4, 64);
  const dy = random(2 * 4, 4);
  const dx = new Float32Array(2 * 64);
  be.matmulQuantizedTransposed(dy, w.blocks, 'q4_0', dx, 2, 4, 64);
  assert.throws(() => be.matmulQuantizedTransposed(dy, w.blocks.subarray(1), 'q4_0', dx, 2, 4, 64), TypeError);
  assert.throws(() => be.matmulQuantizedTransposed(dy.subarray(1), w.blocks, 'q4_0', dx, 2, 4, 64), TypeError);
  assert.throws(() => be.matmulQuantizedTransposed(dy, w.blocks, 'q4_0', dx.subarray(1), 2, 4, 64), TypeError);
  assert.throws(() => be.matmulQuantizedTransposed(dy, w.blocks, 'q8_0', dx, 2, 4, 64), TypeError); // Q8_0 rows are longer
  assert.throws(() => be.matmulQuantizedTransposed(dy, w.blocks, 'q4_0', dx, 2, 4, 48), RangeError);
});

if (!CHILD) {
  for (const [label, env] of [['LLMTS_SIMD=portable', { LLMTS_SIMD: 'portable' }], ['LLMTS_SIMD=avx2', { LLMTS_SIMD: 'avx2' }], ['LLMTS_NO_VNNI=1', { LLMTS_NO_VNNI: '1' }]] as const) {
    test(`native matmulQuantized matches the reference with ${label}`, { skip: skipReason }, (t) => {
      nb();
      const simd = nativeBackendInfo()?.simd;
      if (label !== 'LLMTS_SIMD=portable' && simd !== 'avx2' && simd !== 'avx512') {
        t.skip(`this CPU has no AVX2 (${simd})`);
        return;
      }
      const r = runChild({ ...env, LLMTS_QMM_TEST_CHILD: 'check' });
      assert.equal(r.status, 0, `the ${label} child failed:\n${r.out.slice(-4000)}`);
      const line = /QMM_MAXERR .*/.exec(r.out);
      assert.ok(line, r.out.slice(-2000));
      t.diagnostic(line[0]);
      const transposed = /QMMT_MAXERR .*/.exec(r.out);
      assert.ok(transposed, r.out.slice(-2000));
      t.diagnostic(transposed[0]);
    });
  }
}
