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
import { CharTokenizer } from './char.js';

export interface Tokenizer {
  /** 'char', later 'bpe', 'sentencepiece', ... */
  readonly kind: string;
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
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
    default:
      throw new LlmError(`unknown tokenizer kind "${kind}" (known kinds: char); was this checkpoint made by a newer llm.ts?`);
  }
}

function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
}
