/**
 * llmts serve as a user starts it: a child process on a free port (--port 0), its JSON log lines
 * collected; and tiny random models with a tokenizer that encodes any printable ASCII text (so
 * chat templates' words encode too).
 *
 *   const ckpt = tinyServeModel(dir, 'm', { blockSize: 64 });
 *   const s = await startServe([ckpt, '--slots', '2']);
 *   await s.ready();
 *   const r = await s.post('/v1/completions', { prompt: 'hi', max_tokens: 5 });   // { status, headers, json, text }
 *   s.logs;             // parsed log lines so far
 *   await s.stop();     // SIGTERM, waits for the exit (also done after the test file)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after } from 'node:test';
import { CLI } from './cli.js';
import { scaledModel, tinyLlama } from './tiny-model.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import type { Transformer } from '../../src/model/transformer.js';

/** Servers still running: killed when the test file ends (after() here, at the top level: inside a before() hook it would run when the hook ends). */
const live = new Set<ChildProcess>();
after(async () => {
  const waits = [...live].map((p) => new Promise((resolve) => {
    p.once('exit', resolve);
    p.kill('SIGKILL');
  }));
  await Promise.all(waits);
});
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** Printable ASCII and newline: the char tokenizer of the test models (96 tokens). */
export const SERVE_TOKENIZER = CharTokenizer.fromText(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('') + '\n');

export interface TinyServeModelOptions {
  blockSize?: number;
  nEmbd?: number;
  nLayer?: number;
  hiddenDim?: number;
  seed?: number;
}

/** Write a random Llama checkpoint with SERVE_TOKENIZER to dir/name.safetensors; returns its path and model. */
export function tinyServeModel(dir: string, name: string, o: TinyServeModelOptions = {}): { path: string; model: Transformer } {
  const nEmbd = o.nEmbd ?? 32;
  const cfg = tinyLlama({
    vocabSize: SERVE_TOKENIZER.vocabSize, blockSize: o.blockSize ?? 64, nLayer: o.nLayer ?? 2, nHead: 4, nKvHead: 2, nEmbd, hiddenDim: o.hiddenDim ?? 2 * nEmbd,
  });
  const model = scaledModel(cfg, { seed: o.seed ?? 4, gain: 4 });
  const path = join(dir, `${name}.safetensors`);
  saveCheckpoint(path, { config: cfg, params: model.params, tokenizer: SERVE_TOKENIZER.toJSON(), trainer: {} });
  return { path, model };
}

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  /** the body parsed as JSON, or undefined */
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface Served {
  url: string;
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  stderr: () => string;
  /** resolves at the "ready" log line (rejects if the process exits first) */
  ready(): Promise<void>;
  get(path: string, headers?: Record<string, string>): Promise<HttpResult>;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<HttpResult>;
  /** POST a raw body (bytes or text) as is */
  postRaw(path: string, body: string | Uint8Array, headers?: Record<string, string>): Promise<HttpResult>;
  stop(): Promise<number | null>;
  /** resolves with the exit code when the process ends by itself */
  exited: Promise<number | null>;
}

/** Start `llmts serve ARGS --port 0` and resolve once it listens. */
export async function startServe(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const proc = spawn(process.execPath, [CLI, 'serve', ...args, '--port', '0'], {
    env: { ...process.env, LLMTS_BACKEND: process.env.LLMTS_BACKEND ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let err = '';
  let buffered = '';
  const waiters: { event: string; resolve: (line: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  let exited: number | null | undefined;
  const exitPromise = new Promise<number | null>((resolve) => proc.on('exit', (code) => {
    exited = code;
    for (const w of waiters.splice(0)) w.reject(new Error(`llmts serve exited (${code}) before "${w.event}": ${err}`));
    resolve(code);
  }));
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  proc.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        parsed = { unparsed: line };
      }
      logs.push(parsed);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (parsed.event === waiters[i].event) waiters.splice(i, 1)[0].resolve(parsed);
      }
    }
  });
  const waitFor = (event: string): Promise<Record<string, unknown>> => {
    const seen = logs.find((l) => l.event === event);
    if (seen) return Promise.resolve(seen);
    if (exited !== undefined) return Promise.reject(new Error(`llmts serve exited (${exited}): ${err}`));
    return new Promise((resolve, reject) => waiters.push({ event, resolve, reject }));
  };
  const stop = async (): Promise<number | null> => {
    if (exited === undefined) proc.kill('SIGTERM');
    return exitPromise;
  };
  live.add(proc);
  void exitPromise.then(() => live.delete(proc));
  const listening = await waitFor('listening').catch(async (e: Error) => {
    await exitPromise;
    throw e;
  });
  const url = String(listening.url);
  const request = async (method: string, path: string, body: string | Uint8Array | undefined, headers: Record<string, string> = {}): Promise<HttpResult> => {
    const r = await fetch(url + path, { method, body: body as BodyInit | undefined, headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers });
    const text = await r.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, headers: r.headers, text, json };
  };
  return {
    url, proc, logs, stderr: () => err,
    ready: async () => { await waitFor('ready'); },
    get: (path, headers) => request('GET', path, undefined, headers),
    post: (path, body, headers) => request('POST', path, JSON.stringify(body), headers),
    postRaw: (path, body, headers) => request('POST', path, body, headers),
    stop,
    exited: exitPromise,
  };
}

/** The data: payloads of a server-sent event stream, in order ('[DONE]' included as a string). */
export function sseEvents(text: string): unknown[] {
  const out: unknown[] = [];
  for (const block of text.split('\n\n')) {
    if (block.trim() === '') continue;
    const lines = block.split('\n');
    for (const l of lines) {
      if (!l.startsWith('data: ')) throw new Error(`not an SSE data line: ${JSON.stringify(l)}`);
      const payload = l.slice(6);
      out.push(payload === '[DONE]' ? payload : JSON.parse(payload));
    }
  }
  return out;
}
