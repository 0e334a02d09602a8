/**
 * GEMM throughput: our native sgemm next to PyTorch (MKL in the torch 2.x wheel) and numpy
 * (OpenBLAS), 1 and all threads, same machine, same run, and as a fraction of the CPU's measured
 * FMA peak. The shapes are the square classics plus every product of a training step of the
 * 6-layer/384/T256 model (batch 16: 4096 rows) and of shakespeare-char (batch 12, T64: 768 rows).
 *
 *   node dist/bench/gemm.js [--ms 600] [--rounds 3] [--threads 1,2] [--groups square,6l,char,matvec]
 *                           [--python PATH] [--no-peers]
 *
 * Each (library, thread count) runs in its own process, because thread pools are sized at
 * start-up; the processes alternate (ours, torch, numpy, ours, ...) for --rounds rounds and each
 * shape reports the median over rounds, so a busy neighbour hits every library alike. Peers are
 * measured at their best: OPENBLAS_CORETYPE (which this machine exports and which forces
 * OpenBLAS onto older kernels) is removed from their environment.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nativeBackend, nativeBackendInfo, nativeFunction, nativeLoadError } from '../src/backend/index.js';

/** C = op(A) op(B) (+ C when beta is 1, as the backward products accumulate), A (M, K), B (K, N) before the transposes. */
interface Shape {
  name: string;
  group: 'square' | '6l' | 'char' | 'matvec';
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  beta: 0 | 1;
}

/** The 4 products of a linear layer's step (x W, dx = dy Wᵀ, dW = xᵀ dy) for rows x (in -> out). */
function linearShapes(group: Shape['group'], rows: number, inDim: number, outDim: number): Shape[] {
  const s = (M: number, N: number, K: number, transA: boolean, transB: boolean, beta: 0 | 1): Shape =>
    ({ name: `${M}x${N}x${K}${transA ? ' tA' : ''}${transB ? ' tB' : ''}`, group, M, N, K, transA, transB, beta });
  return [s(rows, outDim, inDim, false, false, 0), s(rows, inDim, outDim, false, true, 1), s(inDim, outDim, rows, true, false, 1)];
}

/** Every product of one transformer block's step: QKV (C -> 3C), attention output (C -> C), MLP (C -> 4C -> C). */
function blockShapes(group: Shape['group'], rows: number, C: number): Shape[] {
  return [...linearShapes(group, rows, C, 3 * C), ...linearShapes(group, rows, C, C), ...linearShapes(group, rows, C, 4 * C),
    ...linearShapes(group, rows, 4 * C, C)];
}

const SHAPES: Shape[] = [
  { name: '1024^3', group: 'square', M: 1024, N: 1024, K: 1024, transA: false, transB: false, beta: 0 },
  { name: '2048^3', group: 'square', M: 2048, N: 2048, K: 2048, transA: false, transB: false, beta: 0 },
  { name: '768x1536x384', group: 'square', M: 768, N: 1536, K: 384, transA: false, transB: false, beta: 0 },
  { name: '768x384x1536', group: 'square', M: 768, N: 384, K: 1536, transA: false, transB: false, beta: 0 },
  ...blockShapes('6l', 16 * 256, 384),
  ...blockShapes('char', 12 * 64, 128),
  // the matvec multiplies a row-major (4096, 4096) matrix by a vector
  { name: 'matvec 4096x4096', group: 'matvec', M: 1, N: 4096, K: 4096, transA: false, transB: true, beta: 0 },
];

const GROUP_TITLE: Record<Shape['group'], string> = {
  square: 'square and classic shapes',
  '6l': '6-layer/384/T256 step (batch 16: 4096 rows), M x N x K, tA/tB = transposed operand, backward products accumulate (beta 1)',
  char: 'shakespeare-char step (batch 12, T64: 768 rows)',
  matvec: 'matrix-vector (memory-bound: % of peak does not apply)',
};

