/**
 * A char tokenizer in GGUF, as a llama.cpp SentencePiece ('llama') vocabulary of single
 * characters, and back.
 *
 *   const tok = CharTokenizer.fromText('hi you\n');   // chars '\n', ' ', 'h', 'i', 'o', 'u', 'y'
 *   charGgufMetadata(tok, 8);
 *   // tokenizer.ggml.model 'llama', tokens ['\n', '▁', 'h', 'i', 'o', 'u', 'y', '[PAD7]'],
 *   // token_type [1, 1, 1, 1, 1, 1, 1, 5], scores all 0, bos = eos = 7 (the pad), add_bos_token,
 *   // add_eos_token, add_space_prefix and remove_extra_whitespaces all false
 *   charFromGguf(readGguf('model.gguf'));             // CharTokenizer with the same 7 chars
 *
 * Why this form. llama.cpp has no character vocabulary, and a byte-level BPE ('gpt2') can only
 * hold a character of several UTF-8 bytes as a merge of byte tokens, with all 256 byte tokens
 * present. A SentencePiece vocabulary holds any character as one piece, and with nothing to merge
 * llama.cpp's SPM tokenizer does exactly what CharTokenizer does:
 *   - encode: spaces become '▁' (add_space_prefix false: no leading space is added), the text is
 *     cut into UTF-8 characters, no two adjacent ones form a piece, so each character is looked up
 *     by its text ('\n' and other controls are pieces of their own text);
 *   - decode: a NORMAL piece is its text with '▁' turned back into ' '.
 * A character outside the vocabulary has no byte pieces to fall back on: llama.cpp's tokenizer
 * throws (under node-llama-cpp the process aborts), llm.ts refuses it with an error.
 * Each character is a NORMAL piece (type 1) with score 0; ' ' is written as '▁' (U+2581), as
 * SentencePiece does, so a vocabulary that holds '▁' itself cannot be stored. Model vocabulary
 * beyond the characters is padded with '[PADn]' UNUSED pieces (type 5).
 *
 * End of generation: with no eos id in the file llama.cpp takes id 2 for a 'llama' vocabulary,
 * and an id out of range is ignored in favour of that default ('gpt2' vocabularies have one too).
 * A char model has no end-of-text token, so when
 * the model's vocabulary has a padding slot bos and eos point at the first pad (never a
 * character); when it has none, no id is written and llama.cpp ends generation at the character
 * with id 2 ('!' in Tiny Shakespeare; its --ignore-eos bans that character instead). Encoding
 * and decoding are not affected.
 *
 * Reading back (charFromGguf) is structural, no key of our own: model 'llama', add_space_prefix
 * and add_bos_token false, every piece NORMAL and exactly one character (after '▁' -> ' ') except an UNUSED tail,
 * no byte, control or unknown pieces. A SentencePiece vocabulary of that shape encodes and decodes
 * as a CharTokenizer of its characters, so nothing is lost by reading it as one.
 */
import type { Gguf } from '../formats/gguf.js';
import { ggufMeta, type GgufWriteValue } from '../formats/gguf-write.js';
import { LlmError } from '../util/errors.js';
import { CharTokenizer } from './char.js';

/** SentencePiece's whitespace mark, which llama.cpp turns into ' ' when decoding. */
export const SPM_SPACE = '\u2581';

const NORMAL = 1;
const UNUSED = 5;

/** tokenizer.ggml.* metadata for a char tokenizer, padded to vocabSize pieces. */
export function charGgufMetadata(tok: CharTokenizer, vocabSize: number): [string, GgufWriteValue][] {
  const n = tok.chars.length;
  if (n > vocabSize) throw new LlmError(`the tokenizer has ${n} tokens but the model only ${vocabSize}`);
  const mark = tok.chars.indexOf(SPM_SPACE);
  if (mark >= 0) {
    throw new LlmError(
      `the char tokenizer holds '${SPM_SPACE}' (U+2581, id ${mark}), which GGUF's SentencePiece vocabulary uses for the space; it cannot be stored in GGUF (export without a vocabulary: llmts convert --no-vocab)`,
    );
  }
  const tokens = tok.chars.map((c) => (c === ' ' ? SPM_SPACE : c));
  for (let i = n; i < vocabSize; i++) tokens.push(`[PAD${i}]`);
  const types = new Int32Array(vocabSize).fill(NORMAL);
  types.fill(UNUSED, n);
  const m: [string, GgufWriteValue][] = [
    ['tokenizer.ggml.model', ggufMeta.string('llama')],
    ['tokenizer.ggml.pre', ggufMeta.string('default')],
    ['tokenizer.ggml.tokens', ggufMeta.strings(tokens)],
    ['tokenizer.ggml.scores', ggufMeta.f32s(new Float32Array(vocabSize))],
    ['tokenizer.ggml.token_type', ggufMeta.i32s(types)],
  ];
  if (vocabSize > n) m.push(['tokenizer.ggml.bos_token_id', ggufMeta.u32(n)], ['tokenizer.ggml.eos_token_id', ggufMeta.u32(n)]);
  m.push(
    ['tokenizer.ggml.add_bos_token', ggufMeta.bool(false)],
    ['tokenizer.ggml.add_eos_token', ggufMeta.bool(false)],
    ['tokenizer.ggml.add_space_prefix', ggufMeta.bool(false)],
    ['tokenizer.ggml.remove_extra_whitespaces', ggufMeta.bool(false)],
  );
  return m;
}

/**
 * The CharTokenizer a GGUF 'llama' vocabulary of single characters stands for (the shape
 * charGgufMetadata writes), or null when the vocabulary is any other SentencePiece vocabulary.
 */
export function charFromGguf(g: Gguf): CharTokenizer | null {
  const md = g.metadata;
  if (md.get('tokenizer.ggml.model') !== 'llama') return null;
  // llama.cpp's defaults for 'llama' are add_space_prefix and add_bos_token true: both must be off
  if (md.get('tokenizer.ggml.add_space_prefix') !== false || md.get('tokenizer.ggml.add_bos_token') !== false) return null;
  if (md.get('tokenizer.ggml.add_eos_token') === true || md.get('tokenizer.ggml.remove_extra_whitespaces') === true) return null;
  const tokens = md.get('tokenizer.ggml.tokens');
  const types = md.get('tokenizer.ggml.token_type');
  if (!Array.isArray(tokens) || !(types instanceof Int32Array || types instanceof Uint32Array) || types.length !== tokens.length) return null;
  let n = tokens.length;
  while (n > 0 && types[n - 1] === UNUSED) n--;
  if (n === 0) return null;
  const chars: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const t = tokens[i];
    // a literal ' ' is never looked up by llama.cpp (spaces are '▁' by then): not this shape
    if (types[i] !== NORMAL || typeof t !== 'string' || [...t].length !== 1 || t === ' ') return null;
    const c = t === SPM_SPACE ? ' ' : t;
    if (seen.has(c)) return null;
    seen.add(c);
    chars.push(c);
  }
  return new CharTokenizer(chars);
}
