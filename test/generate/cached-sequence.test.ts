/**
 * CachedSequence: the longest common prefix of the held tokens and a new prompt is kept, the
 * rest is recomputed, and the logits equal a prefill from scratch; a prompt that is wholly a
 * prefix still recomputes its last token; generateCached on a sequence leaves exactly the
 * tokens it fed to the model (also when the consumer stops early).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Transformer } from '../../src/model/transformer.js';
import { CachedSequence } from '../../src/generate/cached-sequence.js';
import { emptyStats, generateCached } from '../../src/generate/generate.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';

const CFG = tinyLlama({ vocabSize: 41, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });

const makeModel = (seed = 1): Transformer => scaledModel(CFG, { seed, gain: 4 });

function ids(n: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.uniform() * CFG.vocabSize));
}

/** Logits of the last token of `prompt` from an empty cache. */
function fresh(model: Transformer, prompt: number[]): Float32Array {
  return model.forwardCached(Int32Array.from(prompt), new KvCache(CFG));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('CachedSequence', () => {
  const model = makeModel();
  const logits = new Float32Array(CFG.vocabSize);

  it('reuses the common prefix, recomputes the rest, and gives the logits of a fresh prefill', () => {
    const seq = new CachedSequence(model);
    const a = ids(12, 3);
    assert.deepEqual(seq.prefill(a, logits), { reused: 0, computed: 12 });
    assert.ok(maxAbsDiff(logits, fresh(model, a)) < 1e-5);
    assert.deepEqual(seq.tokens, a);

    const b = [...a.slice(0, 8), (a[8] + 1) % CFG.vocabSize, ...ids(4, 4)]; // diverges exactly at position 8
    assert.equal(seq.commonPrefix(b), 8);
    assert.deepEqual(seq.prefill(b, logits), { reused: 8, computed: 5 });
    assert.ok(maxAbsDiff(logits, fresh(model, b)) < 1e-4);
    assert.deepEqual(seq.tokens, b);
    assert.equal(seq.length, seq.cache.pos);

    // a prompt that diverges at the first token reuses nothing
    const c = [(b[0] + 1) % CFG.vocabSize, ...b.slice(1)];
    assert.deepEqual(seq.prefill(c, logits), { reused: 0, computed: c.length });
    assert.ok(maxAbsDiff(logits, fresh(model, c)) < 1e-5);
  });

  it('a prompt that is wholly a prefix of the held tokens still recomputes its last token', () => {
    const seq = new CachedSequence(model);
    const a = ids(10, 5);
    seq.prefill(a, logits);
    assert.deepEqual(seq.prefill(a.slice(0, 6), logits), { reused: 5, computed: 1 });
    assert.ok(maxAbsDiff(logits, fresh(model, a.slice(0, 6))) < 1e-4);
    assert.deepEqual(seq.tokens, a.slice(0, 6));
    // the same prompt again: all but the last token are reused
    assert.deepEqual(seq.prefill(a.slice(0, 6), logits), { reused: 5, computed: 1 });
    // without reuse everything is recomputed
    assert.deepEqual(seq.prefill(a.slice(0, 6), logits, { reuse: false }), { reused: 0, computed: 6 });
    seq.reset();
    assert.equal(seq.length, 0);
    assert.equal(seq.cache.pos, 0);
  });

  it('generateCached on a sequence leaves the prompt and the generated tokens it fed back', () => {
    const seq = new CachedSequence(model);
    const prompt = ids(6, 7);
    const stats = emptyStats();
    const got = [...generateCached(model, prompt, { maxTokens: 5, temperature: 0, topK: 0, seed: 1, sequence: seq, stats })].map((t) => t.id);
    // the last sampled token was never run through the model, so it is not held
    assert.deepEqual(seq.tokens, [...prompt, ...got.slice(0, -1)]);
    assert.equal(stats.promptTokens, 6);
    assert.equal(stats.reusedTokens, 0);
    assert.equal(stats.generatedTokens, 5);
    assert.ok(stats.prefillMs >= 0 && stats.decodeMs >= 0);

    // continuing the conversation: prompt + answer + more reuses all that was held
    const next = [...prompt, ...got, ...ids(3, 8)];
    const again = [...generateCached(model, next, { maxTokens: 4, temperature: 0, topK: 0, seed: 1, sequence: seq, stats })].map((t) => t.id);
    assert.equal(stats.reusedTokens, prompt.length + got.length - 1);
    const plain = [...generateCached(model, next, { maxTokens: 4, temperature: 0, topK: 0, seed: 1 })].map((t) => t.id);
    assert.deepEqual(again, plain);

    // a consumer that stops early: the sequence holds what was fed, nothing more
    const it = generateCached(model, prompt, { maxTokens: 10, temperature: 0, topK: 0, seed: 1, sequence: seq });
    const first = [it.next().value, it.next().value, it.next().value].map((t) => (t as { id: number }).id);
    it.return('length');
    assert.deepEqual(seq.tokens, [...prompt, ...first.slice(0, 2)]);
    assert.equal(seq.length, seq.cache.pos);
  });

  it('refuses a sequence of another model, a cache and a sequence together, a prompt over its capacity', () => {
    const seq = new CachedSequence(model, new KvCache(CFG, 8));
    const opts = { maxTokens: 2, temperature: 0, topK: 0, seed: 1 };
    assert.throws(() => [...generateCached(makeModel(2), ids(3, 1), { ...opts, sequence: seq })], /another model/);
    assert.throws(() => [...generateCached(model, ids(3, 1), { ...opts, sequence: seq, cache: new KvCache(CFG) })], /either a cache or a cached sequence/);
    assert.throws(() => seq.prefill(ids(9, 1), logits), LlmError);
    assert.throws(() => [...generateCached(model, ids(9, 1), { ...opts, sequence: seq })], /9 tokens but the model's context holds 8/);
  });
});
