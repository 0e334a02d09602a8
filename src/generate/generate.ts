/**
 * Autoregressive generation on a KV cache: the prompt is prefilled in one forward pass (matrix
 * products over all its tokens), then each new token costs one single-position forward.
 *
 *   // text pieces as they are complete (never half a UTF-8 character, never part of a stop string)
 *   const gen = generate(model, tokenizer, 'Once upon a time', { maxTokens: 100, temperature: 0.8, topK: 40, seed: 1, stop: ['\n\n'] });
 *   for await (const piece of gen) process.stdout.write(piece);
 *   gen.finishReason;  // 'length' | 'stop' | 'eos' | 'context'
 *   gen.tokens;        // [{ id, logprob }, ...]
 *
 *   // prompt caching: a CachedSequence keeps cache + tokens; the next prompt's common prefix is not recomputed
 *   const seq = new CachedSequence(model);
 *   const a = generate(model, tokenizer, promptIds, { ...opts, sequence: seq });    // a.stats.reusedTokens === 0
 *   const b = generate(model, tokenizer, longerIds, { ...opts, sequence: seq });    // b.stats.reusedTokens > 0
 *
 *   // token ids only (llmts sample, training previews)
 *   for (const id of generateTokens(model, promptIds, { maxTokens: 100, temperature: 0.8, topK: 200, seed: 1 })) ...
 *
 * generateTokensUncached is the old path that re-runs the whole window for every token; it is
 * kept as the oracle the cached path is tested against.
 */
import { noGrad, withBufferScope } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { StreamDecoder } from '../tokenizer/stream-decoder.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { checkMappedFiles } from '../formats/file-source.js';
import { CachedSequence } from './cached-sequence.js';
import type { KvCache } from './kv-cache.js';
import { applyPenalties, logProb, sampleToken, type PenaltyOptions, type SamplingOptions } from './sampler.js';

export interface GenerateOptions extends SamplingOptions, PenaltyOptions {
  /** tokens to generate at most */
  maxTokens: number;
  seed: number;
  /** penalties count the last N tokens of prompt + output (0 = all of them; default 64) */
  penaltyLastN?: number;
  /** token ids that end generation (the id is reported in tokens but not decoded into text) */
  stopTokens?: number[];
  /**
   * At the end of the context: 'stop' ends generation (finish reason 'context'); 'slide' goes on
   * by re-running the last blockSize tokens for each further token (uncached, the old behaviour).
   * A prompt longer than the context is an error with 'stop' and is cut to its end with 'slide'.
   */
  contextOverflow?: 'stop' | 'slide';
  /** reuse this cache (it is reset first); default: a new one of the model's context length */
  cache?: KvCache;
  /**
   * Run on this sequence instead (its model must be this one): the longest common prefix of
   * the tokens it holds and the prompt is not recomputed (prompt caching). Afterwards it holds
   * the prompt and the generated tokens that were fed back to the model (not the last one).
   */
  sequence?: CachedSequence;
  /** with `sequence`: false recomputes the whole prompt (default true) */
  reusePrefix?: boolean;
  /** filled in as generation runs */
  stats?: GenerationStats;
}

/** Where the time of one generation went. */
export interface GenerationStats {
  /** prompt tokens fed to the model (after a 'slide' cut) */
  promptTokens: number;
  /** of those, tokens whose cached keys/values were reused */
  reusedTokens: number;
  /** milliseconds of the prompt's forward pass */
  prefillMs: number;
  /** tokens sampled */
  generatedTokens: number;
  /** milliseconds spent sampling and running generated tokens (time the consumer holds the generator excluded) */
  decodeMs: number;
}

export function emptyStats(): GenerationStats {
  return { promptTokens: 0, reusedTokens: 0, prefillMs: 0, generatedTokens: 0, decodeMs: 0 };
}

export interface TextGenerateOptions extends GenerateOptions {
  /** stop as soon as the text contains one of these; the stop string is not emitted */
  stop?: string[];
}

export interface GeneratedToken {
  id: number;
  /** log-probability of the token under the model (log-softmax of the raw logits) */
  logprob: number;
}

