/**
 * llmts serve's HTTP side (Fastify): OpenAI-compatible endpoints in front of the model worker.
 *
 *   const server = await startServer({ host: '127.0.0.1', port: 8080, slots: 4, ..., worker: { models, ... } });
 *   server.url;            // 'http://127.0.0.1:8080'
 *   await server.loaded;   // the models are in (requests get 503 until then)
 *   await server.close();
 *
 * Endpoints: POST /v1/chat/completions, POST /v1/completions (completions.ts), GET /v1/models,
 * GET /v1/models/:model, POST /tokenize, POST /detokenize, GET /health, GET /metrics.
 * Bodies are JSON of any content type (curl -d works), valid UTF-8, at most --max-body bytes.
 * Every error is OpenAI's {"error": {message, type, param, code}}; with --api-key every endpoint
 * but /health wants `Authorization: Bearer KEY` (compared in constant time). One JSON line per
 * request goes to the log (no prompt or output text unless logPrompts).
 *
 * Later pieces (the web UI, the arena, the runs dashboard) register their routes through
 * ServeOptions.plugins.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ApiError, shown } from './api-error.js';
import { runCompletion, type CompletionContext, type CompletionOutcome } from './completions.js';
import { ServerMetrics } from './metrics.js';
import { ModelHost } from './model-host.js';
import type { JobPrompt, TokenizeResult, WorkerConfig } from './protocol.js';
import { parseChatRequest, parseCompletionRequest, parseDetokenizeRequest, parseTokenizeRequest, type ParsedRequest, type RequestLimits } from './requests.js';

export interface ServeOptions {
  host: string;
  /** 0: any free port */
  port: number;
  apiKey?: string;
  slots: number;
  maxQueue: number;
  /** the most tokens one request may generate */
  maxTokens: number;
  timeoutS: number;
  /** largest request body in bytes */
  maxBody: number;
  logPrompts: boolean;
  worker: WorkerConfig;
  /** one structured log line (default: JSON on stdout) */
  log?: (line: Record<string, unknown>) => void;
  /** the worker died after loading (default: log and exit 1) */
  onCrash?: (message: string) => void;
  /** more routes (web UI, arena, runs): called before the server listens */
  plugins?: ((app: FastifyInstance, server: RunningServer) => void | Promise<void>)[];
}

