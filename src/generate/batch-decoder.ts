/**
 * Continuous batching: many sequences decoded together through one KV cache with a batch
 * dimension. A sequence joins a free slot at any step (its prompt is prefilled at once, matrix
 * products over its tokens), every step() then samples one token for each active sequence and
 * feeds them all to the model in ONE batched forward (each linear layer a (n, C) x (C, N)
 * product; attention per sequence over its own length), and a sequence leaves as soon as it ends
 * (stop token, its token budget, the end of the context, or remove()), freeing its slot for the
 * next prompt. Rollouts (PPO, GRPO) and a server's concurrent requests run on it.
 *
 *   const dec = new BatchDecoder(model, { slots: 8 });
 *   const a = dec.add(promptA, { maxTokens: 64, temperature: 0.7, topK: 0, seed: 1, stopTokens: [eos] });
 *   const b = dec.add(promptB, { maxTokens: 16, temperature: 0, topK: 0, seed: 2 });
 *   while (dec.active.length > 0) {
 *     for (const e of dec.step()) {        // one event per active sequence
 *       e.sequence.id; e.token.id; e.token.logprob; e.token.policyLogprob; e.finishReason;  // null while it goes on
 *     }
 *     if (dec.free > 0 && more.length) dec.add(more.pop()!, opts);   // join mid-answer
 *   }
 *   a.tokens; a.finishReason;              // everything a sequence produced, and why it ended
 *
 * Per sequence: sampling settings, seed, penalties, stop tokens and length. A sequence's tokens
 * are those generateCached (generate.ts) gives for the same prompt and options: the logits are
 * the same floats (BatchStep), and sampling follows the same order with the same Rng, one draw
 * per token. Log-probabilities of each chosen token come back twice: `logprob` of the model's
 * distribution (log-softmax of the raw logits, as generate.ts reports them) and `policyLogprob`
 * of the sampling policy, log-softmax(logits / temperature), which TRL's PPO uses (equal to
 * logprob at temperature 0 or 1; penalties and top-k/top-p/min-p do not enter either).
 *
 * Prompt-prefix reuse: a slot keeps the tokens it held after its sequence left; a new prompt
 * goes to the free slot sharing its longest prefix, and that prefix is not recomputed (off with
 * reusePrefix: false; then the prompt's logits are exactly a fresh prefill's). A prompt equal to
 * one another slot prefilled (active or free, e.g. GRPO's K samples of one prompt) is always
 * copied from it, keys, values and logits, instead of run again: the same floats as a prefill.
 */
import { backend } from '../backend/index.js';
import { checkMappedFiles } from '../formats/file-source.js';
import { BatchKvCache } from '../model/batch-kv-cache.js';
import { BatchStep } from '../model/batch-step.js';
import type { Transformer } from '../model/transformer.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import type { FinishReason } from './generate.js';
import { applyPenalties, sampleToken, type PenaltyOptions, type SamplingOptions } from './sampler.js';

export interface BatchSequenceOptions extends SamplingOptions, PenaltyOptions {
  /** tokens to generate at most */
  maxTokens: number;
  seed: number;
  /** penalties count the last N tokens of prompt + output (0 = all of them; default 64) */
  penaltyLastN?: number;
  /** token ids that end the sequence (reported as its last token, finish reason 'eos') */
  stopTokens?: number[];
  /** start from the longest prefix a free slot still holds (default true) */
  reusePrefix?: boolean;
  /**
   * compute policyLogprob (default true); false leaves it NaN and saves a pass over the
   * vocabulary per token at temperatures other than 0 and 1 (a server does not need it)
   */
  policyLogprobs?: boolean;
  /** report the k most likely tokens at each step with their log-probabilities (BatchToken.top; default 0: none) */
  topLogprobs?: number;
}

/** Why a sequence ended: generate.ts's reasons, or 'abort' when it was removed. */
export type BatchFinishReason = FinishReason | 'abort';

export interface BatchToken {
  id: number;
  /** log-softmax of the raw logits at id (the model's distribution) */
  logprob: number;
  /** log-softmax(logits / temperature) at id (the sampling policy; TRL's PPO log-probabilities) */
  policyLogprob: number;
  /** with opts.topLogprobs k > 0: the k most likely tokens of the model's distribution, most likely first (ties: lower id) */
  top?: { id: number; logprob: number }[];
}

export interface StepEvent {
  sequence: BatchSequence;
  token: BatchToken;
  /** set when this token ended the sequence */
  finishReason: BatchFinishReason | null;
}

