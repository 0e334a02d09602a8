/**
 * Child process for bf16-kernels.test: the native roundBf16/toBf16 on the SIMD level named by
 * LLMTS_BF16_ROUND_SIMD (passed on as LLMTS_SIMD), printed as a digest of every output bit, and
 * the same digest of the reference. (Does nothing without that variable, e.g. when the test runner
 * loads every file under test/.)
 */
import { nativeBackend, nativeBackendInfo, referenceBackend, type Backend } from '../../src/backend/index.js';
import { Rng } from '../../src/util/rng.js';

/** n float32 bit patterns: every 4th an exact bf16 tie, the rest uniform over all 2^32 (NaNs, Infs, denormals included) */
export function roundingPatterns(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.floor(rng.uniform() * 2 ** 32) >>> 0;
    bits[i] = i % 4 === 0 ? ((u & 0xffff0000) | 0x8000) >>> 0 : u;
  }
  return new Float32Array(bits.buffer);
}

/** FNV-1a over the output bits of roundBf16 and toBf16 on the patterns, at several lengths */
export function roundingDigest(be: Backend): string {
  let h = 0x811c9dc5;
  const mix = (v: number): void => {
    h = Math.imul(h ^ v, 0x01000193) >>> 0;
  };
  for (const n of [1, 7, 9, 15, 17, 33, 1000, 65536 + 29, 200003]) {
    const x = roundingPatterns(n, n);
    const r = new Float32Array(n);
    const p = new Uint16Array(n);
    be.roundBf16(x, r, n);
    be.toBf16(x, p, n);
    for (const v of new Uint32Array(r.buffer)) mix(v);
    for (const v of p) mix(v);
  }
  return h.toString(16);
}

if (process.env.LLMTS_BF16_ROUND_SIMD) {
  const native = nativeBackend();
  if (!native) throw new Error('native backend not available');
  process.stdout.write(JSON.stringify({ simd: nativeBackendInfo()!.simd, native: roundingDigest(native), reference: roundingDigest(referenceBackend) }));
}
