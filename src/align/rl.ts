/**
 * Reinforcement learning from a reward (InstructGPT's third stage) as an Objective of the shared
 * TrainingLoop: PPO with a KL penalty to a frozen reference and a value head, or GRPO / RLOO with
 * group-relative advantages over K samples per prompt and no value model.
 *
 *   const objective = new RlObjective(reference, valueHead, prompts, held, reward, tokenizer, { algo: 'ppo', ... });
 *   await new TrainingLoop(policy, objective, options, { tokenizer }).run();
 *
 * Each rollout phase (Objective.prepare, when the buffer of minibatches is used up) samples
 * completions of `promptsPerRollout` prompts (K each for GRPO/RLOO) with the current policy, scores
 * them, and computes what the updates need (TRL's formulas, shared/research/post-training-anchors.md §1e):
 *   PPO   per-token reward r_t = -β (log π_old - log π_ref); the score (minus the missing-EOS
 *         penalty) is added at the response's last token, the stop token itself (not one token
 *         late: TRL #1893); advantages by GAE (γ, λ) over the value head's estimates, whitened;
 *         loss = clipped policy loss + vfCoef · clipped value loss.
 *   GRPO  advantage of completion i = (s_i - mean_group) / (std_group + 1e-4), on every token;
 *   RLOO  advantage = s_i - mean of the other K-1 samples of its prompt;
 *         loss = clipped policy loss (+ β · k3 KL to the reference per token when β > 0);
 *         with β = 0 the reference is never run in the rollout phase (TRL loads none then), so
 *         its metrics carry no objective/kl (the evaluation still measures the KL).
 * Then `ppoEpochs` passes over the rollout in shuffled minibatches: each loop step is one
 * minibatch's update. With `targetKl`, β adapts after each rollout as Ziegler et al.'s controller:
 * β *= 1 + clip(KL / target - 1, ±0.2) · rows / horizon (horizon 10000).
 *
 * Everything a resumed run needs is in state(): the rollout buffer, the minibatch order and
 * position, β and the prompt order, so an interrupted run continues with the same updates.
 */
import type { Transformer } from '../model/transformer.js';
import type { ScalarHead } from '../model/heads.js';
import { add, exp, noGrad, scale, sub, Tensor } from '../tensor/index.js';
import type { ChatMessage } from '../chat/index.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { EvalContext, Objective, ObjectiveLoss } from '../train/loop.js';
import { EpochOrder, permutation } from '../train/epoch-order.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { gae, maskedMean, maskedWhiten, ppoPolicyLoss, ppoValueLoss } from './losses.js';
import type { RewardSource } from './rewards.js';
import { makeResponseBatch, responseOutputs, sampleRollouts, type Rollout, type RolloutOptions } from './rollout.js';

export type RlAlgorithm = 'ppo' | 'grpo' | 'rloo';
export const RL_ALGORITHMS: readonly RlAlgorithm[] = ['ppo', 'grpo', 'rloo'];

/** A prompt to roll out: its rendered ids (ending with the assistant's turn opening), messages and meta. */
export interface RlPrompt {
  ids: Int32Array;
  messages: ChatMessage[];
  meta: Record<string, unknown>;
}

export interface RlOptions extends RolloutOptions {
  algo: RlAlgorithm;
  /** prompts per rollout phase */
  promptsPerRollout: number;
  /** samples per prompt (GRPO/RLOO: the group; PPO: usually 1) */
  samplesPerPrompt: number;
  /** passes over a rollout */
  ppoEpochs: number;
  /** rollout rows per minibatch (one loop step) */
  minibatchSize: number;
  /** β: KL penalty (PPO: in the reward; GRPO/RLOO: in the loss, 0 = none) */
  klCoef: number;
  /** adapt β towards this KL per sequence (PPO); absent: β fixed */
  targetKl?: number;
  clipRange: number;
  clipRangeValue: number;
  vfCoef: number;
  gamma: number;
  lam: number;
  /** subtracted from the score of a completion that never emitted a stop token */
  missingEosPenalty: number;
  padId: number;
  /** seeds evaluation sampling */
  seed: number;
}

/** The rollout phase's data, kept until its minibatches are used (and saved for resume). */
interface Buffer {
  rollouts: Rollout[];
  L: number;
  oldLogp: Float32Array;
  refLogp: Float32Array;
  oldValues: Float32Array;
  advantages: Float32Array;
  returns: Float32Array;
  mask: Uint8Array;
  /** row order of every minibatch of every epoch, flattened */
  order: Uint32Array;
  /** minibatches already drawn */
  position: number;
}

