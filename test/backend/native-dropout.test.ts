/**
 * dropoutMask: a counter-based hash of (key, index). The reference's masks have dropout's
 * statistics (drop rate p, independent neighbours, independent keys), a mask drawn in chunks at
 * offsets equals the mask drawn whole, and the native kernel gives the reference's masks bit for
 * bit; the dropout op draws its key from the generator and routes its gradient through the mask
 * (whichever backend runs it).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend, nativeBackendInfo, referenceBackend, setBackend, type Backend } from '../../src/backend/index.js';
import { dropoutDraw, dropoutThreshold } from '../../src/backend/reference/dropout.js';
import { dropout, sum, Tensor } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { native, nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

describe('dropoutMask kernel', () => {
  it('reference: drop rate p, neighbours and keys independent', () => {
    const n = 200_000;
    for (const p of [0.05, 0.3, 0.9]) {
      const a = new Float32Array(n), b = new Float32Array(n);
      referenceBackend.dropoutMask(a, n, p, 2, 12345, 678, 0);
      referenceBackend.dropoutMask(b, n, p, 2, 12346, 678, 0); // a neighbouring key
      const sd = Math.sqrt((p * (1 - p)) / n);
      let dropped = 0, both = 0, sameIndex = 0;
      for (let i = 0; i < n; i++) {
        assert.ok(a[i] === 0 || a[i] === 2);
        if (a[i] === 0) dropped++;
        if (i > 0 && a[i] === 0 && a[i - 1] === 0) both++;
        if (a[i] === 0 && b[i] === 0) sameIndex++;
      }
      assert.ok(Math.abs(dropped / n - p) < 5 * sd, `p ${p}: dropped ${dropped / n}`);
      const pairSd = Math.sqrt((p * p * (1 - p * p)) / n);
      assert.ok(Math.abs(both / (n - 1) - p * p) < 5 * pairSd, `p ${p}: neighbours both dropped ${both / (n - 1)}, want ${p * p}`);
      assert.ok(Math.abs(sameIndex / n - p * p) < 5 * pairSd, `p ${p}: two keys agree on ${sameIndex / n}, want ${p * p}`);
    }
  });

  it('reference: exact threshold, chunks at offsets equal the whole mask, counter wraps at 2^32', () => {
    assert.equal(dropoutThreshold(0), 0);
    assert.equal(dropoutThreshold(0.5), 2 ** 31);
    const whole = new Float32Array(1000);
    referenceBackend.dropoutMask(whole, 1000, 0.4, 5, 7, 9, 0);
    const parts = new Float32Array(1000);
    for (let at = 0; at < 1000; at += 333) referenceBackend.dropoutMask(parts.subarray(at), Math.min(333, 1000 - at), 0.4, 5, 7, 9, at);
    assert.deepEqual(parts, whole);
    for (let i = 0; i < 1000; i++) assert.equal(whole[i], dropoutDraw(7, 9, i) < dropoutThreshold(0.4) ? 0 : 5);
    assert.equal(dropoutDraw(0xffffffff, 3, 1), dropoutDraw(0, 3, 0), 'index + key0 is taken mod 2^32');
  });

  it('native equals reference bit for bit: sizes, p, keys and offsets', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const be = nativeOrFail();
    assert.ok(nativeBackendInfo()?.nativeKernels.includes('dropoutMask'), 'dropoutMask is native');
    const cases = [[1, 0.5, 1, 2, 0], [7, 0.05, 0xffffffff, 0, 3], [1000, 0.1, 3, 0xdeadbeef, 0xfffffff0], [300_001, 0.9, 2 ** 31, 17, 123456]] as const;
    for (const [n, p, k0, k1, offset] of cases) {
      const keep = 1 / (1 - p);
      const ma = new Float32Array(n + 3).fill(-1), mb = new Float32Array(n + 3).fill(-1);
      be.dropoutMask(ma, n, p, keep, k0, k1, offset);
      referenceBackend.dropoutMask(mb, n, p, keep, k0, k1, offset);
      assert.deepEqual(ma, mb, `n ${n} p ${p}`);
      assert.equal(ma[n], -1, 'nothing written past n');
    }
  });
});

describe('dropout op', () => {
  const backends: [string, Backend | null][] = [['reference', referenceBackend], ['native', native]];
  for (const [label, be] of backends) {
    it(`${label}: a key of two draws, the rng continues after them, gradient through the mask`, (t) => {
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
        const k0 = twin.nextU32(), k1 = twin.nextU32();
        const mask = Array.from({ length: x.size }, (_, i) => (dropoutDraw(k0, k1, i) < dropoutThreshold(p) ? 0 : keep));
        for (let i = 0; i < x.size; i++) assert.equal(y.data[i], Math.fround(x.data[i] * Math.fround(mask[i])));
        assert.equal(rng.normal(), twin.normal(), 'the spare normal is kept');
        assert.equal(rng.nextU32(), twin.nextU32(), 'the stream continues after the key');
        // a gradient written fresh, then one added to an existing gradient
        sum(y).backward();
        for (let i = 0; i < x.size; i++) assert.equal(x.grad![i], Math.fround(mask[i]));
        sum(dropout(x, p, new Rng(11))).backward(); // not the same key (no normal() drawn first): adds its own mask
        const again = new Rng(11);
        const j0 = again.nextU32(), j1 = again.nextU32();
        for (let i = 0; i < x.size; i++) {
          const m2 = dropoutDraw(j0, j1, i) < dropoutThreshold(p) ? 0 : keep;
          assert.ok(Math.abs(x.grad![i] - (Math.fround(mask[i]) + Math.fround(m2))) < 1e-6);
        }
      } finally {
        setBackend(previous);
      }
    });
  }
});
