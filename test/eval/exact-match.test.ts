/**
 * The answers evaluation (src/eval/exact-match.ts) and the addition task (src/eval/tasks.ts):
 * greedy answers are those of the uncached generation oracle cut at the end of turn; an
 * end-of-turn token or stop string ends an answer (ended), the cap does not; sampled answers
 * do not depend on the order of the prompts; exact match trims; the tasks' splits are disjoint,
 * complete and seeded, and their answers are right.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chatTemplate, encodeChat, type ChatMessage } from '../../src/chat/index.js';
import { additionTask, alpacaJsonl, reversalTask } from '../../src/eval/tasks.js';
import { answerPrompts, endOfTurnRate, exactMatch } from '../../src/eval/exact-match.js';
import { generateTokensUncached } from '../../src/generate/generate.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { bpeTokenizerFromTrained, trainBpe } from '../../src/tokenizer/bpe-train.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const tok = bpeTokenizerFromTrained(trainBpe('What is 12 + 34? It is 46. user assistant\n'.repeat(20), { vocabSize: 280, pattern: 'cl100k', specialTokens: ['<|im_start|>', '<|im_end|>'] }));
const chatml = chatTemplate('chatml');
const END = tok.specialTokens!['<|im_end|>'];
const ask = (q: string): ChatMessage[] => [{ role: 'user', content: q }];
const PROMPTS = ['What is 12 + 34?', 'What is 46?', 'It is', 'user 12'].map(ask);

/** A GPT-2 model that writes `token` whatever the input: the final norm outputs a constant vector along its embedding. */
function alwaysWrites(token: number): Transformer {
  const m = new Transformer(tinyGpt2({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 32 }), new Rng(2));
  const p = new Map(m.namedParameters().map((n) => [n.name, n.tensor]));
  const wte = p.get('transformer.wte.weight')!.data;
  p.get('transformer.ln_f.weight')!.data.fill(0);
  const bias = p.get('transformer.ln_f.bias')!.data;
  for (let i = 0; i < 16; i++) bias[i] = 50 * wte[token * 16 + i];
  m.eval();
  return m;
}

describe('answerPrompts', () => {
  it('greedy answers are the uncached oracle, cut at the end-of-turn token', () => {
    const model = scaledModel(tinyLlama({ vocabSize: tok.vocabSize, blockSize: 48, nLayer: 2, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 }), { seed: 4 });
    const answers = noGrad(() => answerPrompts(model, tok, chatml, PROMPTS, { maxTokens: 6 }));
    PROMPTS.forEach((p, i) => {
      const ids = [...generateTokensUncached(model, encodeChat(tok, chatml, p), { maxTokens: 6, temperature: 0, topK: 0, seed: 1 })];
      const end = ids.indexOf(END);
      const text = tok.decode(end >= 0 ? ids.slice(0, end) : ids);
      assert.deepEqual(answers[i], { text, ended: end >= 0, tokens: end >= 0 ? end + 1 : 6 }, `prompt ${i}`);
    });
  });

  it('an end-of-turn token or stop string ends an answer; the cap does not', () => {
    const ends = noGrad(() => answerPrompts(alwaysWrites(END), tok, chatml, PROMPTS, { maxTokens: 5 }));
    assert.deepEqual(ends[0], { text: '', ended: true, tokens: 1 });
    assert.deepEqual(endOfTurnRate(ends), { ended: 4, total: 4, rate: 1 });
    const seven = tok.encode('7');
    assert.equal(seven.length, 1);
    const rambles = noGrad(() => answerPrompts(alwaysWrites(seven[0]), tok, chatml, PROMPTS.slice(0, 2), { maxTokens: 5 }));
    assert.deepEqual(rambles[0], { text: '77777', ended: false, tokens: 5 });
    assert.deepEqual(endOfTurnRate(rambles), { ended: 0, total: 2, rate: 0 });
    const stopped = noGrad(() => answerPrompts(alwaysWrites(seven[0]), tok, chatml, PROMPTS.slice(0, 1), { maxTokens: 5, stop: ['777'] }));
    assert.deepEqual(stopped[0], { text: '', ended: true, tokens: 3 });
    // the context also caps an answer: a 32-token context holds the prompt and all but the last answer token
    const small = alwaysWrites(seven[0]);
    const room = 32 - encodeChat(tok, chatml, PROMPTS[0]).length + 1;
    const cut = noGrad(() => answerPrompts(small, tok, chatml, PROMPTS.slice(0, 1), { maxTokens: 100 }));
    assert.deepEqual(cut[0], { text: '7'.repeat(room), ended: false, tokens: room });
    assert.throws(() => answerPrompts(small, tok, chatml, [ask('What is 12 + 34? '.repeat(8))], { maxTokens: 4 }), (e: unknown) => e instanceof LlmError && /prompt 0 has \d+ tokens/.test(e.message));
  });

  it('sampled answers do not depend on the order of the prompts', () => {
    const model = scaledModel(tinyLlama({ vocabSize: tok.vocabSize, blockSize: 48, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 32 }), { seed: 5, gain: 1 });
    const opts = { maxTokens: 8, temperature: 1, seed: 10 };
    const all = noGrad(() => answerPrompts(model, tok, chatml, PROMPTS, opts));
    const last = noGrad(() => answerPrompts(model, tok, chatml, PROMPTS.slice(3), { ...opts, seed: 13 }));
    assert.deepEqual(last[0], all[3]);
    const other = noGrad(() => answerPrompts(model, tok, chatml, PROMPTS, { ...opts, seed: 11 }));
    assert.notDeepEqual(other, all, 'another seed, other samples');
  });
});

