/**
 * Rollouts: complete many prompts at once on a BatchDecoder (continuous batching: when a
 * sequence ends, the next prompt takes its slot).
 *
 *   const out = generateBatch(model, [idsA, idsB, idsC], { maxTokens: 64, temperature: 0.7, topK: 0, seed: 1, stopTokens: [eos] });
 *   out[0].tokens;           // generated ids of prompt 0 (a final stop token included)
 *   out[0].logprobs;         // log-softmax(logits) of each chosen token
 *   out[0].policyLogprobs;   // log-softmax(logits / temperature): PPO's old log-probabilities (TRL)
 *   out[0].finishReason;     // 'eos' | 'length' | 'context'
 *
 *   // per-prompt settings: an array of options, one per prompt
 *   generateBatch(model, prompts, prompts.map((_, i) => ({ ...opts, seed: 100 + i })));
 *
 * With one options object, prompt i samples with seed `opts.seed + i`. Each result is what
 * generateCached gives for that prompt with those options (same tokens, same log-probabilities).
 */
import type { Transformer } from '../model/transformer.js';
import { LlmError } from '../util/errors.js';
import { BatchDecoder, type BatchDecoderStats, type BatchFinishReason, type BatchSequence, type BatchSequenceOptions } from './batch-decoder.js';

export interface GenerateBatchOptions {
  /** sequences decoded at once (default: the number of prompts, at most 16) */
  slots?: number;
  /** called after every batched step with that step's events (progress, streaming) */
  onStep?: (done: number, total: number) => void;
  /** filled with the decoder's totals at the end */
  stats?: BatchDecoderStats;
}

export interface BatchResult {
  /** the prompt's index */
  index: number;
  tokens: number[];
  logprobs: number[];
  policyLogprobs: number[];
  finishReason: BatchFinishReason;
  /** prompt tokens */
  promptTokens: number;
}

/** Complete every prompt; results in prompt order. */
export function generateBatch(
  model: Transformer,
  prompts: readonly ArrayLike<number>[],
  opts: BatchSequenceOptions | readonly BatchSequenceOptions[],
  batch: GenerateBatchOptions = {},
): BatchResult[] {
  const perPrompt = Array.isArray(opts);
  if (perPrompt && opts.length !== prompts.length) {
    throw new LlmError(`generateBatch: ${opts.length} option sets for ${prompts.length} prompts (give one per prompt, or one for all)`);
  }
  const optionsOf = (i: number): BatchSequenceOptions => {
    if (perPrompt) return (opts as readonly BatchSequenceOptions[])[i];
    const o = opts as BatchSequenceOptions;
    return { ...o, seed: o.seed + i };
  };
  const limit = model.config.blockSize;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new LlmError(`generateBatch: prompt ${i} is empty`);
    if (p.length > limit) throw new LlmError(`generateBatch: prompt ${i} has ${p.length} tokens but the model's context holds ${limit}`);
  });
  const results: BatchResult[] = new Array(prompts.length);
  if (prompts.length === 0) return results;
  const slots = batch.slots ?? Math.min(prompts.length, 16);
  const decoder = new BatchDecoder(model, { slots });
  const bySequence = new Map<BatchSequence, number>();
  let next = 0;
  let done = 0;
  const collect = (seq: BatchSequence, i: number): void => {
    results[i] = {
      index: i,
      tokens: seq.tokens.map((t) => t.id),
      logprobs: seq.tokens.map((t) => t.logprob),
      policyLogprobs: seq.tokens.map((t) => t.policyLogprob),
      finishReason: seq.finishReason!,
      promptTokens: seq.prompt.length,
    };
    done++;
  };
  const fill = (): void => {
    while (next < prompts.length && decoder.free > 0) {
      const i = next++;
      // fresh prefills: each result is exactly the single-sequence one
      const seq = decoder.add(prompts[i], { ...optionsOf(i), reusePrefix: false });
      if (seq.finishReason) collect(seq, i);
      else bySequence.set(seq, i);
    }
  };
  fill();
  while (decoder.active.length > 0) {
    for (const e of decoder.step()) if (e.finishReason) collect(e.sequence, bySequence.get(e.sequence)!);
    fill();
    batch.onStep?.(done, prompts.length);
  }
  if (batch.stats) Object.assign(batch.stats, decoder.stats);
  return results;
}
