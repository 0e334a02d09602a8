/**
 * Quantized matrix products (Q8_0 / Q4_0 GGUF blocks, int8 activations) next to the F32 sgemm of
 * the same shape, llm.ts native backend only: the shapes of a Llama-110M prefill (M = prompt
 * rows) and decode (M = 1). Integer multiply-adds per second, median of --reps timed calls.
 * A second table times the backward product of training through a frozen quantized weight
 * (matmulQuantizedTransposed, dx += dy · W, QLoRA) against the F32 sgemm of the same product, for
 * --train-m rows (tokens of a micro-batch).
 *
 *   node dist/bench/quant-matmul.js [--reps 20] [--m 100] [--train-m 1024]
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

const { values } = parseArgs({ options: { reps: { type: 'string' }, m: { type: 'string' }, 'train-m': { type: 'string' } } });
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

const trainM = Number(values['train-m'] ?? 1024);
console.log(`\nbackward through the weight: dx (M, K) += dy (M, N) · W, M = ${trainM}\n`);
console.log(`| shape | f32 sgemm GFLOP/s | q8_0 GFLOP/s | q4_0 GFLOP/s | f32 ms | q8_0 ms | q4_0 ms |`);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [name, , N, K] of shapes.slice(0, 3).concat([['classifier (32000x768)', 0, 32000, 768]])) {
  const M = trainM;
  const dy = randomArray(M * N, 3);
  const wf = randomArray(N * K, 2);
  const dx = new Float32Array(M * K);
  const tf = timeIt(() => be.gemm({ a: dy, b: wf, c: dx, M, N: K, K: N, beta: 1 }), reps);
  const q: Record<string, number> = {};
  for (const type of ['q8_0', 'q4_0'] as QuantType[]) {
    const w = quantizeWeight(type, wf, N, K);
    q[type] = timeIt(() => be.matmulQuantizedTransposed(dy, w.blocks, type, dx, M, N, K), reps);
  }
  const flop = 2 * M * N * K;
  console.log(`| ${name} | ${(flop / tf / 1e6).toFixed(1)} | ${(flop / q.q8_0 / 1e6).toFixed(1)} | ${(flop / q.q4_0 / 1e6).toFixed(1)} | ${tf.toFixed(2)} | ${q.q8_0.toFixed(2)} | ${q.q4_0.toFixed(2)} |`);
}
console.log(`\nnative ${info?.simd ?? 'none'}, ${info?.threads ?? 0} threads; median of ${reps}`);
