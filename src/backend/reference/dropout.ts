/**
 * Reference dropout mask (see Backend.dropoutMask): a counter-based hash of (key, index), two
 * rounds of the lowbias32 finaliser, compared with p · 2^32.
 */

/** lowbias32: an invertible 32-bit mix with low bias (x as an int32; the result as uint32). */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The draw of element `index` under the key (uint32). */
export function dropoutDraw(key0: number, key1: number, index: number): number {
  return mix32(mix32((index + key0) | 0) ^ key1);
}

/** The integer threshold: u < p · 2^32 exactly when u < dropoutThreshold(p) (u an integer, p in [0, 1)). */
export function dropoutThreshold(p: number): number {
  return Math.ceil(p * 4294967296);
}

export function dropoutMask(
  out: Float32Array | Float64Array, n: number, p: number, keep: number, key0: number, key1: number, offset: number,
): void {
  const threshold = dropoutThreshold(p);
  for (let i = 0; i < n; i++) out[i] = dropoutDraw(key0, key1, offset + i) < threshold ? 0 : keep;
}