export interface RlMinibatch {
  rows: number[];
}

export type RlEval = { reward: number; kl: number; length: number; ended: number };

export class RlObjective implements Objective<RlMinibatch, RlEval> {
  readonly name: string;
  private readonly promptOrder: EpochOrder;
  private buffer: Buffer | null = null;
  private klCoef: number;

  constructor(
    readonly reference: Transformer, readonly valueHead: ScalarHead | null, readonly prompts: readonly RlPrompt[], readonly held: readonly RlPrompt[],
    readonly reward: RewardSource, readonly tokenizer: Tokenizer, readonly opts: RlOptions,
  ) {
    this.name = opts.algo;
    if (opts.algo === 'ppo' && !valueHead) throw new LlmError('PPO needs a value head');
    if (opts.algo !== 'ppo' && opts.samplesPerPrompt < 2) throw new LlmError(`${opts.algo.toUpperCase()} compares samples of one prompt: give at least 2 samples per prompt`);
    this.promptOrder = new EpochOrder(prompts.length, 'prompts');
    this.klCoef = opts.klCoef;
  }

  get epochs(): number {
    return this.promptOrder.epochs;
  }

  /** The completion text of a rollout (its stop token left out). */
  private completionText(r: Rollout): string {
    const ids = Array.from(r.ended ? r.response.subarray(0, r.response.length - 1) : r.response);
    return this.tokenizer.decode(ids);
  }

  private scores(rollouts: readonly Rollout[], prompts: readonly RlPrompt[]): Float32Array {
    const s = this.reward.score(rollouts.map((r) => ({ prompt: prompts[r.promptIndex].messages, completion: this.completionText(r), meta: prompts[r.promptIndex].meta })));
    for (let i = 0; i < rollouts.length; i++) if (!rollouts[i].ended) s[i] -= this.opts.missingEosPenalty;
    return s;
  }

  async prepare(model: Transformer, rng: Rng): Promise<Record<string, number> | void> {
    if (this.buffer && this.buffer.position < this.buffer.order.length / this.opts.minibatchSize) return;
    const o = this.opts;
    const picked: { index: number; ids: Int32Array }[] = [];
    for (let i = 0; i < o.promptsPerRollout; i++) {
      const index = this.promptOrder.next(rng);
      for (let k = 0; k < o.samplesPerPrompt; k++) picked.push({ index, ids: this.prompts[index].ids });
    }
    const seeds = picked.map(() => rng.nextU32());
    const rollouts = sampleRollouts(model, picked, o, seeds);
    const scores = this.scores(rollouts, this.prompts);
    const batch = makeResponseBatch(rollouts, o.padId);
    const { R, L, mask } = batch;
    // GRPO/RLOO without a KL term never read the reference: its forward pass is skipped (as TRL with beta 0)
    const useReference = o.algo === 'ppo' || this.klCoef > 0;
    const { oldLogp, oldValues, refLogp } = noGrad(() => {
      const pol = responseOutputs(model, batch, o.temperature, this.valueHead);
      const ref = useReference ? Float32Array.from(responseOutputs(this.reference, batch, o.temperature).logp.data) : new Float32Array(0);
      return { oldLogp: Float32Array.from(pol.logp.data), oldValues: Float32Array.from(pol.values?.data ?? new Float32Array(R * L)), refLogp: ref };
    });
    for (let i = 0; i < R * L; i++) if (!mask[i]) oldValues[i] = 0;
    // per-sequence KL (k1, summed over the response) and the advantages
    const klSeq = new Float32Array(R);
    if (useReference) for (let b = 0; b < R; b++) for (let j = 0; j < L; j++) if (mask[b * L + j]) klSeq[b] += oldLogp[b * L + j] - refLogp[b * L + j];
    let advantages: Float32Array, returns: Float32Array;
    if (o.algo === 'ppo') {
      const rewards = new Float32Array(R * L);
      for (let b = 0; b < R; b++) {
        const n = rollouts[b].response.length;
        for (let j = 0; j < n; j++) rewards[b * L + j] = -this.klCoef * (oldLogp[b * L + j] - refLogp[b * L + j]);
        rewards[b * L + n - 1] += scores[b]; // on the last token: the stop token when it ended
      }
      ({ advantages, returns } = gae(rewards, oldValues, R, L, o.gamma, o.lam));
      advantages = maskedWhiten(advantages, mask);
    } else {
      const perSeq = groupAdvantages(scores, o.samplesPerPrompt, o.algo);
      advantages = new Float32Array(R * L);
      for (let b = 0; b < R; b++) for (let j = 0; j < L; j++) if (mask[b * L + j]) advantages[b * L + j] = perSeq[b];
      returns = new Float32Array(R * L);
    }
    const perEpoch = Math.floor(R / o.minibatchSize);
    if (perEpoch < 1) throw new LlmError(`a rollout of ${R} completions cannot fill a minibatch of ${o.minibatchSize}; lower the minibatch size or raise the prompts per rollout`);
    const order = new Uint32Array(o.ppoEpochs * perEpoch * o.minibatchSize);
    for (let e = 0; e < o.ppoEpochs; e++) order.set(permutation(R, rng.nextU32()).subarray(0, perEpoch * o.minibatchSize), e * perEpoch * o.minibatchSize);
    this.buffer = { rollouts, L, oldLogp, refLogp, oldValues, advantages, returns, mask, order, position: 0 };

    let scoreSum = 0, klSum = 0, lenSum = 0, ended = 0;
    for (let b = 0; b < R; b++) {
      scoreSum += scores[b];
      klSum += klSeq[b];
      lenSum += rollouts[b].response.length;
      if (rollouts[b].ended) ended++;
    }
    const metrics: Record<string, number> = {
      'objective/scores': scoreSum / R, 'objective/rlhf_reward': (scoreSum - this.klCoef * klSum) / R,
      'objective/kl_coef': this.klCoef, 'val/response_length': lenSum / R, 'val/num_eos_tokens': ended,
    };
    if (useReference) metrics['objective/kl'] = klSum / R; // (the evaluation measures it either way)
    if (o.targetKl !== undefined && o.algo === 'ppo') {
      const err = Math.max(-0.2, Math.min(0.2, klSum / R / o.targetKl - 1));
      this.klCoef *= 1 + (err * R) / 10000;
    }
    return metrics;
  }

