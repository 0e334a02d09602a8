/**
 * targetLogProbs (src/align/log-probs.ts) runs the LM head on the positions that have a target
 * only: the log-probabilities it gives (and DPO's answer sums, and the rollouts' per-token log π at
 * a temperature) equal those of the full logits of every position, and the rollouts' equal the
 * policy log-probabilities the batched decoder reported while sampling them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IGNORE_INDEX, gather, logSoftmaxGather, noGrad, reshape, scale, sum } from '../../src/tensor/index.js';
import { generateBatch } from '../../src/generate/generate-batch.js';
import { answerLogProbs } from '../../src/align/log-probs.js';
import { makePairBatch, type RenderedPair } from '../../src/align/pairs.js';
import { makeResponseBatch, responseOutputs, type Rollout } from '../../src/align/rollout.js';
import { Transformer } from '../../src/model/transformer.js';
import { Rng } from '../../src/util/rng.js';
import { tinyLlama } from '../helpers/tiny-model.js';

const cfg = tinyLlama({ vocabSize: 61, blockSize: 48, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });
const model = new Transformer(cfg, new Rng(9));
model.eval();

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = 1e-4): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

describe('targetLogProbs: the LM head on the target positions only', () => {
  it("DPO's answer log-probabilities equal the masked sums over every position's logits", () => {
    const rng = new Rng(3);
    const side = (prompt: number, answer: number): RenderedPair['chosen'] => {
      const ids = Int32Array.from({ length: prompt + answer }, () => 3 + rng.int(cfg.vocabSize - 3));
      return { ids, answerMask: new Uint8Array(prompt + answer).fill(1, prompt) };
    };
    const pairs: RenderedPair[] = [
      { chosen: side(5, 7), rejected: side(5, 3), line: 1, key: 'a' },
      { chosen: side(9, 2), rejected: side(9, 11), line: 2, key: 'b' },
    ];
    const batch = makePairBatch(pairs, 0);
    const got = noGrad(() => answerLogProbs(model, batch).data);
    const want = noGrad(() => {
      const { logits } = model.forward(batch.x, 2 * batch.P, batch.T);
      return sum(reshape(logSoftmaxGather(logits, batch.targets), [2 * batch.P, batch.T]), [1]).data;
    });
    close(got, want, 'answer log π');
    assert.ok(want.every((v) => v < 0), 'every answer has a negative log-probability');
  });

  it("rollouts' per-token log π at temperature 0.7 equal the full logits' and the sampler's", () => {
    const rng = new Rng(4);
    const prompts = [4, 9, 6].map((n) => Int32Array.from({ length: n }, () => 3 + rng.int(cfg.vocabSize - 3)));
    const results = generateBatch(model, prompts, prompts.map((_, i) => ({ maxTokens: 3 + 4 * i, temperature: 0.7, topK: 0, seed: 50 + i })));
    const rollouts: Rollout[] = results.map((r, i) => ({ promptIndex: i, prompt: prompts[i], response: Int32Array.from(r.tokens), ended: false }));
    const batch = makeResponseBatch(rollouts, 0);
    const got = noGrad(() => responseOutputs(model, batch, 0.7).logp.data);
    const full = noGrad(() => {
      const { logits } = model.forward(batch.x, batch.R, batch.T);
      return gather(logSoftmaxGather(scale(logits, 1 / 0.7), batch.targets), batch.index).data;
    });
    close(got, full, 'response log π');
    results.forEach((r, b) => {
      const sampled = r.policyLogprobs;
      close(got.subarray(b * batch.L, b * batch.L + sampled.length), sampled, `rollout ${b}: policy log-probabilities while sampling`);
      for (let j = sampled.length; j < batch.L; j++) assert.equal(got[b * batch.L + j], 0, `rollout ${b}: padding reads 0`);
    });
    assert.ok(Array.from(batch.targets).some((t) => t === IGNORE_INDEX), 'the prompt positions have no target');
  });
});
