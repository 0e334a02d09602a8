/**
 * A KV cache together with the token ids it holds, so that a later prompt sharing a prefix with
 * what was computed (the next turn of a chat, a request repeating a system prompt) only runs
 * the tokens after that prefix: llama.cpp's prompt cache.
 *
 *   const seq = new CachedSequence(model);
 *   const logits = new Float32Array(model.config.vocabSize);
 *   seq.prefill(promptA, logits);    // { reused: 0, computed: promptA.length }
 *   seq.append(next, logits);        // decode one token
 *   seq.prefill(promptB, logits);    // reuses the longest common prefix of seq.tokens and promptB
 *
 * Invariant: tokens[i] is the token whose keys and values sit at cache position i, and
 * tokens.length === cache.pos. Positions are only ever kept when their token (and, the model
 * being causal, every token before it) equals the new prompt's; the rest is truncated away.
 * A prompt that is wholly a prefix of the cached tokens still recomputes its last token, whose
 * logits are needed for the next sample.
 */
import { checkMappedFiles } from '../formats/file-source.js';
import type { Transformer } from '../model/transformer.js';
import { LlmError } from '../util/errors.js';
import { KvCache } from './kv-cache.js';

export interface PrefillResult {
  /** prompt tokens whose cached keys/values were kept */
  reused: number;
  /** prompt tokens run through the model */
  computed: number;
}

export class CachedSequence {
  readonly cache: KvCache;
  private ids: number[] = [];

  /** A sequence on `cache` (emptied) or on a new cache of the model's context length. */
  constructor(
    readonly model: Transformer,
    cache: KvCache = new KvCache(model.config),
  ) {
    cache.reset();
    this.cache = cache;
  }

  /** The tokens held, in position order (a copy). */
  get tokens(): number[] {
    return [...this.ids];
  }

  /** Positions held (= cache.pos). */
  get length(): number {
    return this.ids.length;
  }

  /** Positions the cache can hold. */
  get capacity(): number {
    return this.cache.maxT;
  }

  /** Forget everything held. */
  reset(): void {
    this.truncate(0);
  }

  /** Keep the first n positions only. */
  truncate(n: number): void {
    this.cache.truncate(n);
    this.ids.length = n;
  }

  /** Length of the longest common prefix of the held tokens and `prompt`. */
  commonPrefix(prompt: ArrayLike<number>): number {
    const n = Math.min(this.ids.length, prompt.length);
    let i = 0;
    while (i < n && this.ids[i] === prompt[i]) i++;
    return i;
  }

  /**
   * Make the sequence hold exactly `prompt` and write the logits of its last token to `out`.
   * With reuse (the default) the longest common prefix with the held tokens is kept, capped at
   * prompt.length - 1; without it everything is recomputed.
   */
  prefill(prompt: ArrayLike<number>, out: Float32Array, opts: { reuse?: boolean } = {}): PrefillResult {
    if (prompt.length === 0) throw new LlmError('cannot prefill an empty prompt');
    if (prompt.length > this.capacity) throw new LlmError(`the prompt has ${prompt.length} tokens but the KV cache holds ${this.capacity}`);
    const reused = opts.reuse === false ? 0 : Math.min(this.commonPrefix(prompt), prompt.length - 1);
    this.truncate(reused);
    const rest = Int32Array.from({ length: prompt.length - reused }, (_, i) => prompt[reused + i]);
    this.model.forwardCached(rest, this.cache, { out });
    for (const id of rest) this.ids.push(id);
    checkMappedFiles(); // a mapped model file truncated meanwhile: these logits are wrong
    return { reused, computed: rest.length };
  }

  /** Run one more token, writing its logits to `out`. */
  append(id: number, out: Float32Array): void {
    this.model.forwardCached(Int32Array.of(id), this.cache, { out });
    this.ids.push(id);
    checkMappedFiles();
  }
}
