/**
 * bf16 mixed precision: which path the bf16 products of this process take, decided once (like the
 * SIMD level) the first time a bf16 product is asked for.
 *
 *   'kernel'    Backend.gemmBf16 with a fast kernel of the native addon: AMX tiles or AVX512-BF16
 *               (vdpbf16ps), picked by the CPU and checked on a small product first (native/gemm_bf16.c)
 *   'portable'  operands rounded to bf16 (Backend.roundBf16), then the float32 gemm: the same
 *               numbers on any CPU (every product of two bf16 values is exact in float32), slower
 *               than float32 itself; what tests and quality checks use on CPUs without the instructions
 *   'off'       neither instruction set: bf16 is asked for but products stay float32, said once on stderr
 *
 * LLMTS_BF16 chooses: auto (default: a fast kernel, else off), portable, avx512bf16, amx (only that
 * kernel), emulate / emulate-amx (the native driver with a C emulation of the instructions, for tests;
 * slow). The reference backend has no fast kernel: there auto is off and the kernel paths run its
 * own gemmBf16 (widen, round, gemm).
 */
import { backend, nativeFunction } from './index.js';
import { LlmError } from '../util/errors.js';

export type Bf16Path = 'off' | 'portable' | 'kernel';

export interface Bf16Choice {
  path: Bf16Path;
  /** the gemmBf16 kernel ('amx', 'avx512bf16', 'emulate', 'emulate-amx', 'reference'); null off the kernel path */
  kernel: string | null;
  /** one line: what runs and why */
  reason: string;
}

interface KernelReport {
  kernel: string;
  warning: string | null;
  avx512bf16: boolean;
  amx: boolean;
}

const REQUESTS = ['auto', 'portable', 'avx512bf16', 'amx', 'emulate', 'emulate-amx'];

let choice: Bf16Choice | null = null;

/**
 * The bf16 path of this process, decided on the first call (only bf16 runs ask), which says on
 * stderr, once, what bf16 runs on: e.g. 'llmts: bf16: avx512bf16 kernel', or 'llmts: bf16: this CPU
 * has neither AVX512-BF16 nor AMX: training in float32 (...)'.
 */
export function bf16Choice(): Bf16Choice {
  if (choice === null) {
    choice = decide();
    process.stderr.write(`llmts: ${choice.reason}\n`);
  }
  return choice;
}

/** Replace the decision (tests and benchmarks); null decides again from LLMTS_BF16 and the CPU on next use. */
export function setBf16Choice(c: Bf16Choice | null): void {
  choice = c;
}

/** Decide for an LLMTS_BF16 value without printing or keeping the result. */
export function decideBf16(request = process.env.LLMTS_BF16 ?? 'auto'): Bf16Choice {
  return decide(request);
}

function decide(request = process.env.LLMTS_BF16 ?? 'auto'): Bf16Choice {
  if (!REQUESTS.includes(request)) throw new LlmError(`LLMTS_BF16=${request} is not a bf16 path (use ${REQUESTS.join(', ')})`);
  if (request === 'portable') {
    return { path: 'portable', kernel: null, reason: 'bf16: operands rounded to bf16 then float32 products (LLMTS_BF16=portable)' };
  }
  const native = backend().name === 'native';
  const select = native ? nativeFunction<(r: string) => KernelReport>('bf16Kernel') : undefined;
  if (request === 'emulate' || request === 'emulate-amx') {
    const kernel = select ? select(request).kernel : 'reference';
    return { path: 'kernel', kernel, reason: `bf16: the ${kernel} kernel (LLMTS_BF16=${request}; an emulation, slow)` };
  }
  const override = 'LLMTS_BF16=portable computes the same bf16 numbers on any CPU, slower';
  if (!select) {
    return { path: 'off', kernel: null, reason: `bf16: the ${backend().name} backend has no bf16 kernels: training in float32 (${override})` };
  }
  const report = select(request);
  if (report.warning) process.stderr.write(`llmts: warning: ${report.warning}\n`);
  if (report.kernel !== 'none') return { path: 'kernel', kernel: report.kernel, reason: `bf16: ${report.kernel} kernel (bf16 products, float32 sums)` };
  const lacks = request === 'auto' ? 'neither AVX512-BF16 nor AMX' : `no usable ${request === 'amx' ? 'AMX-BF16' : 'AVX512-BF16'} (LLMTS_BF16=${request})`;
  const has = report.avx512bf16 || report.amx;
  const what = has && report.warning ? `its bf16 kernels failed their check` : `this CPU has ${lacks}`;
  return { path: 'off', kernel: null, reason: `bf16: ${what}: training in float32 (${override})` };
}
