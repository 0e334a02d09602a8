/**
 * Helpers for the SentencePiece tests: the committed fixtures from
 * scripts/make_sentencepiece_fixture.py, and a Hugging Face tokenizer.json built from a
 * SentencePiece vocabulary the way transformers' converter builds one. (llama.cpp's tokenizer
 * test vectors are read by readLlamaCppVectors in bpe-parity.ts.)
 *
 *   const ids = readU16Gz(spFixturePath('llama2-tinyshakespeare.u16.gz'));
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { PieceType, type SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';

const repoRoot = new URL('../../../', import.meta.url); // dist/test/helpers/ -> repo root

/** Path of a file in test/fixtures/tokenizer/. */
export function spFixturePath(name: string): string {
  return fileURLToPath(new URL(`test/fixtures/tokenizer/${name}`, repoRoot));
}

/** A gzipped array of uint16 little-endian values. */
export function readU16Gz(path: string): Uint16Array {
  const raw = gunzipSync(readFileSync(path));
  const out = new Uint16Array(raw.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = raw.readUInt16LE(i * 2);
  return out;
}

/**
 * A Llama-style (legacy) Hugging Face tokenizer.json for a SentencePiece vocabulary, with merges
 * made as transformers' SentencePieceExtractor does: every split (left, right) of every piece
 * into two pieces of the vocabulary, grouped by piece in order of decreasing piece score, the
 * splits of one piece ordered by (id of left, id of right).
 */
export function hfTokenizerJsonFromSentencePiece(tok: SentencePieceTokenizer): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const idOf = new Map<string, number>();
  tok.pieces.forEach((p, id) => {
    vocab[p] = id;
    if (!idOf.has(p)) idOf.set(p, id);
  });
  const merges: { left: string; right: string; score: number; l: number; r: number; id: number }[] = [];
  tok.pieces.forEach((p, id) => {
    if (tok.types[id] !== PieceType.NORMAL) return;
    const chars = [...p];
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      const l = idOf.get(left);
      const r = idOf.get(right);
      if (l !== undefined && r !== undefined && tok.types[l] === PieceType.NORMAL && tok.types[r] === PieceType.NORMAL) {
        merges.push({ left, right, score: tok.scores[id], l, r, id });
      }
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.l - b.l || a.r - b.r);
  const added = tok.pieces
    .map((p, id) => ({ p, id, t: tok.types[id] }))
    .filter((x) => x.t === PieceType.CONTROL || x.t === PieceType.UNKNOWN)
    .map((x) => ({ id: x.id, content: x.p, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '\u2581' },
        { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: merges.map((m) => `${m.left} ${m.right}`),
    },
  };
}
