/**
 * Request bodies of the OpenAI endpoints, checked field by field (type and range) and turned into
 * a GenerateJob for the worker; every mistake is a 400 naming the field.
 *
 *   const r = parseChatRequest(body, limits);    // { job, stream, includeUsage, logprobs }
 *   parseCompletionRequest({ prompt: [[1, 2, 3]], max_tokens: 0, echo: true, logprobs: 1 }, limits);
 *
 * Sampling fields and their defaults are those of llmts run (llama.cpp's): temperature 0.8,
 * top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1; OpenAI's presence_penalty and
 * frequency_penalty (0); seed (random when absent); stop (a string or up to 16); n (1 to 16).
 * Unknown fields are ignored, as OpenAI-compatible servers do (clients send extras).
 */
import { ApiError, badField, shown } from './api-error.js';
import type { GenerateJob, JobMessage, JobPrompt, JobSampling } from './protocol.js';

export interface RequestLimits {
  /** the model a request without 'model' gets */
  defaultModel: string;
  /** largest max_tokens a request may ask for (and chat's default) */
  maxTokens: number;
}

export interface ParsedRequest {
  job: GenerateJob;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage */
  includeUsage: boolean;
  /** the model name as the request gave it (or the default) */
  model: string;
}

const MAX_STOPS = 16;
const MAX_STOP_CHARS = 1000;
const MAX_N = 16;
const MAX_PROMPTS = 256;
const MAX_TOP_LOGPROBS = 20;
const MAX_MESSAGES = 4096;

type Json = Record<string, unknown>;

/** The body as an object of fields (arrays, strings, numbers at the top are refused). */
export function bodyObject(body: unknown): Json {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(400, `the request body must be a JSON object, got ${body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body}`, 'invalid_request_error', null, 'invalid_body');
  }
  return body as Json;
}

/** A field, with null meaning absent (OpenAI clients send null for unset fields). */
function field(o: Json, name: string): unknown {
  const v = Object.hasOwn(o, name) ? o[name] : undefined;
  return v === null ? undefined : v;
}

interface NumberRule {
  min?: number;
  max?: number;
  /** strictly above */
  above?: number;
  integer?: boolean;
}

function numberField(o: Json, name: string, rule: NumberRule, fallback: number): number;
function numberField(o: Json, name: string, rule: NumberRule): number | undefined;
function numberField(o: Json, name: string, rule: NumberRule, fallback?: number): number | undefined {
  const v = field(o, name);
  if (v === undefined) return fallback;
  const range = [
    rule.above !== undefined ? `> ${rule.above}` : rule.min !== undefined ? `>= ${rule.min}` : '',
    rule.max !== undefined ? `<= ${rule.max}` : '',
  ].filter(Boolean).join(' and ');
  const kind = rule.integer ? 'an integer' : 'a number';
  const want = `must be ${kind}${range ? ` ${range}` : ''}`;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badField(name, `${want}, got ${shown(v)}`);
  if (rule.integer && !Number.isSafeInteger(v)) throw badField(name, `${want}, got ${shown(v)}`);
  if ((rule.min !== undefined && v < rule.min) || (rule.max !== undefined && v > rule.max) || (rule.above !== undefined && v <= rule.above)) {
    throw badField(name, `${want}, got ${shown(v)}`);
  }
  return v;
}

function boolField(o: Json, name: string, fallback: boolean): boolean {
  const v = field(o, name);
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw badField(name, `must be true or false, got ${shown(v)}`);
  return v;
}

function stringField(o: Json, name: string): string | undefined {
  const v = field(o, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badField(name, `must be a string, got ${shown(v)}`);
  return v;
}

function modelField(o: Json, limits: RequestLimits): string {
  return stringField(o, 'model') ?? limits.defaultModel;
}

function stopField(o: Json): string[] {
  const v = field(o, 'stop');
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > MAX_STOPS || list.some((s) => typeof s !== 'string' || s.length > MAX_STOP_CHARS)) {
    throw badField('stop', `must be a string or an array of at most ${MAX_STOPS} strings of at most ${MAX_STOP_CHARS} characters, got ${shown(v)}`);
  }
  return list as string[];
}