export type FinishReason = 'length' | 'stop' | 'eos' | 'context';

/**
 * The token loop: yields each sampled token with its log-probability and returns why it ended.
 * Sampling order: penalties on the raw logits, then temperature / top-k / top-p / min-p.
 */
export function* generateCached(model: Transformer, prompt: ArrayLike<number>, opts: GenerateOptions): Generator<GeneratedToken, FinishReason> {
  if (prompt.length === 0) throw new LlmError('the prompt is empty: give at least one character or token');
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 0) throw new LlmError(`maxTokens must be a non-negative integer, got ${opts.maxTokens}`);
  const slide = opts.contextOverflow === 'slide';
  if (opts.sequence && opts.sequence.model !== model) throw new LlmError('the cached sequence belongs to another model');
  if (opts.sequence && opts.cache) throw new LlmError('give either a cache or a cached sequence, not both');
  const limit = opts.sequence?.capacity ?? opts.cache?.maxT ?? model.config.blockSize;
  let start = 0;
  if (prompt.length > limit) {
    if (!slide) throw new LlmError(`the prompt has ${prompt.length} tokens but the model's context holds ${limit}`);
    start = prompt.length - limit;
  }
  const V = model.config.vocabSize;
  const rng = new Rng(opts.seed);
  const stopTokens = new Set(opts.stopTokens ?? []);
  const penalties = (opts.repetitionPenalty ?? 1) !== 1 || (opts.presencePenalty ?? 0) !== 0 || (opts.frequencyPenalty ?? 0) !== 0;
  const lastN = opts.penaltyLastN ?? 64;
  const history = Array.from({ length: prompt.length - start }, (_, i) => prompt[start + i]);
  const counts = new Map<number, number>();
  const countFrom = (h: number[]): void => {
    counts.clear();
    for (const id of lastN > 0 ? h.slice(-lastN) : h) counts.set(id, (counts.get(id) ?? 0) + 1);
  };
  if (penalties) countFrom(history);
  const logits = new Float32Array(V);
  const work = penalties ? new Float32Array(V) : logits;

  if (opts.maxTokens === 0) return 'length';
  model.eval();
  const stats = opts.stats ?? emptyStats();
  const seq = opts.sequence ?? new CachedSequence(model, opts.cache);
  let t0 = performance.now();
  const { reused } = seq.prefill(history, logits, { reuse: opts.reusePrefix });
  Object.assign(stats, { promptTokens: history.length, reusedTokens: reused, prefillMs: performance.now() - t0, generatedTokens: 0, decodeMs: 0 });
  t0 = performance.now();
  for (let n = 0; ; n++) {
    if (penalties) {
      work.set(logits);
      applyPenalties(work, counts, opts);
    }
    const id = sampleToken(work, opts, rng);
    stats.generatedTokens++;
    stats.decodeMs += performance.now() - t0;
    yield { id, logprob: logProb(logits, id) };
    t0 = performance.now();
    if (stopTokens.has(id)) return 'eos';
    if (n + 1 >= opts.maxTokens) return 'length';
    history.push(id);
    if (penalties) {
      counts.set(id, (counts.get(id) ?? 0) + 1);
      if (lastN > 0 && history.length > lastN) {
        const old = history[history.length - lastN - 1];
        const c = counts.get(old)! - 1;
        if (c > 0) counts.set(old, c);
        else counts.delete(old);
      }
    }
    if (seq.length < limit) {
      seq.append(id, logits);
    } else if (slide) {
      const ids = Int32Array.from(history.slice(-model.config.blockSize));
      withBufferScope(() => {
        const { logits: l } = noGrad(() => model.forward(ids, 1, ids.length, undefined, { lastOnly: true }));
        checkMappedFiles(); // a mapped model file truncated meanwhile: these logits are wrong
        logits.set(l.data.subarray(0, V));
      });
    } else {
      return 'context';
    }
  }
}

/**
 * Token ids only, on the KV cache. Past the context it slides (re-running the last blockSize
 * tokens per token, like the uncached path), so `llmts sample` can write any length.
 */
