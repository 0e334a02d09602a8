/**
 * The interface every tokenizer implements, and rebuilding one from its JSON form
 * (which travels inside checkpoints).
 *
 *   const tok = CharTokenizer.fromText('hello');
 *   const json = tok.toJSON();                 // { kind: 'char', chars: 'ehlo' }
 *   const same = tokenizerFromJSON(json);      // a CharTokenizer again
 *   same.decode(same.encode('hole'));          // 'hole'
 */
import { LlmError } from '../util/errors.js';
import { BpeTokenizer } from './bpe.js';
import { CharTokenizer } from './char.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

export interface EncodeOptions {
  /**
   * Which special tokens (e.g. '<|endoftext|>') written in the text become their ids;
   * the others are encoded as ordinary text. Default: none.
   */
  allowedSpecial?: 'all' | 'none' | ReadonlySet<string>;
  /** prepend the beginning-of-sequence token when the tokenizer has one (SentencePiece) */
  addBos?: boolean;
}

export interface Tokenizer {
  /** 'char', 'bpe' (byte-level, GPT-2/tiktoken), 'sentencepiece' */
  readonly kind: string;
  readonly vocabSize: number;
  encode(text: string, opts?: EncodeOptions): number[];
  /** Text of the ids; bytes that are not valid UTF-8 become U+FFFD (never throws). */
  decode(ids: ArrayLike<number>): string;
  /** The raw bytes of one token (a token may hold part of a UTF-8 character). */
  tokenBytes(id: number): Uint8Array;
  /** Special tokens by text, e.g. { '<|endoftext|>': 50256 } */
  readonly specialTokens?: Readonly<Record<string, number>>;
  readonly bosId?: number;
  readonly eosId?: number;
  /** JSON-serialisable description from which `tokenizerFromJSON` rebuilds it (travels inside checkpoints). */
  toJSON(): { kind: string; [k: string]: unknown };
}

/** Rebuild a tokenizer from `tokenizer.toJSON()`, dispatching on `kind`. */
export function tokenizerFromJSON(json: unknown): Tokenizer {
  if (typeof json !== 'object' || json === null || typeof (json as { kind?: unknown }).kind !== 'string') {
    throw new LlmError(`tokenizer description must be an object with a string "kind", got ${describe(json)}`);
  }
  const kind = (json as { kind: string }).kind;
  switch (kind) {
    case 'char':
      return CharTokenizer.fromJSON(json);
    case 'sentencepiece':
      return SentencePieceTokenizer.fromJSON(json);
    case 'bpe':
      return BpeTokenizer.fromJSON(json);
    default:
      throw new LlmError(`unknown tokenizer kind "${kind}" (known kinds: char, sentencepiece, bpe); was this checkpoint made by a newer llm.ts?`);
  }
}

function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
}
