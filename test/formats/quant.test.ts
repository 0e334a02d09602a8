import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { f16BitsToF32, f32ToF16Bits } from '../../src/formats/half.js';
import {
  decodeTensor, dequantizeQ4_0, dequantizeQ8_0, encodeTensor, GgmlType, ggmlRowBytes, ggmlTensorBytes, quantizeQ4_0, quantizeQ8_0,
} from '../../src/formats/quant.js';
import { dequantizeRows, quantizeWeight } from '../../src/model/quantized.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';

function randomBlocks(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = rng.normal() * (1 + (i >> 5) % 7); // blocks of different scales
  return x;
}

describe('Q8_0', () => {
  it('matches a hand-computed block (scale 1, roundf halves away from zero)', () => {
    const x = new Float32Array(32);
    x.set([127, -63.5, 0.5, 1.5, -0.5, 2.5, -127]);
    const b = quantizeQ8_0(x);
    assert.equal(b.length, 34);
    assert.deepEqual([...b.subarray(0, 9)], [0x00, 0x3c, 0x7f, 0xc0, 0x01, 0x02, 0xff, 0x03, 0x81]);
    assert.ok(b.subarray(9).every((v) => v === 0));
    assert.deepEqual([...dequantizeQ8_0(b, 32).subarray(0, 7)], [127, -64, 1, 2, -1, 3, -127]);
  });

  it('an all-zero block has scale 0 and decodes to zeros', () => {
    const b = quantizeQ8_0(new Float32Array(32));
    assert.ok(b.every((v) => v === 0));
    assert.ok(dequantizeQ8_0(b, 32).every((v) => v === 0));
  });

  it('round-trip error is at most d/2 per block (plus the fp16 rounding of d)', () => {
    const x = randomBlocks(32 * 64, 1);
    const b = quantizeQ8_0(x);
    const y = dequantizeQ8_0(b, x.length);
    for (let blk = 0; blk < 64; blk++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]));
      const d = Math.fround(amax / 127);
      const d16 = f16BitsToF32(f32ToF16Bits(d));
      const bound = d / 2 + 127 * Math.abs(d - d16) + 1e-7;
      for (let j = 0; j < 32; j++) assert.ok(Math.abs(x[blk * 32 + j] - y[blk * 32 + j]) <= bound, `block ${blk} element ${j}`);
    }
  });
});

describe('Q4_0', () => {
  it('matches a hand-computed block (d = signed max / -8, nibble layout j | j+16)', () => {
    const x = new Float32Array(32);
    x.set([-8, 4, 1], 0);
    x.set([7, 3.5, 8], 16); // 8 == |max| but does not replace it; clamps to 15
    const b = quantizeQ4_0(x);
    assert.equal(b.length, 18);
    // d = -8 / -8 = 1 -> fp16 0x3c00; q = min(15, trunc(x + 8.5))
    assert.deepEqual([...b.subarray(0, 5)], [0x00, 0x3c, 0xf0, 0xcc, 0xf9]);
    assert.ok(b.subarray(5).every((v) => v === 0x88));
    const y = dequantizeQ4_0(b, 32);
    assert.deepEqual([...y.subarray(0, 3)], [-8, 4, 1]);
    assert.deepEqual([...y.subarray(16, 19)], [7, 4, 7]);
    assert.equal(y[5], 0);
  });

  it('a positive maximum gives a negative scale and decodes exactly', () => {
    const x = new Float32Array(32);
    x[0] = 2;
    x[1] = -1;
    const b = quantizeQ4_0(x);
    assert.equal(f16BitsToF32(b[0] | (b[1] << 8)), -0.25);
    const y = dequantizeQ4_0(b, 32);
    assert.equal(y[0], 2);
    assert.equal(y[1], -1);
  });

  it('round-trip error is at most |d|/2, or |d| for the clamped +8|d| side', () => {
    const x = randomBlocks(32 * 64, 2);
    const y = dequantizeQ4_0(quantizeQ4_0(x), x.length);
    for (let blk = 0; blk < 64; blk++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]));
      const d = amax / 8;
      const d16 = Math.abs(f16BitsToF32(f32ToF16Bits(Math.fround(d))));
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(x[blk * 32 + j] - y[blk * 32 + j]);
        assert.ok(err <= d + 8 * Math.abs(d - d16) + 1e-6, `block ${blk} element ${j}: ${err} > ${d}`);
      }
    }
    // on average well under d/2
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += Math.abs(x[i] - y[i]);
    assert.ok(sum / x.length < 0.5);
  });
});

describe('tensor encoding', () => {
  it('sizes rows and tensors, and refuses rows that are not whole blocks', () => {
    assert.equal(ggmlRowBytes(GgmlType.F32, 10), 40);
    assert.equal(ggmlRowBytes(GgmlType.F16, 10), 20);
    assert.equal(ggmlRowBytes(GgmlType.Q8_0, 64), 68);
    assert.equal(ggmlRowBytes(GgmlType.Q4_0, 64), 36);
    assert.equal(ggmlTensorBytes(GgmlType.Q8_0, [64, 3]), 204);
    assert.throws(() => ggmlRowBytes(GgmlType.Q4_0, 48), LlmError);
    assert.throws(() => ggmlRowBytes(14 as GgmlType, 256), /not supported/);
  });

  it('F32 and F16 encode/decode through the generic functions', () => {
    const x = Float32Array.from([1.5, -2, 0.1, 65504]);
    assert.deepEqual(decodeTensor(GgmlType.F32, encodeTensor(GgmlType.F32, x), 4), x);
    const h = decodeTensor(GgmlType.F16, encodeTensor(GgmlType.F16, x), 4);
    assert.deepEqual([...h], [1.5, -2, f16BitsToF32(f32ToF16Bits(0.1)), 65504]);
    const q = decodeTensor(GgmlType.Q8_0, encodeTensor(GgmlType.Q8_0, randomBlocks(64, 3)), 64);
    assert.equal(q.length, 64);
    assert.throws(() => decodeTensor(GgmlType.Q8_0, new Uint8Array(10), 32), LlmError);
  });
});

describe('quantized embedding rows', () => {
  it('dequantizeRows gives exactly the rows of the fully dequantized table, and rejects bad ids', () => {
    const rng = new Rng(5);
    const rows = 7;
    const cols = 64;
    const table = Float32Array.from({ length: rows * cols }, () => rng.normal());
    for (const type of ['q8_0', 'q4_0'] as const) {
      const w = quantizeWeight(type, table, rows, cols);
      const full = type === 'q8_0' ? dequantizeQ8_0(w.blocks, rows * cols) : dequantizeQ4_0(w.blocks, rows * cols);
      const ids = Int32Array.from([6, 0, 3, 3]);
      const out = dequantizeRows(w, ids, new Float32Array(ids.length * cols));
      ids.forEach((id, i) => assert.deepEqual(out.subarray(i * cols, (i + 1) * cols), full.subarray(id * cols, (id + 1) * cols)));
      assert.throws(() => dequantizeRows(w, Int32Array.from([7]), new Float32Array(cols)), (e: unknown) => e instanceof LlmError && /token id 7 .* outside the vocabulary \[0, 7\)/.test(e.message));
      assert.throws(() => dequantizeRows(w, Int32Array.from([1, 2]), new Float32Array(cols)), LlmError);
    }
  });
});
