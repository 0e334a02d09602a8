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

describe('buffer pool with varying sizes', () => {
  it('a request with no buffer of its length takes the smallest free one of up to twice it, as a zeroed view', () => {
    clearBufferPool();
    let big: Float32Array | null = null, mid: Float32Array | null = null;
    withBufferScope(() => {
      big = allocFloats(1000).fill(3);
      mid = allocFloats(700).fill(4);
    });
    withBufferScope(() => {
      const a = allocFloats(600); // fits in 700 (smallest of 600..1200) rather than 1000
      assert.equal(a.length, 600);
      assert.equal(a.buffer, mid!.buffer);
      assert.deepEqual([...new Set(a)], [0], 'zeroed');
      const b = allocFloats(900);
      assert.equal(b.buffer, big!.buffer);
      const c = allocFloats(400); // nothing free of 400..800 is left: new memory
      assert.ok(c.buffer !== big!.buffer && c.buffer !== mid!.buffer);
      const d = allocFloats(300); // nor of 300..600: 1000 and 700 are taken; new as well
      assert.equal(d.length, 300);
    });
    // the views went back as their whole buffers: 1000 + 700 + 400 + 300 floats, no more
    assert.equal(pooledBytes(), (1000 + 700 + 400 + 300) * 4);
    withBufferScope(() => {
      assert.equal(allocFloats(2001).length, 2001); // more than twice any free buffer: new
    });
    clearBufferPool();
  });

  it('training steps of varying length reuse the longest step\'s buffers (the pool stays about one step)', () => {
    const cfg = tinyLlama({ vocabSize: 50, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
    const model = scaledModel(cfg, { gain: 1 });
    const step = (T: number): void => withBufferScope(() => {
      const x = Int32Array.from({ length: 2 * T }, (_, i) => (i * 7) % cfg.vocabSize);
      const loss = model.forward(x, 2, T, x).loss!;
      loss.backward();
    });
    clearBufferPool();
    step(48);
    const afterLongest = pooledBytes();
    for (const T of [47, 40, 33, 45, 29, 38, 48, 26, 31, 44, 27, 36]) step(T);
    // pooling by exact length only, each new length would add a step's worth of buffers (~12x);
    // a few requests may still miss when the best fits were taken by others of the same step
    assert.ok(pooledBytes() < afterLongest * 1.1, `pool grew from ${afterLongest} to ${pooledBytes()} bytes`);
    clearBufferPool();
  });

  it('a free buffer no step has taken for 8 steps is dropped: a run whose sizes drift holds its recent steps\' buffers', () => {
    clearBufferPool();
    withBufferScope(() => void allocFloats(100));
    withBufferScope(() => void allocFloats(5000)); // a long step, then short ones only
    const both = pooledBytes();
    assert.equal(both, (100 + 5000) * 4);
    for (let i = 0; i < 16; i++) withBufferScope(() => void allocFloats(100));
    assert.equal(pooledBytes(), 100 * 4, 'the long step\'s buffer went, the short one, taken every step, stayed');
    // nested scopes are one step: the inner scope's buffers stay pooled while the outer one runs
    withBufferScope(() => {
      for (let i = 0; i < 20; i++) withBufferScope(() => void allocFloats(3000));
      assert.equal(pooledBytes(), (100 + 3000) * 4);
    });
    clearBufferPool();
  });
});
