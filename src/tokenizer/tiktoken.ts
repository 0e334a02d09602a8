/**
 * OpenAI tiktoken vocabularies: rank files (one line per token: base64 of its bytes, a space,
 * its rank = id) plus the split pattern and special tokens of each named encoding.
 *
 *   const tok = await loadTiktoken('cl100k_base');
 *   // first call downloads https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken
 *   // to ~/.cache/llmts/tokenizers/cl100k_base.tiktoken ($LLMTS_CACHE replaces ~/.cache/llmts)
 *   tok.encode('hello world');                       // [15339, 1917]
 *   await loadTiktoken('path/to/o200k_base.tiktoken'); // a local file; the name says which encoding
 *   saveTiktoken('out/my.tiktoken', tok);             // the rank file again, byte for byte
 *
 * Names: r50k_base (GPT-2, GPT-3; 'gpt2' is accepted for it), p50k_base (Codex), cl100k_base
 * (GPT-3.5/4), o200k_base (GPT-4o). A rank file with another name needs `{ encoding }` or
 * `{ pattern, specialTokens }`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { resolveDataset } from '../data/fetch.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import { BpeTokenizer } from './bpe.js';
import type { SplitPattern } from './pretokenize.js';

export type TiktokenName = 'r50k_base' | 'p50k_base' | 'cl100k_base' | 'o200k_base';

export interface TiktokenEncoding {
  name: TiktokenName;
  pattern: SplitPattern;
  specialTokens: Readonly<Record<string, number>>;
  url: string;
  /** sha256 of the rank file (as tiktoken checks it) */
  sha256: string;
}

const BASE_URL = 'https://openaipublic.blob.core.windows.net/encodings/';

/** The encodings tiktoken defines, with its special-token ids. */
export const TIKTOKEN_ENCODINGS: Readonly<Record<TiktokenName, TiktokenEncoding>> = {
  r50k_base: {
    name: 'r50k_base',
    pattern: 'gpt2',
    specialTokens: { '<|endoftext|>': 50256 },
    url: `${BASE_URL}r50k_base.tiktoken`,
    sha256: '306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930',
  },
  p50k_base: {
    name: 'p50k_base',
    pattern: 'gpt2',
    specialTokens: { '<|endoftext|>': 50256 },
    url: `${BASE_URL}p50k_base.tiktoken`,
    sha256: '94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069',
  },
  cl100k_base: {
    name: 'cl100k_base',
    pattern: 'cl100k',
    specialTokens: {
      '<|endoftext|>': 100257,
      '<|fim_prefix|>': 100258,
      '<|fim_middle|>': 100259,
      '<|fim_suffix|>': 100260,
      '<|endofprompt|>': 100276,
    },
    url: `${BASE_URL}cl100k_base.tiktoken`,
    sha256: '223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7',
  },
  o200k_base: {
    name: 'o200k_base',
    pattern: 'o200k',
    specialTokens: { '<|endoftext|>': 199999, '<|endofprompt|>': 200018 },
    url: `${BASE_URL}o200k_base.tiktoken`,
    sha256: '446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d',
  },
};

const ALIASES: Readonly<Record<string, TiktokenName>> = { gpt2: 'r50k_base' };

/** The known encoding called `name` ('gpt2' = r50k_base), or undefined. */
export function tiktokenEncoding(name: string): TiktokenEncoding | undefined {
  const key = Object.hasOwn(ALIASES, name) ? ALIASES[name] : name;
  return Object.hasOwn(TIKTOKEN_ENCODINGS, key) ? TIKTOKEN_ENCODINGS[key as TiktokenName] : undefined;
}

export interface TiktokenOptions {
  /** which known encoding a rank file holds (default: from the file name, e.g. cl100k_base.tiktoken) */
  encoding?: string;
  /** split pattern for a rank file of no known encoding */
  pattern?: SplitPattern | string;
  /** special tokens for a rank file of no known encoding (default none) */
  specialTokens?: Readonly<Record<string, number>>;
  /** where downloaded rank files are kept (default $LLMTS_CACHE/tokenizers or ~/.cache/llmts/tokenizers) */
  cacheDir?: string;
}

