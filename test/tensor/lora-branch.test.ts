/**
 * loraBranch (the fused LoRA branch, src/tensor/ops/lora-branch.ts): equals the separate ops
 * y + scale(linear(linear(dropout(x), A), B)) in value and in the gradients of x, y's input, A and
 * B, with and without dropout (the same mask draws); float64 gradchecks with dropout; rows that
 * cross its 64-row chunks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend } from '../../src/backend/index.js';
import { Tensor, add, dropout, linear, loraBranch, scale } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck } from '../helpers/gradcheck.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

describe(`loraBranch (${backend().name} backend)`, () => {
  for (const p of [0, 0.3]) {
    it(`equals the separate ops, value and gradients (dropout ${p}, 150 rows)`, () => {
      const rows = 150, inDim = 24, outDim = 20, r = 4, s = 1.7;
      const rng = new Rng(3);
      const W = Tensor.randn([outDim, inDim], rng, 0.3);
      const A0 = Tensor.randn([r, inDim], rng, 0.5);
      const B0 = Tensor.randn([outDim, r], rng, 0.5);
      const x0 = Tensor.randn([3, rows / 3, inDim], rng, 1);
      const dout = Float32Array.from({ length: rows * outDim }, (_, i) => Math.sin(i * 0.31));
      const run = (fused: boolean) => {
        const x = new Tensor(x0.data.slice(), x0.shape, true);
        const w = new Tensor(W.data.slice(), W.shape, true);
        const A = new Tensor(A0.data.slice(), A0.shape, true);
        const B = new Tensor(B0.data.slice(), B0.shape, true);
        const y = linear(x, w, null, 'out_in');
        const dropRng = new Rng(9);
        const out = fused
          ? loraBranch(y, x, A, B, s, p > 0 ? { p, rng: dropRng } : null)
          : add(y, scale(linear(linear(dropout(x, p, dropRng, true), A, null, 'out_in'), B, null, 'out_in'), s));
        const value = out.data.slice();
        out.backward(dout);
        return { value, gx: x.grad!, gw: w.grad!, gA: A.grad!, gB: B.grad! };
      };
      const f = run(true), u = run(false);
      for (const k of ['value', 'gx', 'gw', 'gA', 'gB'] as const) {
        assert.ok(maxAbsDiff(f[k], u[k]) < 1e-5 * Math.max(1, maxAbs(u[k])), `${k}: ${maxAbsDiff(f[k], u[k])}`);
      }
    });
  }

  it('float64 gradcheck with dropout: x, the base weight, A and B', () => {
    const inDim = 5, outDim = 4, r = 3;
    gradcheck('loraBranch', (rng) => [
      Tensor.randn([2, 35, inDim], rng, 1, true), Tensor.randn([outDim, inDim], rng, 0.5, true),
      Tensor.randn([r, inDim], rng, 0.5, true), Tensor.randn([outDim, r], rng, 0.5, true),
    ], ([x, w, A, B]) => loraBranch(linear(x, w, null, 'out_in'), x, A, B, 2.5, { p: 0.25, rng: new Rng(4) }), { maxElements: 60 });
  });
});