  nextBatch(): RlMinibatch {
    const b = this.buffer;
    if (!b) throw new LlmError('RL: no rollout yet (prepare runs before each step)');
    const m = this.opts.minibatchSize;
    const rows = Array.from(b.order.subarray(b.position * m, (b.position + 1) * m));
    b.position++;
    return { rows };
  }

  weight(mb: RlMinibatch): number {
    return mb.rows.length;
  }

  loss(model: Transformer, mb: RlMinibatch): ObjectiveLoss {
    const b = this.buffer!;
    const o = this.opts;
    const L = b.L;
    const rollouts = mb.rows.map((r) => b.rollouts[r]);
    const batch = makeResponseBatch(rollouts, o.padId, L);
    const pick = <T extends Float32Array | Uint8Array>(src: T): T => {
      const out = new (src.constructor as { new(n: number): T })(mb.rows.length * L);
      mb.rows.forEach((r, i) => out.set(src.subarray(r * L, (r + 1) * L), i * L));
      return out;
    };
    const mask = pick(b.mask);
    const { logp, values } = responseOutputs(model, batch, o.temperature, this.valueHead);
    const pg = ppoPolicyLoss(logp, pick(b.oldLogp), pick(b.advantages), mask, o.clipRange);
    let loss = pg.loss;
    const metrics: Record<string, number> = { ...pg.metrics, 'loss/policy': pg.loss.item() };
    if (o.algo === 'ppo') {
      const vf = ppoValueLoss(values!, pick(b.oldValues), pick(b.returns), mask, o.clipRangeValue);
      loss = add(loss, scale(vf.loss, o.vfCoef));
      Object.assign(metrics, vf.metrics, { 'loss/value': vf.loss.item() });
    } else if (this.klCoef > 0) {
      // k3 = e^(ref - logp) - (ref - logp) - 1 per token, an unbiased, non-negative KL estimate
      const d = sub(constantLike(pick(b.refLogp), logp.shape), logp);
      const k3 = sub(sub(exp(d), d), constantLike(new Float32Array(logp.size).fill(1), logp.shape));
      const kl = maskedMean(k3, mask);
      loss = add(loss, scale(kl, this.klCoef));
      metrics.kl = kl.item();
    }
    let tokens = 0;
    for (const r of rollouts) tokens += r.prompt.length + r.response.length;
    return { loss, metrics, tokens };
  }

