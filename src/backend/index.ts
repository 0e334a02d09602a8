/**
 * Backend selection, once per process: the native backend when its addon loads, else the
 * reference backend with a one-line warning. `LLMTS_BACKEND=reference|native` forces one
 * (forcing native when it cannot load is an error).
 */
import type { Backend } from './backend.js';
import { referenceBackend } from './reference/index.js';
import { addonFunction, loadNativeBackend, type NativeInfo } from './native.js';
import { LlmError } from '../util/errors.js';

export type { Backend, GemmArgs, GemmBf16Args, AttentionShape, CachedAttentionShape, QuantType } from './backend.js';
export type { NativeInfo } from './native.js';
export { referenceBackend };

let current: Backend | null = null;
let nativeInfo: NativeInfo | null = null;
let nativeTried = false;
let nativeBackendCache: Backend | null = null;
let nativeError: string | null = null;

/** The backend every op uses. */
export function backend(): Backend {
  if (current === null) current = chooseBackend();
  return current;
}

/** Replace the backend (tests run the same checks on each). */
export function setBackend(b: Backend): void {
  current = b;
}

/** The native backend, or null with the reason in nativeLoadError(). */
export function nativeBackend(): Backend | null {
  if (!nativeTried) {
    nativeTried = true;
    const load = loadNativeBackend();
    nativeBackendCache = load.backend;
    nativeInfo = load.info;
    nativeError = load.error;
  }
  return nativeBackendCache;
}

export function nativeLoadError(): string | null {
  nativeBackend();
  return nativeError;
}

/** SIMD level, threads and native kernel list of the native backend (null if not loaded). */
export function nativeBackendInfo(): NativeInfo | null {
  nativeBackend();
  return nativeInfo;
}

/** A non-kernel function of the native addon (benchmark helpers such as fmaPeak). */
export function nativeFunction<F>(name: string): F | undefined {
  nativeBackend();
  return addonFunction<F>(name);
}

/** One line describing the backend in use, e.g. "native (avx512, 2 threads)" or "native (avx2, 1 thread)". */
export function describeBackend(): string {
  const b = backend();
  if (b.name === 'native' && nativeInfo) return `native (${nativeInfo.simd}, ${nativeInfo.threads} thread${nativeInfo.threads === 1 ? '' : 's'})`;
  return b.name;
}

/**
 * Ask for `n` compute threads (what LLMTS_THREADS sets). The native thread pool starts when the
 * addon loads, so this must come first: the CLI calls it while reading its flags.
 */
export function requestThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new LlmError(`thread count must be a positive integer, got ${n}`);
  if (nativeTried) {
    if (nativeInfo && nativeInfo.threads !== n) throw new LlmError(`the native backend already runs ${nativeInfo.threads} threads; choose threads before it starts`);
    return;
  }
  process.env.LLMTS_THREADS = String(n);
}

function chooseBackend(): Backend {
  const wanted = process.env.LLMTS_BACKEND;
  if (wanted === 'reference') return referenceBackend;
  if (wanted && wanted !== 'native') {
    throw new LlmError(`LLMTS_BACKEND=${wanted} is not a backend (use reference or native)`);
  }
  const native = nativeBackend();
  if (native) return native;
  if (wanted === 'native') throw new LlmError(`LLMTS_BACKEND=native but ${nativeError}`);
  process.stderr.write(`llmts: warning: ${nativeError}; using the slower reference backend\n`);
  return referenceBackend;
}