export interface BatchDecoderOptions {
  /** sequences decoded at once (1 to 1024) */
  slots: number;
  /** positions per slot (prompt + generated tokens; default: the model's context) */
  maxT?: number;
}

/** Totals of a decoder's work. */
export interface BatchDecoderStats {
  /** batched forwards run */
  steps: number;
  /** tokens fed through them (the sum of their row counts) */
  stepRows: number;
  /** milliseconds in those forwards and the sampling of their tokens */
  stepMs: number;
  /** prompt tokens run through the model, and reused from a slot */
  prefillTokens: number;
  reusedTokens: number;
  /** prompts copied from a slot that had prefilled the same prompt (not run through the model) */
  sharedPrompts: number;
  prefillMs: number;
}

let nextSequenceId = 1;

/** One sequence of a BatchDecoder: what it produced so far and why it ended. */
export class BatchSequence {
  /** unique in the process */
  readonly id = nextSequenceId++;
  readonly prompt: readonly number[];
  readonly tokens: BatchToken[] = [];
  finishReason: BatchFinishReason | null = null;
  /** prompt tokens taken from the slot's cache instead of recomputed */
  reusedTokens = 0;
  /** the slot it decodes in; -1 once it has left */
  slot = -1;
  /** @internal */
  readonly rng: Rng;
  /** @internal the logits the next token is sampled from (its own prefill row, or a row of the last step) */
  logits: Float32Array;
  /** @internal penalties: prompt + output tokens and the counts of the last penaltyLastN */
  readonly history: number[];
  /** @internal */
  readonly counts = new Map<number, number>();
  /** @internal */
  readonly stopSet: Set<number>;
  /** @internal */
  readonly penalties: boolean;

  constructor(prompt: ArrayLike<number>, readonly opts: Readonly<BatchSequenceOptions>, V: number) {
    this.prompt = Array.from(prompt);
    this.rng = new Rng(opts.seed);
    this.logits = new Float32Array(V);
    this.stopSet = new Set(opts.stopTokens ?? []);
    this.penalties = (opts.repetitionPenalty ?? 1) !== 1 || (opts.presencePenalty ?? 0) !== 0 || (opts.frequencyPenalty ?? 0) !== 0;
    this.history = this.penalties ? [...this.prompt] : [];
    if (this.penalties) {
      const lastN = opts.penaltyLastN ?? 64;
      for (const id of lastN > 0 ? this.history.slice(-lastN) : this.history) this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    }
  }

  /** The generated token ids. */
  get ids(): number[] {
    return this.tokens.map((t) => t.id);
  }

  /** @internal count a new token for the penalties (sliding window of penaltyLastN) */
  notePenalty(id: number): void {
    const lastN = this.opts.penaltyLastN ?? 64;
    this.history.push(id);
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    if (lastN > 0 && this.history.length > lastN) {
      const old = this.history[this.history.length - lastN - 1];
      const c = this.counts.get(old)! - 1;
      if (c > 0) this.counts.set(old, c);
      else this.counts.delete(old);
    }
  }
}

export class BatchDecoder {
  readonly cache: BatchKvCache;
  readonly stats: BatchDecoderStats = { steps: 0, stepRows: 0, stepMs: 0, prefillTokens: 0, reusedTokens: 0, sharedPrompts: 0, prefillMs: 0 };
  private readonly step1: BatchStep;
  /** the sequence in each slot, or null */
  private readonly occupant: (BatchSequence | null)[];
  /** per slot, the tokens its cache positions hold (kept after a sequence leaves, for prefix reuse) */
  private readonly held: number[][];
  /** per slot, the logits at the end of the last prompt it prefilled and that prompt's length (0: none) */
  private readonly promptLogits: Float32Array[];
  private readonly promptLength: Int32Array;
  private readonly running: BatchSequence[] = [];
  private readonly rowTokens: Int32Array;
  private readonly rowSlots: Int32Array;
  /** logits / temperature, for policy log-probabilities */
  private scaled: Float32Array;
  private work: Float32Array;

  constructor(readonly model: Transformer, opts: BatchDecoderOptions) {
    this.cache = new BatchKvCache(model.config, opts.slots, opts.maxT);
    this.step1 = new BatchStep(model, this.cache);
    this.occupant = new Array<BatchSequence | null>(opts.slots).fill(null);
    this.held = Array.from({ length: opts.slots }, () => []);
    this.promptLogits = Array.from({ length: opts.slots }, () => new Float32Array(0));
    this.promptLength = new Int32Array(opts.slots);
    this.rowTokens = new Int32Array(opts.slots);
    this.rowSlots = new Int32Array(opts.slots);
    this.scaled = new Float32Array(model.config.vocabSize);
    this.work = new Float32Array(model.config.vocabSize);
  }

