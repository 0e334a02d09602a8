/**
 * Shared set-up of the native-kernel tests: the native backend (or why it is missing), and
 * deterministic test inputs.
 *
 *   const be = nativeOrFail();          // fails on Linux if the addon did not build
 *   if (nativeSkipReason) t.skip(nativeSkipReason);
 */
import assert from 'node:assert/strict';
import { nativeBackend, nativeLoadError, type Backend } from '../../src/backend/index.js';

export const native = nativeBackend();

/** Elsewhere than Linux a missing addon skips the native tests; on Linux it is a failure. */
export const nativeSkipReason: string | false =
  native === null && process.platform !== 'linux' ? `native backend not available: ${nativeLoadError()}` : false;

export function nativeOrFail(): Backend {
  if (native === null) assert.fail(`the native backend did not load: ${nativeLoadError()}`);
  return native;
}

/** n uniform numbers in [-amp, amp) from a 32-bit LCG seeded with `seed`. */
export function lcgRandom(n: number, seed: number, amp = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * amp;
  }
  return out;
}