/** llmts run's sampling settings from the request (llama.cpp's names where OpenAI has none). */
function samplingFields(o: Json): JobSampling {
  const repeat = numberField(o, 'repeat_penalty', { above: 0, max: 10 });
  const repetition = numberField(o, 'repetition_penalty', { above: 0, max: 10 });
  if (repeat !== undefined && repetition !== undefined && repeat !== repetition) {
    throw badField('repetition_penalty', `and 'repeat_penalty' are the same setting; give one (got ${repetition} and ${repeat})`);
  }
  const topK = numberField(o, 'top_k', { integer: true, min: -1 }, 40);
  return {
    temperature: numberField(o, 'temperature', { min: 0, max: 2 }, 0.8),
    topK: topK < 0 ? 0 : topK,
    topP: numberField(o, 'top_p', { min: 0, max: 1 }, 0.95),
    minP: numberField(o, 'min_p', { min: 0, max: 1 }, 0.05),
    repetitionPenalty: repeat ?? repetition ?? 1,
    presencePenalty: numberField(o, 'presence_penalty', { min: -2, max: 2 }, 0),
    frequencyPenalty: numberField(o, 'frequency_penalty', { min: -2, max: 2 }, 0),
    penaltyLastN: 64,
    seed: numberField(o, 'seed', { integer: true }) ?? Math.floor(Math.random() * 2 ** 32),
  };
}

function maxTokensField(o: Json, names: string[], min: number, fallback: number, limits: RequestLimits): number {
  let value: number | undefined;
  for (const name of names) {
    const v = numberField(o, name, { integer: true, min });
    if (v === undefined) continue;
    if (v > limits.maxTokens) throw badField(name, `is ${v}, but this server generates at most ${limits.maxTokens} tokens per request (llmts serve --max-tokens)`);
    value ??= v;
  }
  return value ?? Math.min(fallback, limits.maxTokens);
}

function streamFields(o: Json): { stream: boolean; includeUsage: boolean } {
  const stream = boolField(o, 'stream', false);
  const opts = field(o, 'stream_options');
  let includeUsage = false;
  if (opts !== undefined) {
    if (typeof opts !== 'object' || Array.isArray(opts)) throw badField('stream_options', `must be an object, got ${shown(opts)}`);
    includeUsage = boolField(opts as Json, 'include_usage', false);
  }
  return { stream, includeUsage };
}

/** Fields the server cannot honour yet: refused unless empty, so a client never gets silently different output. */
function unsupportedFields(o: Json): void {
  const bias = field(o, 'logit_bias');
  if (bias !== undefined && (typeof bias !== 'object' || Array.isArray(bias) || Object.keys(bias as object).length > 0)) {
    throw new ApiError(400, "'logit_bias' is not supported by this server yet", 'invalid_request_error', 'logit_bias', 'unsupported_field');
  }
  const format = field(o, 'response_format');
  if (format !== undefined) {
    const type = typeof format === 'object' && !Array.isArray(format) ? (format as Json).type : undefined;
    if (type !== 'text') throw new ApiError(400, `'response_format' ${shown(format)} is not supported; only {"type": "text"}`, 'invalid_request_error', 'response_format', 'unsupported_field');
  }
  // tools are accepted (their shape checked) and not used yet: the tools issue passes them to the template
  const tools = field(o, 'tools');
  if (tools !== undefined && (!Array.isArray(tools) || tools.some((t) => typeof t !== 'object' || t === null || Array.isArray(t)))) {
    throw badField('tools', `must be an array of objects, got ${shown(tools)}`);
  }
  const choice = field(o, 'tool_choice');
  if (choice !== undefined && typeof choice !== 'string' && (typeof choice !== 'object' || Array.isArray(choice))) {
    throw badField('tool_choice', `must be a string or an object, got ${shown(choice)}`);
  }
}

