/**
 * Time per Backend kernel: replaces the backend with one whose every kernel call is timed, so a
 * bench can say where a step's time goes (bench/profile-step.ts, `bench/align.ts --profile`).
 *
 *   const timer = timeKernels({ byShape: false });   // before the model is built
 *   ...untimed warm-up...; timer.clear();
 *   ...N timed steps taking `wall` ms each...
 *   console.log(timer.table(wall, N));                // | kernel | calls/step | ms/step | % | + (outside kernels)
 */
import { backend, setBackend, type Backend } from '../src/backend/index.js';

interface GemmArgs { M: number; N: number; K: number; transA?: boolean; transB?: boolean; batch?: number }
const gemmKey = (g: GemmArgs): string => `gemm ${g.M}x${g.N}x${g.K}${g.transA ? ' tA' : ''}${g.transB ? ' tB' : ''}`;

export interface KernelTimer {
  clear(): void;
  /** markdown table of the kernels' ms per step (largest first) against `wall` ms per step over `steps` steps */
  table(wall: number, steps: number): string;
  /** every gemm call since the last clear(): their total ms and floating-point operations (2·M·N·K per product) */
  gemm(): { ms: number; flops: number };
}

/** byShape: gemm calls keyed by M x N x K and transposes. */
export function timeKernels(opts: { byShape?: boolean } = {}): KernelTimer {
  const totals = new Map<string, { ms: number; calls: number }>();
  const gemm = { ms: 0, flops: 0 };
  const inner = backend();
  const timed = Object.fromEntries(
    Object.entries(inner).map(([name, fn]) => {
      if (typeof fn !== 'function') return [name, fn];
      return [name, (...args: unknown[]) => {
        const t0 = performance.now();
        const r = (fn as (...a: unknown[]) => unknown)(...args);
        const key = opts.byShape && name === 'gemm' ? gemmKey(args[0] as GemmArgs) : name;
        const entry = totals.get(key) ?? { ms: 0, calls: 0 };
        const ms = performance.now() - t0;
        entry.ms += ms;
        entry.calls++;
        totals.set(key, entry);
        if (name === 'gemm') {
          const g = args[0] as GemmArgs;
          gemm.ms += ms;
          gemm.flops += 2 * g.M * g.N * g.K * (g.batch ?? 1);
        }
        return r;
      }];
    }),
  ) as unknown as Backend;
  setBackend(timed);
  return {
    clear: () => {
      totals.clear();
      gemm.ms = 0;
      gemm.flops = 0;
    },
    gemm: () => ({ ...gemm }),
    table: (wall, steps) => {
      const out = ['| kernel | calls/step | ms/step | % |', '| --- | ---: | ---: | ---: |'];
      let kernels = 0;
      for (const [name, { ms, calls }] of [...totals].sort((a, b) => b[1].ms - a[1].ms)) {
        kernels += ms / steps;
        out.push(`| ${name} | ${(calls / steps).toFixed(0)} | ${(ms / steps).toFixed(2)} | ${((100 * ms) / steps / wall).toFixed(1)} |`);
      }
      out.push(`| (outside kernels) | | ${(wall - kernels).toFixed(2)} | ${((100 * (wall - kernels)) / wall).toFixed(1)} |`);
      return out.join('\n');
    },
  };
}
