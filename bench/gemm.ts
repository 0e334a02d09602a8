/**
 * GEMM throughput: our native sgemm next to numpy (OpenBLAS) and PyTorch, 1 and all threads,
 * same machine, same run, and as a fraction of the CPU's measured FMA peak.
 *
 *   node dist/bench/gemm.js [--ms 1000] [--threads 1,2] [--no-peers]
 *
 * Each (library, thread count) runs in its own process, because thread pools are sized at
 * start-up. Peers are measured at their best: OPENBLAS_CORETYPE (which this machine exports
 * and which forces OpenBLAS onto older kernels) is removed from their environment.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nativeBackend, nativeBackendInfo, nativeFunction, nativeLoadError } from '../src/backend/index.js';

const SHAPES: [string, number, number, number, boolean][] = [
  // name, M, N, K, transB (the matvec multiplies a row-major (4096, 4096) matrix by a vector)
  ['1024^3', 1024, 1024, 1024, false],
  ['2048^3', 2048, 2048, 2048, false],
  ['768x384 . 384x1536', 768, 1536, 384, false],
  ['768x1536 . 1536x384', 768, 384, 1536, false],
  ['matvec 4096x4096', 1, 4096, 4096, true],
];

interface Run {
  lib: string;
  version: string;
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
function runOurs(ms: number): Run {
  const nb = nativeBackend();
  const info = nativeBackendInfo();
  if (!nb || !info) throw new Error(nativeLoadError() ?? 'native backend unavailable');
  const results: Record<string, number> = {};
  for (const [name, M, N, K, transB] of SHAPES) {
    const a = new Float32Array(M * K).map(() => Math.random() - 0.5);
    const b = new Float32Array(K * N).map(() => Math.random() - 0.5);
    const c = new Float32Array(M * N);
    const call = (): void => nb.gemm({ M, N, K, a, b, c, transB });
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

function main(): void {
  const { values } = parseArgs({
    options: { child: { type: 'boolean' }, ms: { type: 'string' }, threads: { type: 'string' }, 'no-peers': { type: 'boolean' } },
  });
  const ms = Number(values.ms ?? 1000);
  if (values.child) {
    process.stdout.write(JSON.stringify(runOurs(ms)) + '\n');
    return;
  }
  const threadCounts = (values.threads ?? `1,${cpus().length}`).split(',').map(Number).filter((n, i, a) => n > 0 && a.indexOf(n) === i);
  const self = fileURLToPath(import.meta.url);
  const peerScript = fileURLToPath(new URL('../../bench/gemm_peer.py', import.meta.url));
  const peerEnv = (threads: number): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
    delete env.OPENBLAS_CORETYPE;
    return env;
  };
  const load = loadavg()[0];
  const runs: (Run & { error?: string })[] = [];
  for (const threads of threadCounts) {
    process.stderr.write(`measuring llm.ts, ${threads} thread(s)...\n`);
    const ours = spawnJson(process.execPath, [self, '--child', '--ms', String(ms)], { ...process.env, LLMTS_THREADS: String(threads) });
    runs.push('results' in ours ? ours : { lib: 'llm.ts native', version: '', threads, results: {}, error: ours.error });
    if (values['no-peers']) continue;
    for (const lib of ['numpy', 'torch']) {
      process.stderr.write(`measuring ${lib}, ${threads} thread(s)...\n`);
      const r = spawnJson('/usr/bin/python3', [peerScript, '--lib', lib, '--threads', String(threads), '--ms', String(ms)], peerEnv(threads));
      runs.push('results' in r ? r : { lib, version: '', threads, results: {}, error: r.error });
    }
  }
  printTable(runs, threadCounts);
  console.log(`\n${new Date().toISOString()}; ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores; load average at start ${load.toFixed(2)}`);
  console.log('peers: OPENBLAS_CORETYPE removed from their environment (OpenBLAS picks its own kernels), OPENBLAS_NUM_THREADS = threads; torch.set_num_threads(threads)');
  for (const r of runs) if (r.error) console.log(`${r.lib} (${r.threads} threads) failed: ${r.error}`);
}

function printTable(runs: Run[], threadCounts: number[]): void {
  for (const threads of threadCounts) {
    const group = runs.filter((r) => r.threads === threads && !r.error);
    const ours = group.find((r) => r.lib.startsWith('llm.ts'));
    const peers = group.filter((r) => r !== ours);
    const best = (shape: string): number => Math.max(...peers.map((p) => p.results[shape] ?? 0));
    console.log(`\n### ${threads} thread${threads > 1 ? 's' : ''}` + (ours?.peak ? ` — measured FMA peak ${ours.peak.toFixed(0)} GFLOP/s` : ''));
    console.log(`\n| shape | ${['llm.ts', ...peers.map((p) => `${p.lib} ${p.version}`)].join(' | ')} | llm.ts / best peer | llm.ts % of peak |`);
    console.log(`|${' --- |'.repeat(peers.length + 4)}`);
    for (const [name] of SHAPES) {
      const o = ours?.results[name];
      const cells = [o, ...peers.map((p) => p.results[name])].map((v) => (v === undefined ? '—' : v.toFixed(1)));
      const ratio = o !== undefined && peers.length ? `${(o / best(name)).toFixed(2)}x` : '—';
      const pct = o !== undefined && ours?.peak ? `${((100 * o) / ours.peak).toFixed(0)}%` : '—';
      console.log(`| ${name} | ${cells.join(' | ')} | ${ratio} | ${pct} |`);
    }
  }
  console.log('\nGFLOP/s, median of 5 timed batches; matvec is memory-bound (peak % does not apply).');
}

main();
