/**
 * The native sampling kernels (argmax, logSumExp, topK, sampleSoftmax) against the reference on
 * vocabulary-sized rows with ties, -inf and awkward lengths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { referenceBackend } from '../../src/backend/index.js';
import { lcgRandom, nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

function rows(): Float32Array[] {
  const out: Float32Array[] = [];
  for (const n of [1, 7, 16, 17, 100, 32000, 50257]) {
    const x = lcgRandom(n, n, 8);
    out.push(x);
    const ties = Float32Array.from(x, (v) => Math.round(v)); // many equal values
    out.push(ties);
    const masked = Float32Array.from(x, (v, i) => (i % 3 === 0 ? -Infinity : v));
    if (n > 1) out.push(masked);
  }
  return out;
}

test('native argmax and topK equal the reference (ties: lower id first)', { skip: nativeSkipReason }, () => {
  const nb = nativeOrFail();
  for (const x of rows()) {
    const n = x.length;
    assert.equal(nb.argmax(x, n), referenceBackend.argmax(x, n), `argmax n=${n}`);
    for (const k of [1, 2, 40, 300, n]) {
      if (k > n) continue;
      const a = new Int32Array(k);
      const b = new Int32Array(k);
      nb.topK(x, n, k, a);
      referenceBackend.topK(x, n, k, b);
      assert.deepEqual(a, b, `topK n=${n} k=${k}`);
      for (let i = 1; i < k; i++) assert.ok(x[a[i - 1]] > x[a[i]] || (x[a[i - 1]] === x[a[i]] && a[i - 1] < a[i]), `order at ${i}`);
    }
  }
  assert.throws(() => nb.topK(new Float32Array(3), 3, 4, new Int32Array(4)), RangeError);
});

test('native logSumExp and sampleSoftmax agree with the reference', { skip: nativeSkipReason }, () => {
  const nb = nativeOrFail();
  let sameDraws = 0;
  let draws = 0;
  for (const x of rows()) {
    const n = x.length;
    const want = referenceBackend.logSumExp(x, n);
    assert.ok(Math.abs(nb.logSumExp(x, n) - want) < 1e-5 * Math.max(1, Math.abs(want)), `logSumExp n=${n}`);
    for (const invT of [0.5, 1, 1.25]) {
      for (let u = 0.005; u < 1; u += 0.0995) {
        const a = nb.sampleSoftmax(x, n, invT, u);
        const b = referenceBackend.sampleSoftmax(x, n, invT, u);
        assert.ok(x[a] > -Infinity, 'never draws a -inf logit');
        draws++;
        if (a === b) sameDraws++;
        else {
          // float32 vs float64 cumulative sums may only disagree at a boundary: neighbours in the draw order
          assert.ok(Math.abs(a - b) < n, `n=${n}`);
        }
      }
    }
  }
  assert.ok(sameDraws >= draws * 0.97, `${sameDraws} of ${draws} draws equal`);
  assert.throws(() => nb.sampleSoftmax(new Float32Array(3), 3, 1, 1), RangeError);
});
