/**
 * llmts serve: an OpenAI-compatible HTTP server (src/serve/) for one or more models.
 *
 *   llmts serve out/shakespeare --port 8080
 *   llmts serve base.gguf --model tuned=out/sft --slots 8 --api-key secret
 */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { CHAT_TEMPLATE_NAMES } from '../chat/index.js';
import type { ModelSpec } from '../serve/protocol.js';
import { logLine, startServer } from '../serve/server.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { ADAPTER_FLAG, CTX_FLAG, THREADS_FLAG } from './shared-flags.js';

const SERVE_SPEC: CommandSpec = {
  name: 'serve',
  usage: 'MODEL [flags]',
  summary: `Serve models over HTTP with OpenAI's API: /v1/chat/completions, /v1/completions (streaming,
logprobs, echo, token-id prompts), /v1/models, /tokenize, /detokenize, /health, /metrics.
MODEL is any model llmts run takes; more models with --model NAME=PATH. Requests are decoded
together in --slots sequences per model (continuous batching) in a worker thread.`,
  flags: [
    { name: 'model', short: 'm', kind: 'strings', value: 'NAME=PATH', help: 'another model to serve, named NAME in requests (repeatable; PATH alone: named after its file)', group: 'Model' },
    { name: 'tokenizer', kind: 'string', value: 'SPEC', help: "use this tokenizer for MODEL instead of its own (as llmts run)", group: 'Model' },
    { ...ADAPTER_FLAG, help: 'a PEFT LoRA adapter directory applied to MODEL (as llmts run)' },
    CTX_FLAG,
    { name: 'template', kind: 'string', choices: CHAT_TEMPLATE_NAMES, defaultText: "each model's own, else chatml or qa (as llmts chat)", help: 'chat template of /v1/chat/completions', group: 'Model' },
    { name: 'host', kind: 'string', value: 'ADDR', default: '127.0.0.1', help: 'address to listen on (0.0.0.0: every interface)', group: 'Server' },
    { name: 'port', kind: 'integer', min: 0, max: 65535, default: 8080, help: 'port to listen on (0: any free port, printed at start)', group: 'Server' },
    { name: 'api-key', kind: 'string', value: 'KEY', defaultText: '$LLMTS_API_KEY, else none', help: 'require Authorization: Bearer KEY on every endpoint but /health', group: 'Server' },
    { name: 'slots', kind: 'integer', min: 1, max: 256, default: 4, help: 'sequences decoded together per model (continuous batching)', group: 'Server' },
    { name: 'max-queue', kind: 'integer', min: 0, max: 100_000, default: 64, help: 'sequences that may wait for a slot; more get 429 with Retry-After', group: 'Server' },
    { name: 'max-tokens', short: 'n', kind: 'integer', min: 1, default: 2048, help: "the most tokens one request may generate (and chat's default)", group: 'Server' },
    { name: 'timeout', kind: 'number', above: 0, value: 'S', default: 600, help: 'seconds a request may run before it is stopped (408)', group: 'Server' },
    { name: 'max-body', kind: 'integer', min: 1024, value: 'BYTES', default: 1_048_576, help: 'largest request body (413 above)', group: 'Server' },
    { name: 'no-prompt-cache', kind: 'boolean', help: "prefill every prompt in full (default: a free slot's common prefix with the prompt is reused)", group: 'Server' },
    { name: 'log-prompts', kind: 'boolean', help: 'put prompts and outputs in the request log (default: counts and timings only)', group: 'Server' },
    THREADS_FLAG,
  ],
  notes: `Logs are JSON lines on stdout: one at start ("listening"), one when the models are loaded
("ready"; requests get 503 until then), one per request. Ctrl-C stops the server.

  llmts serve out/shakespeare-char --port 8080
  llmts serve base.gguf --model tuned=out/sft/merged --slots 8 --api-key secret
The README's Serving section has examples with curl and the openai client.`,
};

/** A model's name from its path: the file or directory name without a model extension. */
export function modelNameOf(path: string): string {
  const base = basename(path.replace(/[\\/]+$/, ''));
  return base.replace(/\.(gguf|bin|safetensors)$/i, '') || 'model';
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

function modelSpecs(f: Flags): ModelSpec[] {
  const specs: ModelSpec[] = [];
  const [first, ...extra] = f.positionals;
  if (extra.length > 0) throw new LlmError(`unexpected argument '${extra[0]}': serve more models with --model NAME=PATH`);
  if (first !== undefined) specs.push({ name: modelNameOf(first), path: first });
  for (const v of f.strings('model')) {
    const eq = v.indexOf('=');
    const name = eq > 0 ? v.slice(0, eq) : modelNameOf(v);
    const path = eq > 0 ? v.slice(eq + 1) : v;
    if (!NAME.test(name)) throw new LlmError(`${f.typed('model')} ${v}: the name '${name}' must be letters, digits and . _ : / - (at most 128)`);
    if (path === '') throw new LlmError(`${f.typed('model')} ${v}: give a path after '='`);
    specs.push({ name, path });
  }
  if (specs.length === 0) throw new LlmError('give the model: llmts serve MODEL (or --model NAME=PATH)');
  for (const s of specs) if (!existsSync(s.path)) throw new LlmError(`model not found: ${s.path}`);
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new LlmError(`two models are named '${s.name}': name them with --model NAME=PATH`);
    seen.add(s.name);
  }
  const tokenizer = f.string('tokenizer');
  const adapter = f.string('adapter');
  if (tokenizer !== undefined) specs[0].tokenizer = tokenizer;
  if (adapter !== undefined) specs[0].adapter = adapter;
  return specs;
}

async function serveCommand(f: Flags): Promise<void> {
  const models = modelSpecs(f);
  const apiKey = f.string('api-key') ?? (process.env.LLMTS_API_KEY || undefined);
  const server = await startServer({
    host: f.string('host')!,
    port: f.number('port')!,
    apiKey,
    slots: f.number('slots')!,
    maxQueue: f.number('max-queue')!,
    maxTokens: f.number('max-tokens')!,
    timeoutS: f.number('timeout')!,
    maxBody: f.number('max-body')!,
    logPrompts: f.bool('log-prompts'),
    worker: {
      models,
      slots: f.number('slots')!,
      ctxSize: f.number('ctx-size'),
      template: f.string('template'),
      promptCache: !f.bool('no-prompt-cache'),
      loadDelayMs: Number(process.env.LLMTS_SERVE_LOAD_DELAY_MS ?? 0) || 0,
    },
  });
  logLine({ level: 'info', event: 'listening', url: server.url, models: models.map((m) => m.name), auth: apiKey !== undefined });
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  const loaded = server.loaded.then(() => null, (err: Error) => err);
  const first = await Promise.race([loaded, stopped]);
  if (first instanceof Error) {
    await server.close();
    throw new LlmError(`loading the models failed: ${first.message}`);
  }
  if (first === null) {
    logLine({ level: 'info', event: 'ready', backend: server.host.backend, models: server.host.models.map((m) => ({ name: m.name, path: m.path, context: m.contextSize, template: m.template })) });
  }
  const signal = typeof first === 'string' ? first : await stopped;
  logLine({ level: 'info', event: 'stopping', signal });
  await server.close();
}

export const SERVE: CommandModule = { spec: SERVE_SPEC, run: serveCommand };
