import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Tensor, matmul, linear, add, sub, mul, div, scale, addScalar, sum, mean, reshape, splitLastDim,
  concatLastDim, embedding, layerNorm, rmsNorm, gelu, silu, swiglu, softmax, causalSelfAttention,
  rope, ropeTables, crossEntropy, dropout, narrow,
} from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck, param } from '../helpers/gradcheck.js';

describe('gradient checks (float64 central differences)', () => {
  describe('matmul', () => {
    for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
      it(`2-D, odd sizes, transA=${transA} transB=${transB}`, () => {
        const [M, K, N] = [5, 7, 3];
        gradcheck('matmul', (r) => [
          param(r, transA ? [K, M] : [M, K]),
          param(r, transB ? [N, K] : [K, N]),
        ], ([a, b]) => matmul(a, b, { transA, transB }));
      });
      it(`batched with shared and per-batch B, transA=${transA} transB=${transB}`, () => {
        const [M, K, N] = [6, 5, 9];
        gradcheck('matmul shared', (r) => [
          param(r, transA ? [2, 3, K, M] : [2, 3, M, K]),
          param(r, transB ? [N, K] : [K, N]),
        ], ([a, b]) => matmul(a, b, { transA, transB }));
        gradcheck('matmul batched', (r) => [
          param(r, transA ? [3, K, M] : [3, M, K]),
          param(r, transB ? [3, N, K] : [3, K, N]),
        ], ([a, b]) => matmul(a, b, { transA, transB }));
      });
    }
  });

  it('linear, both weight layouts, with and without bias', () => {
    gradcheck('linear out_in', (r) => [param(r, [2, 3, 7]), param(r, [5, 7]), param(r, [5])],
      ([x, w, b]) => linear(x, w, b, 'out_in'));
    gradcheck('linear in_out', (r) => [param(r, [4, 7]), param(r, [7, 9]), param(r, [9])],
      ([x, w, b]) => linear(x, w, b, 'in_out'));
    gradcheck('linear no bias', (r) => [param(r, [3, 6]), param(r, [1, 6])], ([x, w]) => linear(x, w, null));
  });

  it('add/sub/mul/div with broadcasting', () => {
    const shapes: [number[], number[]][] = [[[3, 4], [3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [[5], [1]]];
    for (const [sa, sb] of shapes) {
      gradcheck(`add ${sa}+${sb}`, (r) => [param(r, sa), param(r, sb)], ([a, b]) => add(a, b));
      gradcheck(`sub ${sa}-${sb}`, (r) => [param(r, sa), param(r, sb)], ([a, b]) => sub(a, b));
      gradcheck(`mul ${sa}*${sb}`, (r) => [param(r, sa), param(r, sb)], ([a, b]) => mul(a, b));
      gradcheck(`div ${sa}/${sb}`, (r) => {
        const b = param(r, sb);
        for (let i = 0; i < b.size; i++) b.data[i] = 1.5 + Math.abs(b.data[i]); // keep away from 0
        return [param(r, sa), b];
      }, ([a, b]) => div(a, b));
    }
  });

  it('scale and addScalar', () => {
    gradcheck('scale', (r) => [param(r, [3, 5])], ([x]) => scale(x, -0.7));
    gradcheck('addScalar', (r) => [param(r, [3, 5])], ([x]) => addScalar(x, 2.5));
  });

  it('sum and mean over axes', () => {
    gradcheck('sum all', (r) => [param(r, [2, 3, 5])], ([x]) => sum(x));
    gradcheck('sum axis 1', (r) => [param(r, [2, 3, 5])], ([x]) => sum(x, [1]));
    gradcheck('mean last keepdims', (r) => [param(r, [2, 3, 5])], ([x]) => mean(x, [-1], true));
    gradcheck('mean axes 0,2', (r) => [param(r, [2, 3, 5])], ([x]) => mean(x, [0, 2]));
  });

  it('reshape, split and concat of the last dim', () => {
    gradcheck('reshape', (r) => [param(r, [2, 6])], ([x]) => mul(reshape(x, [3, -1]), reshape(x, [3, 4])));
    gradcheck('split', (r) => [param(r, [3, 9])], ([x]) => {
      const [a, b, c] = splitLastDim(x, [2, 3, 4]);
      return concatLastDim([mul(a, a), b, scale(c, 3)]);
    });
  });

  it('narrow (a view of leading rows)', () => {
    gradcheck('narrow', (r) => [param(r, [5, 2, 3])], ([x]) => mul(narrow(x, 1, 3), narrow(x, 2, 3)));
  });

  it('embedding (scatter-add backward with repeated ids)', () => {
    const ids = Int32Array.from([3, 0, 3, 6, 1, 3]);
    gradcheck('embedding', (r) => [param(r, [7, 5])], ([w]) => embedding(w, ids, [2, 3]));
  });

  it('layerNorm and rmsNorm (odd width)', () => {
    gradcheck('layerNorm', (r) => [param(r, [2, 3, 7]), param(r, [7]), param(r, [7])],
      ([x, w, b]) => layerNorm(x, w, b));
    gradcheck('layerNorm no affine', (r) => [param(r, [4, 9])], ([x]) => layerNorm(x, null, null));
    gradcheck('rmsNorm', (r) => [param(r, [3, 7]), param(r, [7])], ([x, w]) => rmsNorm(x, w));
  });

  it('gelu, silu, swiglu', () => {
    gradcheck('gelu', (r) => [param(r, [4, 7], 2)], ([x]) => gelu(x));
    gradcheck('silu', (r) => [param(r, [4, 7], 2)], ([x]) => silu(x));
    gradcheck('swiglu', (r) => [param(r, [3, 5], 2), param(r, [3, 5])], ([g, u]) => swiglu(g, u));
  });

  it('softmax', () => {
    gradcheck('softmax', (r) => [param(r, [3, 11])], ([x]) => softmax(x));
  });

  describe('causal self-attention', () => {
    it('multi-head, odd T', () => {
      const [B, T, nh, hs] = [2, 5, 3, 4];
      gradcheck('attention mha', (r) => [param(r, [B, T, nh * hs]), param(r, [B, T, nh * hs]), param(r, [B, T, nh * hs])],
        ([q, k, v]) => causalSelfAttention(q, k, v, { nHead: nh }));
    });
    it('grouped-query (4 query heads, 2 kv heads)', () => {
      const [B, T, nh, nkv, hs] = [1, 7, 4, 2, 3];
      gradcheck('attention gqa', (r) => [param(r, [B, T, nh * hs]), param(r, [B, T, nkv * hs]), param(r, [B, T, nkv * hs])],
        ([q, k, v]) => causalSelfAttention(q, k, v, { nHead: nh, nKvHead: nkv }));
    });
    it('is causal: outputs at t do not depend on inputs after t', () => {
      const rng = new Rng(1);
      const [B, T, C] = [1, 6, 8];
      const q = Tensor.randn([B, T, C], rng), k = Tensor.randn([B, T, C], rng), v = Tensor.randn([B, T, C], rng);
      const before = causalSelfAttention(q, k, v, { nHead: 2 }).data.slice(0, 3 * C);
      for (let i = 3 * C; i < T * C; i++) { k.data[i] += 1; v.data[i] -= 2; q.data[i] *= 3; }
      const after = causalSelfAttention(q, k, v, { nHead: 2 }).data.slice(0, 3 * C);
      assert.deepEqual(after, before);
    });
    it('packed rows (segment starts), grouped-query', () => {
      // row 0: examples of 3, 1 and 4 tokens; row 1: 5 then 3
      const segmentStart = Int32Array.from([0, 0, 0, 3, 4, 4, 4, 4, 0, 0, 0, 0, 0, 5, 5, 5]);
      const [B, T, nh, nkv, hs] = [2, 8, 4, 2, 3];
      gradcheck('attention packed', (r) => [param(r, [B, T, nh * hs]), param(r, [B, T, nkv * hs]), param(r, [B, T, nkv * hs])],
        ([q, k, v]) => causalSelfAttention(q, k, v, { nHead: nh, nKvHead: nkv, segmentStart }));
    });
    it('packed rows: an example does not depend on the other examples of its row', () => {
      const rng = new Rng(2);
      const [B, T, C] = [1, 7, 8];
      const segmentStart = Int32Array.from([0, 0, 0, 3, 3, 3, 3]);
      const q = Tensor.randn([B, T, C], rng), k = Tensor.randn([B, T, C], rng), v = Tensor.randn([B, T, C], rng);
      const before = causalSelfAttention(q, k, v, { nHead: 2, segmentStart }).data.slice(3 * C);
      for (let i = 0; i < 3 * C; i++) { k.data[i] += 1; v.data[i] -= 2; }
      const after = causalSelfAttention(q, k, v, { nHead: 2, segmentStart }).data.slice(3 * C);
      assert.deepEqual(after, before);
      assert.throws(() => causalSelfAttention(q, k, v, { nHead: 2, segmentStart: new Int32Array(6) }), /segmentStart holds 6 entries/);
    });
  });

  it('rope (with a position offset)', () => {
    const tables = ropeTables(16, 6);
    gradcheck('rope', (r) => [param(r, [2, 5, 2 * 6])], ([x]) => rope(x, 2, tables, 3));
  });

  it('rope with per-token positions (packed rows)', () => {
    const tables = ropeTables(16, 6);
    const positions = Int32Array.from([0, 1, 2, 0, 1, 0, 1, 2, 3, 11]);
    gradcheck('rope positions', (r) => [param(r, [2, 5, 2 * 6])], ([x]) => rope(x, 2, tables, 0, positions));
    assert.throws(() => rope(Tensor.zeros([2, 5, 12]), 2, tables, 0, Int32Array.from([0, 1, 2, 0, 1, 0, 1, 2, 3, 16])), /position 17 beyond/);
  });

  it('cross-entropy with ignored rows', () => {
    const targets = Int32Array.from([2, -100, 0, 4, 4, -100]);
    gradcheck('crossEntropy', (r) => [param(r, [2, 3, 5], 2)], ([x]) => crossEntropy(x, targets));
  });

  it('dropout (same mask for the same seed)', () => {
    gradcheck('dropout', (r) => [param(r, [4, 6])], ([x]) => dropout(x, 0.3, new Rng(7)));
  });
});
