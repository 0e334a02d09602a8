/**
 * A multi-turn chat with a model: the history, rendered through a chat template into each
 * prompt, so earlier answers are part of the next one.
 *
 *   const chat = new ChatSession(model, tokenizer, { template: 'chatml', system: 'Be brief.', maxTokens: 200, temperature: 0.7, seed: 1,
 *     onDrop: (d) => console.error(`(dropped ${d.turns} earlier turns to fit the ${d.contextSize}-token context)`) });
 *   const reply = chat.send('Hello!');          // the prompt is built (and fitted) here
 *   for await (const piece of reply) process.stdout.write(piece);
 *   reply.finishReason;                         // 'stop' | 'eos' | 'length' | 'context' | 'aborted'
 *   reply.stats;                                // { promptTokens, reusedTokens, prefillMs, generatedTokens, decodeMs }
 *   chat.messages();                            // [system, user, assistant]
 *   chat.reset(); chat.setSystem('Be verbose.');
 *
 * Fitting the context: when prompt tokens + `reserve` (room for the answer; default maxTokens,
 * at most half the context) exceed the model's context, the OLDEST user/assistant turns are
 * dropped from the history for good (the system prompt always stays) until it fits; the count
 * is reported through onDrop and reply.droppedTurns. A message that does not fit even alone
 * (with the system prompt) is an LlmError.
 *
 * Prompt caching (on unless cachePrompt: false): the session keeps its KV cache and the token
 * ids in it (prompt + the answer tokens fed back) between turns; the next prompt is tokenized
 * in full and only the part after the longest common prefix with those ids is prefilled
 * (CachedSequence). Dropped turns, /reset or a new system prompt change the prefix, so a
 * near-full prefill follows by the same rule; reset() and setSystem() empty the cache anyway.
 * reply.stats tells the prompt tokens, the reused ones and the prefill / decode times.
 *
 * Iterate each reply before the next send(): the turn joins the history when its answer ends;
 * a reply never iterated is simply superseded by the next send().
 *
 * Streaming yields to the event loop after each piece, so a signal (e.g. Ctrl-C) can abort an
 * answer mid-way: the partial answer is kept in the history as what the user saw.
 */
