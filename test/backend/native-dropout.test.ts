/**
 * dropoutMask: the native kernel gives the reference's masks and state bit for bit, and both are
 * the draws of Rng.uniform(); the dropout op keeps its masks, its gradient and the generator's
 * stream (whichever backend runs it).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend, nativeBackendInfo, referenceBackend, setBackend, type Backend } from '../../src/backend/index.js';
import { dropout, sum, Tensor } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { native, nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

const words = (rng: Rng): Int32Array => Int32Array.from(rng.getState().s, (w) => w | 0);

describe('dropoutMask kernel', () => {
  it('native equals reference: masks and advanced state, for several sizes and p', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const be = nativeOrFail();
    assert.ok(nativeBackendInfo()?.nativeKernels.includes('dropoutMask'), 'dropoutMask is native');
    for (const [n, p, seed] of [[1, 0.5, 1], [7, 0.05, 2], [1000, 0.1, 3], [300_001, 0.9, 4294967295]] as const) {
      const keep = 1 / (1 - p);
      const rng = new Rng(seed);
      const a = words(rng), b = words(rng);
      const ma = new Float32Array(n + 3).fill(-1), mb = new Float32Array(n + 3).fill(-1);
      be.dropoutMask(ma, n, p, keep, a);
      referenceBackend.dropoutMask(mb, n, p, keep, b);
      assert.deepEqual(ma, mb, `n ${n} p ${p}`);
      assert.deepEqual(a, b, `state after n ${n} p ${p}`);
      assert.equal(ma[n], -1, 'nothing written past n');
      // and they are the draws of uniform()
      const slow = Float32Array.from({ length: n }, () => (rng.uniform() < p ? 0 : keep));
      assert.deepEqual(ma.subarray(0, n), slow);
      assert.deepEqual(a, words(rng));
    }
  });
});

describe('dropout op', () => {
  const backends: [string, Backend | null][] = [['reference', referenceBackend], ['native', native]];
  for (const [label, be] of backends) {
    it(`${label}: mask of rng.uniform() draws, the rng continues after them, gradient through the mask`, (t) => {
      if (!be) return t.skip(nativeSkipReason || 'native backend not available');
      const previous = backend();
      setBackend(be);
      try {
        const p = 0.3, keep = 1 / (1 - p);
        const x = Tensor.fromArray(Array.from({ length: 3 * 50 }, (_, i) => Math.sin(i) + 2), [3, 50], true);
        const rng = new Rng(11), twin = new Rng(11);
        rng.normal(); // a cached spare value must survive the mask
        twin.normal();
        const y = dropout(x, p, rng);
        const mask = Array.from({ length: x.size }, () => (twin.uniform() < p ? 0 : keep));
        for (let i = 0; i < x.size; i++) assert.equal(y.data[i], Math.fround(x.data[i] * Math.fround(mask[i])));
        assert.equal(rng.normal(), twin.normal(), 'the spare normal is kept');
        assert.equal(rng.nextU32(), twin.nextU32(), 'the stream continues after the mask');
        // a gradient written fresh, then one added to an existing gradient
        sum(y).backward();
        for (let i = 0; i < x.size; i++) assert.equal(x.grad![i], Math.fround(mask[i]));
        sum(dropout(x, p, new Rng(11))).backward(); // not the same mask (no normal() drawn first): adds its own
        const again = new Rng(11);
        for (let i = 0; i < x.size; i++) {
          const m2 = again.uniform() < p ? 0 : keep;
          assert.ok(Math.abs(x.grad![i] - (Math.fround(mask[i]) + Math.fround(m2))) < 1e-6);
        }
      } finally {
        setBackend(previous);
      }
    });
  }
});
