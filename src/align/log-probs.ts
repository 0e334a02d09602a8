/**
 * Log-probabilities of answers under a model, the quantity DPO compares with its reference:
 *
 *   const lp = answerLogProbs(model, batch);              // (2P,) Σ_t log π(answer_t | prefix), chosen rows then rejected
 *
 * The logits of every position are computed and log-softmax-gathered at the answer tokens only
 * (targets IGNORE_INDEX elsewhere give 0), then summed per row, as TRL's selective_log_softmax +
 * masked sum.
 */
import { logSoftmaxGather, reshape, sum, type Tensor } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { PairBatch } from './pairs.js';

export function answerLogProbs(model: Transformer, batch: PairBatch): Tensor {
  const rows = 2 * batch.P;
  const { logits } = model.forward(batch.x, rows, batch.T); // (2P, T, V)
  const perToken = reshape(logSoftmaxGather(logits, batch.targets), [rows, batch.T]); // (2P, T)
  return sum(perToken, [1]); // (2P,)
}