export interface RunningServer {
  url: string;
  host: ModelHost;
  metrics: ServerMetrics;
  /** resolves when the models are loaded; rejects with the load error */
  loaded: Promise<void>;
  close(): Promise<void>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A JSON line on stdout. */
export function logLine(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...line }) + '\n');
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const log = opts.log ?? logLine;
  const metrics = new ServerMetrics();
  const host = new ModelHost(opts.worker, {
    onCrash: opts.onCrash ?? ((message) => {
      log({ level: 'error', event: 'worker-crashed', message });
      process.exit(1);
    }),
  });
  const app = Fastify({ logger: false, bodyLimit: opts.maxBody, requestTimeout: 60_000, forceCloseConnections: true, return503OnClosing: true });
  const completionContext: CompletionContext = {
    host, metrics, slots: opts.slots, maxQueue: opts.maxQueue, timeoutMs: opts.timeoutS * 1000, inFlight: new Map(),
  };
  const limits = (): RequestLimits => ({ defaultModel: host.models[0]?.name ?? opts.worker.models[0].name, maxTokens: opts.maxTokens });
  const keyDigest = opts.apiKey !== undefined ? sha256(opts.apiKey) : null;
  /** requests whose log line the route writes itself (generation: it knows tokens and timings) */
  const selfLogged = new WeakSet<FastifyRequest>();
  const started = new WeakMap<FastifyRequest, number>();

  // any content type is JSON (curl -d sends form-urlencoded); bytes must be UTF-8
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body: Buffer, done) => {
    if (body.length === 0) {
      done(null, undefined);
      return;
    }
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      done(new ApiError(400, 'the request body is not valid UTF-8', 'invalid_request_error', null, 'invalid_body'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      const why = err instanceof RangeError ? 'it is nested too deeply' : (err as Error).message;
      done(new ApiError(400, `the request body is not valid JSON: ${why}`, 'invalid_request_error', null, 'invalid_json'), undefined);
    }
  });

  app.addHook('onRequest', async (request) => {
    started.set(request, performance.now());
    if (keyDigest === null || request.url === '/health') return;
    const auth = request.headers.authorization;
    const given = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    if (!timingSafeEqual(sha256(given), keyDigest)) {
      throw new ApiError(401, 'Incorrect or missing API key: send the header Authorization: Bearer KEY', 'authentication_error', null, 'invalid_api_key');
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    if (selfLogged.has(request)) return;
    const endpoint = request.routeOptions.url ?? 'unmatched';
    metrics.request(endpoint, reply.statusCode);
    log({ level: 'info', event: 'request', method: request.method, path: request.url.slice(0, 200), status: reply.statusCode, ms: round(performance.now() - (started.get(request) ?? 0)), client: request.ip });
  });

  app.setErrorHandler((err: unknown, _request, reply) => {
    const e = toApiError(err);
    reply.status(e.status).type('application/json; charset=utf-8').send(e.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new ApiError(404, `no route ${request.method} ${request.url.slice(0, 100)}`, 'not_found_error', null, 'not_found');
    reply.status(404).send(e.body());
  });

  const ready = (): void => {
    if (host.state === 'loading') throw new ApiError(503, 'Loading model', 'unavailable_error', null, 'loading');
    if (host.state === 'failed') throw new ApiError(503, 'the model worker is not running', 'unavailable_error', null, 'unavailable');
  };

  app.get('/health', async (_request, reply) => {
    if (host.state === 'ready') return { status: 'ok' };
    const e = host.state === 'loading' ? new ApiError(503, 'Loading model', 'unavailable_error', null, 'loading') : new ApiError(503, 'the model worker is not running', 'unavailable_error', null, 'unavailable');
    return reply.status(503).send(e.body());
  });

  app.get('/metrics', async (_request, reply) => {
    let running = 0;
    let queued = 0;
    for (const n of completionContext.inFlight.values()) {
      running += n;
      queued += Math.max(0, n - opts.slots);
    }
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return metrics.text({ running, queued, ready: host.state === 'ready' });
  });

  const modelEntry = (m: (typeof host.models)[number]): Record<string, unknown> => ({
    id: m.name, object: 'model', created: startedAt, owned_by: 'llmts',
    meta: { path: m.path, format: m.format, family: m.family, n_ctx: m.contextSize, n_ctx_train: m.trainContext, n_vocab: m.vocabSize, n_embd: m.embedding, n_layer: m.layers, n_params: m.parameters, chat_template: m.template },
  });
  const startedAt = Math.floor(Date.now() / 1000);
  app.get('/v1/models', async () => {
    ready();
    return { object: 'list', data: host.models.map(modelEntry) };
  });
  app.get<{ Params: { model: string } }>('/v1/models/:model', async (request) => {
    ready();
    const m = host.models.find((x) => x.name === request.params.model);
    if (!m) throw new ApiError(404, `The model ${shown(request.params.model)} does not exist`, 'not_found_error', 'model', 'model_not_found');
    return modelEntry(m);
  });

  const generation = (kind: 'chat' | 'text') => async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    selfLogged.add(request);
    const t0 = started.get(request) ?? performance.now();
    let parsed: (ParsedRequest & { logprobs?: boolean }) | null = null;
    let outcome: CompletionOutcome | null = null;
    let status = 200;
    let error: string | undefined;
    try {
      ready();
      parsed = kind === 'chat' ? parseChatRequest(request.body, limits()) : parseCompletionRequest(request.body, limits());
      outcome = await runCompletion(completionContext, request, reply, kind, parsed);
      status = outcome.status;
      error = outcome.error;
      return reply;
    } catch (err) {
      const e = toApiError(err);
      status = e.status;
      error = e.message;
      throw e;
    } finally {
      const endpoint = kind === 'chat' ? '/v1/chat/completions' : '/v1/completions';
      metrics.request(endpoint, status);
      const line: Record<string, unknown> = {
        level: status >= 500 ? 'error' : 'info', event: 'request', method: request.method, path: endpoint, status,
        ms: round(performance.now() - t0), client: request.ip,
      };
      if (parsed) {
        Object.assign(line, { model: parsed.job.model, stream: parsed.stream, n: parsed.job.n, prompts: parsed.job.prompts.length, max_tokens: parsed.job.maxTokens, seed: parsed.job.sampling.seed });
      }
      if (outcome) {
        Object.assign(line, { prompt_tokens: outcome.promptTokens, cached_tokens: outcome.cachedTokens, completion_tokens: outcome.completionTokens, ttft_ms: outcome.ttftMs === null ? null : round(outcome.ttftMs), finish: outcome.finish });
        if (outcome.aborted) line.aborted = true;
      }
      if (error !== undefined) line.error = error;
      if (opts.logPrompts && parsed) {
        line.prompt = parsed.job.prompts.map(promptForLog);
        if (outcome) line.output = outcome.texts;
      }
      log(line);
    }
  };
  app.post('/v1/chat/completions', generation('chat'));
  app.post('/v1/completions', generation('text'));

  app.post('/tokenize', async (request) => {
    ready();
    const r = parseTokenizeRequest(request.body, limits());
    requireModel(r.model);
    const result = await host.request({ type: 'tokenize', model: r.model, text: r.text, messages: r.messages, addSpecial: r.addSpecial, withPieces: r.withPieces }) as TokenizeResult;
    // vLLM's fields (count, max_model_len) and llama.cpp's (pieces with with_pieces)
    return { tokens: result.tokens, count: result.tokens.length, max_model_len: result.contextSize, ...(result.pieces ? { pieces: result.pieces } : {}) };
  });
  app.post('/detokenize', async (request) => {
    ready();
    const r = parseDetokenizeRequest(request.body, limits());
    requireModel(r.model);
    const result = await host.request({ type: 'detokenize', model: r.model, tokens: r.tokens }) as { prompt: string };
    return { prompt: result.prompt, content: result.prompt }; // vLLM's name, llama.cpp's name
  });

  const requireModel = (name: string): void => {
    if (!host.models.some((m) => m.name === name)) throw new ApiError(404, `The model ${shown(name)} does not exist`, 'not_found_error', 'model', 'model_not_found');
  };

  const running: RunningServer = {
    url: '',
    host,
    metrics,
    loaded: host.loaded,
    close: async () => {
      await app.close();
      await host.close();
    },
  };
  for (const plugin of opts.plugins ?? []) await plugin(app, running);
  try {
    await app.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    await host.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  running.url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  return running;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function promptForLog(p: JobPrompt): unknown {
  return p.kind === 'text' ? p.text : p.kind === 'ids' ? p.ids : p.messages;
}

/** Anything thrown in a route, as an API error: ours as they are, Fastify's with their status (413 body too large, ...), the rest 500. */
function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as { statusCode?: number; message?: string; code?: string };
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    const message = e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'the request body is larger than this server takes (llmts serve --max-body)' : String(e.message ?? 'bad request');
    return new ApiError(status, message, 'invalid_request_error', null, typeof e.code === 'string' ? e.code.toLowerCase() : null);
  }
  return new ApiError(500, `internal error: ${String(e?.message ?? err)}`, 'server_error');
}
