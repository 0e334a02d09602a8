/**
 * The alignment losses, on per-sequence or per-token tensors, with TRL's formulas and metric
 * names (see shared/research/post-training-anchors.md §1c-1e):
 *
 *   rewardPairLoss   Bradley–Terry: -log σ(r_c - r_r [- margin]) [+ c · mean((r_c + r_r)²)]
 *   dpoLoss          sigmoid: -log σ(β Δ), hinge: max(0, 1 - βΔ), ipo: (Δ' - 1/(2β))²,
 *                    Δ = (log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r)), Δ' the same with each
 *                    log-ratio divided by its answer's token count
 *   gae              advantages and returns by generalised advantage estimation (γ, λ)
 *   maskedWhiten     (x - mean) / sqrt(var + 1e-8) over the masked positions (unbiased var)
 *   ppoPolicyLoss    masked mean of max(-A·ratio, -A·clamp(ratio, 1-ε, 1+ε)), ratio = e^(logp - logp_old)
 *   ppoValueLoss     ½ masked mean of max((V - R)², (V_old + clamp(V - V_old, ±ε_v) - R)²)
 *
 *   const { loss, metrics } = rewardPairLoss(rChosen, rRejected);   // metrics.accuracy, metrics.margin
 *   loss.backward();
 *
 * The tensors in are what the model computed (with autograd); the reference values (old
 * log-probabilities, old values, returns, advantages) are plain Float32Arrays: no gradient flows
 * into them, as TRL detaches them.
 */
import { Tensor, add, clamp, exp, logsigmoid, maximum, mean, mul, scale, sub, sum } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';

export interface AlignmentLoss {
  /** scalar to minimise */
  loss: Tensor;
  /** detached numbers to log, named as TRL names them */
  metrics: Record<string, number>;
}

/** A constant (no gradient) tensor over the given values, in the engine's storage precision. */
function constant(values: ArrayLike<number>, shape: readonly number[]): Tensor {
  const t = Tensor.zeros(shape);
  t.data.set(values);
  return t;
}

