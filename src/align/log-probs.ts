/**
 * Log-probabilities of answers under a model, the quantity DPO compares with its reference and
 * PPO/GRPO turn into ratios:
 *
 *   const lp = answerLogProbs(model, batch);              // (2P,) Σ_t log π(answer_t | prefix), chosen rows then rejected
 *   const { logp, at } = targetLogProbs(model, h, targets, temperature);   // log π at each target, and where each position's is
 *
 * The LM head and the log-softmax run only on the positions that have a target (an answer token
 * to predict), (n, C) -> (n, V) instead of (rows·T, V): the prompt's positions go through the trunk
 * (attention needs them) but never through the head, as sftLoss. The same numbers as TRL's
 * selective_log_softmax over every position + masked sum.
 */
import { IGNORE_INDEX, gather, logSoftmaxGather, scale, selectRows, sum, type Tensor } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { PairBatch } from './pairs.js';

/**
 * log π(target) at the positions of h (rows, T, C) whose target (flat (rows·T)) is not IGNORE_INDEX,
 * from logits / temperature: logp (n + 1,), the last entry 0 (a position without a target; no
 * gradient), and `at` (rows·T): each position's entry in logp (n where it has no target).
 */
export function targetLogProbs(model: Transformer, h: Tensor, targets: Int32Array, temperature = 1): { logp: Tensor; at: Int32Array } {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] !== IGNORE_INDEX) n++;
  const rows = new Int32Array(n + 1); // the last: position 0 again, with no target (log π 0)
  const picked = new Int32Array(n + 1).fill(IGNORE_INDEX);
  const at = new Int32Array(targets.length).fill(n);
  for (let i = 0, j = 0; i < targets.length; i++) {
    if (targets[i] === IGNORE_INDEX) continue;
    rows[j] = i;
    picked[j] = targets[i];
    at[i] = j++;
  }
  let x = selectRows(h, rows); // (n + 1, C)
  // logits / τ = (x / τ) · Wᵀ: the temperature scales the C-wide rows, not the V-wide logits
  if (temperature > 0 && temperature !== 1) x = scale(x, 1 / temperature);
  return { logp: logSoftmaxGather(model.lmHead.forward(x), picked), at }; // (n + 1, V) -> (n + 1,)
}

export function answerLogProbs(model: Transformer, batch: PairBatch): Tensor {
  const rows = 2 * batch.P;
  const h = model.hidden(batch.x, rows, batch.T); // (2P, T, C)
  const { logp, at } = targetLogProbs(model, h, batch.targets);
  return sum(gather(logp, at, [rows, batch.T]), [1]); // (2P,)
}
