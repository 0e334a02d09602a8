/**
 * Where RL rewards come from: trained reward models, programmatic checks (a JavaScript module),
 * and combinations of several, as Llama 2 combines helpfulness and safety.
 *
 *   const helpful = rewardModelSource('helpful', loadRewardModel('out/rm-helpful'));
 *   const safety = rewardModelSource('safety', loadRewardModel('out/rm-safety'));
 *   const reward = llama2Combination(helpful, safety);             // safety when unsafe or p_safe < 0.15
 *   const exact = await moduleSource('rewards/exact-match.js');   // export function reward(prompt, completion, meta)
 *   reward.score([{ prompt, completion, meta }]);                // Float32Array of rewards
 *
 * A source scores a batch of (prompt, completion) items; each item may carry `meta` (from the
 * prompt file: the reference answer of a verifiable task, an `unsafe` flag...). A score that is
 * not a finite number is an error naming the source and the item: RL must never train on NaN.
 * Scoring is synchronous (a reward function returns a number, not a Promise).
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import type { ChatMessage } from '../chat/index.js';
import { LlmError } from '../util/errors.js';
import { scoreAnswers, type RewardModel } from './reward-model.js';

export interface RewardItem {
  /** the conversation the completion answers (ends with the user) */
  prompt: ChatMessage[];
  completion: string;
  /** the prompt row's other fields (answer, unsafe, ...) */
  meta?: Record<string, unknown>;
}

export interface RewardSource {
  readonly name: string;
  score(items: readonly RewardItem[]): Float32Array;
}

function checkFinite(name: string, scores: ArrayLike<number>, items: readonly RewardItem[]): Float32Array {
  const out = Float32Array.from(scores);
  if (out.length !== items.length) throw new LlmError(`reward '${name}' returned ${out.length} scores for ${items.length} completions`);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      throw new LlmError(`reward '${name}' gave ${scores[i]} for completion ${i + 1} (${JSON.stringify(items[i].completion.slice(0, 60))}); a reward must be a finite number`);
    }
  }
  return out;
}

/**
 * A trained reward model's score of each completion. A completion whose rendering outgrows the
 * reward model's context (one that ran to the end of the policy's context) is scored cut to it.
 */
export function rewardModelSource(name: string, rm: RewardModel, batchSize = 8): RewardSource {
  return {
    name,
    score: (items) => checkFinite(name, scoreAnswers(rm, items.map((it) => ({ prompt: it.prompt, answer: it.completion })), batchSize, { overLong: 'cut' }), items),
  };
}

/** The user's reward function: (prompt text of the last user turn, completion, meta) -> number. */
export type RewardFunction = (prompt: string, completion: string, meta: Record<string, unknown>) => number;

/** A JavaScript module exporting `reward` (or a default function); loaded with import(). */
export async function moduleSource(path: string): Promise<RewardSource> {
  const file = resolve(path);
  if (!existsSync(file)) throw new LlmError(`reward module not found: ${path} (give a .js/.mjs file exporting function reward(prompt, completion, meta))`);
  let mod: { reward?: unknown; default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href) as { reward?: unknown; default?: unknown };
  } catch (err) {
    throw new LlmError(`reward module ${path} failed to load: ${(err as Error).message.split('\n')[0]}`);
  }
  const fn = (typeof mod.reward === 'function' ? mod.reward : mod.default) as RewardFunction | undefined;
  if (typeof fn !== 'function') throw new LlmError(`reward module ${path} exports no function 'reward' (export function reward(prompt, completion, meta) { return number; })`);
  return functionSource(path, fn);
}

/** A reward function as a source (moduleSource uses it; tests and recipes pass functions directly). */
export function functionSource(name: string, fn: RewardFunction): RewardSource {
  return {
    name,
    score: (items) => {
      const out: number[] = [];
      for (let i = 0; i < items.length; i++) {
        const it = items[i];
        const lastUser = [...it.prompt].reverse().find((m) => m.role === 'user')?.content ?? '';
        let v: unknown;
        try {
          v = fn(lastUser, it.completion, it.meta ?? {});
        } catch (err) {
          throw new LlmError(`reward '${name}' threw on completion ${i + 1}: ${(err as Error).message.split('\n')[0]}`);
        }
        if (typeof v !== 'number') throw new LlmError(`reward '${name}' returned ${v instanceof Promise ? 'a Promise' : typeof v} for completion ${i + 1}; it must return a number (synchronously)`);
        out.push(v);
      }
      return checkFinite(name, out, items);
    },
  };
}

/** Σ w_i · source_i. */
export function weightedSum(parts: readonly { source: RewardSource; weight: number }[]): RewardSource {
  if (parts.length === 0) throw new LlmError('a weighted sum of rewards needs at least one reward');
  return {
    name: parts.map((p) => `${p.weight}*${p.source.name}`).join('+'),
    score: (items) => {
      const out = new Float32Array(items.length);
      for (const p of parts) {
        const s = p.source.score(items);
        for (let i = 0; i < out.length; i++) out[i] += p.weight * s[i];
      }
      return out;
    },
  };
}

export interface Llama2CombinationOptions {
  /** safety wins below this probability of being safe, σ(r_safety) (Llama 2: 0.15) */
  threshold?: number;
  /** whiten the combined scores over the batch (Llama 2 does; default true) */
  whiten?: boolean;
}

/**
 * Llama 2's combination (Touvron et al. 2023, §3.2.2): R = R_safety when the prompt is flagged
 * unsafe (meta.unsafe === true) or σ(R_safety) < threshold, else R_helpful; then whitened over
 * the batch. Our reward models output logits, so Llama 2's LOGIT(R) of a probability is the score
 * itself.
 */
export function llama2Combination(helpful: RewardSource, safety: RewardSource, opts: Llama2CombinationOptions = {}): RewardSource {
  const threshold = opts.threshold ?? 0.15;
  return {
    name: `llama2(${helpful.name}, ${safety.name})`,
    score: (items) => {
      const h = helpful.score(items);
      const s = safety.score(items);
      const out = new Float32Array(items.length);
      for (let i = 0; i < out.length; i++) {
        const pSafe = 1 / (1 + Math.exp(-s[i]));
        out[i] = items[i].meta?.unsafe === true || pSafe < threshold ? s[i] : h[i];
      }
      return opts.whiten === false ? out : whiten(out);
    },
  };
}

/** (x - mean) / std over the batch (population std; a batch of one or of equal values is only centred). */
export function whiten(x: Float32Array): Float32Array {
  const n = x.length;
  if (n === 0) return x;
  let m = 0;
  for (const v of x) m += v;
  m /= n;
  let v2 = 0;
  for (const v of x) v2 += (v - m) ** 2;
  const std = Math.sqrt(v2 / n);
  return Float32Array.from(x, (v) => (std > 1e-8 ? (v - m) / std : v - m));
}
