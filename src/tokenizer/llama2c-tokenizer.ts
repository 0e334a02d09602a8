/**
 * llama2.c's `tokenizer.bin` (read by run.c's tokenizer loader, written by llama2.c's
 * tokenizer.py), from a SentencePiece tokenizer.
 *
 *   writeLlama2cTokenizer('tokenizer.bin', readSentencePieceModel('tokenizer.model'));
 *   const { maxTokenLength, tokens } = parseLlama2cTokenizer(bytes);   // for checks
 *
 * Layout, little-endian: int32 max_token_length (the longest token in bytes), then for every id
 * in order: float32 score, int32 byte length, the token's bytes (no terminator). The vocabulary
 * size is not stored: run.c reads as many tokens as the model header's vocab_size.
 *
 * Token text, as tokenizer.py's export writes it: the piece with every '▁' (U+2581) replaced by
 * ' '; BOS is written "\n<s>\n" and EOS "\n</s>\n"; byte pieces keep their literal text
 * '<0x0A>' (run.c's decoder turns '<0xXX>' into the raw byte itself, and its encoder's byte
 * fallback uses id = byte + 3). This reproduces llama2.c's published tokenizer.bin for the
 * Llama 2 tokenizer.model byte for byte (test/formats/llama2c-write.test.ts checks it).
 */
import { writeFileAtomic } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import type { SentencePieceTokenizer } from './sentencepiece.js';

/** The token text tokenizer.py writes for `id`. */
function llama2cTokenText(tok: SentencePieceTokenizer, id: number): string {
  if (id === tok.bosId) return '\n<s>\n';
  if (id === tok.eosId) return '\n</s>\n';
  return tok.pieces[id].replaceAll('\u2581', ' ');
}

/** tokenizer.bin bytes for `tok`. */
export function llama2cTokenizerBytes(tok: SentencePieceTokenizer): Uint8Array {
  const enc = new TextEncoder();
  const texts = tok.pieces.map((_, id) => enc.encode(llama2cTokenText(tok, id)));
  const size = 4 + texts.reduce((s, t) => s + 8 + t.length, 0);
  const out = Buffer.alloc(size);
  out.writeInt32LE(texts.reduce((m, t) => Math.max(m, t.length), 0), 0);
  let o = 4;
  texts.forEach((t, id) => {
    out.writeFloatLE(tok.scores[id], o);
    out.writeInt32LE(t.length, o + 4);
    out.set(t, o + 8);
    o += 8 + t.length;
  });
  return out;
}

/** Write `tok` as a llama2.c tokenizer.bin, atomically. */
export function writeLlama2cTokenizer(path: string, tok: SentencePieceTokenizer): { bytes: number; tokens: number } {
  const bytes = llama2cTokenizerBytes(tok);
  writeFileAtomic(path, bytes);
  return { bytes: bytes.byteLength, tokens: tok.pieces.length };
}

/** Parse a tokenizer.bin holding exactly `vocabSize` tokens (or as many as there are, if omitted). */
export function parseLlama2cTokenizer(bytes: Uint8Array, vocabSize?: number, name = 'tokenizer.bin'): { maxTokenLength: number; tokens: { score: number; bytes: Uint8Array }[] } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 4) throw new LlmError(`${name}: llama2.c tokenizer file is only ${buf.length} bytes (it starts with a 4-byte max_token_length)`);
  const maxTokenLength = buf.readInt32LE(0);
  const tokens: { score: number; bytes: Uint8Array }[] = [];
  let o = 4;
  while (o < buf.length && (vocabSize === undefined || tokens.length < vocabSize)) {
    if (o + 8 > buf.length) throw new LlmError(`${name}: llama2.c tokenizer file ends inside token ${tokens.length}'s header at byte ${o}`);
    const score = buf.readFloatLE(o);
    const len = buf.readInt32LE(o + 4);
    if (len < 0 || o + 8 + len > buf.length) throw new LlmError(`${name}: llama2.c token ${tokens.length} has length ${len}, past the end of the file`);
    tokens.push({ score, bytes: buf.subarray(o + 8, o + 8 + len) });
    o += 8 + len;
  }
  if (vocabSize !== undefined && tokens.length < vocabSize) {
    throw new LlmError(`${name}: llama2.c tokenizer file holds ${tokens.length} tokens but the model needs ${vocabSize}`);
  }
  return { maxTokenLength, tokens };
}