import type { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { chatStopTokens, chatTemplate, encodeChat, type ChatMessage, type ChatTemplate, type ChatTemplateName } from '../chat/index.js';
import { CachedSequence } from './cached-sequence.js';
import { KvCache } from './kv-cache.js';
import { Generation, type FinishReason, type GeneratedToken, type GenerationStats, type TextGenerateOptions } from './generate.js';

export interface DropInfo {
  /** user/assistant turns dropped for this message */
  turns: number;
  /** prompt tokens after dropping */
  promptTokens: number;
  /** the model's context length */
  contextSize: number;
}

export interface ChatSessionOptions extends Omit<TextGenerateOptions, 'cache' | 'contextOverflow' | 'sequence' | 'reusePrefix' | 'stats'> {
  /** default 'chatml' */
  template?: ChatTemplate | ChatTemplateName;
  system?: string;
  /** tokens kept free for the answer when fitting the history (default min(maxTokens, context / 2)) */
  reserve?: number;
  onDrop?: (info: DropInfo) => void;
  /** keep the KV cache between turns and prefill only what follows the common prefix (default true) */
  cachePrompt?: boolean;
  /** tokens of context the conversation may use, at most the model's (default the model's) */
  contextSize?: number;
}

export type ChatFinishReason = FinishReason | 'aborted';

type ChatTokenizer = Pick<Tokenizer, 'encode' | 'tokenBytes' | 'eosId' | 'bosId' | 'specialTokens'>;

/** One answer: iterate it (once) for the text pieces; on the end the turn joins the history. */
export class ChatReply implements AsyncIterable<string> {
  text = '';
  finishReason: ChatFinishReason | null = null;
  private started = false;

  constructor(
    private readonly generation: Generation,
    /** the prompt's token ids */
    readonly promptIds: readonly number[],
    /** turns dropped from the history to fit this prompt */
    readonly droppedTurns: number,
    private readonly signal: AbortSignal | undefined,
    private readonly notify: (reply: ChatReply, event: 'start' | 'end') => void,
  ) {}

  /** number of prompt tokens */
  get promptTokens(): number {
    return this.promptIds.length;
  }

  /** every generated token (including a stop string's and a final stop token) */
  get tokens(): readonly GeneratedToken[] {
    return this.generation.tokens;
  }

  /** prompt tokens, reused tokens, prefill and decode time */
  get stats(): Readonly<GenerationStats> {
    return this.generation.stats;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<string> {
    if (this.started) throw new LlmError('a chat reply can be iterated only once');
    this.started = true;
    this.notify(this, 'start');
    try {
      if (this.signal?.aborted) {
        this.finishReason = 'aborted';
        return;
      }
      for await (const piece of this.generation) {
        // let I/O (a Ctrl-C keypress, a signal) run between tokens
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.signal?.aborted) {
          this.finishReason = 'aborted';
          break;
        }
        this.text += piece;
        yield piece;
      }
      this.finishReason ??= this.generation.finishReason;
    } finally {
      this.finishReason ??= 'aborted';
      this.notify(this, 'end');
    }
  }

  /** Run to the end and return the whole answer. */
  async collect(): Promise<string> {
    for await (const _ of this) { /* text accumulates */ }
    return this.text;
  }
}

export class ChatSession {
  readonly template: ChatTemplate;
  private system: string | undefined;
  private history: ChatMessage[] = [];
  private readonly opts: ChatSessionOptions;
  private readonly sequence: CachedSequence;
  /** the reply now streaming (started, not finished) */
  private streaming: ChatReply | null = null;
  /** the latest reply; an earlier one that was never iterated is superseded and never joins the history */
  private latest: ChatReply | null = null;
  private sends = 0;

  constructor(
    readonly model: Transformer,
    readonly tokenizer: ChatTokenizer,
    opts: ChatSessionOptions,
  ) {
    this.template = typeof opts.template === 'string' || opts.template === undefined ? chatTemplate(opts.template ?? 'chatml') : opts.template;
    this.system = opts.system === '' ? undefined : opts.system;
    this.opts = opts;
    if (opts.reserve !== undefined && (!Number.isInteger(opts.reserve) || opts.reserve < 0)) {
      throw new LlmError(`the answer reserve must be a non-negative integer, got ${opts.reserve}`);
    }
    const ctx = opts.contextSize ?? model.config.blockSize;
    if (!Number.isInteger(ctx) || ctx < 1 || ctx > model.config.blockSize) {
      throw new LlmError(`the chat context must be an integer from 1 to the model's ${model.config.blockSize} tokens, got ${ctx}`);
    }
    this.sequence = new CachedSequence(model, new KvCache(model.config, ctx));
  }

  get contextSize(): number {
    return this.sequence.capacity;
  }

  /** The conversation so far, system prompt first (a copy). */
  messages(): ChatMessage[] {
    const sys: ChatMessage[] = this.system !== undefined ? [{ role: 'system', content: this.system }] : [];
    return [...sys, ...this.history.map((m) => ({ ...m }))];
  }

  /** Completed user/assistant turns in the history. */
  get turns(): number {
    return this.history.length / 2;
  }

  get systemPrompt(): string | undefined {
    return this.system;
  }

  /** The token ids whose keys/values the session's cache holds (a copy). */
  cachedTokens(): number[] {
    return this.sequence.tokens;
  }

  /** Forget the conversation (the system prompt stays) and empty the cache. */
  reset(): void {
    this.history = [];
    this.sequence.reset();
  }

  /** Set (or with '' / undefined, remove) the system prompt; the history stays, the cache is emptied. */
  setSystem(text: string | undefined): void {
    this.system = text === '' ? undefined : text;
    this.sequence.reset();
  }

  /** The messages of the prompt for a user message given the current history (nothing is changed). */
  promptMessages(userText: string, history: readonly ChatMessage[] = this.history): ChatMessage[] {
    const sys: ChatMessage[] = this.system !== undefined ? [{ role: 'system', content: this.system }] : [];
    return [...sys, ...history, { role: 'user', content: userText }];
  }

  /** The prompt text for a user message given the current history (nothing is changed). */
  renderPrompt(userText: string, history: readonly ChatMessage[] = this.history): string {
    return this.template.render(this.promptMessages(userText, history));
  }

  /** Send a user message: builds the prompt (dropping the oldest turns if needed) and returns the streamed answer. */
  send(userText: string, options: { signal?: AbortSignal } = {}): ChatReply {
    if (this.streaming) throw new LlmError('the previous answer is still being generated; finish or abort it first');
    const ctx = this.contextSize;
    const reserve = this.opts.reserve ?? Math.min(this.opts.maxTokens, Math.floor(ctx / 2));
    let dropped = 0;
    let ids: number[];
    for (;;) {
      ids = encodeChat(this.tokenizer, this.template, this.promptMessages(userText, this.history.slice(2 * dropped)));
      if (ids.length + reserve <= ctx || 2 * dropped >= this.history.length) break;
      dropped++;
    }
    if (ids.length >= ctx) {
      throw new LlmError(`the message makes a ${ids.length}-token prompt but the model's context holds ${ctx} tokens; send a shorter one`);
    }
    this.history.splice(0, 2 * dropped);
    if (dropped > 0) this.opts.onDrop?.({ turns: dropped, promptTokens: ids.length, contextSize: ctx });
    const { template: _t, system: _s, reserve: _r, onDrop: _o, cachePrompt, contextSize: _c, ...gen } = this.opts;
    const generation = new Generation(this.model, this.tokenizer, ids, {
      ...gen,
      seed: this.opts.seed + this.sends++,
      stop: [...this.template.stop, ...(this.opts.stop ?? [])],
      stopTokens: this.opts.stopTokens ?? chatStopTokens(this.tokenizer, this.template),
      sequence: this.sequence,
      reusePrefix: cachePrompt ?? true,
      contextOverflow: 'stop',
    });
    const reply = new ChatReply(generation, ids, dropped, options.signal, (r, event) => {
      if (this.latest !== r) throw new LlmError('this chat reply was superseded by a later send(); iterate a reply before sending again');
      if (event === 'start') {
        this.streaming = r;
        return;
      }
      this.streaming = null;
      this.latest = null;
      this.history.push({ role: 'user', content: userText }, { role: 'assistant', content: r.text.trim() });
    });
    this.latest = reply;
    return reply;
  }
}
