/**
 * The log-probability of every prompt token given the tokens before it, and the k most likely
 * tokens at each position: what a completions request with echo and logprobs returns for its
 * prompt (lm-evaluation-harness sums these over a continuation to score it).
 *
 *   const rows = promptLogprobs(model, ids, 1);
 *   rows[0];                 // null: nothing predicts the first token
 *   rows[i].logprob;         // log p(ids[i] | ids[0..i-1])
 *   rows[i].top;             // [{ id, logprob }] most likely first
 *
 * The prompt runs through a fresh KV cache in chunks of positions (all logits of a chunk at once,
 * never a (T, V) matrix of the whole prompt).
 */
import { backend } from '../backend/index.js';
import { checkMappedFiles } from '../formats/file-source.js';
import { KvCache } from '../model/kv-cache.js';
import type { Transformer } from '../model/transformer.js';
import { LlmError } from '../util/errors.js';

export interface PositionLogprob {
  logprob: number;
  top: { id: number; logprob: number }[];
}

export function promptLogprobs(model: Transformer, ids: readonly number[], topK: number, chunk = 64): (PositionLogprob | null)[] {
  const V = model.config.vocabSize;
  const T = ids.length;
  if (T === 0) throw new LlmError('promptLogprobs: the prompt is empty');
  if (T > model.config.blockSize) throw new LlmError(`promptLogprobs: ${T} tokens exceed the model's context of ${model.config.blockSize}`);
  const be = backend();
  const k = Math.max(0, Math.min(topK, V));
  const top = new Int32Array(Math.max(k, 1));
  const out: (PositionLogprob | null)[] = [null];
  if (T === 1) return out;
  const cache = new KvCache(model.config, T);
  // position t's logits predict token t + 1: only the first T - 1 positions are needed
  for (let start = 0; start < T - 1; start += chunk) {
    const end = Math.min(T - 1, start + chunk);
    const logits = model.forwardCached(Int32Array.from(ids.slice(start, end)), cache, { allLogits: true }); // (end - start, V)
    checkMappedFiles();
    for (let t = start; t < end; t++) {
      const row = logits.subarray((t - start) * V, (t - start + 1) * V);
      const lse = be.logSumExp(row, V);
      const alternatives: { id: number; logprob: number }[] = [];
      if (k > 0) {
        be.topK(row, V, k, top);
        for (let r = 0; r < k; r++) alternatives.push({ id: top[r], logprob: row[top[r]] - lse });
      }
      out.push({ logprob: row[ids[t + 1]] - lse, top: alternatives });
    }
  }
  return out;
}
