/**
 * Best-fit decreasing packing (TRL's default `bfd` packing strategy): sequences of given lengths
 * go into bins (rows) of a fixed capacity, longest first, each into the fullest bin that still
 * has room for it, a new bin when none has. Deterministic: equal lengths keep their input order,
 * and among bins with the same free space the one opened first is chosen.
 *
 *   packBestFitDecreasing([5, 9, 3, 7, 2], 12)   // [[1, 2], [3, 0], [4]]   (indices into the lengths)
 *   // 9 opens bin 0 (3 free), 7 opens bin 1 (5 free), 5 fills bin 1, 3 fills bin 0, 2 opens bin 2
 *
 * The search for the fullest bin that fits is a segment tree over free space (0..capacity): each
 * leaf says whether some bin has exactly that much room, so a placement costs O(log capacity).
 */
import { LlmError } from '../util/errors.js';

/** Indices of `lengths` grouped into bins of at most `capacity` total; bins in the order they were opened. */
export function packBestFitDecreasing(lengths: readonly number[], capacity: number): number[][] {
  if (!(Number.isInteger(capacity) && capacity >= 1)) throw new LlmError(`packing: a row must hold at least 1 token, not ${capacity}`);
  lengths.forEach((n, i) => {
    if (!(Number.isInteger(n) && n >= 1 && n <= capacity)) {
      throw new LlmError(`packing: sequence ${i} has ${n} tokens; every sequence must hold 1 to ${capacity} (the row length)`);
    }
  });
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const bins: number[][] = [];
  const free: number[] = [];
  // bins with exactly `room` free tokens, oldest first
  const byRoom: number[][] = Array.from({ length: capacity + 1 }, () => []);
  const tree = new FirstAtLeast(capacity + 1);
  for (const i of order) {
    const n = lengths[i];
    const room = tree.firstAtLeast(n);
    let bin: number;
    if (room < 0) {
      bin = bins.length;
      bins.push([]);
      free.push(capacity);
    } else {
      bin = byRoom[room].shift()!;
      if (byRoom[room].length === 0) tree.set(room, false);
    }
    bins[bin].push(i);
    free[bin] -= n;
    const left = free[bin];
    if (left > 0) {
      insertSorted(byRoom[left], bin);
      tree.set(left, true);
    }
  }
  return bins;
}

/** Keep the list ascending (bins opened first are used first among equal rooms). */
function insertSorted(list: number[], value: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1] > value) i--;
  list.splice(i, 0, value);
}

/** A set of indices 0..n-1 answering "the smallest member >= k" in O(log n). */
class FirstAtLeast {
  private readonly size: number;
  /** tree[node] = some leaf below node is a member */
  private readonly tree: Uint8Array;

  constructor(n: number) {
    let size = 1;
    while (size < n) size *= 2;
    this.size = size;
    this.tree = new Uint8Array(2 * size);
  }

  set(i: number, member: boolean): void {
    let node = this.size + i;
    this.tree[node] = member ? 1 : 0;
    for (node >>= 1; node >= 1; node >>= 1) this.tree[node] = this.tree[2 * node] | this.tree[2 * node + 1];
  }

  /** The smallest member >= k, or -1. */
  firstAtLeast(k: number): number {
    return this.search(1, 0, this.size, k);
  }

  private search(node: number, lo: number, hi: number, k: number): number {
    if (hi <= k || this.tree[node] === 0) return -1;
    if (hi - lo === 1) return lo;
    const mid = (lo + hi) >> 1;
    const left = this.search(2 * node, lo, mid, k);
    return left >= 0 ? left : this.search(2 * node + 1, mid, hi, k);
  }
}
