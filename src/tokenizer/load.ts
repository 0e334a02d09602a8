/**
 * One entry point for every tokenizer a user can name on the command line.
 *
 *   await loadTokenizer('out/tok');                          // a directory (see below)
 *   await loadTokenizer('out/tok/tokenizer.json');           // Hugging Face tokenizer.json
 *   await loadTokenizer('llama2/tokenizer.model');           // SentencePiece model
 *   await loadTokenizer('ggml-vocab-gpt-2.gguf');            // GGUF vocabulary
 *   await loadTokenizer('out/tok/tokenizer.tiktoken');       // tiktoken rank file
 *   await loadTokenizer('out/shakespeare/ckpt.safetensors'); // the tokenizer inside an llm.ts checkpoint
 *   await loadTokenizer('cl100k_base');                      // built-in: cl100k_base, o200k_base, r50k_base (= gpt2)
 *
 * Files are recognised by their content first (GGUF magic, safetensors header, JSON,
 * tiktoken lines, protobuf), so a renamed file still loads:
 *   - GGUF: tokenizer.ggml.model 'gpt2' -> byte-level BPE, 'llama' -> SentencePiece, or a char
 *     tokenizer when every piece is one character (gguf-char.ts: how llm.ts exports one);
 *   - tokenizer.json: BPE without merges over single characters with the Fuse decoder -> char
 *     tokenizer (hf-char.ts: how llm.ts exports one); model BPE with byte_fallback ->
 *     SentencePiece (Llama 1/2), other BPE (byte-level: GPT-2, Llama 3, ours) -> byte-level BPE;
 *   - SentencePiece `tokenizer.model` (protobuf);
 *   - `.tiktoken` rank files (`base64 rank` per line);
 *   - llm.ts checkpoints (`*.safetensors` whose metadata holds the tokenizer).
 * A directory is searched for tokenizer.json, tokenizer.model, tokenizer.tiktoken,
 * ckpt.safetensors in that order, then for a single *.gguf / *.tiktoken / *.safetensors file.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { readGguf } from '../formats/gguf.js';
import { loadCheckpointTokenizer } from '../formats/checkpoint.js';
import { LlmError } from '../util/errors.js';
import { preview, readRegularFileText, requireRegularFile } from '../util/regular-file.js';
import { BpeTokenizer } from './bpe.js';
import { bpeFromGguf } from './gguf-bpe.js';
import { charFromGguf } from './gguf-char.js';
import { charFromHfTokenizerJson } from './hf-char.js';
import { tokenTextToBytes } from './bytes-to-unicode.js';
import { sentencePieceFromGguf } from './gguf-sentencepiece.js';
import { sentencePieceFromHfTokenizerJson } from './hf-tokenizer-json.js';
import { SPLIT_PATTERNS } from './pretokenize.js';
import { readSentencePieceModel } from './sentencepiece-model.js';
import { loadTiktoken, readTiktoken, TIKTOKEN_ENCODINGS, tiktokenEncoding } from './tiktoken.js';
import { tokenizerFromJSON, type Tokenizer } from './tokenizer.js';

/** Names accepted without a file (OpenAI's encodings). */
export const BUILTIN_TOKENIZERS: readonly string[] = ['cl100k_base', 'o200k_base', 'r50k_base', 'gpt2'];

/** One line for usage texts. */
export const TOKENIZER_SPEC_HELP =
  'a tokenizer.json, tokenizer.model, .tiktoken, .gguf or llm.ts checkpoint file, a directory holding one, ' +
  `or a built-in name (${BUILTIN_TOKENIZERS.join(', ')})`;

type Format = 'gguf' | 'safetensors' | 'json' | 'tiktoken' | 'sentencepiece';

/** The tokenizer named by `spec`: a path (file or directory) or a built-in name. */
export async function loadTokenizer(spec: string): Promise<Tokenizer> {
  if (!existsSync(spec)) {
    if (BUILTIN_TOKENIZERS.includes(spec)) return loadBuiltin(spec);
    throw new LlmError(`unknown tokenizer '${spec}': no such file or directory, and not a built-in name (${BUILTIN_TOKENIZERS.join(', ')})`);
  }
  const path = statSync(spec).isDirectory() ? findInDirectory(spec) : spec;
  requireRegularFile(path, 'tokenizer file'); // a FIFO or device would block forever
  return loadFile(path, detectFormat(path));
}

