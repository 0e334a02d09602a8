/**
 * Scoring answers with a reward model (src/align/reward-model.ts, rewards.ts): an answer whose
 * rendering outgrows the reward model's context is an error for `scoreAnswers` by default, and
 * is scored cut to the context with `overLong: 'cut'`, which the RL reward source uses (a PPO
 * rollout that ran to the end of the policy's context gets end-of-turn tokens added when the
 * reward model renders it, and stopped the run: measured in bench/rlhf-learn.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chatTemplate, type ChatMessage } from '../../src/chat/index.js';
import { renderAnswer } from '../../src/align/pairs.js';
import { sequenceScores } from '../../src/align/reward.js';
import { scoreAnswers, type RewardModel } from '../../src/align/reward-model.js';
import { rewardModelSource } from '../../src/align/rewards.js';
import { addScalarHead } from '../../src/model/heads.js';
import { noGrad } from '../../src/tensor/index.js';
import { bpeTokenizerFromTrained, trainBpe } from '../../src/tokenizer/bpe-train.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';

const tok = bpeTokenizerFromTrained(trainBpe('What is 12 + 34? It is 46. user assistant\n'.repeat(20), { vocabSize: 280, pattern: 'cl100k', specialTokens: ['<|im_start|>', '<|im_end|>'] }));
const template = chatTemplate('chatml');
const model = scaledModel(tinyLlama({ vocabSize: tok.vocabSize, blockSize: 40, nLayer: 2, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 }), { seed: 3, gain: 2 });
const head = addScalarHead(model, { rng: new Rng(4) });
const rm: RewardModel = { path: 'test', model, head, tokenizer: tok, template, maxLength: 40 };
const prompt: ChatMessage[] = [{ role: 'user', content: 'What is 12 + 34?' }];

describe('scoring answers with a reward model', () => {
  const short = 'It is 46.';
  const long = 'It is 46. '.repeat(8);
  it('an answer that fits scores as its whole rendering', () => {
    const r = renderAnswer(tok, template, { prompt, chosen: short, rejected: '' }, short);
    assert.ok(r.ids.length <= 40);
    const expected = noGrad(() => sequenceScores(model, head, [r], 0))[0];
    assert.equal(scoreAnswers(rm, [{ prompt, answer: short }])[0], expected);
  });

  it('a rendering longer than the context: an error, or with overLong cut scored at the context\'s last token', () => {
    const r = renderAnswer(tok, template, { prompt, chosen: long, rejected: '' }, long);
    assert.ok(r.ids.length > 40, `the long answer renders to ${r.ids.length} tokens`);
    assert.throws(() => scoreAnswers(rm, [{ prompt, answer: long }]), (e: unknown) => e instanceof LlmError && /answer 1: \d+ tokens with its prompt, longer than the reward model's context of 40/.test(e.message));
    const cut = { ids: r.ids.subarray(0, 40), answerMask: r.answerMask.subarray(0, 40) };
    const expected = noGrad(() => sequenceScores(model, head, [cut], 0))[0];
    const got = scoreAnswers(rm, [{ prompt, answer: short }, { prompt, answer: long }], 8, { overLong: 'cut' });
    assert.ok(Math.abs(got[1] - expected) < 1e-6, `${got[1]} vs ${expected}`);
    assert.equal(got[0], scoreAnswers(rm, [{ prompt, answer: short }])[0], 'the batch mate is unchanged');
    const rl = rewardModelSource('rm', rm).score([{ prompt, completion: long }]);
    assert.ok(Math.abs(rl[0] - expected) < 1e-6, 'the RL reward source cuts');
  });
});
