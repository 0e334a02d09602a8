/**
 * Buffer scopes (src/tensor/storage.ts): a stage scope hands its buffers back to the pool except
 * the one its result lives in, so an inference pass over L layers holds one layer's activations.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allocFloats, clearBufferPool, pooledBytes, withBufferScope, withStageScope } from '../../src/tensor/index.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import { tinyLlama, scaledModel } from '../helpers/tiny-model.js';

describe('withStageScope', () => {
  it('recycles what a stage allocated, except the buffer its result lives in', () => {
    clearBufferPool();
    withBufferScope(() => {
      let scratch: Float32Array | null = null;
      const out = withStageScope(() => {
        scratch = allocFloats(64);
        const y = allocFloats(64);
        y.fill(7);
        return { data: y.subarray(8) }; // a view: its whole buffer is kept
      }, (r) => r.data);
      const again = [allocFloats(64), allocFloats(64)];
      assert.ok(again.includes(scratch!), 'the stage scratch buffer comes back from the pool');
      assert.ok(!again.some((b) => b.buffer === out.data.buffer), 'the kept buffer is not handed out again');
      assert.deepEqual([...new Set(out.data)], [7]);
    });
    // the kept buffer belonged to the enclosing scope and is pooled with it: 3 buffers of 64 floats
    assert.equal(pooledBytes(), 3 * 64 * 4);
    clearBufferPool();
  });

  it('releases the stage buffers when the stage throws', () => {
    clearBufferPool();
    assert.throws(() => withBufferScope(() => withStageScope(() => {
      allocFloats(32);
      throw new Error('boom');
    }, () => new Float32Array(0))), /boom/);
    assert.equal(pooledBytes(), 32 * 4);
    clearBufferPool();
  });

  it('an inference prefill pools about one layer of activations, whatever the depth', () => {
    const pooledAfterPrefill = (nLayer: number): number => {
      const cfg = tinyLlama({ vocabSize: 50, blockSize: 64, nLayer, nHead: 4, nKvHead: 2, nEmbd: 64, hiddenDim: 128 });
      const model = scaledModel(cfg);
      clearBufferPool();
      const prompt = Int32Array.from({ length: 48 }, (_, i) => (i * 7) % cfg.vocabSize);
      model.forwardCached(prompt, new KvCache(cfg));
      const bytes = pooledBytes();
      clearBufferPool();
      return bytes;
    };
    const two = pooledAfterPrefill(2);
    const eight = pooledAfterPrefill(8);
    // a layer's activations are ~10 buffers of 48 x 64..128 floats (~100 KB); what stays per layer
    // is its output (the residual stream, 48 x 64 floats = 12 KB). All layers at once: ~4x.
    assert.ok(eight < two * 1.6, `8 layers pooled ${eight} bytes against ${two} for 2 layers`);
  });
});

describe('the buffer pool', () => {
  it('steps of one shape reuse the same buffers; shapes that keep changing stay within twice one step', () => {
    clearBufferPool();
    const step = (n: number): Float32Array[] => withBufferScope(() => [allocFloats(n), allocFloats(2 * n), allocFloats(n)]);
    const first = step(1000);
    const second = step(1000);
    assert.deepEqual(new Set(second), new Set(first), 'the second step gets the first step\'s buffers');
    assert.equal(pooledBytes(), 4 * 4000);
    // padded SFT batches: every step a new length; without a bound the pool would keep them all
    for (let n = 1001; n < 1200; n++) step(n);
    const oneStep = 4 * 4 * 1199;
    assert.ok(pooledBytes() <= 2 * oneStep, `pooled ${pooledBytes()} bytes after 200 lengths, one step holds ${oneStep}`);
    // the lengths of the last step are the ones kept
    const last = step(1199);
    assert.ok(pooledBytes() >= oneStep);
    assert.equal(step(1199)[1], last[1], 'the most recent length is still pooled');
    clearBufferPool();
    assert.equal(pooledBytes(), 0);
  });
});