/** Names of the tokenizer files a Hugging Face model directory may hold, in the order they are preferred. */
export const HF_TOKENIZER_FILES: readonly string[] = ['tokenizer.json', 'tokenizer.model', 'tokenizer.tiktoken'];

/**
 * The tokenizer file of a Hugging Face model directory, or null when it has none (then the
 * model carries no tokenizer; a file that is there but broken is an error when loaded).
 */
export function hfTokenizerFile(dir: string): string | null {
  for (const name of HF_TOKENIZER_FILES) if (existsSync(join(dir, name))) return join(dir, name);
  return null;
}

function findInDirectory(dir: string): string {
  for (const name of ['tokenizer.json', 'tokenizer.model', 'tokenizer.tiktoken', 'ckpt.safetensors']) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  const files = readdirSync(dir).filter((f) => ['.gguf', '.tiktoken', '.safetensors'].includes(extname(f)));
  if (files.length === 1) return join(dir, files[0]);
  const why = files.length > 1 ? `several candidates (${files.slice(0, 4).join(', ')}); name the file` : 'nothing there';
  throw new LlmError(`${dir}: no tokenizer found (looked for tokenizer.json, tokenizer.model, tokenizer.tiktoken, ckpt.safetensors, *.gguf; ${why})`);
}

/** Sniff the first bytes; the file name decides only when the content is ambiguous. */
function detectFormat(path: string): Format {
  const head = readHead(path, 64);
  const text = Buffer.from(head).toString('latin1');
  if (text.startsWith('GGUF')) return 'gguf';
  if (head.length >= 10) {
    const headerLen = Buffer.from(head).readBigUInt64LE(0);
    if (headerLen > 1n && headerLen < BigInt(statSync(path).size) && head[8] === 0x7b /* { */) return 'safetensors';
  }
  const trimmed = text.replace(/^\uFEFF?\s*/, '');
  if (trimmed.startsWith('{')) return 'json';
  if (/^[A-Za-z0-9+/]+=*\s+\d+\s*(\n|$)/.test(trimmed)) return 'tiktoken';
  if (head[0] === 0x0a /* protobuf field 1 (pieces), length-delimited */ || basename(path).endsWith('.model')) return 'sentencepiece';
  const ext = extname(path);
  if (ext === '.tiktoken') return 'tiktoken';
  throw new LlmError(`${path}: not a tokenizer file this build reads (${TOKENIZER_SPEC_HELP})`);
}

