/**
 * Packed rows: several examples share one row of a (B, T) batch (SFT packing). Each token sees
 * only its own example (attention masked at example boundaries, AttentionShape.segmentStart) and
 * is at its position within its example (RoPE angles for Llama, position-embedding rows for
 * GPT-2), so a packed row computes exactly what its examples compute one by one.
 *
 *   // row 0 holds examples of 3 and 2 tokens, then 1 pad token; row 1 one example of 6
 *   const packing = packedRows([[3, 2], [6]], 6);
 *   packing.segmentStart  // [0,0,0,3,3,5,  0,0,0,0,0,0]
 *   packing.positions     // [0,1,2,0,1,0,  0,1,2,3,4,5]
 *   model.forward(x, 2, 6, undefined, { packing });
 */
import { LlmError } from '../util/errors.js';

export interface PackedRows {
  /** (B*T) the position in its row where each token's example starts (attention sees keys from there) */
  segmentStart: Int32Array;
  /** (B*T) each token's position within its example: t - segmentStart */
  positions: Int32Array;
}

/**
 * Rows of T tokens holding examples of these lengths, in order from the row's start; what is left
 * of a row (padding) is one more segment, so it attends to nothing real and positions stay < T.
 */
export function packedRows(lengths: readonly (readonly number[])[], T: number): PackedRows {
  const B = lengths.length;
  const segmentStart = new Int32Array(B * T);
  const positions = new Int32Array(B * T);
  lengths.forEach((row, b) => {
    let start = 0;
    for (const n of row) {
      if (!(Number.isInteger(n) && n >= 1)) throw new LlmError(`packed row ${b}: an example of ${n} tokens (lengths are integers >= 1)`);
      if (start + n > T) throw new LlmError(`packed row ${b}: examples of ${row.join(' + ')} tokens do not fit a row of ${T}`);
      fillSegment(segmentStart, positions, b * T, start, start + n);
      start += n;
    }
    if (start < T) fillSegment(segmentStart, positions, b * T, start, T);
  });
  return { segmentStart, positions };
}

/** Check a PackedRows against a (B, T) batch: lengths, and 0 <= segmentStart <= t with positions t - segmentStart. */
export function checkPackedRows(p: PackedRows, B: number, T: number): void {
  if (p.segmentStart.length !== B * T || p.positions.length !== B * T) {
    throw new LlmError(`packed rows: segmentStart (${p.segmentStart.length}) and positions (${p.positions.length}) must hold one entry per token of the (${B}, ${T}) batch`);
  }
  for (let i = 0; i < B * T; i++) {
    const t = i % T;
    const s = p.segmentStart[i];
    if (!(s >= 0 && s <= t) || p.positions[i] !== t - s) {
      throw new LlmError(`packed rows: token ${t} of row ${(i / T) | 0} has segment start ${s} and position ${p.positions[i]}; need 0 <= start <= ${t} and position = ${t} - start`);
    }
  }
}

function fillSegment(segmentStart: Int32Array, positions: Int32Array, rowOffset: number, from: number, to: number): void {
  for (let t = from; t < to; t++) {
    segmentStart[rowOffset + t] = from;
    positions[rowOffset + t] = t - from;
  }
}
