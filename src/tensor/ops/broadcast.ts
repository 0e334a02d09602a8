/**
 * NumPy-style broadcasting helpers: shapes align on the right, a dimension of 1 stretches.
 *
 *   broadcastShapes([4, 1, 3], [5, 3])  ->  [4, 5, 3]
 *   broadcastIndex([4, 5, 3], [5, 3])   ->  for each of the 60 output elements, its index in the [5, 3] input
 */
import { shapeError, shapeSize, shapeToString } from '../tensor.js';

export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      shapeError(op, `shapes ${shapeToString(a)} and ${shapeToString(b)} do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** For every element of outShape (row-major), the flat index of the element of inShape it reads. */
export function broadcastIndex(outShape: readonly number[], inShape: readonly number[]): Int32Array {
  const n = outShape.length;
  const size = shapeSize(outShape);
  // stride of each output dim inside the input (0 where the input is broadcast)
  const strides = new Array<number>(n).fill(0);
  let s = 1;
  for (let i = inShape.length - 1; i >= 0; i--) {
    const o = n - inShape.length + i;
    strides[o] = inShape[i] === 1 ? 0 : s;
    s *= inShape[i];
  }
  const index = new Int32Array(size);
  const counter = new Array<number>(n).fill(0);
  let pos = 0;
  for (let k = 0; k < size; k++) {
    index[k] = pos;
    for (let d = n - 1; d >= 0; d--) {
      counter[d]++;
      pos += strides[d];
      if (counter[d] < outShape[d]) break;
      pos -= strides[d] * counter[d];
      counter[d] = 0;
    }
  }
  return index;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