/** Directory of cached rank files. */
export function tiktokenCacheDir(opts: Pick<TiktokenOptions, 'cacheDir'> = {}): string {
  if (opts.cacheDir) return opts.cacheDir;
  return join(process.env.LLMTS_CACHE || join(homedir(), '.cache', 'llmts'), 'tokenizers');
}

/**
 * A tiktoken tokenizer from a known name (cached, else downloaded) or a path to a rank file.
 *
 *   await loadTiktoken('o200k_base');
 *   await loadTiktoken('./cl100k_base.tiktoken');
 *   await loadTiktoken('./mine.tiktoken', { pattern: 'gpt2', specialTokens: { '<|endoftext|>': 4095 } });
 */
export async function loadTiktoken(nameOrPath: string, opts: TiktokenOptions = {}): Promise<BpeTokenizer> {
  const known = tiktokenEncoding(nameOrPath);
  if (known && !isFile(nameOrPath)) {
    const path = join(tiktokenCacheDir(opts), `${known.name}.tiktoken`);
    if (!isFile(path)) await downloadRanks(known, path, opts);
    return readTiktoken(path, { ...opts, encoding: known.name });
  }
  if (!isFile(nameOrPath)) {
    throw new LlmError(
      `tiktoken vocabulary not found: ${nameOrPath} (give a .tiktoken rank file or one of: ${[...Object.keys(TIKTOKEN_ENCODINGS), ...Object.keys(ALIASES)].join(', ')})`,
    );
  }
  return readTiktoken(nameOrPath, opts);
}

/** A tokenizer from a local rank file (synchronous); see TiktokenOptions for pattern and specials. */
export function readTiktoken(path: string, opts: TiktokenOptions = {}): BpeTokenizer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new LlmError(`cannot read tiktoken rank file ${path}: ${(err as Error).message}`);
  }
  const name = opts.encoding ?? basename(path).replace(/\.tiktoken$/, '');
  const known = tiktokenEncoding(name);
  if (opts.encoding !== undefined && !known) {
    throw new LlmError(`unknown tiktoken encoding "${opts.encoding}" (known: ${Object.keys(TIKTOKEN_ENCODINGS).join(', ')}); or pass { pattern, specialTokens } instead`);
  }
  const tokens = parseTiktokenRanks(data, path);
  if (opts.pattern === undefined && !known) {
    throw new LlmError(
      `${path}: cannot tell which split pattern this rank file uses; name it after its encoding (e.g. cl100k_base.tiktoken) or pass { encoding } or { pattern, specialTokens }`,
    );
  }
  return tiktokenFromRanks(tokens, {
    name: known?.name ?? basename(path).replace(/\.tiktoken$/, ''),
    pattern: opts.pattern ?? known!.pattern,
    specialTokens: opts.specialTokens ?? known?.specialTokens ?? {},
  });
}

/** A tokenizer from tokens by rank (as parseTiktokenRanks returns) and their pattern and specials. */
export function tiktokenFromRanks(
  tokens: ReadonlyArray<Uint8Array | undefined>,
  spec: { pattern: SplitPattern | string; specialTokens?: Readonly<Record<string, number>>; name?: string },
): BpeTokenizer {
  return new BpeTokenizer({ tokens, pattern: spec.pattern, specialTokens: spec.specialTokens ?? {}, name: spec.name });
}