/** POST /v1/chat/completions */
export function parseChatRequest(body: unknown, limits: RequestLimits): ParsedRequest & { logprobs: boolean } {
  const o = bodyObject(body);
  const model = modelField(o, limits);
  const messages = messagesField(o);
  const logprobs = boolField(o, 'logprobs', false);
  const top = numberField(o, 'top_logprobs', { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
  if (top !== undefined && !logprobs) throw badField('top_logprobs', "needs 'logprobs': true");
  unsupportedFields(o);
  stringField(o, 'user');
  const { stream, includeUsage } = streamFields(o);
  const job: GenerateJob = {
    model, prompts: [{ kind: 'chat', messages }],
    n: numberField(o, 'n', { integer: true, min: 1, max: MAX_N }, 1),
    sampling: samplingFields(o),
    maxTokens: maxTokensField(o, ['max_completion_tokens', 'max_tokens'], 1, limits.maxTokens, limits),
    stop: stopField(o),
    logprobs: logprobs ? top ?? 0 : null,
    echo: false, addSpecial: true, promptParam: 'messages',
  };
  return { job, stream, includeUsage, model, logprobs };
}

function messagesField(o: Json): JobMessage[] {
  const v = field(o, 'messages');
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_MESSAGES) {
    throw badField('messages', `must be a non-empty array of at most ${MAX_MESSAGES} messages, got ${shown(v)}`);
  }
  return v.map((m: unknown, i): JobMessage => {
    const where = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw badField(where, `must be an object with role and content, got ${shown(m)}`);
    const msg = m as Json;
    const role = msg.role;
    if (role === 'tool' || role === 'function') {
      throw new ApiError(400, `'${where}': ${role} messages are not supported by this server yet`, 'invalid_request_error', `${where}.role`, 'unsupported_field');
    }
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      throw badField(`${where}.role`, `must be one of system, developer, user, assistant, got ${shown(role)}`);
    }
    const name = field(msg, 'name');
    if (name !== undefined && typeof name !== 'string') throw badField(`${where}.name`, `must be a string, got ${shown(name)}`);
    return { role: role === 'developer' ? 'system' : role, content: contentText(msg, where, role === 'assistant') };
  });
}

/** A message's content: a string, or an array of text parts (joined). */
function contentText(msg: Json, where: string, assistant: boolean): string {
  const c = field(msg, 'content');
  if (typeof c === 'string') return c;
  if (c === undefined && assistant) return '';
  if (Array.isArray(c)) {
    return c.map((part: unknown, j) => {
      const p = part as Json;
      if (typeof part !== 'object' || part === null || Array.isArray(part) || p.type !== 'text' || typeof p.text !== 'string') {
        const what = typeof part === 'object' && part !== null && typeof p.type === 'string' && p.type !== 'text'
          ? `content parts of type ${shown(p.type)} are not supported (text only)` : `must be {"type": "text", "text": "..."}, got ${shown(part)}`;
        throw badField(`${where}.content[${j}]`, what);
      }
      return p.text as string;
    }).join('');
  }
  throw badField(`${where}.content`, `must be a string or an array of text parts, got ${shown(c)}`);
}