describe('exactMatch', () => {
  it('compares trimmed texts, one answer per reference', () => {
    const a = (text: string) => ({ text, ended: true, tokens: 1 });
    assert.deepEqual(exactMatch([a(' 68'), a('68 '), a('6 8'), a('')], ['68', '68', '68', '68']), { correct: 2, total: 4, rate: 0.5 });
    assert.throws(() => exactMatch([a('1')], ['1', '2']), LlmError);
  });
});

describe('additionTask', () => {
  it('splits every question into disjoint held-out and training sets, by seed, with right answers', () => {
    const { train, heldOut } = additionTask({ heldOut: 500, seed: 3 });
    assert.equal(heldOut.length, 500);
    assert.equal(train.length, 90 * 90 - 500);
    const questions = new Set([...train, ...heldOut].map((q) => q.question));
    assert.equal(questions.size, 8100, 'every pair once');
    for (const { question, answer } of [...train, ...heldOut]) {
      const m = /^What is (\d\d) \+ (\d\d)\?$/.exec(question)!;
      assert.equal(Number(answer), Number(m[1]) + Number(m[2]), question);
    }
    assert.deepEqual(additionTask({ heldOut: 500, seed: 3 }).heldOut, heldOut, 'same seed, same split');
    assert.notDeepEqual(additionTask({ heldOut: 500, seed: 4 }).heldOut, heldOut);
    const small = additionTask({ heldOut: 10, train: 20, a: [0, 9], b: [0, 9], seed: 1 });
    assert.equal(small.train.length, 20);
    assert.ok(small.train.every((q) => !small.heldOut.some((h) => h.question === q.question)));
    assert.equal(alpacaJsonl(small.heldOut.slice(0, 1)), JSON.stringify({ instruction: small.heldOut[0].question, output: small.heldOut[0].answer }) + '\n');
    assert.equal(additionTask({ heldOut: 10, a: [10, 99], b: [1, 9] }).train.length, 90 * 9 - 10);
    assert.throws(() => additionTask({ heldOut: 100, a: [0, 9], b: [0, 9] }), LlmError);
    assert.throws(() => additionTask({ heldOut: 1, b: [5, 4] }), LlmError);
  });

  it('reversalTask: every number of the given digits once, reversed', () => {
    const { train, heldOut } = reversalTask({ heldOut: 100, digits: 3, seed: 2 });
    assert.equal(train.length + heldOut.length, 900);
    assert.equal(new Set([...train, ...heldOut].map((q) => q.question)).size, 900);
    for (const { question, answer } of [...train, ...heldOut]) {
      const n = /^Reverse the digits of (\d{3})\.$/.exec(question)![1];
      assert.equal(answer, n[2] + n[1] + n[0], question);
    }
    assert.throws(() => reversalTask({ heldOut: 5, digits: 1 }), LlmError);
  });
});