function checkPairs(what: string, a: Tensor, b: Tensor): number {
  if (a.ndim !== 1 || b.ndim !== 1 || a.size !== b.size || a.size === 0) {
    throw new LlmError(`${what}: expected two (P,) tensors of the same length P > 0, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  }
  return a.size;
}

export interface RewardPairLossOptions {
  /** per-pair margin m (Llama 2's rating margins): -log σ(r_c - r_r - m) */
  margin?: ArrayLike<number> | null;
  /** TRL's center_rewards_coefficient: adds c · mean((r_c + r_r)²), keeping rewards centred on 0 */
  centerCoefficient?: number;
}

/**
 * Bradley–Terry loss of a reward model over P pairs: chosen, rejected (P,) scores.
 * Metrics: accuracy (share with r_c > r_r), margin (mean r_c - r_r), mean/min/max_reward.
 */
export function rewardPairLoss(chosen: Tensor, rejected: Tensor, opts: RewardPairLossOptions = {}): AlignmentLoss {
  const P = checkPairs('rewardPairLoss', chosen, rejected);
  let d = sub(chosen, rejected); // (P,)
  if (opts.margin) {
    if (opts.margin.length !== P) throw new LlmError(`rewardPairLoss: ${opts.margin.length} margins for ${P} pairs`);
    d = sub(d, constant(opts.margin, [P]));
  }
  let loss = scale(mean(logsigmoid(d)), -1);
  const c = opts.centerCoefficient ?? 0;
  if (c !== 0) {
    const s = add(chosen, rejected);
    loss = add(loss, scale(mean(mul(s, s)), c));
  }
  let correct = 0, marginSum = 0, rewardSum = 0, min = Infinity, max = -Infinity;
  for (let i = 0; i < P; i++) {
    const rc = chosen.data[i], rr = rejected.data[i];
    if (rc > rr) correct++;
    marginSum += rc - rr;
    rewardSum += rc + rr;
    min = Math.min(min, rc, rr);
    max = Math.max(max, rc, rr);
  }
  return {
    loss,
    metrics: { accuracy: correct / P, margin: marginSum / P, mean_reward: rewardSum / (2 * P), min_reward: min, max_reward: max },
  };
}

export type DpoLossType = 'sigmoid' | 'ipo' | 'hinge';
export const DPO_LOSS_TYPES: readonly DpoLossType[] = ['sigmoid', 'ipo', 'hinge'];

export interface DpoLossOptions {
  /** β, the strength of the KL constraint (TRL default 0.1) */
  beta?: number;
  lossType?: DpoLossType;
  /**
   * answer tokens of each chosen / rejected answer (P,): ipo divides each log-ratio by its
   * answer's length (TRL's per-token normalisation), so it needs them
   */
  chosenLengths?: ArrayLike<number>;
  rejectedLengths?: ArrayLike<number>;
}

/**
 * DPO over P pairs. policyChosen/policyRejected (P,) are log π of each answer given its prompt,
 * summed over the answer's tokens; the reference's are constants. Metrics (from the summed
 * log-ratios, whatever the loss): rewards/chosen, rewards/rejected (mean β·(log π - log π_ref)),
 * rewards/accuracies (share with reward_c > reward_r), rewards/margins, logps/chosen, logps/rejected.
 */
export function dpoLoss(
  policyChosen: Tensor, policyRejected: Tensor, refChosen: ArrayLike<number>, refRejected: ArrayLike<number>, opts: DpoLossOptions = {},
): AlignmentLoss {
  const P = checkPairs('dpoLoss', policyChosen, policyRejected);
  if (refChosen.length !== P || refRejected.length !== P) {
    throw new LlmError(`dpoLoss: ${refChosen.length} / ${refRejected.length} reference log-probabilities for ${P} pairs`);
  }
  const beta = opts.beta ?? 0.1;
  if (!(beta > 0)) throw new LlmError(`dpoLoss: beta must be > 0, not ${beta}`);
  const type = opts.lossType ?? 'sigmoid';
  const chosenRatio = sub(policyChosen, constant(refChosen, [P])); // (P,) log π(c) - log π_ref(c)
  const rejectedRatio = sub(policyRejected, constant(refRejected, [P]));
  let losses: Tensor;
  switch (type) {
    case 'sigmoid':
      losses = scale(logsigmoid(scale(sub(chosenRatio, rejectedRatio), beta)), -1);
      break;
    case 'ipo': {
      const nc = opts.chosenLengths, nr = opts.rejectedLengths;
      if (!nc || !nr || nc.length !== P || nr.length !== P) throw new LlmError('dpoLoss: ipo needs the answer lengths of every pair (chosenLengths, rejectedLengths)');
      const perToken = (lengths: ArrayLike<number>): Tensor => constant(Array.from(lengths, (n) => 1 / Math.max(n, 1)), [P]);
      const d = sub(sub(mul(chosenRatio, perToken(nc)), mul(rejectedRatio, perToken(nr))), constant([1 / (2 * beta)], [1]));
      losses = mul(d, d);
      break;
    }
    case 'hinge':
      losses = maximum(sub(constant([1], [1]), scale(sub(chosenRatio, rejectedRatio), beta)), 0);
      break;
    default:
      throw new LlmError(`dpoLoss: unknown loss type '${type as string}' (one of ${DPO_LOSS_TYPES.join(', ')})`);
  }
  let rc = 0, rr = 0, acc = 0, lc = 0, lr = 0;
  for (let i = 0; i < P; i++) {
    const c = beta * chosenRatio.data[i];
    const r = beta * rejectedRatio.data[i];
    rc += c;
    rr += r;
    if (c > r) acc++;
    lc += policyChosen.data[i];
    lr += policyRejected.data[i];
  }
  return {
    loss: mean(losses),
    metrics: {
      'rewards/chosen': rc / P, 'rewards/rejected': rr / P, 'rewards/accuracies': acc / P, 'rewards/margins': (rc - rr) / P,
      'logps/chosen': lc / P, 'logps/rejected': lr / P,
    },
  };
}

// ---- PPO ------------------------------------------------------------------------------------------

/**
 * Generalised advantage estimation over B rows of T response positions (row-major B*T arrays).
 * rewards and values at masked-out positions (after a row's end) must be 0, as TRL fills them:
 *   δ_t = r_t + γ V_{t+1} - V_t     A_t = δ_t + γ λ A_{t+1}     returns = A + V
 * with V_T = 0 and A_T = 0. Returns unwhitened advantages and the returns.
 */
export function gae(
  rewards: Float32Array, values: Float32Array, B: number, T: number, gamma: number, lambda: number,
): { advantages: Float32Array; returns: Float32Array } {
  if (rewards.length !== B * T || values.length !== B * T) throw new LlmError(`gae: rewards and values must hold B*T = ${B * T} numbers`);
  const advantages = new Float32Array(B * T);
  const returns = new Float32Array(B * T);
  for (let b = 0; b < B; b++) {
    let last = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      const next = t < T - 1 ? values[i + 1] : 0;
      const delta = rewards[i] + gamma * next - values[i];
      last = delta + gamma * lambda * last;
      advantages[i] = last;
      returns[i] = last + values[i];
    }
  }
  return { advantages, returns };
}

/**
 * Whiten x over the positions where mask is 1: (x - mean) / sqrt(var + 1e-8), var unbiased
 * (n - 1), as TRL's masked_whiten; shiftMean false adds the mean back. Masked-out positions are
 * set to 0. Fewer than 2 masked positions: an error (no variance).
 */
export function maskedWhiten(x: Float32Array, mask: Uint8Array, shiftMean = true): Float32Array {
  let n = 0, s = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) { n++; s += x[i]; }
  if (n < 2) throw new LlmError(`maskedWhiten: needs at least 2 unmasked values, got ${n}`);
  const m = s / n;
  let v = 0;
  for (let i = 0; i < x.length; i++) if (mask[i]) v += (x[i] - m) ** 2;
  v /= n - 1;
  const inv = 1 / Math.sqrt(v + 1e-8);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) if (mask[i]) out[i] = (x[i] - m) * inv + (shiftMean ? 0 : m);
  return out;
}

/** sum(x · mask) / sum(mask), a scalar tensor. */
export function maskedMean(x: Tensor, mask: Uint8Array): Tensor {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  if (mask.length !== x.size) throw new LlmError(`maskedMean: mask of ${mask.length} for a tensor of ${x.size}`);
  if (n === 0) throw new LlmError('maskedMean: every position is masked out');
  return scale(sum(mul(x, constant(mask, x.shape))), 1 / n);
}

function maskedMeanOf(values: ArrayLike<number>, mask: Uint8Array): number {
  let n = 0, s = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) { n++; s += values[i]; }
  return n === 0 ? 0 : s / n;
}

/**
 * PPO's clipped policy loss over (B, T) response positions. logp: the policy's log-probabilities
 * now (tensor); oldLogp and advantages: from the rollout. Metrics: policy/clipfrac (share of
 * positions where the clipped term won), policy/approxkl (½ mean (Δ log p)²), val/ratio.
 */
export function ppoPolicyLoss(logp: Tensor, oldLogp: Float32Array, advantages: Float32Array, mask: Uint8Array, clipRange: number): AlignmentLoss {
  const n = logp.size;
  if (oldLogp.length !== n || advantages.length !== n || mask.length !== n) throw new LlmError(`ppoPolicyLoss: every input must hold ${n} values`);
  const ratio = exp(sub(logp, constant(oldLogp, logp.shape)));
  const negAdv = constant(Array.from(advantages, (a) => -a), logp.shape);
  const unclipped = mul(negAdv, ratio);
  const clipped = mul(negAdv, clamp(ratio, 1 - clipRange, 1 + clipRange));
  const loss = maskedMean(maximum(unclipped, clipped), mask);
  const clipHits = new Float32Array(n), kl = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    clipHits[i] = clipped.data[i] > unclipped.data[i] ? 1 : 0;
    kl[i] = 0.5 * (logp.data[i] - oldLogp[i]) ** 2;
  }
  return {
    loss,
    metrics: { 'policy/clipfrac': maskedMeanOf(clipHits, mask), 'policy/approxkl': maskedMeanOf(kl, mask), 'val/ratio': maskedMeanOf(ratio.data, mask) },
  };
}

/**
 * PPO's clipped value loss, ½ masked mean of max((V - R)², (V_clip - R)²) with
 * V_clip = V_old + clamp(V - V_old, -ε, ε). Metrics: val/clipfrac.
 */
export function ppoValueLoss(values: Tensor, oldValues: Float32Array, returns: Float32Array, mask: Uint8Array, clipRange: number): AlignmentLoss {
  const n = values.size;
  if (oldValues.length !== n || returns.length !== n || mask.length !== n) throw new LlmError(`ppoValueLoss: every input must hold ${n} values`);
  const old = constant(oldValues, values.shape);
  const ret = constant(returns, values.shape);
  const clippedV = add(old, clamp(sub(values, old), -clipRange, clipRange));
  const e1 = sub(values, ret), e2 = sub(clippedV, ret);
  const l1 = mul(e1, e1), l2 = mul(e2, e2);
  const loss = scale(maskedMean(maximum(l1, l2), mask), 0.5);
  const hits = new Float32Array(n);
  for (let i = 0; i < n; i++) hits[i] = l2.data[i] > l1.data[i] ? 1 : 0;
  return { loss, metrics: { 'val/clipfrac': maskedMeanOf(hits, mask) } };
}
