/**
 * zeroGrad() is lazy (the old values count as zeros) and products write a new or just-zeroed
 * gradient with beta 0 instead of adding to zeros: the results must be exactly those of a
 * zero-filled gradient, whatever garbage the buffer held, and gradients still add up across
 * backward passes without zeroGrad (gradient accumulation).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, linear, linearCrossEntropy, sum, withBufferScope } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { param } from '../helpers/gradcheck.js';

function grads(run: (x: Tensor, w: Tensor) => Tensor, x: Tensor, w: Tensor, passes: number): { dx: Float32Array; dw: Float32Array } {
  let dx = new Float32Array(0);
  withBufferScope(() => {
    for (let p = 0; p < passes; p++) run(x, w).backward();
    dx = x.grad ? x.grad.slice() : new Float32Array(0);
  });
  return { dx, dw: w.grad!.slice() };
}

describe('lazy zeroGrad and gradToWrite', () => {
  const rng = new Rng(4);
  const cases: [string, (x: Tensor, w: Tensor) => Tensor][] = [
    ['linear', (x, w) => sum(linear(x, w, null, 'out_in'))],
    ['linearCrossEntropy', (x, w) => linearCrossEntropy(x, w, Int32Array.from([1, 0, 5, 2, 7]), { chunkRows: 2 })],
  ];
  for (const [name, run] of cases) {
    it(`${name}: after zeroGrad a poisoned gradient is overwritten, not added to; without it gradients accumulate`, () => {
      const xData = param(rng, [5, 3]).data, wData = param(rng, [2000, 3]).data;
      const fresh = (): [Tensor, Tensor] => [new Tensor(xData.slice(), [5, 3], true), new Tensor(wData.slice(), [2000, 3], true)];
      const [x0, w0] = fresh();
      const once = grads(run, x0, w0, 1);
      // poison the parameter gradients, zero them lazily, and run again
      const [x1, w1] = fresh();
      x1.grad = new Float32Array(x1.size).fill(Number.NaN);
      w1.grad = new Float32Array(w1.size).fill(Number.NaN);
      x1.zeroGrad();
      w1.zeroGrad();
      const again = grads(run, x1, w1, 1);
      assert.deepEqual(again.dw, once.dw);
      assert.deepEqual(again.dx, once.dx);
      // two passes add up (within float rounding of 2a = a + a: exact)
      const [x2, w2] = fresh();
      const twice = grads(run, x2, w2, 2);
      assert.deepEqual(twice.dw, once.dw.map((v) => 2 * v));
      // a read after zeroGrad sees zeros
      w2.zeroGrad();
      assert.ok(w2.grad!.every((v) => v === 0));
    });
  }
});