  /** Mean reward, KL to the reference (summed per sequence), length and share ended of one sampled completion per held-out prompt (fixed seeds). */
  evaluate(model: Transformer, { step, iters }: EvalContext): RlEval {
    const set = this.held.length > 0 ? this.held : this.prompts;
    const n = Math.min(set.length, Math.max(1, iters) * this.opts.minibatchSize);
    const rng = new Rng(this.opts.seed * 1000003 + 17);
    const picked = Array.from({ length: n }, (_, i) => ({ index: i, ids: set[i].ids }));
    const rollouts = sampleRollouts(model, picked, this.opts, picked.map(() => rng.nextU32()));
    const scores = this.scores(rollouts, set);
    const batch = makeResponseBatch(rollouts, this.opts.padId);
    const pol = responseOutputs(model, batch, this.opts.temperature).logp.data;
    const ref = responseOutputs(this.reference, batch, this.opts.temperature).logp.data;
    let reward = 0, kl = 0, length = 0, ended = 0;
    for (let b = 0; b < n; b++) {
      reward += scores[b];
      length += rollouts[b].response.length;
      if (rollouts[b].ended) ended++;
      for (let j = 0; j < batch.L; j++) if (batch.mask[b * batch.L + j]) kl += pol[b * batch.L + j] - ref[b * batch.L + j];
    }
    void step;
    return { reward: reward / n, kl: kl / n, length: length / n, ended: ended / n };
  }

  state(): unknown {
    const b = this.buffer;
    return {
      prompts: this.promptOrder.state(),
      klCoef: this.klCoef,
      buffer: b && {
        rollouts: b.rollouts.map((r) => ({ p: r.promptIndex, prompt: Array.from(r.prompt), response: Array.from(r.response), ended: r.ended })),
        L: b.L, position: b.position, order: Array.from(b.order),
        oldLogp: Array.from(b.oldLogp), refLogp: Array.from(b.refLogp), oldValues: Array.from(b.oldValues),
        advantages: Array.from(b.advantages), returns: Array.from(b.returns), mask: Array.from(b.mask),
      },
    };
  }

  restore(state: unknown): void {
    if (state === undefined) return;
    const s = state as { prompts: unknown; klCoef: number; buffer: null | Record<string, unknown> };
    if (typeof s.klCoef !== 'number') throw new LlmError('the checkpoint\'s RL state is not { prompts, klCoef, buffer }');
    this.promptOrder.restore(s.prompts);
    this.klCoef = s.klCoef;
    const b = s.buffer as null | {
      rollouts: { p: number; prompt: number[]; response: number[]; ended: boolean }[]; L: number; position: number; order: number[];
      oldLogp: number[]; refLogp: number[]; oldValues: number[]; advantages: number[]; returns: number[]; mask: number[];
    };
    this.buffer = b && {
      rollouts: b.rollouts.map((r) => ({ promptIndex: r.p, prompt: Int32Array.from(r.prompt), response: Int32Array.from(r.response), ended: r.ended })),
      L: b.L, position: b.position, order: Uint32Array.from(b.order),
      oldLogp: Float32Array.from(b.oldLogp), refLogp: Float32Array.from(b.refLogp), oldValues: Float32Array.from(b.oldValues),
      advantages: Float32Array.from(b.advantages), returns: Float32Array.from(b.returns), mask: Uint8Array.from(b.mask),
    };
  }
}

function constantLike(values: Float32Array, shape: readonly number[]): Tensor {
  const t = Tensor.zeros(shape);
  t.data.set(values);
  return t;
}

/**
 * Per-completion advantages from scores of consecutive groups of K samples of one prompt.
 * grpo: (s - mean) / (std + 1e-4), std with Bessel's correction (TRL's nanstd, scale_rewards 'group');
 * rloo: s - mean of the other K-1.
 */
export function groupAdvantages(scores: Float32Array, K: number, algo: 'grpo' | 'rloo'): Float32Array {
  if (scores.length % K !== 0) throw new LlmError(`groupAdvantages: ${scores.length} scores are not groups of ${K}`);
  const out = new Float32Array(scores.length);
  for (let g = 0; g < scores.length; g += K) {
    let sum = 0;
    for (let i = 0; i < K; i++) sum += scores[g + i];
    const mean = sum / K;
    let v = 0;
    for (let i = 0; i < K; i++) v += (scores[g + i] - mean) ** 2;
    const std = Math.sqrt(v / (K - 1));
    for (let i = 0; i < K; i++) {
      const s = scores[g + i];
      out[g + i] = algo === 'grpo' ? (s - mean) / (std + 1e-4) : s - (sum - s) / (K - 1);
    }
  }
  return out;
}
