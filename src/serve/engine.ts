/**
 * The model side of llmts serve, run in a worker thread: it owns the models (and so the native
 * thread pool), tokenizes, queues requests into a fixed number of slots per model and decodes
 * them together with continuous batching (BatchDecoder: a sequence joins a free slot at any step
 * and leaves when it ends), turning tokens into text (stop strings, UTF-8) and log-probabilities.
 *
 *   const engine = new Engine(config, (msg) => parentPort.postMessage(msg));
 *   parentPort.on('message', (m) => engine.handle(m));
 *   await engine.load();      // posts { type: 'ready', models } (or 'load-failed')
 *   await engine.run();       // forever: admit queued sequences, one batched step per model, post events
 *
 * Messages are handled between decode steps (the loop yields to the event loop after each), so
 * a cancel frees its slots before the next step. One message of events is posted per step.
 * Sampling, seeds and penalties are BatchDecoder's, which gives each sequence the tokens
 * generateCached (llmts run) gives it alone; n samples of a prompt use seeds seed, seed+1, ...
 */
import { chatStopTokens, chatTemplate, chooseModelChatTemplate, encodeChat, type ChatTemplate } from '../chat/index.js';
import { describeBackend } from '../backend/index.js';
import { loadModelForInference } from '../cli/run.js';
import { detectModelFormat } from '../formats/load-model.js';
import { BatchDecoder, type BatchSequence, type BatchSequenceOptions, type BatchToken } from '../generate/batch-decoder.js';
import { countParameters } from '../model/parameters.js';
import type { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { ApiError, contextExceeded, shown } from './api-error.js';
import type { ChoiceEvent, ChoiceFinish, FromWorker, GenerateJob, JobMessage, ModelInfo, TokenizeResult, TokenLogprob, ToWorker, WorkerConfig } from './protocol.js';
import { promptLogprobs, type PositionLogprob } from './prompt-logprobs.js';
import { TextStream } from './text-stream.js';

interface Hosted {
  info: ModelInfo;
  model: Transformer;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** stop tokens of completions (EOS) and of chat (EOS + the template's end-of-turn tokens) */
  textStops: number[];
  chatStops: number[];
  decoder: BatchDecoder;
  /** choices waiting for a slot, first come first served */
  pending: Choice[];
  /** token id -> its text and bytes (logprobs) */
  pieces: Map<number, { token: string; bytes: number[] }>;
}

interface Job {
  id: number;
  hosted: Hosted;
  job: GenerateJob;
  choices: Choice[];
  /** choices not finished */
  live: number;
  /** prompt ids per prompt */
  promptIds: number[][];
  /** per prompt, computed once when echo and logprobs ask for it */
  promptScores: ((PositionLogprob | null)[] | undefined)[];
}

interface Choice {
  job: Job;
  index: number;
  prompt: number;
  opts: BatchSequenceOptions;
  stream: TextStream;
  seq: BatchSequence | null;
  done: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export class Engine {
  private readonly models = new Map<string, Hosted>();
  private readonly jobs = new Map<number, Job>();
  private readonly bySequence = new Map<BatchSequence, Choice>();
  private outbox: ChoiceEvent[] = [];
  private wake: (() => void) | null = null;

  constructor(private readonly config: WorkerConfig, private readonly post: (m: FromWorker) => void) {}

  /** Load every model (memory-mapped where the format allows); posts 'ready' or 'load-failed'. */
  async load(): Promise<boolean> {
    try {
      if (this.config.loadDelayMs > 0) await new Promise((r) => setTimeout(r, this.config.loadDelayMs));
      for (const spec of this.config.models) {
        const { model, tokenizer, chatTemplate: own } = await loadModelForInference(spec.path, spec.tokenizer, spec.adapter);
        const chosen = this.config.template !== undefined
          ? { name: this.config.template, template: chatTemplate(this.config.template), reason: 'chosen with --template' }
          : chooseModelChatTemplate(tokenizer, own);
        const cfg = model.config;
        const contextSize = Math.min(this.config.ctxSize ?? cfg.blockSize, cfg.blockSize);
        const info: ModelInfo = {
          name: spec.name, path: spec.path, format: detectModelFormat(spec.path).format, family: cfg.family,
          contextSize, trainContext: cfg.blockSize, vocabSize: cfg.vocabSize, embedding: cfg.nEmbd, layers: cfg.nLayer,
          parameters: countParameters(cfg), template: chosen.name, templateReason: chosen.reason,
        };
        this.models.set(spec.name, {
          info, model, tokenizer, template: chosen.template,
          textStops: tokenizer.eosId !== undefined ? [tokenizer.eosId] : [],
          chatStops: chatStopTokens(tokenizer, chosen.template),
          decoder: new BatchDecoder(model, { slots: this.config.slots, maxT: contextSize }),
          pending: [], pieces: new Map(),
        });
      }
      this.post({ type: 'ready', models: [...this.models.values()].map((h) => h.info), backend: describeBackend() });
      return true;
    } catch (err) {
      const message = err instanceof LlmError ? err.message : `internal error: ${(err as Error).message ?? String(err)}`;
      this.post({ type: 'load-failed', message });
      return false;
    }
  }

  /** A message from the HTTP thread. */
  handle(m: ToWorker): void {
    try {
      switch (m.type) {
        case 'generate':
          this.start(m.id, m.job);
          break;
        case 'cancel':
          this.cancel(m.id);
          break;
        case 'tokenize':
          this.post({ type: 'reply', id: m.id, result: this.tokenize(m.model, m.text, m.messages, m.addSpecial, m.withPieces) });
          break;
        case 'detokenize':
          this.post({ type: 'reply', id: m.id, result: { prompt: this.detokenize(m.model, m.tokens) } });
          break;
      }
    } catch (err) {
      this.post({ type: 'failed', id: m.id, error: asApiError(err).toJSON() });
      if (m.type === 'generate') this.post({ type: 'end', id: m.id });
    }
    this.poke();
  }

  /** Admit, step, post; forever. */
  async run(): Promise<never> {
    for (;;) {
      let busy = false;
      for (const h of this.models.values()) {
        this.admit(h);
        if (h.decoder.active.length > 0) {
          this.step(h);
          busy = true;
        }
        if (h.pending.length > 0) busy = true;
      }
      this.flush();
      if (busy) await new Promise((r) => setImmediate(r));
      else await new Promise<void>((r) => { this.wake = r; });
    }
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private hosted(name: string): Hosted {
    const h = this.models.get(name);
    if (!h) throw new ApiError(404, `The model ${shown(name)} does not exist`, 'not_found_error', 'model', 'model_not_found');
    return h;
  }

  /** Tokenize the prompts, check them against the context, queue the choices. */
  private start(id: number, job: GenerateJob): void {
    const h = this.hosted(job.model);
    const V = h.model.config.vocabSize;
    const ctx = h.info.contextSize;
    const chat = job.prompts.some((p) => p.kind === 'chat');
    const promptIds = job.prompts.map((p, i) => {
      const where = job.prompts.length > 1 ? `${job.promptParam}[${i}]` : job.promptParam;
      let ids: number[];
      if (p.kind === 'ids') {
        ids = p.ids;
        const bad = ids.findIndex((t) => t >= V);
        if (bad >= 0) throw new ApiError(400, `token ${bad} of '${where}' is ${ids[bad]}, outside the vocabulary [0, ${V})`, 'invalid_request_error', job.promptParam, 'invalid_value');
      } else if (p.kind === 'text') {
        ids = encodeText(h, p.text, job.addSpecial, job.promptParam);
      } else {
        ids = this.chatIds(h, p.messages);
      }
      if (ids.length === 0) throw new ApiError(400, `'${where}' is empty and the tokenizer has no beginning-of-sequence token: give at least one token`, 'invalid_request_error', job.promptParam, 'invalid_value');
      if (ids.length > ctx) throw contextExceeded(ids.length, ctx, job.promptParam);
      return ids;
    });
    const stops = chat ? [...h.template.stop, ...job.stop] : job.stop;
    const stopTokens = chat ? h.chatStops : h.textStops;
    const stopSet = new Set(stopTokens);
    const s = job.sampling;
    const entry: Job = { id, hosted: h, job, choices: [], live: 0, promptIds, promptScores: promptIds.map(() => undefined) };
    promptIds.forEach((_, p) => {
      for (let j = 0; j < job.n; j++) {
        entry.choices.push({
          job: entry, index: p * job.n + j, prompt: p, seq: null, done: false,
          stream: new TextStream(h.tokenizer, stops, stopSet),
          opts: {
            maxTokens: job.maxTokens, temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP,
            repetitionPenalty: s.repetitionPenalty, presencePenalty: s.presencePenalty, frequencyPenalty: s.frequencyPenalty,
            penaltyLastN: s.penaltyLastN, seed: s.seed + j, stopTokens, reusePrefix: this.config.promptCache,
            topLogprobs: job.logprobs ?? 0, policyLogprobs: false,
          },
        });
      }
    });
    entry.live = entry.choices.length;
    this.jobs.set(id, entry);
    this.post({ type: 'accepted', id, promptTokens: promptIds.map((ids) => ids.length) });
    h.pending.push(...entry.choices);
  }

  private chatIds(h: Hosted, messages: JobMessage[]): number[] {
    try {
      return encodeChat(h.tokenizer, h.template, messages);
    } catch (err) {
      if (err instanceof LlmError) throw new ApiError(400, `'messages': ${err.message}`, 'invalid_request_error', 'messages', 'invalid_value');
      throw err;
    }
  }

  private cancel(id: number): void {
    const job = this.jobs.get(id);
    if (!job) return;
    const h = job.hosted;
    for (const c of job.choices) {
      if (c.seq && c.seq.finishReason === null) h.decoder.remove(c.seq);
      if (c.seq) this.bySequence.delete(c.seq);
      c.done = true;
    }
    h.pending = h.pending.filter((c) => c.job !== job);
    this.outbox = this.outbox.filter((e) => e.id !== id);
    this.jobs.delete(id);
    this.post({ type: 'end', id });
  }

  /** Move queued choices into free slots (prefill), and finish the ones that generate nothing. */
  private admit(h: Hosted): void {
    while (h.pending.length > 0) {
      const c = h.pending[0];
      if (c.opts.maxTokens > 0 && h.decoder.free === 0) break;
      h.pending.shift();
      const job = c.job;
      try {
        if (job.job.echo) this.echo(c);
        if (c.opts.maxTokens === 0) {
          this.event(c, '', [], 'length');
          continue;
        }
        c.seq = h.decoder.add(job.promptIds[c.prompt], c.opts);
        this.bySequence.set(c.seq, c);
      } catch (err) {
        this.failJob(job, err);
      }
    }
  }

  /** The echo event: the prompt's text, and its tokens with their log-probabilities when asked. */
  private echo(c: Choice): void {
    const job = c.job;
    const h = job.hosted;
    const ids = job.promptIds[c.prompt];
    const p = job.job.prompts[c.prompt];
    const text = p.kind === 'text' ? p.text : h.tokenizer.decode(ids);
    let tokens: TokenLogprob[] = [];
    if (job.job.logprobs !== null) {
      job.promptScores[c.prompt] ??= promptLogprobs(h.model, ids, job.job.logprobs);
      const scores = job.promptScores[c.prompt]!;
      tokens = ids.map((id, t) => this.tokenLogprob(h, id, scores[t]?.logprob ?? null, scores[t]?.top ?? []));
    }
    this.outbox.push({ id: job.id, index: c.index, text: '', tokens: [], echo: { text, tokens }, finish: null });
  }

  /** One batched decode step of a model; each token becomes an event of its choice. */
  private step(h: Hosted): void {
    let events;
    try {
      events = h.decoder.step();
    } catch (err) {
      // the model failed (e.g. its file was truncated under the mapping): every job on it ends
      const failure = new ApiError(500, `the model failed: ${(err as Error)?.message ?? String(err)}`, 'server_error');
      for (const job of [...this.jobs.values()]) if (job.hosted === h) this.failJob(job, failure);
      h.decoder = new BatchDecoder(h.model, { slots: this.config.slots, maxT: h.info.contextSize });
      return;
    }
    for (const e of events) {
      const c = this.bySequence.get(e.sequence);
      if (!c || c.done) continue;
      const token = c.job.job.logprobs !== null ? [this.generatedLogprob(h, e.token)] : [this.bareToken(e.token)];
      const pushed = c.stream.push(e.token.id);
      let text = pushed.text;
      let finish: ChoiceFinish | null = null;
      if (pushed.stopped) {
        finish = 'stop';
        if (e.sequence.finishReason === null) h.decoder.remove(e.sequence);
      } else if (e.finishReason !== null) {
        const rest = c.stream.flush();
        text += rest.text;
        finish = rest.stopped || e.finishReason === 'eos' ? 'stop' : 'length';
      }
      this.event(c, text, token, finish, e.sequence.tokens.length === 1 ? e.sequence.reusedTokens : undefined);
    }
  }

  private event(c: Choice, text: string, tokens: TokenLogprob[], finish: ChoiceFinish | null, cached?: number): void {
    this.outbox.push({ id: c.job.id, index: c.index, text, tokens, finish, ...(cached !== undefined ? { cached } : {}) });
    if (finish === null) return;
    c.done = true;
    if (c.seq) this.bySequence.delete(c.seq);
    const job = c.job;
    if (--job.live === 0) {
      this.jobs.delete(job.id);
      this.flush();
      this.post({ type: 'end', id: job.id });
    }
  }

  private failJob(job: Job, err: unknown): void {
    if (!this.jobs.has(job.id)) return;
    this.cancelQuietly(job);
    this.flush();
    this.post({ type: 'failed', id: job.id, error: asApiError(err).toJSON() });
    this.post({ type: 'end', id: job.id });
  }

  private cancelQuietly(job: Job): void {
    const h = job.hosted;
    for (const c of job.choices) {
      if (c.seq && c.seq.finishReason === null) {
        try {
          h.decoder.remove(c.seq);
        } catch { /* a decoder replaced after a failure no longer knows it */ }
      }
      if (c.seq) this.bySequence.delete(c.seq);
      c.done = true;
    }
    h.pending = h.pending.filter((c) => c.job !== job);
    this.jobs.delete(job.id);
  }

  private flush(): void {
    if (this.outbox.length === 0) return;
    this.post({ type: 'events', events: this.outbox });
    this.outbox = [];
  }

  private piece(h: Hosted, id: number): { token: string; bytes: number[] } {
    let p = h.pieces.get(id);
    if (!p) {
      const bytes = h.tokenizer.tokenBytes(id);
      p = { token: utf8.decode(bytes), bytes: Array.from(bytes) };
      h.pieces.set(id, p);
    }
    return p;
  }

  private bareToken(t: BatchToken): TokenLogprob {
    return { id: t.id, token: '', bytes: [], logprob: t.logprob, top: [] };
  }

  private generatedLogprob(h: Hosted, t: BatchToken): TokenLogprob {
    return this.tokenLogprob(h, t.id, t.logprob, t.top ?? []);
  }

  private tokenLogprob(h: Hosted, id: number, logprob: number | null, top: readonly { id: number; logprob: number }[]): TokenLogprob {
    const p = this.piece(h, id);
    return { id, token: p.token, bytes: p.bytes, logprob, top: top.map((a) => ({ id: a.id, ...this.piece(h, a.id), logprob: a.logprob })) };
  }

  private tokenize(model: string, text: string | undefined, messages: JobMessage[] | undefined, addSpecial: boolean, withPieces: boolean): TokenizeResult {
    const h = this.hosted(model);
    const tokens = messages !== undefined ? this.chatIds(h, messages) : encodeText(h, text ?? '', addSpecial, 'prompt');
    const result: TokenizeResult = { tokens, contextSize: h.info.contextSize };
    if (withPieces) result.pieces = tokens.map((id) => this.piece(h, id).token);
    return result;
  }

  private detokenize(model: string, tokens: number[]): string {
    const h = this.hosted(model);
    const V = h.model.config.vocabSize;
    const bad = tokens.findIndex((t) => t >= V);
    if (bad >= 0) throw new ApiError(400, `token ${bad} of 'tokens' is ${tokens[bad]}, outside the vocabulary [0, ${V})`, 'invalid_request_error', 'tokens', 'invalid_value');
    return h.tokenizer.decode(tokens);
  }
}

/** Text to ids as llmts run encodes a prompt; text the tokenizer cannot encode is a 400 on the field. */
function encodeText(h: Hosted, text: string, addBos: boolean, param: string): number[] {
  try {
    return h.tokenizer.encode(text, { addBos });
  } catch (err) {
    if (err instanceof LlmError) throw new ApiError(400, `'${param}': ${err.message}`, 'invalid_request_error', param, 'invalid_value');
    throw err;
  }
}

function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof LlmError) return new ApiError(400, err.message, 'invalid_request_error');
  return new ApiError(500, `internal error: ${(err as Error)?.message ?? String(err)}`, 'server_error');
}
