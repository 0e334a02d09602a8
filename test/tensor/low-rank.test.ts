/**
 * addLowRank: y + s · u · Bᵀ in y's buffer, against the unfused ops (values and gradients), and a
 * float64 gradient check through a fresh y.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, add, addLowRank, linear, mul, scale, sum } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck, param } from '../helpers/gradcheck.js';

describe('addLowRank', () => {
  it('equals linear + scale + add, values and gradients of x, W, u and B', () => {
    const rng = new Rng(3);
    const make = () => [param(rng, [2, 5, 7]), param(rng, [6, 7]), param(rng, [2, 5, 3]), param(rng, [6, 3])];
    const [x, W, u, B] = make();
    const weights = Tensor.randn([2, 5, 6], rng, 1);
    const fused = addLowRank(linear(x, W, null), u, B, 0.75);
    const fusedValues = Float64Array.from(fused.data);
    sum(mul(fused, weights)).backward();
    const fusedGrads = [x, W, u, B].map((t) => Float64Array.from(t.grad!));
    for (const t of [x, W, u, B]) t.grad = null;
    const plain = add(linear(x, W, null), scale(linear(u, B, null), 0.75));
    sum(mul(plain, weights)).backward();
    for (let i = 0; i < plain.size; i++) assert.ok(Math.abs(fusedValues[i] - plain.data[i]) < 1e-5, `value ${i}`);
    [x, W, u, B].forEach((t, k) => {
      for (let i = 0; i < t.size; i++) assert.ok(Math.abs(fusedGrads[k][i] - t.grad![i]) < 1e-4, `gradient ${k} at ${i}`);
    });
  });

  it('gradient check (float64) through a fresh y', () => {
    gradcheck('addLowRank', (r) => [param(r, [3, 4, 5]), param(r, [6, 5]), param(r, [3, 4, 2]), param(r, [6, 2])],
      ([x, W, u, B]) => addLowRank(linear(x, W, null), u, B, 1.7));
  });

  it('refuses shapes that do not fit', () => {
    const y = Tensor.zeros([4, 6]);
    assert.throws(() => addLowRank(y, Tensor.zeros([4, 2]), Tensor.zeros([5, 2]), 1), /do not fit/);
    assert.throws(() => addLowRank(y, Tensor.zeros([3, 2]), Tensor.zeros([6, 2]), 1), /do not fit/);
  });
});
