/**
 * Batched generation (BatchDecoder, generateBatch) against one-at-a-time generation
 * (generateCached): greedy and sampled, the same tokens and log-probabilities for every
 * sequence, with prompts of different lengths, more prompts than slots (continuous batching),
 * per-sequence settings, stop tokens, lengths and the end of the context; sequences joining
 * mid-answer and removed early; the policy log-probabilities against a full forward pass; prompt
 * prefix reuse; bad input.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend } from '../../src/backend/index.js';
import { BatchDecoder, type BatchSequenceOptions } from '../../src/generate/batch-decoder.js';
import { generateBatch } from '../../src/generate/generate-batch.js';
import { generateCached, type FinishReason, type GeneratedToken } from '../../src/generate/generate.js';
import type { ModelConfig } from '../../src/model/config.js';
import type { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const LLAMA = tinyLlama({ vocabSize: 67, blockSize: 48, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 56 });
const GPT2 = tinyGpt2({ vocabSize: 59, blockSize: 48, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });

const makeModel = (cfg: ModelConfig, seed = 1): Transformer => scaledModel(cfg, { seed, gain: 4 });

function ids(n: number, seed: number, V: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.uniform() * V));
}

interface Alone {
  tokens: GeneratedToken[];
  finishReason: FinishReason;
}

function alone(model: Transformer, prompt: number[], opts: BatchSequenceOptions): Alone {
  const it = generateCached(model, prompt, opts);
  const tokens: GeneratedToken[] = [];
  for (;;) {
    const r = it.next();
    if (r.done) return { tokens, finishReason: r.value };
    tokens.push(r.value);
  }
}

/** Prompts of 1 to 40 tokens and per-prompt settings: lengths, a stop token, one that reaches the context. */
function rollout(model: Transformer, sampling: Partial<BatchSequenceOptions>): { prompts: number[][]; opts: BatchSequenceOptions[] } {
  const V = model.config.vocabSize;
  const lengths = [1, 5, 12, 3, 40, 8, 2, 17, 26];
  const prompts = lengths.map((n, i) => ids(n, 10 + i, V));
  const opts = prompts.map((_, i): BatchSequenceOptions => ({ maxTokens: 6 + ((5 * i) % 13), temperature: 0, topK: 0, seed: 100 + i, ...sampling }));
  opts[4].maxTokens = 30; // 40 + 30 > 48: ends with 'context'
  // a stop token that shows up: the third token prompt 2 would generate
  const third = alone(model, prompts[2], opts[2]).tokens[2].id;
  opts[2] = { ...opts[2], stopTokens: [third] };
  opts[6] = { ...opts[6], stopTokens: [third, (third + 1) % V] };
  return { prompts, opts };
}

function assertSameAsAlone(model: Transformer, sampling: Partial<BatchSequenceOptions>, slots: number, what: string): void {
  const { prompts, opts } = rollout(model, sampling);
  const got = generateBatch(model, prompts, opts, { slots });
  const reasons = new Set<string>();
  prompts.forEach((p, i) => {
    const want = alone(model, p, opts[i]);
    const r = got[i];
    assert.equal(r.index, i);
    assert.deepEqual(r.tokens, want.tokens.map((t) => t.id), `${what}: prompt ${i} (${p.length} tokens): tokens`);
    assert.deepEqual(r.logprobs, want.tokens.map((t) => t.logprob), `${what}: prompt ${i}: log-probabilities`);
    assert.equal(r.finishReason, want.finishReason, `${what}: prompt ${i}: finish reason`);
    reasons.add(r.finishReason);
  });
  assert.deepEqual([...reasons].sort(), ['context', 'eos', 'length'], `${what}: every way of ending is covered`);
}

