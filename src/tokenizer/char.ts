/**
 * Character-level tokenizer: one token per Unicode code point, the vocabulary being
 * the sorted distinct characters of a training text (as nanoGPT's shakespeare_char).
 *
 *   const tok = CharTokenizer.fromText('hello world\n');
 *   tok.vocabSize;               // 9
 *   tok.chars;                   // ['\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
 *   tok.encode('hold');          // [4, 6, 5, 2]
 *   tok.decode([4, 3, 5, 5, 6]); // 'hello'
 *   tok.toJSON();                // { kind: 'char', chars: '\n dehlorw' }
 */
import { LlmError } from '../util/errors.js';
import type { Tokenizer } from './tokenizer.js';

export class CharTokenizer implements Tokenizer {
  readonly kind = 'char';
  /** The characters in id order (each one code point). */
  readonly chars: readonly string[];
  private readonly ids: Map<string, number>;

  /** Build from the characters in id order; they must be distinct single code points. */
  constructor(chars: readonly string[]) {
    const ids = new Map<string, number>();
    chars.forEach((ch, i) => {
      if (typeof ch !== 'string' || [...ch].length !== 1) {
        throw new LlmError(`char tokenizer entry ${i} is ${JSON.stringify(ch)}; each entry must be exactly one character`);
      }
      if (ids.has(ch)) throw new LlmError(`char tokenizer lists ${showChar(ch)} twice (ids ${ids.get(ch)} and ${i}); characters must be distinct`);
      ids.set(ch, i);
    });
    if (chars.length === 0) throw new LlmError('char tokenizer needs at least one character; build it from a non-empty text');
    this.chars = Object.freeze([...chars]);
    this.ids = ids;
  }

  /** Vocabulary = sorted (by code point) set of the distinct characters in `text`. */
  static fromText(text: string): CharTokenizer {
    const set = [...new Set(text)];
    set.sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    return new CharTokenizer(set);
  }

  /** Rebuild from `{ kind: 'char', chars: string }`. */
  static fromJSON(json: unknown): CharTokenizer {
    const j = json as { kind?: unknown; chars?: unknown };
    if (typeof j !== 'object' || j === null || j.kind !== 'char' || typeof j.chars !== 'string') {
      throw new LlmError('char tokenizer description must look like { "kind": "char", "chars": "<characters in id order>" }');
    }
    return new CharTokenizer([...j.chars]);
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const ch of text) {
      const id = this.ids.get(ch);
      if (id === undefined) {
        throw new LlmError(
          `character ${showChar(ch)} is not in the char tokenizer's ${this.chars.length}-character vocabulary (remove it from the text or rebuild the tokenizer from text that contains it)`,
        );
      }
      out.push(id);
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const ch = this.chars[ids[i]];
      if (ch === undefined || !Number.isInteger(ids[i])) {
        throw new LlmError(`token id ${ids[i]} (position ${i}) is out of range for a char tokenizer with ${this.chars.length} characters (ids 0..${this.chars.length - 1})`);
      }
      s += ch;
    }
    return s;
  }

  tokenBytes(id: number): Uint8Array {
    return new TextEncoder().encode(this.decode([id]));
  }

  toJSON(): { kind: 'char'; chars: string } {
    return { kind: 'char', chars: this.chars.join('') };
  }
}

/** `'a' (U+0061)`, with control characters escaped: `"\n" (U+000A)`. */
function showChar(ch: string): string {
  const cp = ch.codePointAt(0)!;
  return `${JSON.stringify(ch)} (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
}