/** POST /v1/completions */
export function parseCompletionRequest(body: unknown, limits: RequestLimits): ParsedRequest {
  const o = bodyObject(body);
  const model = modelField(o, limits);
  const prompts = promptField(o);
  const n = numberField(o, 'n', { integer: true, min: 1, max: MAX_N }, 1);
  const bestOf = numberField(o, 'best_of', { integer: true, min: 1 });
  if (bestOf !== undefined && bestOf !== n) throw new ApiError(400, `'best_of' other than n is not supported (got best_of ${bestOf}, n ${n})`, 'invalid_request_error', 'best_of', 'unsupported_field');
  const suffix = stringField(o, 'suffix');
  if (suffix !== undefined && suffix !== '') throw new ApiError(400, "'suffix' is not supported by this server", 'invalid_request_error', 'suffix', 'unsupported_field');
  const logprobs = numberField(o, 'logprobs', { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
  unsupportedFields(o);
  stringField(o, 'user');
  const { stream, includeUsage } = streamFields(o);
  const job: GenerateJob = {
    model, prompts, n,
    sampling: samplingFields(o),
    maxTokens: maxTokensField(o, ['max_tokens'], 0, 16, limits),
    stop: stopField(o),
    logprobs: logprobs ?? null,
    echo: boolField(o, 'echo', false),
    addSpecial: boolField(o, 'add_special', true),
    promptParam: 'prompt',
  };
  if (prompts.length * n > MAX_PROMPTS) throw badField('prompt', `gives ${prompts.length} prompts x n ${n} = ${prompts.length * n} completions; at most ${MAX_PROMPTS} per request`);
  return { job, stream, includeUsage, model };
}

const isTokenId = (t: unknown): t is number => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0;

/** A string, an array of strings, an array of token ids, or an array of arrays of token ids. */
function promptField(o: Json): JobPrompt[] {
  const v = field(o, 'prompt');
  const wrong = (): ApiError => badField('prompt', `must be a string, an array of strings, an array of token ids or an array of arrays of token ids (at most ${MAX_PROMPTS} prompts), got ${shown(v)}`);
  if (typeof v === 'string') return [{ kind: 'text', text: v }];
  if (!Array.isArray(v) || v.length === 0) throw wrong();
  if (v.every((x) => typeof x === 'string')) {
    if (v.length > MAX_PROMPTS) throw wrong();
    return v.map((text: string) => ({ kind: 'text', text }));
  }
  if (v.every(isTokenId)) return [{ kind: 'ids', ids: v as number[] }];
  if (v.every((x) => Array.isArray(x))) {
    if (v.length > MAX_PROMPTS) throw wrong();
    return v.map((ids: unknown[], i) => {
      if (ids.length === 0 || !ids.every(isTokenId)) throw badField(`prompt[${i}]`, `must be a non-empty array of token ids (integers >= 0), got ${shown(ids)}`);
      return { kind: 'ids', ids: ids as number[] };
    });
  }
  throw wrong();
}

/** POST /tokenize: vLLM's {prompt | messages, add_special_tokens} or llama.cpp's {content, add_special, with_pieces}. */
export function parseTokenizeRequest(body: unknown, limits: RequestLimits): { model: string; text?: string; messages?: JobMessage[]; addSpecial: boolean; withPieces: boolean } {
  const o = bodyObject(body);
  const model = modelField(o, limits);
  const withPieces = boolField(o, 'with_pieces', false);
  const addSpecial = boolField(o, 'add_special_tokens', boolField(o, 'add_special', true));
  if (field(o, 'messages') !== undefined) return { model, messages: messagesField(o), addSpecial, withPieces };
  const text = stringField(o, 'prompt') ?? stringField(o, 'content');
  if (text === undefined) throw badField('prompt', "is missing: give the text as 'prompt' (or 'content'), or 'messages'");
  return { model, text, addSpecial, withPieces };
}

/** POST /detokenize: {tokens: [ids]} */
export function parseDetokenizeRequest(body: unknown, limits: RequestLimits): { model: string; tokens: number[] } {
  const o = bodyObject(body);
  const model = modelField(o, limits);
  const tokens = field(o, 'tokens');
  if (!Array.isArray(tokens) || !tokens.every(isTokenId)) throw badField('tokens', `must be an array of token ids (integers >= 0), got ${shown(tokens)}`);
  return { model, tokens };
}
