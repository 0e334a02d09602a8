/**
 * POST /v1/chat/completions and /v1/completions: a validated request becomes a job in the worker;
 * its events become one JSON response, or server-sent events in OpenAI's chunk shape ending
 * with `data: [DONE]`.
 *
 *   const outcome = await runCompletion(ctx, request, reply, 'chat', parsed);
 *
 * Limits: a request of k sequences (prompts x n) is refused with 429 (Retry-After) when the
 * model's slots plus its queue cannot take them now; a request still running after the timeout
 * is cancelled (408, or an error event when streaming). A client that disconnects cancels its
 * job, which frees its slots at the worker's next step.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, shown } from './api-error.js';
import type { ModelHost } from './model-host.js';
import type { ServerMetrics } from './metrics.js';
import type { ChoiceEvent, ChoiceFinish, TokenLogprob } from './protocol.js';
import type { ParsedRequest } from './requests.js';

export interface CompletionContext {
  host: ModelHost;
  metrics: ServerMetrics;
  /** sequences decoded together per model, and the most that may wait for them */
  slots: number;
  maxQueue: number;
  timeoutMs: number;
  /** sequences in the worker per model (decoding or queued) */
  inFlight: Map<string, number>;
}

/** What the request log line reports. */
export interface CompletionOutcome {
  status: number;
  promptTokens: number;
  completionTokens: number;
  /** prompt tokens reused from a slot's cache (first sample of each prompt) */
  cachedTokens: number;
  ttftMs: number | null;
  finish: (ChoiceFinish | null)[];
  error?: string;
  /** with --log-prompts: the generated texts */
  texts: string[];
  aborted: boolean;
}

interface ChoiceState {
  text: string;
  echo: string;
  tokens: TokenLogprob[];
  finish: ChoiceFinish | null;
  /** streaming: the role chunk was sent */
  started: boolean;
  offset: number;
}

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomId(prefix: string): string {
  const b = randomBytes(24);
  let s = prefix;
  for (const x of b) s += ALPHANUM[x % ALPHANUM.length];
  return s;
}