/** Tokens by rank from the text of a rank file (lines "base64 rank"); `source` names it in errors. */
export function parseTiktokenRanks(data: Uint8Array | string, source = 'tiktoken rank file'): Uint8Array[] {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  // every token's bytes go into one buffer (base64 is 4 characters per 3 bytes)
  const store = new Uint8Array(Math.ceil(bytes.length * 0.75) + 4);
  let top = 0;
  const tokens: Uint8Array[] = [];
  let line = 0;
  const n = bytes.length;
  for (let p = 0; p < n; ) {
    line++;
    let e = p;
    while (e < n && bytes[e] !== 10) e++;
    const next = e + 1;
    if (e > p && bytes[e - 1] === 13) e--;
    if (e > p) {
      // base64 token
      const start = top;
      let acc = 0;
      let bits = 0;
      let i = p;
      for (; i < e; i++) {
        const c = bytes[i];
        if (c === 32 || c === 61) break; // ' ' or '='
        const v = c < 128 ? B64[c] : -1;
        if (v < 0) throw new LlmError(`${source}: line ${line} is not "<base64 token> <rank>"; is this a .tiktoken rank file?`);
        acc = ((acc << 6) | v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
          bits -= 8;
          store[top++] = (acc >> bits) & 0xff;
        }
      }
      while (i < e && bytes[i] === 61) i++;
      if (i >= e || bytes[i] !== 32 || top === start) {
        throw new LlmError(`${source}: line ${line} is not "<base64 token> <rank>"; is this a .tiktoken rank file?`);
      }
      // rank
      let rank = 0;
      let digits = 0;
      for (i++; i < e; i++) {
        const d = bytes[i] - 48;
        if (d < 0 || d > 9 || rank > 0x7fffffe) break;
        rank = rank * 10 + d;
        digits++;
      }
      if (digits === 0 || i !== e) throw new LlmError(`${source}: line ${line} has no valid rank after the token; ranks must be non-negative integers`);
      if (tokens[rank] !== undefined) throw new LlmError(`${source}: rank ${rank} appears twice (line ${line}); each rank must be unique`);
      tokens[rank] = store.subarray(start, top);
    }
    p = next;
  }
  if (tokens.length === 0) throw new LlmError(`${source}: no tokens; is this a .tiktoken rank file?`);
  return tokens;
}

const B64 = new Int8Array(128).fill(-1);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((c, i) => (B64[c.charCodeAt(0)] = i));

/** The rank file text of a tiktoken-style tokenizer: "base64 rank\n" for each ordinary token, by rank. */
export function tiktokenRanksText(tok: BpeTokenizer): string {
  if (tok.mergeList() !== null) {
    throw new LlmError('this BPE tokenizer ranks pairs by a merge list, which a .tiktoken rank file cannot express; save its tokens and merges another way (e.g. tokenizer.json)');
  }
  const parts: string[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    if (!tok.isOrdinary(id)) continue;
    const b = tok.tokenBytes(id);
    parts.push(`${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')} ${id}\n`);
  }
  return parts.join('');
}

/** Write the tokenizer's rank file (tiktoken format) to `path`, atomically. */
export function saveTiktoken(path: string, tok: BpeTokenizer): void {
  writeFileAtomic(path, tiktokenRanksText(tok));
}

async function downloadRanks(enc: TiktokenEncoding, dest: string, opts: TiktokenOptions): Promise<void> {
  const dir = tiktokenCacheDir(opts);
  const staging = join(dir, '.download');
  const hint = `check your network, or download ${enc.url} yourself and pass its path (or put it at ${dest})`;
  let got: string;
  try {
    got = await resolveDataset(enc.url, { cacheDir: staging });
  } catch (err) {
    const msg = (err as Error).message.replace(/\s*\(check the URL[^)]*\)\s*$/, '');
    throw new LlmError(`cannot get the ${enc.name} tokenizer: ${msg} (${hint})`, { cause: err });
  }
  const sha = createHash('sha256').update(readFileSync(got)).digest('hex');
  if (sha !== enc.sha256) {
    rmSync(got, { force: true });
    throw new LlmError(`downloaded ${enc.url} has sha256 ${sha}, expected ${enc.sha256}; the file is corrupt or was changed (${hint})`);
  }
  mkdirSync(dir, { recursive: true });
  renameSync(got, dest);
  rmSync(staging, { recursive: true, force: true });
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
