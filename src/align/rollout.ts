/**
 * Rollouts for RL: completions sampled from the policy for a set of prompts, and the per-token
 * quantities PPO and GRPO compute on them (log-probabilities under a model at the sampling
 * temperature, values of a scalar head), as (R, L) arrays over the response tokens.
 *
 *   const rollouts = sampleRollouts(policy, prompts, { maxNewTokens: 32, temperature: 0.7, stopTokens: [eos] }, seeds);
 *   const batch = makeResponseBatch(rollouts, padId);           // x (R, T), response positions
 *   const { logp, values } = responseOutputs(policy, batch, 0.7, valueHead);   // (R, L) each; logp 0 after the end
 *
 * A response ends with its stop token (kept: the score is placed on it) or is cut at
 * maxNewTokens (`ended` false: PPO's missing-EOS penalty). Row r's response token j sits at
 * position p_r + j of the sequence (p_r the prompt length) and is predicted at position p_r + j - 1,
 * where its log-probability and its value are read.
 */
import { gather, reshape, IGNORE_INDEX, type Tensor } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { ScalarHead } from '../model/heads.js';
import { generateBatch } from '../generate/generate-batch.js';
import { LlmError } from '../util/errors.js';
import { targetLogProbs } from './log-probs.js';

export interface Rollout {
  /** index of the prompt in the prompt set */
  promptIndex: number;
  prompt: Int32Array;
  response: Int32Array;
  /** true when the response ends with a stop token */
  ended: boolean;
}

export interface RolloutOptions {
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  stopTokens: number[];
}

/**
 * One completion per (prompt, seed), decoded together on a KV cache with a batch dimension
 * (generateBatch: the same tokens as sampling each prompt alone with its seed).
 */
export function sampleRollouts(policy: Transformer, prompts: readonly { index: number; ids: Int32Array }[], opts: RolloutOptions, seeds: readonly number[]): Rollout[] {
  if (seeds.length !== prompts.length) throw new LlmError(`sampleRollouts: ${seeds.length} seeds for ${prompts.length} prompts`);
  const perPrompt = prompts.map((p, i) => {
    const room = policy.config.blockSize - p.ids.length;
    if (room < 1) throw new LlmError(`prompt ${p.index + 1} has ${p.ids.length} tokens: no room for an answer in the model's context of ${policy.config.blockSize}`);
    return { maxTokens: Math.min(opts.maxNewTokens, room), temperature: opts.temperature, topK: opts.topK ?? 0, topP: opts.topP ?? 1, seed: seeds[i], stopTokens: opts.stopTokens };
  });
  const results = generateBatch(policy, prompts.map((p) => p.ids), perPrompt, { slots: Math.min(prompts.length, 16) });
  return results.map((r, i) => ({ promptIndex: prompts[i].index, prompt: prompts[i].ids, response: Int32Array.from(r.tokens), ended: r.finishReason === 'eos' }));
}

/** Rollouts as one right-padded (R, T) batch, with each response token's place in it. */
export interface ResponseBatch {
  x: Int32Array;
  R: number;
  T: number;
  /** longest response */
  L: number;
  /** (R*T) targets: the response tokens at the positions that predict them, IGNORE_INDEX elsewhere */
  targets: Int32Array;
  /** (R*L) flat index into (R, T) of the position predicting response token j (padding: a position whose target is ignored) */
  index: Int32Array;
  /** (R*L) 1 on real response tokens */
  mask: Uint8Array;
}

/** width: the response columns L (default the longest response; a minibatch keeps its rollout's width). */
export function makeResponseBatch(rollouts: readonly Rollout[], padId: number, width?: number): ResponseBatch {
  if (rollouts.length === 0) throw new LlmError('a rollout batch needs at least one rollout');
  const R = rollouts.length;
  let T = 1, L = 1;
  for (const r of rollouts) {
    if (r.response.length === 0) throw new LlmError('a rollout with an empty response');
    T = Math.max(T, r.prompt.length + r.response.length);
    L = Math.max(L, r.response.length);
  }
  if (width !== undefined) {
    if (width < L) throw new LlmError(`makeResponseBatch: width ${width} is shorter than a response of ${L} tokens`);
    L = width;
  }
  const x = new Int32Array(R * T).fill(padId);
  const targets = new Int32Array(R * T).fill(IGNORE_INDEX);
  const index = new Int32Array(R * L);
  const mask = new Uint8Array(R * L);
  rollouts.forEach((r, b) => {
    const p = r.prompt.length;
    x.set(r.prompt, b * T);
    x.set(r.response, b * T + p);
    for (let j = 0; j < L; j++) {
      if (j < r.response.length) {
        const at = b * T + p + j - 1; // predicts response[j]
        targets[at] = r.response[j];
        index[b * L + j] = at;
        mask[b * L + j] = 1;
      } else {
        index[b * L + j] = b * T + T - 1; // the last position never has a target: reads 0
      }
    }
  });
  return { x, R, T, L, targets, index, mask };
}

/**
 * From one trunk pass: (R, L) log π(response token | prefix) at the sampling temperature
 * (logits / T, as TRL; 0 at padding), and with a value head its (R, L) values at the same positions.
 * The LM head runs on the positions that predict a response token only (targetLogProbs).
 */
export function responseOutputs(model: Transformer, batch: ResponseBatch, temperature: number, valueHead: ScalarHead | null = null): { logp: Tensor; values: Tensor | null } {
  const h = model.hidden(batch.x, batch.R, batch.T); // (R, T, C)
  const { logp: picked, at } = targetLogProbs(model, h, batch.targets, temperature); // the LM head on the response positions only
  const logp = gather(picked, Int32Array.from(batch.index, (i) => at[i]), [batch.R, batch.L]);
  const values = valueHead ? reshape(gather(valueHead.forward(h), batch.index), [batch.R, batch.L]) : null;
  return { logp, values };
}
