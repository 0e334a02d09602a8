/**
 * A SentencePieceTokenizer from a GGUF file's 'llama' vocabulary (llama.cpp's SPM vocab).
 *
 *   const tok = readGgufSentencePiece('ggml-vocab-llama-spm.gguf');
 *   tok.encode('Hello world', { addBos: false });   // [15043, 3186]
 *
 * Keys: tokenizer.ggml.model = 'llama', tokens (string[]), scores (f32[]), token_type (i32[],
 * the SentencePiece piece types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
 * 6 byte), bos/eos_token_id, add_bos_token (default true), add_eos_token (default false),
 * add_space_prefix (default true) and remove_extra_whitespaces (default false). Byte fallback
 * is on when the vocab has byte pieces (llama.cpp always falls back to bytes).
 */
import { describeGgufValue, ggufString, ggufStringArray, readGguf, type Gguf } from '../formats/gguf.js';
import { LlmError } from '../util/errors.js';
import { PieceType, SentencePieceTokenizer } from './sentencepiece.js';

export function sentencePieceFromGguf(g: Gguf): SentencePieceTokenizer {
  const model = ggufString(g, 'tokenizer.ggml.model');
  if (model !== 'llama') {
    throw new LlmError(`${g.path}: tokenizer.ggml.model is '${model}', not 'llama' (SentencePiece); use the tokenizer for '${model}' vocabularies`);
  }
  const pieces = ggufStringArray(g, 'tokenizer.ggml.tokens');
  const n = pieces.length;
  const scores = g.metadata.get('tokenizer.ggml.scores');
  if (!(scores instanceof Float32Array) || scores.length !== n) {
    throw new LlmError(`${g.path}: tokenizer.ggml.scores must be a float32 array with one score per token (${n}); it is ${describeGgufValue(scores)}`);
  }
  const rawTypes = g.metadata.get('tokenizer.ggml.token_type');
  let types: Uint8Array;
  if (rawTypes === undefined) {
    types = new Uint8Array(n).fill(PieceType.NORMAL);
  } else {
    if (!(rawTypes instanceof Int32Array || rawTypes instanceof Uint32Array) || rawTypes.length !== n) {
      throw new LlmError(`${g.path}: tokenizer.ggml.token_type must be an int32 array with one type per token (${n}); it is ${describeGgufValue(rawTypes)}`);
    }
    types = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const t = rawTypes[i];
      if (t < 1 || t > 6) throw new LlmError(`${g.path}: token ${i} (${JSON.stringify(pieces[i])}) has token_type ${t}; expected 1..6`);
      types[i] = t;
    }
  }
  const id = (key: string): number | null | undefined => {
    const v = g.metadata.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new LlmError(`${g.path}: ${key} must be an integer token id`);
    if (v < 0 || v >= n) return null;
    return v;
  };
  const flag = (key: string, dflt: boolean): boolean => {
    const v = g.metadata.get(key);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new LlmError(`${g.path}: ${key} must be a boolean`);
    return v;
  };
  return new SentencePieceTokenizer({
    pieces,
    scores,
    types,
    addDummyPrefix: flag('tokenizer.ggml.add_space_prefix', true),
    removeExtraWhitespaces: flag('tokenizer.ggml.remove_extra_whitespaces', false),
    escapeWhitespaces: true,
    byteFallback: types.includes(PieceType.BYTE),
    bosId: id('tokenizer.ggml.bos_token_id'),
    eosId: id('tokenizer.ggml.eos_token_id'),
    addBos: flag('tokenizer.ggml.add_bos_token', true),
    addEos: flag('tokenizer.ggml.add_eos_token', false),
  });
}

/** Read the vocabulary of a GGUF file (only its header is read). */
export function readGgufSentencePiece(path: string): SentencePieceTokenizer {
  return sentencePieceFromGguf(readGguf(path));
}