export async function runCompletion(
  ctx: CompletionContext, request: FastifyRequest, reply: FastifyReply, kind: 'chat' | 'text', parsed: ParsedRequest & { logprobs?: boolean },
): Promise<CompletionOutcome> {
  const { host, metrics } = ctx;
  const { job } = parsed;
  const t0 = performance.now();
  if (!host.models.some((m) => m.name === job.model)) {
    throw new ApiError(404, `The model ${shown(job.model)} does not exist (models: ${host.models.map((m) => m.name).join(', ')})`, 'not_found_error', 'model', 'model_not_found');
  }
  const sequences = job.prompts.length * job.n;
  const capacity = ctx.slots + ctx.maxQueue;
  if (sequences > capacity) {
    throw new ApiError(400, `the request asks for ${sequences} completions (prompts x n) but this server holds at most ${capacity} at once (--slots ${ctx.slots} + --max-queue ${ctx.maxQueue})`, 'invalid_request_error', 'n', 'too_many_completions');
  }
  const busy = ctx.inFlight.get(job.model) ?? 0;
  if (busy + sequences > capacity) {
    reply.header('retry-after', '1');
    throw new ApiError(429, `the server is full (${busy} sequences decoding or queued for ${job.model}, at most ${capacity}); retry later`, 'rate_limit_error', null, 'queue_full');
  }
  ctx.inFlight.set(job.model, busy + sequences);

  const created = Math.floor(Date.now() / 1000);
  const id = randomId(kind === 'chat' ? 'chatcmpl-' : 'cmpl-');
  const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
  const choices: ChoiceState[] = Array.from({ length: sequences }, () => ({ text: '', echo: '', tokens: [], finish: null, started: false, offset: 0 }));
  const wantLogprobs = job.logprobs !== null;
  const outcome: CompletionOutcome = { status: 200, promptTokens: 0, completionTokens: 0, cachedTokens: 0, ttftMs: null, finish: [], texts: [], aborted: false };
  let streaming = false;
  let timedOut = false;
  let jobId = 0;
  let ended = false;
  const raw = reply.raw;

  const send = (chunk: unknown): void => {
    if (!raw.destroyed) raw.write(`data: ${JSON.stringify(chunk)}\n\n`);
  };
  const usage = (): Record<string, unknown> => ({
    prompt_tokens: outcome.promptTokens, completion_tokens: outcome.completionTokens, total_tokens: outcome.promptTokens + outcome.completionTokens,
    prompt_tokens_details: { cached_tokens: outcome.cachedTokens },
  });
  const chatLogprobs = (tokens: TokenLogprob[]): unknown => ({
    content: tokens.map((t) => ({
      token: t.token, logprob: t.logprob, bytes: t.bytes,
      top_logprobs: t.top.map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes })),
    })),
  });
  const textLogprobs = (tokens: TokenLogprob[], c: ChoiceState): unknown => {
    const offsets: number[] = [];
    for (const t of tokens) {
      offsets.push(c.offset);
      c.offset += t.token.length;
    }
    return {
      tokens: tokens.map((t) => t.token),
      token_logprobs: tokens.map((t) => t.logprob),
      top_logprobs: tokens.map((t) => (t.logprob === null ? null : topDict(t))),
      text_offset: offsets,
    };
  };
  const chunk = (index: number, body: Record<string, unknown>, finish: ChoiceFinish | null): unknown => ({
    id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: job.model,
    choices: [{ index, ...body, finish_reason: finish }],
    ...(parsed.includeUsage ? { usage: null } : {}),
  });

  const onEvent = (e: ChoiceEvent): void => {
    const c = choices[e.index];
    const generated = e.tokens.length;
    if (generated > 0) {
      if (outcome.ttftMs === null) {
        outcome.ttftMs = performance.now() - t0;
        metrics.firstToken(outcome.ttftMs / 1000);
      }
      outcome.completionTokens += generated;
      metrics.generated(generated);
    }
    if (e.cached !== undefined && e.index % job.n === 0) outcome.cachedTokens += e.cached;
    if (e.echo) c.echo = e.echo.text;
    c.text += e.text;
    if (e.finish) c.finish = e.finish;
    const tokens = wantLogprobs ? [...(e.echo?.tokens ?? []), ...e.tokens] : [];
    if (!streaming) {
      if (wantLogprobs) c.tokens.push(...tokens);
      return;
    }
    if (kind === 'chat') {
      if (!c.started) {
        c.started = true;
        send(chunk(e.index, { delta: { role: 'assistant', content: '' }, logprobs: null }, null));
      }
      if (e.text !== '' || tokens.length > 0) send(chunk(e.index, { delta: { content: e.text }, logprobs: wantLogprobs ? chatLogprobs(tokens) : null }, null));
      if (e.finish) send(chunk(e.index, { delta: {}, logprobs: null }, e.finish));
    } else {
      const text = (e.echo?.text ?? '') + e.text;
      if (text !== '' || tokens.length > 0 || e.finish) send(chunk(e.index, { text, logprobs: wantLogprobs ? textLogprobs(tokens, c) : null }, e.finish));
    }
  };

  const done = new Promise<void>((resolve, reject) => {
    let accepted = false;
    jobId = host.submit(job, {
      accepted: (promptTokens) => {
        accepted = true;
        outcome.promptTokens = promptTokens.reduce((a, b) => a + b, 0);
        metrics.prompt(outcome.promptTokens);
        if (parsed.stream && !raw.destroyed) {
          streaming = true;
          reply.hijack();
          raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
        }
      },
      event: onEvent,
      failed: (err) => {
        if (!accepted || !streaming) {
          reject(err);
          return;
        }
        outcome.error = err.message;
        send(err.body());
      },
      end: () => {
        ended = true;
        resolve();
      },
    });
  });
  const timer = setTimeout(() => {
    timedOut = true;
    host.cancel(jobId);
  }, ctx.timeoutMs);
  const onClose = (): void => {
    if (!ended && !raw.writableEnded) {
      outcome.aborted = true;
      host.cancel(jobId);
    }
  };
  raw.on('close', onClose);
  try {
    await done;
  } finally {
    clearTimeout(timer);
    ctx.inFlight.set(job.model, (ctx.inFlight.get(job.model) ?? sequences) - sequences);
  }
  outcome.finish = choices.map((c) => c.finish);
  outcome.texts = choices.map((c) => c.text);
  const timeout = new ApiError(408, `the request ran past the server's timeout of ${ctx.timeoutMs / 1000} s and was stopped`, 'timeout_error', null, 'request_timeout');
  if (streaming) {
    if (timedOut && !outcome.aborted) {
      outcome.error = timeout.message;
      send(timeout.body());
    } else if (parsed.includeUsage && !outcome.aborted) {
      send({ id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model: job.model, choices: [], usage: usage() });
    }
    if (!raw.destroyed) raw.end('data: [DONE]\n\n');
    metrics.finished((performance.now() - t0) / 1000);
    return outcome;
  }
  if (timedOut && !outcome.aborted) throw timeout;
  metrics.finished((performance.now() - t0) / 1000);
  const body = {
    id, object, created, model: job.model,
    choices: choices.map((c, index) => (kind === 'chat'
      ? { index, message: { role: 'assistant', content: c.text }, logprobs: wantLogprobs ? chatLogprobs(c.tokens) : null, finish_reason: c.finish }
      : { index, text: c.echo + c.text, logprobs: wantLogprobs ? textLogprobs(c.tokens, { ...c, offset: 0 }) : null, finish_reason: c.finish })),
    usage: usage(),
  };
  reply.send(body);
  return outcome;
}

/** One position's alternatives as the legacy completions API gives them: token text -> log-probability (the chosen token always in). */
function topDict(t: TokenLogprob): Record<string, number> {
  const d = Object.create(null) as Record<string, number>; // token texts as keys: '__proto__' is one like any other
  for (const a of t.top) if (!Object.hasOwn(d, a.token)) d[a.token] = a.logprob;
  if (t.logprob !== null && !Object.hasOwn(d, t.token)) d[t.token] = t.logprob;
  return d;
}
