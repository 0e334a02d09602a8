/**
 * Rng.fillDropoutMask: the same draws, in the same order, as calling uniform() per element, and
 * the generator continues from the same state afterwards.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/util/rng.js';

describe('Rng.fillDropoutMask', () => {
  for (const [p, seed] of [[0.05, 1], [0.5, 1234567], [0.9, 4294967295]] as const) {
    it(`equals uniform() < p per element (p ${p}, seed ${seed}), and leaves the same state`, () => {
      const keep = 1 / (1 - p);
      const a = new Rng(seed), b = new Rng(seed);
      a.uniform(); // start somewhere else than the seed's first state
      b.uniform();
      const fast = new Float32Array(5003);
      a.fillDropoutMask(fast, p, keep);
      const slow = new Float32Array(fast.length);
      for (let i = 0; i < slow.length; i++) slow[i] = b.uniform() < p ? 0 : keep;
      assert.deepEqual(fast, slow);
      const dropped = fast.filter((v) => v === 0).length / fast.length;
      assert.ok(Math.abs(dropped - p) < 0.03, `dropped ${dropped} of the elements, p ${p}`);
      assert.deepEqual(a.getState(), b.getState());
      assert.equal(a.nextU32(), b.nextU32());
      const f64 = new Float64Array(7);
      a.fillDropoutMask(f64, p, keep);
      assert.deepEqual([...f64], Array.from({ length: 7 }, () => (b.uniform() < p ? 0 : keep)));
    });
  }
});
