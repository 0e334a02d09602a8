/**
 * Quantized matrix products (Q8_0 / Q4_0 GGUF blocks, int8 activations) next to the F32 sgemm of
 * the same shape, llm.ts native backend only: the shapes of a Llama-110M prefill (M = prompt
 * rows) and decode (M = 1). Integer multiply-adds per second, median of --reps timed calls.
 *
 *   node dist/bench/quant-matmul.js [--reps 20] [--m 100]
 */
import { parseArgs } from 'node:util';
import { backend, nativeBackendInfo } from '../src/backend/index.js';
import type { QuantType } from '../src/backend/index.js';
import { quantizeWeight } from '../src/model/quantized.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

function timeIt(fn: () => void, reps: number): number {
  fn();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

const { values } = parseArgs({ options: { reps: { type: 'string' }, m: { type: 'string' } } });
const reps = Number(values.reps ?? 20);
const prefillM = Number(values.m ?? 100);
const be = backend();
const info = nativeBackendInfo();
const shapes: [string, number, number, number][] = [
  ['attn q/o (768x768)', prefillM, 768, 768],
  ['mlp up (2048x768)', prefillM, 2048, 768],
  ['mlp down (768x2048)', prefillM, 768, 2048],
  ['decode mlp up', 1, 2048, 768],
  ['decode classifier (32000x768)', 1, 32000, 768],
];
console.log(`| shape | M | f32 GFLOP/s | q8_0 GMAC/s | q4_0 GMAC/s | q8_0 ms | q4_0 ms |`);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [name, M, N, K] of shapes) {
  const x = randomArray(M * K, 1);
  const wf = randomArray(N * K, 2);
  const out = new Float32Array(M * N);
  const tf = timeIt(() => be.gemm({ a: x, b: wf, c: out, M, N, K, transB: true }), reps);
  const q: Record<string, number> = {};
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    const w = quantizeWeight(type, wf, N, K);
    q[type] = timeIt(() => be.matmulQuantized(x, w.blocks, type, out, M, N, K), reps);
  }
  const mac = M * N * K;
  console.log(`| ${name} | ${M} | ${((2 * mac) / tf / 1e6).toFixed(1)} | ${(mac / q.q8_0 / 1e6).toFixed(1)} | ${(mac / q.q4_0 / 1e6).toFixed(1)} | ${q.q8_0.toFixed(3)} | ${q.q4_0.toFixed(3)} |`);
}
console.log(`\nnative ${info?.simd ?? 'none'}, ${info?.threads ?? 0} threads; median of ${reps}`);