describe(`batched generation (${backend().name} backend)`, () => {
  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family}: greedy batched decoding gives one-at-a-time greedy decoding's tokens (9 prompts of 1-40 tokens, 4 slots)`, () => {
      assertSameAsAlone(makeModel(cfg), { temperature: 0 }, 4, `${cfg.family} greedy`);
    });

    it(`${cfg.family}: sampled with a seed per sequence gives the single-sequence sampler's tokens (temperature, top-k, top-p, min-p, penalties)`, () => {
      const m = makeModel(cfg, 2);
      assertSameAsAlone(m, { temperature: 0.9 }, 3, `${cfg.family} T=0.9`);
      assertSameAsAlone(m, { temperature: 1.3, topK: 7, topP: 0.9 }, 9, `${cfg.family} top-k/top-p`);
      assertSameAsAlone(m, { temperature: 0.7, minP: 0.05, repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.2, penaltyLastN: 8 }, 5, `${cfg.family} min-p + penalties`);
    });
  }

  it('one options object: prompt i samples with seed + i', () => {
    const m = makeModel(LLAMA, 3);
    const prompts = [ids(4, 1, LLAMA.vocabSize), ids(9, 2, LLAMA.vocabSize), ids(2, 3, LLAMA.vocabSize)];
    const opts: BatchSequenceOptions = { maxTokens: 10, temperature: 1, topK: 0, seed: 7 };
    const got = generateBatch(m, prompts, opts);
    prompts.forEach((p, i) => assert.deepEqual(got[i].tokens, alone(m, p, { ...opts, seed: 7 + i }).tokens.map((t) => t.id)));
  });

  it('one prompt sampled K times (GRPO): prefilled once, copied to the other slots, each sample as generateCached gives it', () => {
    const m = makeModel(GPT2, 7);
    const prompt = ids(21, 50, GPT2.vocabSize);
    const other = ids(5, 51, GPT2.vocabSize);
    const prompts = [prompt, prompt, prompt, prompt, prompt, prompt, other, other];
    const opts: BatchSequenceOptions = { maxTokens: 9, temperature: 1.1, topK: 0, seed: 3 };
    const stats = { steps: 0, stepRows: 0, stepMs: 0, prefillTokens: 0, reusedTokens: 0, sharedPrompts: 0, prefillMs: 0 };
    const got = generateBatch(m, prompts, opts, { slots: 4, stats });
    prompts.forEach((p, i) => {
      const want = alone(m, p, { ...opts, seed: 3 + i });
      assert.deepEqual(got[i].tokens, want.tokens.map((t) => t.id), `sample ${i}`);
      assert.deepEqual(got[i].logprobs, want.tokens.map((t) => t.logprob), `sample ${i}`);
    });
    assert.equal(stats.sharedPrompts, 6); // 3 of the first 4, the 2 next (from a free slot), the second 'other' (from an active one)
    assert.equal(stats.prefillTokens, 21 + 5);
    assert.ok(new Set(got.filter((_, i) => prompts[i] === prompt).map((r) => r.tokens.join())).size > 1, 'different seeds sample differently');
  });

  it('policy log-probabilities are log-softmax(logits / temperature) of a full forward pass over prompt + completion (TRL PPO)', () => {
    const m = makeModel(LLAMA, 4);
    const V = LLAMA.vocabSize;
    for (const temperature of [0.7, 1, 0]) {
      const prompts = [ids(6, 20, V), ids(13, 21, V)];
      const got = generateBatch(m, prompts, { maxTokens: 12, temperature, topK: 0, seed: 5 });
      got.forEach((r, i) => {
        const seq = Int32Array.from([...prompts[i], ...r.tokens]);
        const T = seq.length - 1; // the last token is never an input
        const logits = noGrad(() => m.forward(seq.subarray(0, T), 1, T)).logits.data; // (1, T, V)
        r.tokens.forEach((id, k) => {
          const row = logits.subarray((prompts[i].length - 1 + k) * V, (prompts[i].length + k) * V);
          const scale = temperature > 0 ? 1 / temperature : 1;
          let max = -Infinity;
          for (const x of row) max = Math.max(max, x * scale);
          let sum = 0;
          for (const x of row) sum += Math.exp(x * scale - max);
          const want = row[id] * scale - max - Math.log(sum);
          assert.ok(Math.abs(r.policyLogprobs[k] - want) < 2e-4, `T=${temperature} prompt ${i} token ${k}: policy ${r.policyLogprobs[k]} vs forward ${want}`);
          if (temperature === 1 || temperature === 0) assert.equal(r.policyLogprobs[k], r.logprobs[k]);
        });
      });
    }
  });

  it('top log-probabilities (topLogprobs k): the k most likely tokens of a full forward pass, the sampled tokens unchanged; policyLogprobs: false skips the policy ones', () => {
    const m = makeModel(LLAMA, 6);
    const V = LLAMA.vocabSize;
    const prompt = ids(9, 30, V);
    for (const temperature of [0, 1.2]) {
      const opts: BatchSequenceOptions = { maxTokens: 10, temperature, topK: 0, seed: 11 };
      const plain = new BatchDecoder(m, { slots: 1 });
      const a = plain.add(prompt, opts);
      plain.runToEnd();
      const withTop = new BatchDecoder(m, { slots: 1 });
      const b = withTop.add(prompt, { ...opts, topLogprobs: 5 });
      withTop.runToEnd();
      assert.deepEqual(b.ids, a.ids, 'asking for top log-probabilities changes no token');
      assert.equal(a.tokens[0].top, undefined);
      const noPolicy = new BatchDecoder(m, { slots: 1 });
      const c = noPolicy.add(prompt, { ...opts, policyLogprobs: false });
      noPolicy.runToEnd();
      assert.deepEqual(c.ids, a.ids, 'policyLogprobs: false changes no token');
      assert.deepEqual(c.tokens.map((t) => t.logprob), a.tokens.map((t) => t.logprob));
      assert.ok(c.tokens.every((t) => Number.isNaN(t.policyLogprob)));
      const seq = Int32Array.from([...prompt, ...b.ids]);
      const T = seq.length - 1;
      const logits = noGrad(() => m.forward(seq.subarray(0, T), 1, T)).logits.data; // (1, T, V)
      b.tokens.forEach((tok, k) => {
        const row = logits.subarray((prompt.length - 1 + k) * V, (prompt.length + k) * V);
        let max = -Infinity;
        for (const x of row) max = Math.max(max, x);
        let sum = 0;
        for (const x of row) sum += Math.exp(x - max);
        const order = Array.from({ length: V }, (_, i) => i).sort((x, y) => row[y] - row[x] || x - y);
        assert.equal(tok.top!.length, 5);
        tok.top!.forEach((t, r) => {
          assert.equal(t.id, order[r], `T=${temperature} token ${k} rank ${r}`);
          assert.ok(Math.abs(t.logprob - (row[t.id] - max - Math.log(sum))) < 2e-4);
        });
        if (temperature === 0) assert.deepEqual(tok.top![0], { id: tok.id, logprob: tok.logprob });
      });
    }
  });

  it('continuous batching: sequences join mid-answer, leave early (abort) and a freed slot takes the next prompt', () => {
    const m = makeModel(GPT2, 5);
    const V = GPT2.vocabSize;
    const opts = (seed: number, maxTokens: number): BatchSequenceOptions => ({ maxTokens, temperature: 0.8, topK: 0, seed });
    const dec = new BatchDecoder(m, { slots: 2 });
    const a = dec.add(ids(7, 30, V), opts(1, 9));
    assert.equal(dec.free, 1);
    for (let i = 0; i < 3; i++) {
      const events = dec.step();
      assert.deepEqual(events.map((e) => e.sequence), [a]);
      assert.equal(events[0].finishReason, null);
    }
    const b = dec.add(ids(3, 31, V), opts(2, 12)); // joins while a is 3 tokens into its answer
    assert.throws(() => dec.add(ids(2, 32, V), opts(3, 4)), (e: unknown) => e instanceof LlmError && /all 2 slots are busy/.test(e.message));
    dec.step();
    dec.step();
    dec.remove(b);
    assert.equal(b.finishReason, 'abort');
    assert.equal(b.tokens.length, 2);
    assert.equal(dec.free, 1);
    const c = dec.add(ids(11, 33, V), opts(3, 5)); // takes b's slot
    let steps = 0;
    while (dec.active.length > 0) {
      const events = dec.step();
      assert.deepEqual(events.map((e) => e.sequence), [...new Set(events.map((e) => e.sequence))]);
      steps++;
    }
    assert.equal(steps, 5); // a needs 9 - 5 = 4 more, c needs 5
    assert.equal(a.finishReason, 'length');
    assert.equal(c.finishReason, 'length');
    for (const s of [a, c]) assert.deepEqual(s.ids, alone(m, [...s.prompt], s.opts).tokens.map((t) => t.id));
    // b's two tokens are the first two of its run alone
    assert.deepEqual(b.ids, alone(m, [...b.prompt], b.opts).tokens.slice(0, 2).map((t) => t.id));
    // rows fed (tokens that did not end their sequence): a alone 3, a + b 2 x 2, then a 3 + c 4
    assert.equal(dec.stats.stepRows, 3 + 2 * 2 + 3 + 4);
  });

  it('prompt prefix reuse: a new prompt continuing what a free slot held reuses it, with the same greedy tokens', () => {
    const m = makeModel(LLAMA, 6);
    const V = LLAMA.vocabSize;
    const dec = new BatchDecoder(m, { slots: 2 });
    const greedy = (maxTokens: number): BatchSequenceOptions => ({ maxTokens, temperature: 0, topK: 0, seed: 1 });
    const a = dec.add(ids(10, 40, V), greedy(6));
    const other = dec.add(ids(4, 41, V), greedy(3));
    dec.runToEnd();
    // the next turn: a's prompt, its answer and more; a's slot held prompt + its first 5 tokens (the 6th was never fed)
    const next = [...a.prompt, ...a.ids, ...ids(5, 42, V)];
    const b = dec.add(next, greedy(8));
    assert.equal(b.reusedTokens, 10 + 5);
    dec.runToEnd();
    assert.deepEqual(b.ids, alone(m, next, greedy(8)).tokens.map((t) => t.id));
    assert.equal(dec.stats.reusedTokens, 15);
    // without reuse nothing is kept
    const c = dec.add(next, { ...greedy(2), reusePrefix: false });
    assert.equal(c.reusedTokens, 0);
    assert.ok(other.finishReason);
  });

  it('bad input: one-line errors (empty prompt, too long, token outside the vocabulary, bad maxTokens, options count)', () => {
    const m = makeModel(LLAMA);
    const dec = new BatchDecoder(m, { slots: 1 });
    const o: BatchSequenceOptions = { maxTokens: 3, temperature: 0, topK: 0, seed: 1 };
    const bad: [() => unknown, RegExp][] = [
      [() => dec.add([], o), /prompt is empty/],
      [() => dec.add(new Array(49).fill(1), o), /49 tokens but the context holds 48/],
      [() => dec.add([1, 67], o), /prompt token 1 is 67, outside the vocabulary \[0, 67\)/],
      [() => dec.add([1], { ...o, maxTokens: -1 }), /maxTokens must be a non-negative integer/],
      [() => generateBatch(m, [[1], [2]], [o]), /1 option sets for 2 prompts/],
      [() => generateBatch(m, [[1], new Array(60).fill(2)], o), /prompt 1 has 60 tokens but the model's context holds 48/],
      [() => new BatchDecoder(m, { slots: 0 }), /1 to 1024 sequences/],
    ];
    for (const [f, message] of bad) assert.throws(f, (e: unknown) => e instanceof LlmError && message.test(e.message) && !e.message.includes('\n'), String(message));
    assert.equal(dec.free, 1);
    const none = dec.add([1, 2], { ...o, maxTokens: 0 });
    assert.equal(none.finishReason, 'length');
    assert.deepEqual(generateBatch(m, [[3], [4, 5]], { ...o, maxTokens: 0 }).map((r) => [r.tokens.length, r.finishReason]), [[0, 'length'], [0, 'length']]);
  });
});
