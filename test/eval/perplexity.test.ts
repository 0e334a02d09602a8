/**
 * Perplexity of continuations (src/eval/perplexity.ts): each item's negative log-likelihood is
 * the sum of float64 log-softmaxes of the unpadded sequence's logits at the continuation tokens;
 * batching and padding change nothing; a model that always writes one token finds a run of it
 * certain; bad items are one-line errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chatTemplate, encodeChat } from '../../src/chat/index.js';
import { chatContinuations, continuationNll, perplexity, type Continuation } from '../../src/eval/perplexity.js';
import { noGrad } from '../../src/tensor/index.js';
import { bpeTokenizerFromTrained, trainBpe } from '../../src/tokenizer/bpe-train.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';

const V = 37;
const model = scaledModel(tinyLlama({ vocabSize: V, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 }), { seed: 5, gain: 3 });

/** Σ -log softmax(logits)[token] over the continuation, from the item alone, in float64. */
function oracle(it: Continuation): number {
  const ids = Int32Array.from([...Array.from(it.context), ...Array.from(it.continuation)]);
  const { logits } = noGrad(() => model.forward(ids, 1, ids.length));
  let s = 0;
  for (let j = 0; j < it.continuation.length; j++) {
    const row = logits.data.subarray((it.context.length + j - 1) * V, (it.context.length + j) * V);
    const max = Math.max(...row);
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    s -= row[it.continuation[j]] - max - Math.log(z);
  }
  return s;
}

function randomItems(n: number, seed: number): Continuation[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const c = 1 + rng.int(8);
    const k = rng.int(10);
    return { context: Array.from({ length: c }, () => rng.int(V)), continuation: Array.from({ length: k }, () => rng.int(V)) };
  });
}

describe('continuationNll', () => {
  it('equals the float64 log-softmax of each unpadded sequence, whatever the batch', () => {
    const items = randomItems(9, 3);
    const expected = items.map(oracle);
    for (const batchSize of [1, 4, 16]) {
      const got = continuationNll(model, items, { batchSize });
      items.forEach((it, i) => {
        assert.equal(got.tokens[i], it.continuation.length);
        assert.ok(Math.abs(got.nll[i] - expected[i]) < 1e-4 * Math.max(1, expected[i]), `item ${i}, batch ${batchSize}: ${got.nll[i]} vs ${expected[i]}`);
      });
    }
    assert.ok(items.some((it) => it.continuation.length === 0), 'the draw includes an empty continuation');
  });

  it('perplexity is exp of the token-weighted mean; a certain continuation has perplexity 1', () => {
    const items = randomItems(6, 8);
    const s = continuationNll(model, items);
    const total = items.reduce((a, it) => a + it.continuation.length, 0);
    const p = perplexity(s);
    assert.equal(p.tokens, total);
    assert.ok(Math.abs(p.meanNll - s.nll.reduce((a, b) => a + b, 0) / total) < 1e-12);
    assert.ok(Math.abs(p.perplexity - Math.exp(p.meanNll)) < 1e-9);
    assert.ok(p.perplexity > 1 && p.perplexity < 10 * V, `a random model is unsure: ${p.perplexity}`);
    // the model's own greedy choice, boosted: scale the output layer so it is near certain
    const sharp = scaledModel(tinyLlama({ vocabSize: V, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 }), { seed: 5, gain: 3 });
    for (const p of sharp.namedParameters()) if (p.name === 'lm_head.weight') for (let i = 0; i < p.tensor.data.length; i++) p.tensor.data[i] *= 200;
    const ctx = [3, 1, 4];
    const { logits } = noGrad(() => sharp.forward(Int32Array.from(ctx), 1, 3));
    const last = logits.data.subarray(2 * V, 3 * V);
    const greedy = last.indexOf(Math.max(...last));
    const certain = perplexity(continuationNll(sharp, [{ context: ctx, continuation: [greedy] }]));
    assert.ok(certain.perplexity < 1.001, `${certain.perplexity}`);
    assert.ok(Number.isNaN(perplexity(continuationNll(model, [{ context: [1], continuation: [] }])).perplexity));
  });

  it('chat answers are scored after the rendered prompt, as text', () => {
    const tok = bpeTokenizerFromTrained(trainBpe('What is 12 + 34? It is 46. user assistant\n'.repeat(20), { vocabSize: 280, pattern: 'cl100k', specialTokens: ['<|im_start|>', '<|im_end|>'] }));
    const chatml = chatTemplate('chatml');
    const prompts = [[{ role: 'user' as const, content: 'What is 12 + 34?' }]];
    const [c] = chatContinuations(tok, chatml, prompts, ['It is 46. <|im_end|>']);
    assert.deepEqual(Array.from(c.context), encodeChat(tok, chatml, prompts[0]));
    assert.equal(tok.decode(Array.from(c.continuation)), 'It is 46. <|im_end|>');
    assert.ok(!Array.from(c.continuation).includes(tok.specialTokens!['<|im_end|>']), 'text that looks like a special token stays text');
    assert.throws(() => chatContinuations(tok, chatml, prompts, []), LlmError);
  });

  it('an item longer than the context or with no context is a one-line error', () => {
    assert.throws(() => continuationNll(model, [{ context: [1, 2], continuation: new Array(23).fill(1) }]), (e: unknown) => e instanceof LlmError && /item 1 has 25 tokens, more than the model's context of 24/.test(e.message));
    assert.throws(() => continuationNll(model, [{ context: [], continuation: [1] }]), (e: unknown) => e instanceof LlmError && /empty context/.test(e.message));
  });
});