export function* generateTokens(model: Transformer, prompt: number[], opts: GenerateOptions): Generator<number> {
  for (const t of generateCached(model, prompt, { contextOverflow: 'slide', ...opts })) yield t.id;
}

/** The full-recompute path: the whole window is re-run for every token (reference for tests). */
export function* generateTokensUncached(model: Transformer, prompt: number[], opts: GenerateOptions): Generator<number> {
  if (prompt.length === 0) throw new LlmError('the prompt is empty: give at least one character or token');
  const rng = new Rng(opts.seed);
  const context = [...prompt];
  const window = model.config.blockSize;
  model.eval();
  for (let n = 0; n < opts.maxTokens; n++) {
    const ids = Int32Array.from(context.slice(-window));
    const next = withBufferScope(() => {
      const { logits } = noGrad(() => model.forward(ids, 1, ids.length, undefined, { lastOnly: true }));
      checkMappedFiles();
      return sampleToken(logits.data, opts, rng);
    });
    context.push(next);
    yield next;
  }
}

/** One text generation: iterate it (once) for the text pieces; the fields fill in meanwhile. */
export class Generation implements AsyncIterable<string> {
  /** every generated token, including those of a stop string and a final stop token */
  readonly tokens: GeneratedToken[] = [];
  /** the text emitted so far */
  text = '';
  /** set when the iteration has ended */
  finishReason: FinishReason | null = null;
  /** prompt / reuse / timing figures, filled in as generation runs */
  readonly stats: GenerationStats = emptyStats();
  private started = false;

  constructor(
    private readonly model: Transformer,
    private readonly tokenizer: Pick<Tokenizer, 'tokenBytes' | 'eosId'>,
    private readonly promptIds: number[],
    private readonly opts: TextGenerateOptions,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<string> {
    if (this.started) throw new LlmError('a Generation can be iterated only once');
    this.started = true;
    const stops = (this.opts.stop ?? []).filter((s) => s.length > 0);
    const eos = this.tokenizer.eosId;
    const stopTokens = this.opts.stopTokens ?? (eos !== undefined ? [eos] : []);
    const stopSet = new Set(stopTokens);
    const decoder = new StreamDecoder(this.tokenizer);
    const it = generateCached(this.model, this.promptIds, { ...this.opts, stopTokens, stats: this.stats });
    let pending = '';
    for (;;) {
      const r = it.next();
      if (r.done) {
        this.finishReason = r.value;
        break;
      }
      this.tokens.push(r.value);
      if (!stopSet.has(r.value.id)) pending += decoder.push(r.value.id);
      const cut = firstStop(pending, stops);
      if (cut >= 0) {
        it.return('stop');
        this.finishReason = 'stop';
        pending = pending.slice(0, cut);
        break;
      }
      const emit = pending.length - heldSuffix(pending, stops);
      if (emit > 0) {
        const piece = pending.slice(0, emit);
        pending = pending.slice(emit);
        this.text += piece;
        yield piece;
      }
    }
    if (this.finishReason !== 'stop') {
      pending += decoder.flush();
      const cut = firstStop(pending, stops);
      if (cut >= 0) {
        pending = pending.slice(0, cut);
        this.finishReason = 'stop';
      }
    }
    if (pending.length > 0) {
      this.text += pending;
      yield pending;
    }
  }

  /** Run to the end and return the whole text. */
  async collect(): Promise<string> {
    for await (const _ of this) { /* pieces accumulate in this.text */ }
    return this.text;
  }
}

/** Generate text continuing `prompt` (a string is encoded with the tokenizer). */
export function generate(
  model: Transformer, tokenizer: Pick<Tokenizer, 'encode' | 'tokenBytes' | 'eosId'>, prompt: string | number[], opts: TextGenerateOptions,
): Generation {
  const ids = typeof prompt === 'string' ? tokenizer.encode(prompt) : prompt;
  return new Generation(model, tokenizer, ids, opts);
}

/** Index of the earliest occurrence of any stop string in text, or -1. */
export function firstStop(text: string, stops: readonly string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** Length of the longest suffix of text that is a proper prefix of some stop string. */
export function heldSuffix(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
      if (text.endsWith(s.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}
