/**
 * The native backend: C kernels (SIMD + a thread pool) in an N-API addon built by `npm install`
 * (native/, binding.gyp). Each addon function takes the same arguments as the Backend method
 * of the same name, except gemm and attention, whose option objects are flattened into numbers.
 * Kernels the addon does not provide fall back to the reference implementation.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AttentionShape, Backend, CachedAttentionShape, GemmArgs } from './backend.js';
import { referenceBackend } from './reference/index.js';

/** What the addon exports (all optional except info: a partial addon still works). */
type Addon = Record<string, ((...args: never[]) => unknown) | undefined> & {
  info(): { simd: string; threads: number };
};

export interface NativeInfo {
  simd: string;
  threads: number;
  /** kernels computed natively; the others run on the reference backend */
  nativeKernels: string[];
  path: string;
}

export interface NativeLoad {
  backend: Backend | null;
  info: NativeInfo | null;
  /** why loading failed */
  error: string | null;
}

const ADDON_CANDIDATES = ['../../../build/Release/llmts_native.node', '../../build/Release/llmts_native.node'];

let loadedAddon: Addon | null = null;

/** A non-kernel export of the loaded addon (e.g. fmaPeak for benchmarks). */
export function addonFunction<F>(name: string): F | undefined {
  return (loadedAddon?.[name] as F | undefined) ?? undefined;
}

export function loadNativeBackend(): NativeLoad {
  const require = createRequire(import.meta.url);
  const path = ADDON_CANDIDATES.map((rel) => fileURLToPath(new URL(rel, import.meta.url))).find((p) => existsSync(p));
  if (!path) return { backend: null, info: null, error: 'the native addon is not built (run npm install with a C compiler available)' };
  let addon: Addon;
  try {
    addon = require(path) as Addon;
  } catch (err) {
    return { backend: null, info: null, error: `the native addon failed to load: ${(err as Error).message.split('\n')[0]}` };
  }
  loadedAddon = addon;
  const backend = makeBackend(addon);
  const nativeKernels = Object.keys(referenceBackend).filter((k) => k !== 'name' && typeof addon[k] === 'function');
  return { backend, info: { ...addon.info(), nativeKernels, path }, error: null };
}

function makeBackend(addon: Addon): Backend {
  // each Backend method either forwards to the addon or keeps the reference kernel
  const pick = <K extends keyof Backend>(key: K, adapt?: (fn: (...args: unknown[]) => unknown) => Backend[K]): Backend[K] => {
    const fn = addon[key as string] as ((...args: unknown[]) => unknown) | undefined;
    if (!fn) return referenceBackend[key];
    return adapt ? adapt(fn) : (fn as unknown as Backend[K]);
  };
  return {
    name: 'native',
    gemm: pick('gemm', (fn) => (g: GemmArgs) => {
      const transA = g.transA ?? false;
      const transB = g.transB ?? false;
      const lda = g.lda ?? (transA ? g.M : g.K);
      const ldb = g.ldb ?? (transB ? g.K : g.N);
      const ldc = g.ldc ?? g.N;
      fn(
        g.a, g.aOffset ?? 0, g.b, g.bOffset ?? 0, g.c, g.cOffset ?? 0, g.M, g.N, g.K, transA, transB,
        g.alpha ?? 1, g.beta ?? 0, g.batch ?? 1, lda, ldb, ldc,
        g.strideA ?? (transA ? g.K * lda : g.M * lda), g.strideB ?? (transB ? g.N * ldb : g.K * ldb), g.strideC ?? g.M * ldc,
      );
    }),
    gemmBf16: pick('gemmBf16', (fn) => (g) => {
      fn(g.a, g.b, g.c, g.M, g.N, g.K, g.transA ?? false, g.transB ?? false, g.beta ?? 0);
    }),
    matmulQuantized: pick('matmulQuantized', (fn) => (x, w, type, out, M, N, K) => {
      fn(x, w, type === 'q8_0' ? 8 : type === 'q4_0' ? 2 : -1, out, M, N, K);
    }),
    matmulQuantizedTransposed: pick('matmulQuantizedTransposed', (fn) => (dy, w, type, dx, M, N, K) => {
      fn(dy, w, type === 'q8_0' ? 8 : type === 'q4_0' ? 2 : -1, dx, M, N, K);
    }),
    add: pick('add'), mul: pick('mul'), axpy: pick('axpy'), scale: pick('scale'),
    addBias: pick('addBias'), sumRows: pick('sumRows'), copyRows: pick('copyRows'), sumSquares: pick('sumSquares'),
    roundBf16: pick('roundBf16'), toBf16: pick('toBf16'),
    geluForward: pick('geluForward'), geluBackward: pick('geluBackward'),
    siluForward: pick('siluForward'), siluBackward: pick('siluBackward'),
    swigluForward: pick('swigluForward'), swigluBackward: pick('swigluBackward'),
    layerNormForward: pick('layerNormForward'), layerNormBackward: pick('layerNormBackward'),
    rmsNormForward: pick('rmsNormForward'), rmsNormBackward: pick('rmsNormBackward'),
    softmaxForward: pick('softmaxForward'), softmaxBackward: pick('softmaxBackward'),
    attentionForward: pick('attentionForward', (fn) => (q, k, v, out, lse, s: AttentionShape) => {
      fn(q, k, v, out, lse, s.B, s.T, s.nHead, s.nKvHead, s.headDim, s.scale, s.segmentStart ?? null);
    }),
    attentionBackward: pick('attentionBackward', (fn) => (q, k, v, out, lse, dout, dq, dk, dv, s: AttentionShape) => {
      fn(q, k, v, out, lse, dout, dq, dk, dv, s.B, s.T, s.nHead, s.nKvHead, s.headDim, s.scale, s.segmentStart ?? null);
    }),
    attentionCached: pick('attentionCached', (fn) => (q, kCache, vCache, out, s: CachedAttentionShape) => {
      fn(q, kCache, vCache, out, s.Tq, s.pos, s.nHead, s.nKvHead, s.headDim, s.scale);
    }),
    rope: pick('rope'),
    embeddingForward: pick('embeddingForward'), embeddingBackward: pick('embeddingBackward'),
    crossEntropyForward: pick('crossEntropyForward'), crossEntropyBackward: pick('crossEntropyBackward'),
    crossEntropyFused: pick('crossEntropyFused'),
    argmax: pick('argmax'), logSumExp: pick('logSumExp'), topK: pick('topK'), sampleSoftmax: pick('sampleSoftmax'),
    dropoutMask: pick('dropoutMask'),
    compileDecode: pick('compileDecode', (fn) => (p) => {
      const handle = fn(p.buffers, p.code, p.consts, p.rowStrides ?? null);
      const run = addon.decodeRun as (h: unknown, token: number, pos: number) => void;
      const bind = addon.decodeBind as (h: unknown, index: number, b: unknown) => void;
      const runBatch = addon.decodeRunBatch as (h: unknown, t: Int32Array, p: Int32Array, s: Int32Array, n: number, rows: number) => void;
      return {
        run: (token, pos) => run(handle, token, pos),
        bind: (index, b) => bind(handle, index, b),
        runBatch: (tokens, positions, slots, n, slotRows) => runBatch(handle, tokens, positions, slots, n, slotRows),
      };
    }),
    adamw: pick('adamw', (fn) => (param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale) => {
      fn(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale ?? 1);
    }),
  };
}
