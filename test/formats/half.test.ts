import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bf16BitsToF32,
  decodeBf16,
  decodeF16,
  encodeBf16,
  encodeF16,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from '../../src/formats/half.js';

test('F16 known bit patterns', () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [1.5, 0x3e00],
    [65504, 0x7bff], // largest finite
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ];
  for (const [v, bits] of cases) {
    assert.equal(f32ToF16Bits(v), bits, `encode ${v}`);
    assert.ok(Object.is(f16BitsToF32(bits), v), `decode 0x${bits.toString(16)}`);
  }
  assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
});

test('F16 rounding: overflow, ties to even, underflow', () => {
  assert.equal(f32ToF16Bits(70000), 0x7c00);
  assert.equal(f32ToF16Bits(65520), 0x7c00); // halfway past max rounds to even = inf
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie, rounds down to even
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie, rounds up to even
  assert.equal(f32ToF16Bits(2 ** -26), 0x0000);
  assert.equal(f32ToF16Bits(0.75 * 2 ** -24), 0x0001);
  assert.equal(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x0400); // subnormal rounding carries into normal
});

test('F16 every finite pattern survives decode then encode', () => {
  for (let h = 0; h < 65536; h++) {
    if (((h >>> 10) & 0x1f) === 0x1f) continue;
    assert.equal(f32ToF16Bits(f16BitsToF32(h)), h);
  }
});

test('BF16 conversions', () => {
  assert.equal(f32ToBf16Bits(1.5), 0x3fc0);
  assert.equal(bf16BitsToF32(0x3fc0), 1.5);
  assert.equal(bf16BitsToF32(0xc000), -2);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie to even (down)
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie to even (up)
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
});

test('array helpers', () => {
  const v = new Float32Array([0, 1, -2.5, 0.333251953125]);
  assert.deepEqual(decodeF16(encodeF16(v)), v);
  assert.deepEqual(decodeBf16(encodeBf16(new Float32Array([1, -2, 0.5]))), new Float32Array([1, -2, 0.5]));
});
