/**
 * A byte-level BpeTokenizer from a GGUF file's 'gpt2' vocabulary (llama.cpp's BPE vocab: GPT-2,
 * Llama 3, Qwen2, GPT-4o-style models ...).
 *
 *   const tok = bpeFromGguf(readGguf('ggml-vocab-gpt-2.gguf'));   // or readGgufBpe(path)
 *   tok.encode('Hello world');                                      // [15496, 995]
 *
 * Keys: tokenizer.ggml.model = 'gpt2'; tokens (string[], written in GPT-2's byte-level alphabet,
 * 'Ġ' = space); merges (string[] "left right", in priority order); token_type (i32[]: 1 normal,
 * 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); pre (the pre-tokenizer name, which picks
 * the split pattern); bos/eos_token_id. Control and user-defined tokens become special tokens
 * (their text is raw, not byte-level); the merge list ranks the pairs, as in llama.cpp and Hugging Face.
 */
import { describeGgufValue, ggufOptionalNumber, ggufString, ggufStringArray, readGguf, type Gguf } from '../formats/gguf.js';
import { LlmError } from '../util/errors.js';
import { BpeTokenizer } from './bpe.js';
import { CHAR_TO_BYTE } from './bytes-to-unicode.js';
import { SPLIT_PATTERNS, type SplitPattern } from './pretokenize.js';

/** llama.cpp pre-tokenizer names (tokenizer.ggml.pre) we know, with their split pattern. */
export const GGUF_PRE_TOKENIZERS: Readonly<Record<string, { pattern: SplitPattern | string; ignoreMerges?: boolean }>> = {
  'gpt-2': { pattern: 'gpt2' },
  // Llama 3: cl100k's pattern; llama.cpp (like Hugging Face's ignore_merges) takes a chunk that is a whole token as is
  'llama-bpe': { pattern: 'cl100k', ignoreMerges: true },
  llama3: { pattern: 'cl100k', ignoreMerges: true },
  'gpt-4o': { pattern: 'o200k' },
  // Qwen2: cl100k's pattern with single digits
  qwen2: { pattern: SPLIT_PATTERNS.cl100k.replace('\\p{N}{1,3}', '\\p{N}') },
};

const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

/** Read a GGUF file and build its BPE tokenizer. */
export function readGgufBpe(path: string): BpeTokenizer {
  return bpeFromGguf(readGguf(path));
}

export function bpeFromGguf(g: Gguf): BpeTokenizer {
  const model = ggufString(g, 'tokenizer.ggml.model');
  if (model !== 'gpt2') {
    throw new LlmError(`${g.path}: tokenizer.ggml.model is '${model}', not 'gpt2' (byte-level BPE); use the tokenizer for '${model}' vocabularies`);
  }
  const pre = g.metadata.get('tokenizer.ggml.pre');
  const preName = typeof pre === 'string' ? pre : 'default';
  const preSpec = Object.hasOwn(GGUF_PRE_TOKENIZERS, preName) ? GGUF_PRE_TOKENIZERS[preName] : undefined;
  if (!preSpec) {
    throw new LlmError(
      `${g.path}: unknown pre-tokenizer tokenizer.ggml.pre = '${preName}' (known: ${Object.keys(GGUF_PRE_TOKENIZERS).join(', ')}); its split pattern is needed to encode like llama.cpp`,
    );
  }
  const texts = ggufStringArray(g, 'tokenizer.ggml.tokens');
  const n = texts.length;
  const rawTypes = g.metadata.get('tokenizer.ggml.token_type');
  if (rawTypes !== undefined && (!(rawTypes instanceof Int32Array || rawTypes instanceof Uint32Array) || rawTypes.length !== n)) {
    throw new LlmError(`${g.path}: tokenizer.ggml.token_type must be an int32 array with one type per token (${n}); it is ${describeGgufValue(rawTypes)}`);
  }
  const utf8 = new TextEncoder();
  const tokens: (Uint8Array | null)[] = new Array(n).fill(null);
  const specials: Record<string, number> = {};
  const idOf = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const text = texts[i];
    const type = rawTypes ? rawTypes[i] : 1;
    if (type === CONTROL || type === USER_DEFINED) {
      if (text.length > 0 && !Object.hasOwn(specials, text)) specials[text] = i;
      continue;
    }
    if (type === UNUSED || text.length === 0) continue;
    tokens[i] = byteLevelBytes(text, utf8);
    if (!idOf.has(text)) idOf.set(text, i);
  }
  const mergeTexts = ggufStringArray(g, 'tokenizer.ggml.merges');
  const merges: [number, number][] = new Array(mergeTexts.length);
  for (let r = 0; r < mergeTexts.length; r++) {
    const m = mergeTexts[r];
    const sp = m.indexOf(' ', 1);
    const a = sp > 0 ? idOf.get(m.slice(0, sp)) : undefined;
    const b = sp > 0 ? idOf.get(m.slice(sp + 1)) : undefined;
    if (a === undefined || b === undefined) {
      throw new LlmError(`${g.path}: merge ${r} ${JSON.stringify(m)} is not two tokens of the vocabulary separated by a space`);
    }
    merges[r] = [a, b];
  }
  // the BPE tokenizer prepends bosId when asked for a BOS, so it is only set when the file says
  // a BOS is added (llama.cpp's default for 'gpt2' vocabularies is not to)
  const bosId = g.metadata.get('tokenizer.ggml.add_bos_token') === true ? ggufOptionalNumber(g, 'tokenizer.ggml.bos_token_id') : undefined;
  const eosId = ggufOptionalNumber(g, 'tokenizer.ggml.eos_token_id');
  const name = g.metadata.get('general.name');
  return new BpeTokenizer({
    tokens,
    merges,
    pattern: preSpec.pattern,
    ignoreMerges: preSpec.ignoreMerges ?? false,
    specialTokens: specials,
    bosId: bosId !== undefined && bosId < n ? bosId : undefined,
    eosId: eosId !== undefined && eosId < n ? eosId : undefined,
    vocabSize: n,
    name: typeof name === 'string' ? name : undefined,
  });
}

/** Bytes of a token written in the byte-level alphabet; a character outside it stands for its own UTF-8. */
function byteLevelBytes(text: string, utf8: TextEncoder): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) out.push(b);
    else for (const x of utf8.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}