interface Run {
  lib: string;
  version: string;
  blas?: string;
  threads: number;
  results: Record<string, number>;
  peak?: number;
  error?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Child mode: our GFLOP/s per shape with the thread count given by LLMTS_THREADS. */
function runOurs(ms: number, shapes: Shape[]): Run {
  const nb = nativeBackend();
  const info = nativeBackendInfo();
  if (!nb || !info) throw new Error(nativeLoadError() ?? 'native backend unavailable');
  const results: Record<string, number> = {};
  for (const { name, M, N, K, transA, transB, beta } of shapes) {
    const a = new Float32Array(M * K).map(() => Math.random() - 0.5);
    const b = new Float32Array(K * N).map(() => Math.random() - 0.5);
    const c = new Float32Array(M * N);
    const call = (): void => nb.gemm({ M, N, K, a, b, c, transA, transB, beta });
    call();
    const rates: number[] = [];
    for (let r = 0; r < 5; r++) {
      let n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < ms / 5) {
        call();
        n++;
      }
      rates.push((2 * M * N * K * n) / ((performance.now() - t0) / 1000) / 1e9);
    }
    results[name] = median(rates);
  }
  const peak = nativeFunction<(ms: number) => number>('fmaPeak');
  return { lib: `llm.ts native (${info.simd})`, version: '', threads: info.threads, results, peak: peak ? peak(Math.min(ms, 500)) : undefined };
}

function spawnJson(cmd: string, args: string[], env: NodeJS.ProcessEnv): Run | { error: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 1 << 20 });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || 'failed').trim().split('\n').slice(-1)[0] };
  try {
    return JSON.parse(r.stdout.trim().split('\n').slice(-1)[0]) as Run;
  } catch {
    return { error: `unreadable output: ${r.stdout.slice(0, 100)}` };
  }
}

/** torch's major version under `python`, or null when it has no torch. */
function torchMajor(python: string): number | null {
  if (!existsSync(python)) return null;
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  const m = r.status === 0 ? /^(\d+)\./.exec(r.stdout.trim()) : null;
  return m ? Number(m[1]) : null;
}

/** The interpreter for the peers: the one given, else the first known one with torch 2.x, else Debian's. */
function pickPython(given: string | undefined): string {
  if (given) return given;
  // where this project's machines keep a torch 2.x (MKL) virtualenv
  for (const candidate of ['/tmp/venv-peft/bin/python', '/tmp/venv-torch/bin/python']) {
    const major = torchMajor(candidate);
    if (major !== null && major >= 2) return candidate;
  }
  return '/usr/bin/python3';
}

function main(): void {
  const { values } = parseArgs({
    options: {
      child: { type: 'boolean' }, ms: { type: 'string' }, rounds: { type: 'string' }, threads: { type: 'string' },
      groups: { type: 'string' }, python: { type: 'string' }, 'no-peers': { type: 'boolean' },
    },
  });
  const ms = Number(values.ms ?? 600);
  const groups = (values.groups ?? 'square,6l,char,matvec').split(',');
  const shapes = SHAPES.filter((s) => groups.includes(s.group));
  if (values.child) {
    process.stdout.write(JSON.stringify(runOurs(ms, shapes)) + '\n');
    return;
  }
  const rounds = Math.max(1, Number(values.rounds ?? 3));
  const threadCounts = (values.threads ?? `1,${cpus().length}`).split(',').map(Number).filter((n, i, a) => n > 0 && a.indexOf(n) === i);
  const self = fileURLToPath(import.meta.url);
  const peerScript = fileURLToPath(new URL('../../bench/gemm_peer.py', import.meta.url));
  const python = values['no-peers'] ? '' : pickPython(values.python);
  const peerEnv = (threads: number): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
    delete env.OPENBLAS_CORETYPE;
    return env;
  };
  const shapeJson = JSON.stringify(shapes.map(({ name, M, N, K, transA, transB, beta }) => [name, M, N, K, transA, transB, beta]));
  const loadStart = loadavg()[0];
  // rounds x (ours, torch, numpy) per thread count, alternating; per (lib, threads): every round's run
  const byKey = new Map<string, Run[]>();
  const errors: string[] = [];
  const add = (key: string, r: Run | { error: string }, lib: string, threads: number): void => {
    if ('results' in r) byKey.set(key, [...(byKey.get(key) ?? []), r]);
    else errors.push(`${lib} (${threads} threads) failed: ${r.error}`);
  };
  for (let round = 0; round < rounds; round++) {
    for (const threads of threadCounts) {
      process.stderr.write(`round ${round + 1}/${rounds}: llm.ts, ${threads} thread(s)...\n`);
      add(`ours/${threads}`, spawnJson(process.execPath, [self, '--child', '--ms', String(ms), '--groups', groups.join(',')],
        { ...process.env, LLMTS_THREADS: String(threads) }), 'llm.ts', threads);
      if (values['no-peers']) continue;
      for (const lib of ['torch', 'numpy']) {
        process.stderr.write(`round ${round + 1}/${rounds}: ${lib}, ${threads} thread(s)...\n`);
        add(`${lib}/${threads}`, spawnJson(python, [peerScript, '--lib', lib, '--threads', String(threads), '--ms', String(ms), '--shapes', shapeJson],
          peerEnv(threads)), lib, threads);
      }
    }
  }
  const runs: Run[] = [];
  for (const rs of byKey.values()) {
    const results: Record<string, number> = {};
    for (const s of shapes) {
      const xs = rs.map((r) => r.results[s.name]).filter((v) => v !== undefined);
      if (xs.length) results[s.name] = median(xs);
    }
    const peaks = rs.map((r) => r.peak).filter((p): p is number => p !== undefined);
    runs.push({ ...rs[0], results, peak: peaks.length ? median(peaks) : undefined });
  }
  printTable(runs, threadCounts, shapes);
  console.log(`\n${new Date().toISOString()}; ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores; ` +
    `load average ${loadStart.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end; ${rounds} round(s), median over rounds`);
  if (python) console.log(`peers: ${python}; OPENBLAS_CORETYPE removed from their environment, OPENBLAS/OMP/MKL_NUM_THREADS = threads, torch.set_num_threads(threads)`);
  for (const line of new Set(runs.filter((r) => r.blas).map((r) => `${r.lib} ${r.version}: ${r.blas}`))) console.log(line);
  for (const e of [...new Set(errors)]) console.log(e);
}

