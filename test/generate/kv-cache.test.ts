/**
 * The KV-cache inference path against the full-recompute path, for a small GPT-2 and a small
 * Llama with grouped-query attention: logits of prefill + decode equal a full forward's at every
 * position, greedy generation gives exactly the same tokens, and the text layer (stop strings,
 * UTF-8 safe pieces, seeds, context limits) behaves.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend, referenceBackend, setBackend } from '../../src/backend/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { generate, generateCached, generateTokens, generateTokensUncached } from '../../src/generate/generate.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 64 });
const LLAMA = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });

const makeModel = (cfg: ModelConfig, seed = 1): Transformer => scaledModel(cfg, { seed, gain: 4 });

function prompt(cfg: ModelConfig, n: number, seed = 3): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.uniform() * cfg.vocabSize));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function take<T>(it: Iterable<T>): T[] {
  return [...it];
}

const backends = [['default', backend()], ['reference', referenceBackend]] as const;

for (const [bname, be] of backends) {
  for (const cfg of [GPT2, LLAMA]) {
    const name = `${cfg.family}${cfg.nKvHead < cfg.nHead ? ' (GQA)' : ''}, ${bname} backend (${be.name})`;
    describe(`KV cache: ${name}`, () => {
      const withBackend = <T>(fn: () => T): T => {
        const prev = backend();
        setBackend(be);
        try {
          return fn();
        } finally {
          setBackend(prev);
        }
      };

      it('prefill + decode logits equal a full forward at every position', () => withBackend(() => {
        const model = makeModel(cfg);
        const ids = prompt(cfg, cfg.blockSize);
        const full = noGrad(() => model.forward(Int32Array.from(ids), 1, ids.length)).logits.data.slice();
        const V = cfg.vocabSize;
        for (const split of [[7], [1], [5, 3], [cfg.blockSize]]) {
          const cache = new KvCache(cfg);
          const got = new Float32Array(ids.length * V);
          let p = 0;
          for (const n of split) {
            const chunk = model.forwardCached(Int32Array.from(ids.slice(p, p + n)), cache, { allLogits: true });
            got.set(chunk, p * V);
            p += n;
          }
          const kBuf = cache.k[0];
          while (p < ids.length) {
            got.set(model.forwardCached(Int32Array.of(ids[p]), cache), p * V);
            p++;
          }
          assert.equal(cache.pos, ids.length);
          assert.equal(cache.k[0], kBuf, 'the cache buffers are not reallocated');
          const d = maxAbsDiff(got, full);
          assert.ok(d < 1e-4, `split ${split}: max |cached - full| = ${d}`);
        }
      }));

      it('truncate and reset reuse the cache', () => withBackend(() => {
        const model = makeModel(cfg);
        const ids = prompt(cfg, 12);
        const cache = new KvCache(cfg);
        const a = model.forwardCached(Int32Array.from(ids), cache);
        cache.truncate(8);
        const b = model.forwardCached(Int32Array.from(ids.slice(8)), cache);
        assert.ok(maxAbsDiff(a, b) < 1e-5);
        cache.reset();
        const c = model.forwardCached(Int32Array.from(ids), cache);
        assert.ok(maxAbsDiff(a, c) < 1e-6);
        assert.throws(() => cache.truncate(13), LlmError);
        assert.throws(() => model.forwardCached(Int32Array.from(prompt(cfg, 13)), cache), LlmError);
      }));

      it('greedy generation matches the uncached path token for token', () => withBackend(() => {
        const model = makeModel(cfg);
        const ids = prompt(cfg, 5);
        const opts = { maxTokens: cfg.blockSize - 5, temperature: 0, topK: 0, seed: 1 };
        assert.deepEqual(take(generateTokens(model, ids, opts)), take(generateTokensUncached(model, ids, opts)));
      }));
    });
  }
}

describe('generation on the KV cache', () => {
  it('sampling with a seed is reproducible and matches the uncached path', () => {
    const model = makeModel(LLAMA);
    const ids = prompt(LLAMA, 4);
    const opts = { maxTokens: 15, temperature: 0.9, topK: 20, topP: 0.95, minP: 0.02, seed: 42 };
    const a = take(generateTokens(model, ids, opts));
    assert.deepEqual(take(generateTokens(model, ids, opts)), a);
    assert.deepEqual(take(generateTokensUncached(model, ids, opts)), a);
    assert.notDeepEqual(take(generateTokens(model, ids, { ...opts, seed: 43 })), a);
  });

  it('generateTokens slides past the context like the uncached path', () => {
    const model = makeModel(GPT2);
    const ids = prompt(GPT2, 20);
    const opts = { maxTokens: 12, temperature: 0, topK: 0, seed: 1 };
    assert.deepEqual(take(generateTokens(model, ids, opts)), take(generateTokensUncached(model, ids, opts)));
  });

  it('penalties change the choice and stay deterministic', () => {
    const model = makeModel(GPT2);
    const ids = prompt(GPT2, 3);
    const greedy = take(generateTokens(model, ids, { maxTokens: 20, temperature: 0, topK: 0, seed: 1 }));
    const opts = { maxTokens: 20, temperature: 0, topK: 0, seed: 1, repetitionPenalty: 5, presencePenalty: 2 };
    const pen = take(generateTokens(model, ids, opts));
    assert.deepEqual(take(generateTokens(model, ids, opts)), pen);
    assert.notDeepEqual(pen, greedy);
  });

  it('prompt longer than the context is an error; generation stops cleanly at the limit', () => {
    const model = makeModel(LLAMA);
    assert.throws(() => take(generateCached(model, prompt(LLAMA, LLAMA.blockSize + 1), { maxTokens: 3, temperature: 0, topK: 0, seed: 1 })), LlmError);
    const it = generateCached(model, prompt(LLAMA, LLAMA.blockSize - 3), { maxTokens: 10, temperature: 0, topK: 0, seed: 1 });
    const got: number[] = [];
    let r = it.next();
    while (!r.done) {
      got.push(r.value.id);
      assert.ok(r.value.logprob <= 0 && Number.isFinite(r.value.logprob));
      r = it.next();
    }
    assert.equal(got.length, 4); // the last token fills position blockSize - 1 and is never fed back
    assert.equal(r.value, 'context');
  });

  it('stop strings end the text and are not emitted', async () => {
    const chars = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJK'];
    const tok = new CharTokenizer(chars);
    const model = makeModel(GPT2, 5);
    const opts = { maxTokens: 18, temperature: 0, topK: 0, seed: 1 };
    const all = generate(model, tok, 'abc', opts);
    const full = await all.collect();
    assert.equal(all.finishReason, 'length');
    assert.equal(full, tok.decode(all.tokens.map((t) => t.id)));
    for (const [from, len] of [[6, 2], [0, 1], [10, 3]]) {
      const stop = full.slice(from, from + len);
      const g = generate(model, tok, 'abc', { ...opts, stop: ['zzzzzzzzz', stop] });
      const pieces: string[] = [];
      for await (const p of g) pieces.push(p);
      const want = full.slice(0, full.indexOf(stop));
      assert.equal(pieces.join(''), want, `stop ${JSON.stringify(stop)}`);
      assert.equal(g.text, want);
      assert.equal(g.finishReason, 'stop');
    }
    await assert.rejects(async () => generate(model, tok, 'abcdefghijklmnopqrstuvwxyzab', opts).collect(), LlmError);
  });

  it('text pieces never split a UTF-8 character', async () => {
    // a byte-level tokenizer: a random model emits arbitrary byte sequences
    const bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    const tok = { encode: (s: string) => [...new TextEncoder().encode(s)], tokenBytes: (id: number) => bytes[id] };
    const cfg = { ...LLAMA, vocabSize: 256, blockSize: 64 };
    const model = makeModel(cfg, 9);
    const g = generate(model, tok, 'hé', { maxTokens: 60, temperature: 1.5, topK: 0, seed: 3 });
    const pieces: string[] = [];
    for await (const p of g) pieces.push(p);
    const all = Uint8Array.from(g.tokens.map((t) => t.id));
    assert.equal(pieces.join(''), new TextDecoder().decode(all));
    for (const p of pieces) assert.equal(new TextDecoder().decode(new TextEncoder().encode(p)), p, 'no lone surrogates');
  });
});

describe('KV cache growth', () => {
  it('grows past its first 256 positions keeping every cached key and value', () => {
    const cfg: ModelConfig = { ...LLAMA, blockSize: 700 };
    const m = makeModel(cfg, 5);
    const ids = prompt(cfg, 600, 11);
    const cache = new KvCache(cfg);
    assert.equal(cache.bytes, 0, 'nothing is reserved before the first forward');
    const logits = new Float32Array(cfg.vocabSize);
    m.forwardCached(Int32Array.from(ids.slice(0, 200)), cache);
    const small = cache.bytes;
    assert.equal(small, 2 * cfg.nLayer * 256 * cfg.nKvHead * (cfg.nEmbd / cfg.nHead) * 4);
    for (let t = 200; t < 600; t++) m.forwardCached(Int32Array.of(ids[t]), cache, { out: logits });
    assert.ok(cache.bytes > small && cache.bytes <= 2 * cfg.nLayer * 700 * cfg.nKvHead * (cfg.nEmbd / cfg.nHead) * 4);
    const full = noGrad(() => m.forward(Int32Array.from(ids), 1, ids.length).logits);
    const last = full.data.subarray(599 * cfg.vocabSize, 600 * cfg.vocabSize);
    assert.ok(maxAbsDiff(logits, Float32Array.from(last)) < 1e-4);
  });
});
