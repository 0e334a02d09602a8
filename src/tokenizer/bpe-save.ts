/**
 * Writing a trained byte-level BPE vocabulary in the two formats other tools read:
 *
 *   - Hugging Face `tokenizer.json` (the `tokenizers` library, transformers' fast tokenizers):
 *     model BPE whose vocabulary and merges are spelled in GPT-2's byte alphabet
 *     (bytes-to-unicode.ts: ' ' -> 'Ġ', '\n' -> 'Ċ'), merges as "left right" strings in the
 *     order they were learned; pre_tokenizer = Sequence[Split(pattern regex, Isolated),
 *     ByteLevel(add_prefix_space false, use_regex false)] as in Llama 3's file; decoder and
 *     post_processor ByteLevel as in GPT-2's; the special tokens as added_tokens (and in the
 *     vocabulary, as GPT-2 lists '<|endoftext|>').
 *   - tiktoken's rank file: one line per ordinary token, `base64(token bytes) + ' ' + rank`,
 *     rank = token id (ids are given in merge order, so they are valid ranks). Special tokens
 *     and the split pattern are not part of that format.
 *
 *   const bpe = trainBpe(text, { vocabSize: 4096, specialTokens: ['<|endoftext|>'] });
 *   saveTrainedBpe(bpe, 'out/tok');   // out/tok/tokenizer.json, out/tok/tokenizer.tiktoken
 *
 * Checked by hand (the test suite has no Python): Hugging Face `tokenizers` 0.23.2 loads the
 * tokenizer.json of a 4096-token (cl100k) and a 2000-token (gpt2) Tiny Shakespeare vocabulary and
 * gives the same ids as BpeTokenizer on 200 KB of text plus Unicode, CRLF, digit and special-token
 * cases; Python tiktoken with the rank file (and tiktoken's own patterns) gives those ids too.
 * Older `tokenizers` versions were not tried; the field set follows what they write for GPT-2.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import { bytesToTokenText } from './bytes-to-unicode.js';

/** What the savers need: a TrainedBpe (bpe-train.ts) fits. */
export interface BpeVocabulary {
  /** split regex (JavaScript syntax, compiled with flags 'gu') */
  regex: string;
  /** bytes of the ordinary tokens, indexed by id = rank */
  tokenBytes: readonly Uint8Array[];
  /** merges in rank order */
  merges: ReadonlyArray<{ pair: readonly [number, number] }>;
  /** special token text -> id; ids follow the ordinary tokens */
  specialTokens: Readonly<Record<string, number>>;
}

/** The Hugging Face tokenizer.json object for a byte-level BPE vocabulary. */
export function toHfTokenizerJson(bpe: BpeVocabulary): Record<string, unknown> {
  const { json, vocab } = build(bpe);
  return { ...json, model: { ...(json.model as object), vocab: Object.fromEntries(vocab) } };
}

/**
 * tokenizer.json text: the small fields indented, then one vocabulary entry (in id order) and
 * one merge per line.
 */
export function hfTokenizerJsonString(bpe: BpeVocabulary): string {
  const { json, vocab } = build(bpe);
  const head = JSON.stringify({ ...json, model: { ...(json.model as object), vocab: 0, merges: 0 } }, null, 2);
  const merges = (json.model as { merges: string[] }).merges;
  const vocabText = vocab.map(([k, v]) => `      ${JSON.stringify(k)}: ${v}`).join(',\n');
  const mergesText = merges.map((m) => `      ${JSON.stringify(m)}`).join(',\n');
  // function replacements: the vocabulary may hold '$&'-like text
  return head
    .replace('"vocab": 0', () => `"vocab": {\n${vocabText}\n    }`)
    .replace('"merges": 0', () => `"merges": [\n${mergesText}\n    ]`) + '\n';
}

/** Everything but the vocabulary, which comes as [token text, id] in id order (JS objects reorder integer-like keys). */
function build(bpe: BpeVocabulary): { json: Record<string, unknown>; vocab: Array<[string, number]> } {
  const text = bpe.tokenBytes.map((b) => bytesToTokenText(b));
  const ids = new Map<string, number>();
  text.forEach((t, id) => {
    const other = ids.get(t);
    if (other !== undefined) throw new LlmError(`tokens ${other} and ${id} have the same bytes ${JSON.stringify(t)}; a tokenizer.json vocabulary needs distinct tokens`);
    ids.set(t, id);
  });
  const vocab: Array<[string, number]> = text.map((t, id) => [t, id]);
  const addedTokens = Object.entries(bpe.specialTokens)
    .sort((x, y) => x[1] - y[1])
    .map(([content, id]) => {
      const other = ids.get(content);
      if (other !== undefined) throw new LlmError(`special token ${JSON.stringify(content)} is spelled like ordinary token ${other}; pick another special token text`);
      ids.set(content, id);
      vocab.push([content, id]);
      return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
    });
  const merges = bpe.merges.map(({ pair: [a, b] }, i) => {
    if (text[a] === undefined || text[b] === undefined) throw new LlmError(`merge ${i} refers to token ${text[a] === undefined ? a : b}, which is not in the vocabulary`);
    return `${text[a]} ${text[b]}`;
  });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: bpe.regex }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab: {},
      merges,
    },
  };
  return { json, vocab };
}

/** tiktoken rank file text: `base64(bytes) rank` per ordinary token, in rank order. */
export function tiktokenRanksString(bpe: Pick<BpeVocabulary, 'tokenBytes'>): string {
  const lines: string[] = [];
  bpe.tokenBytes.forEach((b, rank) => lines.push(`${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')} ${rank}`));
  return lines.join('\n') + '\n';
}

/** Write DIR/tokenizer.json and DIR/tokenizer.tiktoken (atomically; DIR is created). */
export function saveTrainedBpe(bpe: BpeVocabulary, dir: string): { tokenizerJson: string; tiktoken: string } {
  const tokenizerJson = join(dir, 'tokenizer.json');
  const tiktoken = join(dir, 'tokenizer.tiktoken');
  writeFileAtomic(tokenizerJson, hfTokenizerJsonString(bpe));
  writeFileAtomic(tiktoken, tiktokenRanksString(bpe));
  return { tokenizerJson, tiktoken };
}