  /** Slots. */
  get slots(): number {
    return this.cache.slots;
  }

  /** Slots free for add(). */
  get free(): number {
    return this.cache.slots - this.running.length;
  }

  /** The sequences decoding now, in the order they joined. */
  get active(): readonly BatchSequence[] {
    return this.running;
  }

  /**
   * Start a sequence: take a free slot and prefill the prompt (its common prefix with what the
   * slot last held is reused unless opts.reusePrefix is false). maxTokens 0 gives a sequence
   * that has already ended ('length') without touching the model.
   */
  add(prompt: ArrayLike<number>, opts: BatchSequenceOptions): BatchSequence {
    const V = this.model.config.vocabSize;
    if (prompt.length === 0) throw new LlmError('the prompt is empty: give at least one token');
    if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 0) throw new LlmError(`maxTokens must be a non-negative integer, got ${opts.maxTokens}`);
    if (prompt.length > this.cache.maxT) throw new LlmError(`the prompt has ${prompt.length} tokens but the context holds ${this.cache.maxT}`);
    for (let i = 0; i < prompt.length; i++) {
      const t = prompt[i];
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new LlmError(`prompt token ${i} is ${t}, outside the vocabulary [0, ${V})`);
    }
    const seq = new BatchSequence(prompt, { ...opts }, V);
    if (opts.maxTokens === 0) {
      seq.finishReason = 'length';
      return seq;
    }
    if (this.free === 0) throw new LlmError(`all ${this.slots} slots are busy: wait for a sequence to end (step) or remove one`);
    const reuse = opts.reusePrefix ?? true;
    const slot = this.pickSlot(seq.prompt, reuse);
    const held = this.held[slot];
    const P = seq.prompt.length;
    const t0 = performance.now();
    let keep = 0;
    const twin = this.twinOf(seq.prompt, slot);
    if (twin >= 0) {
      // the same prompt was prefilled in slot twin: its keys, values and last logits, copied
      if (twin !== slot) this.cache.copyPrefix(twin, slot, P);
      else this.cache.truncate(slot, P);
      held.length = 0;
      for (const id of seq.prompt) held.push(id);
      seq.logits.set(this.promptLogits[twin]);
      if (twin !== slot) this.notePrompt(slot, seq.logits, P);
      keep = P;
      this.stats.sharedPrompts++;
    } else {
      if (reuse) {
        const n = Math.min(held.length, P - 1);
        while (keep < n && held[keep] === seq.prompt[keep]) keep++;
      }
      this.cache.truncate(slot, Math.min(keep, this.cache.lengths[slot]));
      held.length = keep;
      this.promptLength[slot] = 0;
      const rest = Int32Array.from(seq.prompt.slice(keep));
      this.model.forwardCached(rest, this.cache.slotCache(slot), { out: seq.logits });
      for (const id of rest) held.push(id);
      checkMappedFiles(); // a mapped model file truncated meanwhile: these logits are wrong
      // only a fresh prefill's logits are shared (a reused prefix gives slightly different floats)
      this.notePrompt(slot, seq.logits, keep === 0 ? P : 0);
      this.stats.prefillTokens += rest.length;
    }
    seq.reusedTokens = keep;
    seq.slot = slot;
    this.occupant[slot] = seq;
    this.running.push(seq);
    this.stats.reusedTokens += keep;
    this.stats.prefillMs += performance.now() - t0;
    return seq;
  }

  /**
   * One token for every active sequence: sample it, report it, end the sequences it ends (their
   * slots are free on return), and run the rest's tokens through the model in one batched forward.
   */
  step(): StepEvent[] {
    const t0 = performance.now();
    const events: StepEvent[] = [];
    let n = 0;
    for (const seq of [...this.running]) {
      const token = this.sample(seq);
      seq.tokens.push(token);
      let reason: BatchFinishReason | null = null;
      if (seq.stopSet.has(token.id)) reason = 'eos';
      else if (seq.tokens.length >= seq.opts.maxTokens) reason = 'length';
      else if (this.cache.lengths[seq.slot] >= this.cache.maxT) reason = 'context';
      events.push({ sequence: seq, token, finishReason: reason });
      if (reason) {
        this.finish(seq, reason);
        continue;
      }
      if (seq.penalties) seq.notePenalty(token.id);
      this.rowTokens[n] = token.id;
      this.rowSlots[n] = seq.slot;
      n++;
    }
    if (n > 0) {
      const logits = this.step1.run(this.rowTokens, this.rowSlots, n);
      checkMappedFiles();
      const V = this.model.config.vocabSize;
      for (let r = 0; r < n; r++) {
        const seq = this.occupant[this.rowSlots[r]]!;
        seq.logits = logits.subarray(r * V, (r + 1) * V);
        this.held[seq.slot].push(this.rowTokens[r]);
      }
      this.stats.steps++;
      this.stats.stepRows += n;
    }
    this.stats.stepMs += performance.now() - t0;
    return events;
  }

  /** End a sequence now (finish reason 'abort'), freeing its slot; one that has ended is left as it is. */
  remove(seq: BatchSequence): void {
    if (seq.finishReason !== null) return;
    if (this.occupant[seq.slot] !== seq) throw new LlmError(`sequence ${seq.id} does not belong to this decoder`);
    this.finish(seq, 'abort');
  }

  /** Step until every active sequence has ended. */
  runToEnd(): void {
    while (this.running.length > 0) this.step();
  }

  private finish(seq: BatchSequence, reason: BatchFinishReason): void {
    seq.finishReason = reason;
    this.occupant[seq.slot] = null;
    this.running.splice(this.running.indexOf(seq), 1);
    // the last sampled token was never fed: the slot holds prompt + the tokens before it
    seq.logits = new Float32Array(0);
    seq.slot = -1;
  }

  /** Record (or, with length 0, forget) the prompt a slot has just prefilled and its logits. */
  private notePrompt(slot: number, logits: Float32Array, length: number): void {
    this.promptLength[slot] = length;
    if (length === 0) return;
    if (this.promptLogits[slot].length === 0) this.promptLogits[slot] = new Float32Array(logits.length);
    this.promptLogits[slot].set(logits);
  }

  /** Whether slot s's last fresh prefill was exactly this prompt and it still holds it. */
  private holdsPrompt(s: number, prompt: readonly number[]): boolean {
    if (this.promptLength[s] !== prompt.length || this.cache.lengths[s] < prompt.length) return false;
    const held = this.held[s];
    for (let i = 0; i < prompt.length; i++) if (held[i] !== prompt[i]) return false;
    return true;
  }

  /** A slot (`first` first) whose last fresh prefill was exactly this prompt and still holds it; -1 if none. */
  private twinOf(prompt: readonly number[], first: number): number {
    if (this.holdsPrompt(first, prompt)) return first;
    for (let s = 0; s < this.slots; s++) if (s !== first && this.holdsPrompt(s, prompt)) return s;
    return -1;
  }

  /**
   * A free slot: one that prefilled exactly this prompt, else the one holding the longest prefix
   * of the prompt (reuse), else the emptiest.
   */
  private pickSlot(prompt: readonly number[], reuse: boolean): number {
    for (let s = 0; s < this.slots; s++) if (!this.occupant[s] && this.holdsPrompt(s, prompt)) return s;
    let best = -1, bestScore = -1;
    for (let s = 0; s < this.slots; s++) {
      if (this.occupant[s]) continue;
      const held = this.held[s];
      let score = 0;
      if (reuse) {
        const n = Math.min(held.length, prompt.length);
        while (score < n && held[score] === prompt[score]) score++;
      }
      // ties: the slot holding least (what it held is of no use to this prompt)
      if (score > bestScore || (score === bestScore && held.length < this.held[best].length)) {
        best = s;
        bestScore = score;
      }
    }
    return best;
  }

  /** The next token of seq from its logits, with both log-probabilities. */
  private sample(seq: BatchSequence): BatchToken {
    const logits = seq.logits;
    const V = logits.length;
    const be = backend();
    let x = logits;
    if (seq.penalties) {
      this.work.set(logits);
      applyPenalties(this.work, seq.counts, seq.opts);
      x = this.work;
    }
    const id = sampleToken(x, seq.opts, seq.rng);
    const lse = be.logSumExp(logits, V);
    const logprob = logits[id] - lse;
    const T = seq.opts.temperature;
    let policyLogprob = logprob;
    if (seq.opts.policyLogprobs === false) policyLogprob = NaN;
    else if (T > 0 && T !== 1) {
      const inv = 1 / T;
      const s = this.scaled;
      for (let i = 0; i < V; i++) s[i] = logits[i] * inv;
      policyLogprob = s[id] - be.logSumExp(s, V);
    }
    const k = Math.min(seq.opts.topLogprobs ?? 0, V);
    if (k <= 0) return { id, logprob, policyLogprob };
    const ids = new Int32Array(k);
    be.topK(logits, V, k, ids);
    return { id, logprob, policyLogprob, top: Array.from(ids, (t) => ({ id: t, logprob: logits[t] - lse })) };
  }
}