function readHead(path: string, n: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new LlmError(`cannot open tokenizer file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const buf = new Uint8Array(n);
    const got = readSync(fd, buf, 0, n, 0);
    if (got === 0) throw new LlmError(`tokenizer file ${path} is empty`);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

async function loadFile(path: string, format: Format): Promise<Tokenizer> {
  switch (format) {
    case 'gguf': {
      const g = readGguf(path);
      const model = g.metadata.get('tokenizer.ggml.model');
      if (model === 'llama') return charFromGguf(g) ?? sentencePieceFromGguf(g);
      if (model === 'gpt2') return bpeFromGguf(g);
      throw new LlmError(`${path}: GGUF tokenizer.ggml.model is ${preview(model ?? null)}; supported: 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)`);
    }
    case 'safetensors': {
      return tokenizerFromJSON(loadCheckpointTokenizer(path)); // the header only, not the weights
    }
    case 'json': {
      const json = readJson(path);
      if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new LlmError(`${path}: expected a JSON object (a Hugging Face tokenizer.json)`);
      if (isLlmtsTokenizerJson(json)) return tokenizerFromJSON(json);
      const model = (json as { model?: { type?: unknown; byte_fallback?: unknown } }).model;
      if (typeof model !== 'object' || model === null) {
        throw new LlmError(`${path}: no "model" object; expected a Hugging Face tokenizer.json`);
      }
      if (model.type !== 'BPE') throw new LlmError(`${path}: tokenizer.json model type ${preview(model.type)} is not supported (BPE only)`);
      const char = charFromHfTokenizerJson(json, path);
      if (char) return char;
      if (model.byte_fallback === true) return sentencePieceFromHfTokenizerJson(json, path);
      return byteLevelFromHfJson(path, json);
    }
    case 'tiktoken':
      return byteLevelFromTiktoken(path);
    case 'sentencepiece':
      return readSentencePieceModel(path);
  }
}

/** `{ "kind": ... }`: a tokenizer's own toJSON() saved to a file. */
function isLlmtsTokenizerJson(json: unknown): boolean {
  return typeof json === 'object' && json !== null && typeof (json as { kind?: unknown }).kind === 'string' && !('model' in json);
}

function readJson(path: string): unknown {
  const text = readRegularFileText(path, 'tokenizer file');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LlmError(`${path} is not valid JSON (${(err as Error).message.slice(0, 200)})`);
  }
}

// Byte-level BPE (GPT-2 / tiktoken family) from tiktoken names and rank files, and tokenizer.json.

async function loadBuiltin(name: string): Promise<Tokenizer> {
  return loadTiktoken(name);
}


/**
 * A .tiktoken rank file: a known encoding by its file name (cl100k_base.tiktoken), else the
 * split pattern and special tokens come from a tokenizer.json beside it (as `llmts tokenizer
 * train` writes them).
 */
function byteLevelFromTiktoken(path: string): Promise<Tokenizer> | Tokenizer {
  const name = basename(path).replace(/\.tiktoken$/, '');
  if (tiktokenEncoding(name)) return readTiktoken(path, { encoding: name });
  const sibling = join(dirname(path), 'tokenizer.json');
  if (existsSync(sibling)) {
    const { pattern, specialTokens } = hfByteLevel(sibling, readJson(sibling));
    return readTiktoken(path, { pattern, specialTokens });
  }
  throw new LlmError(
    `${path}: a rank file does not say its split pattern; name it after its encoding (${Object.keys(TIKTOKEN_ENCODINGS).join(', ')}) or keep the tokenizer.json written with it in the same directory`,
  );
}

function byteLevelFromHfJson(path: string, json: unknown): Tokenizer {
  const v = hfByteLevel(path, json);
  return new BpeTokenizer({
    tokens: v.tokens,
    merges: v.merges,
    pattern: v.pattern,
    specialTokens: v.specialTokens,
    ignoreMerges: v.ignoreMerges,
    name: basename(path),
  });
}

interface HfByteLevel {
  tokens: Array<Uint8Array | null>;
  merges: Array<[number, number]>;
  pattern: string;
  specialTokens: Record<string, number>;
  ignoreMerges: boolean;
}

/**
 * The pieces of a byte-level BPE tokenizer.json (GPT-2, Llama 3, Qwen, ours): vocabulary in
 * GPT-2's byte alphabet, merges ("a b" strings or [a, b] pairs) in priority order, the split
 * pattern from the pre_tokenizer (ByteLevel with use_regex: GPT-2's; Split(Regex) before
 * ByteLevel: that regex), added tokens as special tokens.
 */
function hfByteLevel(path: string, json: unknown): HfByteLevel {
  const bad = (what: string): never => {
    throw new LlmError(`${path}: ${what}`);
  };
  const j = json as { model?: Record<string, unknown>; added_tokens?: unknown; pre_tokenizer?: unknown; normalizer?: unknown };
  const model = j.model;
  if (typeof model !== 'object' || model === null || model.type !== 'BPE') return bad('expected a Hugging Face tokenizer.json with a BPE model');
  if (model.byte_fallback === true) bad('uses byte_fallback (SentencePiece-style BPE), not byte-level BPE');
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) bad('BPE dropout is set; remove it for deterministic encoding');
  if (j.normalizer !== undefined && j.normalizer !== null) bad('has a normalizer, which byte-level BPE here does not apply; only tokenizer.json files without one are supported');
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (typeof model[key] === 'string' && model[key] !== '') bad(`BPE ${key} ${preview(model[key])} is not supported`);
  }
  const vocab = model.vocab;
  if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) return bad('model.vocab must be an object of token -> id');

  const specialTokens: Record<string, number> = {};
  if (j.added_tokens !== undefined) {
    if (!Array.isArray(j.added_tokens)) bad('added_tokens must be an array');
    for (const t of j.added_tokens as Array<{ id?: unknown; content?: unknown }>) {
      if (typeof t?.content !== 'string' || !Number.isInteger(t.id)) bad('every added token needs a string "content" and an integer "id"');
      specialTokens[t.content as string] = t.id as number;
    }
  }
  const specialIds = new Set(Object.values(specialTokens));
  const tokens: Array<Uint8Array | null> = [];
  const idOf = new Map<string, number>();
  for (const [text, id] of Object.entries(vocab as Record<string, unknown>)) {
    if (!Number.isInteger(id) || (id as number) < 0) bad(`vocabulary entry ${preview(text)} has id ${preview(id)}; ids must be non-negative integers`);
    idOf.set(text, id as number);
    if (specialIds.has(id as number)) continue;
    const bytes = tokenTextToBytes(text);
    if (bytes === null || bytes.length === 0) {
      bad(`vocabulary entry ${preview(text)} is not written in the byte-level alphabet (is this a byte-level BPE tokenizer?)`);
    }
    tokens[id as number] = bytes;
  }
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) tokens[i] = null;

  const rawMerges = model.merges;
  if (!Array.isArray(rawMerges)) return bad('model.merges must be an array');
  const merges = rawMerges.map((m: unknown, i: number): [number, number] => {
    const parts = typeof m === 'string' ? m.split(' ') : m;
    if (!Array.isArray(parts) || parts.length !== 2 || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') {
      return bad(`merge ${i} is ${preview(m)}; expected "left right" or ["left", "right"]`);
    }
    const a = idOf.get(parts[0]);
    const b = idOf.get(parts[1]);
    if (a === undefined || b === undefined) return bad(`merge ${i} (${preview(m)}) uses a token that is not in the vocabulary`);
    return [a, b];
  });
  return { tokens, merges, pattern: splitPatternOf(path, j.pre_tokenizer), specialTokens, ignoreMerges: model.ignore_merges === true };
}

/** The split pattern of a byte-level pre_tokenizer, as a pattern name or a JavaScript regex source. */
function splitPatternOf(path: string, pre: unknown): string {
  const steps: Array<Record<string, unknown>> = [];
  const walk = (p: unknown): void => {
    if (typeof p !== 'object' || p === null) return;
    const o = p as Record<string, unknown>;
    if (o.type === 'Sequence' && Array.isArray(o.pretokenizers)) o.pretokenizers.forEach(walk);
    else steps.push(o);
  };
  walk(pre);
  const byteLevel = steps.find((s) => s.type === 'ByteLevel');
  if (!byteLevel) throw new LlmError(`${path}: the pre_tokenizer has no ByteLevel step; only byte-level BPE tokenizer.json files are supported here`);
  if (byteLevel.add_prefix_space === true) throw new LlmError(`${path}: ByteLevel add_prefix_space is not supported`);
  const splits = steps.filter((s) => s.type === 'Split');
  if (byteLevel.use_regex !== false) {
    if (splits.length > 0) throw new LlmError(`${path}: a Split step together with ByteLevel use_regex is not supported`);
    return 'gpt2';
  }
  const pattern = (splits[0]?.pattern ?? {}) as { Regex?: unknown };
  if (splits.length !== 1 || typeof pattern.Regex !== 'string' || (splits[0].behavior ?? 'Isolated') !== 'Isolated' || splits[0].invert === true) {
    throw new LlmError(`${path}: expected one Split pre_tokenizer with a Regex pattern (behavior Isolated) before ByteLevel`);
  }
  return jsRegex(path, pattern.Regex);
}

/**
 * An Oniguruma split regex in JavaScript form: the named patterns by name; otherwise inline
 * case-insensitive contractions and possessive quantifiers rewritten (as pretokenize.ts does).
 */
function jsRegex(path: string, onig: string): string {
  const contractions = /\(\?i:'s\|'t\|'re\|'ve\|'m\|'ll\|'d\)/g;
  const bare = "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])";
  const plain = onig.replace(/(?<!\\)([+*?]|\{\d+(?:,\d*)?\})\+/g, '$1');
  const src = plain.replace(contractions, `(?:${bare})`);
  const named = Object.entries(SPLIT_PATTERNS).find(([, source]) => [onig, src, plain.replace(contractions, bare)].includes(source));
  if (named) return named[0];
  try {
    new RegExp(src, 'gu');
  } catch (err) {
    throw new LlmError(`${path}: the split regex cannot be used in JavaScript (${(err as Error).message})`);
  }
  return src;
}