function printTable(runs: Run[], threadCounts: number[], shapes: Shape[]): void {
  for (const threads of threadCounts) {
    const group = runs.filter((r) => r.threads === threads);
    const ours = group.find((r) => r.lib.startsWith('llm.ts'));
    const peers = group.filter((r) => r !== ours);
    const peak = ours?.peak;
    const pct = (v: number | undefined): string => (v !== undefined && peak ? `${((100 * v) / peak).toFixed(0)}%` : '—');
    console.log(`\n### ${threads} thread${threads > 1 ? 's' : ''}` + (peak ? ` — measured FMA peak ${peak.toFixed(0)} GFLOP/s` : ''));
    const peerNames = peers.map((p) => `${p.lib} ${p.version}`);
    for (const g of [...new Set(shapes.map((s) => s.group))]) {
      const rows = shapes.filter((s) => s.group === g);
      console.log(`\n${GROUP_TITLE[g]}\n`);
      console.log(`| shape | ${['llm.ts', ...peerNames].join(' | ')} | llm.ts / best peer | llm.ts % of peak | ${peerNames.map((n) => `${n} % of peak`).join(' | ')} |`);
      console.log(`|${' --- |'.repeat(2 * peers.length + 4)}`);
      const line = (name: string, o: number | undefined, ps: (number | undefined)[]): void => {
        const cells = [o, ...ps].map((v) => (v === undefined ? '—' : v.toFixed(1)));
        const bestPeer = Math.max(...ps.map((v) => v ?? 0));
        const ratio = o !== undefined && bestPeer > 0 ? `${(o / bestPeer).toFixed(2)}x` : '—';
        console.log(`| ${name} | ${cells.join(' | ')} | ${ratio} | ${pct(o)} | ${ps.map(pct).join(' | ')} |`);
      };
      for (const s of rows) line(s.name, ours?.results[s.name], peers.map((p) => p.results[s.name]));
      if (g === '6l' || g === 'char') {
        // one call of each product, as a step makes per layer: total flops over total time
        const flops = (s: Shape): number => 2 * s.M * s.N * s.K;
        const agg = (res: Record<string, number> | undefined): number | undefined => {
          if (!res || rows.some((s) => !res[s.name])) return undefined;
          return rows.reduce((t, s) => t + flops(s), 0) / rows.reduce((t, s) => t + flops(s) / res[s.name], 0);
        };
        line('**all, one call each**', agg(ours?.results), peers.map((p) => agg(p.results)));
      }
    }
  }
  console.log('\nGFLOP/s, per shape the median over rounds of the median of 5 timed batches; "all, one call each" = total flops / total time.');
}

main();
