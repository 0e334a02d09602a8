/**
 * Errors of the HTTP API in OpenAI's shape, with the status that goes with them.
 *
 *   throw badField('temperature', 'must be a number from 0 to 2, got "hot"');
 *   // 400 {"error":{"message":"'temperature' must be a number from 0 to 2, got \"hot\"","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}
 *
 * Types follow OpenAI and llama.cpp's server: invalid_request_error (400, also a prompt longer
 * than the context, code context_length_exceeded, with n_prompt_tokens and n_ctx as llama.cpp
 * adds them), authentication_error (401), not_found_error (404), rate_limit_error (429),
 * unavailable_error (503 while loading), server_error (500).
 */

export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'unavailable_error'
  | 'server_error';

/** The JSON body of an error response. */
export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null; [extra: string]: unknown };
}

/** Longest error message (a value quoted from a hostile body must not make a huge answer). */
const MAX_MESSAGE = 1000;

export class ApiError extends Error {
  override name = 'ApiError';

  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** further fields of the error object (n_prompt_tokens, n_ctx) */
    readonly extra: Readonly<Record<string, unknown>> = {},
  ) {
    super(message.length <= MAX_MESSAGE ? message : `${message.slice(0, MAX_MESSAGE - 100)} [...] ${message.slice(-80)}`);
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code, ...this.extra } };
  }

  /** A plain object that crosses a worker boundary (structured clone keeps no class). */
  toJSON(): SerializedApiError {
    return { status: this.status, message: this.message, type: this.type, param: this.param, code: this.code, extra: { ...this.extra } };
  }

  static from(s: SerializedApiError): ApiError {
    return new ApiError(s.status, s.message, s.type, s.param, s.code, s.extra);
  }
}

export interface SerializedApiError {
  status: number;
  message: string;
  type: ApiErrorType;
  param: string | null;
  code: string | null;
  extra: Record<string, unknown>;
}

/** 400 for a request field of the wrong type or out of range. */
export function badField(param: string, what: string): ApiError {
  return new ApiError(400, `'${param}' ${what}`, 'invalid_request_error', param, 'invalid_value');
}

/** 400 for a prompt that does not fit the model's context (vLLM's and OpenAI's wording, llama.cpp's extra fields). */
export function contextExceeded(promptTokens: number, contextTokens: number, param: string): ApiError {
  return new ApiError(
    400,
    `This model's maximum context length is ${contextTokens} tokens. However, your request has ${promptTokens} input tokens. `
      + 'Please reduce the length of the input prompt.',
    'invalid_request_error', param, 'context_length_exceeded', { n_prompt_tokens: promptTokens, n_ctx: contextTokens },
  );
}

/**
 * A short rendering of a value for error messages: JSON-like, at most 60 characters, walking at
 * most a few levels (a hostile body nested 100,000 deep must not overflow the stack, nor a 1 MB
 * string be copied).
 */
export function shown(v: unknown): string {
  const s = render(v, 3);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function render(v: unknown, depth: number): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? v.slice(0, 64) : v) + (v.length > 64 ? '...' : '');
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) {
    if (depth === 0) return '[...]';
    const items = v.slice(0, 8).map((x) => render(x, depth - 1));
    return `[${items.join(',')}${v.length > 8 ? ',...' : ''}]`;
  }
  if (typeof v === 'object') {
    if (depth === 0) return '{...}';
    const keys = Object.keys(v as object);
    const items = keys.slice(0, 8).map((k) => `${JSON.stringify(k.slice(0, 32))}:${render((v as Record<string, unknown>)[k], depth - 1)}`);
    return `{${items.join(',')}${keys.length > 8 ? ',...' : ''}}`;
  }
  return typeof v;
}
