/**
 * A Llama-style SentencePiece vocabulary for tests: <unk> <s> </s>, the 256 byte pieces, then
 * `merges` as normal pieces scored by `score(piece, id)` (byte and control pieces score 0).
 *
 *   const tok = tinySentencePiece(['▁', 'a', '▁a'], (_, i) => -i);
 */
import { PieceType, SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';

export function tinySentencePiece(merges: string[], score: (piece: string, id: number) => number): SentencePieceTokenizer {
  const pieces = ['<unk>', '<s>', '</s>'];
  const types: number[] = [PieceType.UNKNOWN, PieceType.CONTROL, PieceType.CONTROL];
  for (let b = 0; b < 256; b++) {
    pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(PieceType.BYTE);
  }
  for (const p of merges) {
    pieces.push(p);
    types.push(PieceType.NORMAL);
  }
  const scores = pieces.map((p, i) => (i < 259 ? 0 : score(p, i)));
  return new SentencePieceTokenizer({ pieces, scores, types, byteFallback: true, bosId: 1, eosId: 2 });
}
