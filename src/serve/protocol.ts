/**
 * The messages between the HTTP thread and the model worker (structured-clone plain objects).
 *
 *   HTTP thread                                  worker (owns the models and the native pool)
 *   { type: 'generate', id, job }          ->    tokenizes, checks the context, queues job.n x prompts sequences
 *                                          <-    { type: 'accepted', id, promptTokens }  or  { type: 'failed', id, error }
 *                                          <-    { type: 'events', events: [{ id, index, text, tokens, finish }] }   (one message per decode step)
 *   { type: 'cancel', id }                 ->    drops its queued sequences, frees its slots
 *                                          <-    { type: 'end', id }   (always last: the job holds nothing in the worker any more)
 *   { type: 'tokenize' | 'detokenize', ... } ->  <- { type: 'reply', id, result } or { type: 'failed', id, error }
 */
import type { SerializedApiError } from './api-error.js';

/** A model to serve: its name in requests, its files. */
export interface ModelSpec {
  name: string;
  path: string;
  adapter?: string;
  tokenizer?: string;
}

/** What the worker is started with (workerData). */
export interface WorkerConfig {
  models: ModelSpec[];
  /** sequences decoded together per model */
  slots: number;
  /** context per sequence (at most each model's); undefined: the model's */
  ctxSize?: number;
  /** a named chat template for every model; undefined: each model's own choice (as llmts chat) */
  template?: string;
  /** reuse a free slot's prompt prefix (BatchDecoder reusePrefix) */
  promptCache: boolean;
  /** milliseconds to wait before loading (tests of the 503 while loading) */
  loadDelayMs: number;
}

/** What /v1/models reports of a loaded model. */
export interface ModelInfo {
  name: string;
  path: string;
  format: string;
  family: string;
  /** context per sequence */
  contextSize: number;
  /** the model's own context */
  trainContext: number;
  vocabSize: number;
  embedding: number;
  layers: number;
  parameters: number;
  template: string;
  templateReason: string;
}

/** A chat message as the worker takes it (validated and flattened by the HTTP thread). */
export interface JobMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export type JobPrompt = { kind: 'text'; text: string } | { kind: 'ids'; ids: number[] } | { kind: 'chat'; messages: JobMessage[] };

export interface JobSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  penaltyLastN: number;
  seed: number;
}

/** One request: n samples of each prompt. */
export interface GenerateJob {
  model: string;
  prompts: JobPrompt[];
  n: number;
  sampling: JobSampling;
  maxTokens: number;
  stop: string[];
  /** log-probabilities of the tokens and this many alternatives each; null: none */
  logprobs: number | null;
  /** the prompt's text (and with logprobs its tokens' log-probabilities) before the completion */
  echo: boolean;
  /** text prompts: prepend the tokenizer's BOS (as llmts run does) */
  addSpecial: boolean;
  /** the field a too-long prompt is blamed on ('prompt' or 'messages') */
  promptParam: string;
}

/** A token with its log-probability and its most likely alternatives. */
export interface TokenLogprob {
  id: number;
  /** the token's own text (its bytes decoded alone; part of a character shows as U+FFFD) */
  token: string;
  bytes: number[];
  /** null for the first prompt token (nothing predicts it) */
  logprob: number | null;
  top: { id: number; token: string; bytes: number[]; logprob: number }[];
}

export type ChoiceFinish = 'stop' | 'length';

/** Progress of one choice: text completed since the last event, tokens, and the end. */
export interface ChoiceEvent {
  /** the job */
  id: number;
  /** choice index: prompt p, sample j -> p * n + j */
  index: number;
  text: string;
  /** generated tokens of this step (logprob fields filled only when the job asked for logprobs) */
  tokens: TokenLogprob[];
  /** with echo, in the choice's first event: the prompt's text and tokens */
  echo?: { text: string; tokens: TokenLogprob[] };
  /** in the choice's first generated token's event: prompt tokens taken from a slot's cache instead of recomputed */
  cached?: number;
  finish: ChoiceFinish | null;
}

export type ToWorker =
  | { type: 'generate'; id: number; job: GenerateJob }
  | { type: 'cancel'; id: number }
  | { type: 'tokenize'; id: number; model: string; text?: string; messages?: JobMessage[]; addSpecial: boolean; withPieces: boolean }
  | { type: 'detokenize'; id: number; model: string; tokens: number[] };

export type FromWorker =
  | { type: 'ready'; models: ModelInfo[]; backend: string }
  | { type: 'load-failed'; message: string }
  | { type: 'accepted'; id: number; promptTokens: number[] }
  | { type: 'failed'; id: number; error: SerializedApiError }
  | { type: 'events'; events: ChoiceEvent[] }
  | { type: 'end'; id: number }
  | { type: 'reply'; id: number; result: unknown };

export interface TokenizeResult {
  tokens: number[];
  pieces?: string[];
  contextSize: number;
}
