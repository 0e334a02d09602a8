/**
 * A char tokenizer as a Hugging Face `tokenizer.json`, and back.
 *
 *   const tok = CharTokenizer.fromText('hi you\n');
 *   charTokenizerJsonString(tok);
 *   // { ..., "normalizer": null, "pre_tokenizer": null, "post_processor": null,
 *   //   "decoder": { "type": "Fuse" },
 *   //   "model": { "type": "BPE", "unk_token": null, "byte_fallback": false,
 *   //              "vocab": { "\n": 0, " ": 1, "h": 2, "i": 3, "o": 4, "u": 5, "y": 6 }, "merges": [] } }
 *   charFromHfTokenizerJson(JSON.parse(text));   // CharTokenizer with the same chars
 *
 * The form: a BPE model whose vocabulary is the characters by id and which has no merges. With
 * no normalizer and no pre-tokenizer the whole text is one word, which BPE cuts into characters
 * (Unicode scalar values, as CharTokenizer's code points) and, with nothing to merge, maps one by
 * one through the vocabulary; the Fuse decoder joins the tokens with nothing between them (with no
 * decoder `tokenizers` would join them with spaces). So `Tokenizer.from_file(path)` in Python
 * encodes to our ids and decodes our ids to our text (scripts/check_char_export.py checks it).
 * A character outside the vocabulary is dropped by `tokenizers` (unk_token is null); llm.ts
 * refuses it.
 *
 * Reading back is structural: model BPE without merges, byte_fallback, unknown token or added
 * tokens, no normalizer, pre-tokenizer or post-processor, decoder Fuse, and every vocabulary
 * entry one character with ids 0..n-1. Byte-level BPE files (ours, GPT-2's) always have a
 * ByteLevel pre-tokenizer and decoder, so they never match.
 */
import { LlmError } from '../util/errors.js';
import { CharTokenizer } from './char.js';

type Json = Record<string, unknown>;

/** The tokenizer.json object for a char tokenizer (vocab keys in id order). */
export function charTokenizerJson(tok: CharTokenizer): Json {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab: Object.fromEntries(tok.chars.map((c, id) => [c, id])),
      merges: [],
    },
  };
}

/**
 * tokenizer.json text: the small fields indented, then one vocabulary entry per line in id
 * order (a JavaScript object would put digit keys such as "0" first).
 */
export function charTokenizerJsonString(tok: CharTokenizer): string {
  const json = charTokenizerJson(tok);
  const head = JSON.stringify({ ...json, model: { ...(json.model as Json), vocab: 0 } }, null, 2);
  const vocab = tok.chars.map((c, id) => `      ${JSON.stringify(c)}: ${id}`).join(',\n');
  return head.replace('"vocab": 0', () => `"vocab": {\n${vocab}\n    }`) + '\n';
}

/**
 * The CharTokenizer a tokenizer.json of the shape charTokenizerJson writes stands for, or null
 * when the file is another kind of tokenizer. Throws only when it has that shape but a broken
 * vocabulary (gaps or repeated ids).
 */
export function charFromHfTokenizerJson(json: unknown, name = 'tokenizer.json'): CharTokenizer | null {
  if (!isObj(json) || !isObj(json.model)) return null;
  const model = json.model;
  if (model.type !== 'BPE' || !Array.isArray(model.merges) || model.merges.length !== 0 || !isObj(model.vocab)) return null;
  if (!isObj(json.decoder) || json.decoder.type !== 'Fuse') return null;
  if (model.byte_fallback === true || !isNullish(model.unk_token) || !(isNullish(model.dropout) || model.dropout === 0)) return null;
  if (model.continuing_subword_prefix || model.end_of_word_suffix) return null;
  for (const key of ['normalizer', 'pre_tokenizer', 'post_processor'] as const) if (!isNullish(json[key])) return null;
  if (json.added_tokens !== undefined && !(Array.isArray(json.added_tokens) && json.added_tokens.length === 0)) return null;
  const entries = Object.entries(model.vocab);
  if (entries.length === 0 || entries.some(([c]) => [...c].length !== 1)) return null;
  const chars: string[] = new Array(entries.length);
  for (const [c, id] of entries) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= entries.length) {
      throw new LlmError(`${name}: character ${JSON.stringify(c)} has id ${JSON.stringify(id)}; a character vocabulary needs ids 0..${entries.length - 1}`);
    }
    if (chars[id] !== undefined) throw new LlmError(`${name}: id ${id} is given to both ${JSON.stringify(chars[id])} and ${JSON.stringify(c)}`);
    chars[id] = c;
  }
  return new CharTokenizer(chars);
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNullish(v: unknown): boolean {
  return v === null || v === undefined;
}
