/**
 * A SentencePieceTokenizer from a Hugging Face `tokenizer.json` of the Llama kind: model BPE
 * with `byte_fallback: true`, no pre-splitting, and the SentencePiece normalisation written
 * either as normalizer Sequence[Prepend('▁'), Replace(' ' -> '▁')] (Llama 1/2, "legacy") or
 * as pre_tokenizer Metaspace(replacement '▁', split false).
 *
 *   const tok = readHfTokenizerJson('Llama-2-7b-hf/tokenizer.json');
 *   tok.encode('Hello world');   // [1, 15043, 3186]
 *
 * Merge priority. Hugging Face's BPE merges the adjacent pair with the lowest rank in
 * `merges`; SentencePiece merges the adjacent pair whose concatenation has the highest piece
 * score. We give each piece the score -(rank of the first merge that produces it), so ranks
 * become scores. For tokenizer.json files converted from a SentencePiece model (transformers'
 * converter lists every split (a, b) of every piece, ordered by the piece's score) the two
 * algorithms then choose the same merges. Pieces that no merge produces get the lowest score
 * (Hugging Face can never produce them; for converted files they are single characters or
 * pieces that cannot be split into two pieces, which SentencePiece cannot produce either).
 *
 * Token types: added tokens marked special are control tokens (<s>, </s>), other added tokens
 * user-defined, model.unk_token unknown, '<0xXX>' pieces bytes (with byte_fallback), the rest
 * normal. BOS/EOS come from the TemplateProcessing post-processor (`<s> $A` means add BOS by
 * default) or else the added tokens '<s>' / '</s>'.
 */
import { LlmError } from '../util/errors.js';
import { preview, readRegularFileText } from '../util/regular-file.js';
import { PieceType, SentencePieceTokenizer } from './sentencepiece.js';

const SPACE = '\u2581';

type Json = Record<string, unknown>;

export function sentencePieceFromHfTokenizerJson(json: unknown, name = 'tokenizer.json'): SentencePieceTokenizer {
  const bad = (what: string): never => {
    throw new LlmError(`${name}: ${what}`);
  };
  if (!isObj(json)) return bad('is not a JSON object (expected a Hugging Face tokenizer.json)');
  const model = json.model;
  if (!isObj(model)) return bad('has no "model" object (expected a Hugging Face tokenizer.json)');
  if (model.type !== 'BPE') bad(`model type is ${preview(model.type)}; only BPE (Llama-style SentencePiece BPE) is supported here`);
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) bad('BPE dropout is set; remove it for deterministic encoding');
  if (model.continuing_subword_prefix || model.end_of_word_suffix) bad('BPE with continuing_subword_prefix / end_of_word_suffix is not SentencePiece-style');
  if (model.ignore_merges === true) bad('BPE with ignore_merges is not SentencePiece-style (is this a Llama 3 / tiktoken-style tokenizer?)');
  const byteFallback = model.byte_fallback === true;
  const vocab = model.vocab;
  if (!isObj(vocab)) return bad('model.vocab must be an object mapping pieces to ids');

  // pieces by id: the vocab, then added tokens
  const pieces: string[] = [];
  const place = (piece: string, id: unknown): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 10_000_000) bad(`piece ${preview(piece)} has invalid id ${preview(id)}`);
    const i = id as number;
    if (pieces[i] !== undefined && pieces[i] !== piece) bad(`id ${i} is given to both ${preview(pieces[i])} and ${preview(piece)}`);
    pieces[i] = piece;
  };
  for (const [piece, id] of Object.entries(vocab)) place(piece, id);
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) bad('"added_tokens" must be an array');
  const addedType = new Map<number, PieceType>();
  for (const t of added as unknown[]) {
    if (!isObj(t) || typeof t.content !== 'string') return bad('an entry of "added_tokens" has no string "content"');
    place(t.content, t.id);
    addedType.set(t.id as number, t.special === true ? PieceType.CONTROL : PieceType.USER_DEFINED);
  }
  const n = pieces.length;
  for (let i = 0; i < n; i++) if (pieces[i] === undefined) bad(`no piece has id ${i} (ids must run 0..${n - 1} without gaps)`);
  const idOf = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!idOf.has(p)) idOf.set(p, i);
  });

  // types
  const types = new Uint8Array(n).fill(PieceType.NORMAL);
  for (let i = 0; i < n; i++) {
    if (byteFallback && /^<0x[0-9A-F]{2}>$/.test(pieces[i])) types[i] = PieceType.BYTE;
  }
  for (const [id, type] of addedType) types[id] = type;
  if (model.unk_token !== undefined && model.unk_token !== null) {
    const unk = typeof model.unk_token === 'string' ? idOf.get(model.unk_token) : undefined;
    if (unk === undefined) bad(`model.unk_token ${preview(model.unk_token)} is not in the vocabulary`);
    types[unk!] = PieceType.UNKNOWN;
  }

  // scores from merge ranks
  const merges = model.merges ?? [];
  if (!Array.isArray(merges)) bad('model.merges must be an array');
  const lowest = -(merges as unknown[]).length - 1;
  const scores = new Float32Array(n).fill(lowest);
  (merges as unknown[]).forEach((m, rank) => {
    let a: unknown;
    let b: unknown;
    if (typeof m === 'string') {
      const k = m.indexOf(' ');
      if (k <= 0 || m.indexOf(' ', k + 1) >= 0) bad(`merge ${rank} ${preview(m)} is not two pieces separated by one space`);
      a = m.slice(0, k);
      b = m.slice(k + 1);
    } else if (Array.isArray(m) && m.length === 2) {
      [a, b] = m;
    }
    if (typeof a !== 'string' || typeof b !== 'string') return bad(`merge ${rank} ${preview(m)} is not a pair of pieces`);
    const id = idOf.get(a + b);
    if (!idOf.has(a) || !idOf.has(b) || id === undefined) bad(`merge ${rank} (${preview(a)}, ${preview(b)}) uses a piece that is not in the vocabulary`);
    if (scores[id!] === lowest) scores[id!] = -rank;
  });

  // normalisation
  let addDummyPrefix = false;
  let escape = false;
  const norm = json.normalizer;
  const normalizers = norm === null || norm === undefined ? [] : isObj(norm) && norm.type === 'Sequence' ? norm.normalizers : [norm];
  if (!Array.isArray(normalizers)) return bad('normalizer Sequence has no "normalizers" array');
  normalizers.forEach((nz: unknown) => {
    if (!isObj(nz)) return bad('a normalizer is not an object');
    if (nz.type === 'Prepend' && nz.prepend === SPACE) addDummyPrefix = true;
    else if (nz.type === 'Replace' && isObj(nz.pattern) && nz.pattern.String === ' ' && nz.content === SPACE) escape = true;
    else bad(`normalizer ${preview(nz.type)} (${preview(nz)}) is not supported; only Prepend('▁') then Replace(' ', '▁') as Llama's`);
  });
  const pre = json.pre_tokenizer;
  if (pre !== null && pre !== undefined) {
    if (!isObj(pre) || pre.type !== 'Metaspace') return bad(`pre_tokenizer ${preview(isObj(pre) ? pre.type : pre)} is not supported; SentencePiece-style BPE has none or Metaspace`);
    if (pre.replacement !== undefined && pre.replacement !== SPACE) bad(`Metaspace replacement ${preview(pre.replacement)} is not '▁'`);
    if (pre.split === true) bad('Metaspace with split: true splits words apart, which SentencePiece BPE does not; not supported');
    escape = true;
    const scheme = pre.prepend_scheme ?? (pre.add_prefix_space === false ? 'never' : 'always');
    addDummyPrefix = scheme !== 'never';
  }
  if (!escape) bad('the text is never turned into SentencePiece form (no Replace(" ", "▁") normalizer or Metaspace pre-tokenizer); not a Llama-style tokenizer.json');

  // bos / eos
  let bosId: number | null | undefined;
  let eosId: number | null | undefined;
  let addBos = false;
  let addEos = false;
  const post = json.post_processor;
  if (isObj(post) && post.type === 'TemplateProcessing' && Array.isArray(post.single)) {
    const single = post.single as unknown[];
    const specialOf = (item: unknown): number | undefined => {
      if (!isObj(item) || !isObj(item.SpecialToken)) return undefined;
      const tokenName = item.SpecialToken.id;
      const st = isObj(post.special_tokens) && typeof tokenName === 'string' ? post.special_tokens[tokenName] : undefined;
      const ids = isObj(st) && Array.isArray(st.ids) ? st.ids : undefined;
      const id = ids?.length === 1 ? ids[0] : typeof tokenName === 'string' ? idOf.get(tokenName) : undefined;
      if (typeof id !== 'number' || id < 0 || id >= n) return bad(`post_processor special token ${preview(tokenName)} has no valid id`);
      return id;
    };
    if (single.length > 0) {
      const first = specialOf(single[0]);
      if (first !== undefined) {
        bosId = first;
        addBos = true;
      }
      const last = single.length > 1 ? specialOf(single[single.length - 1]) : undefined;
      if (last !== undefined) {
        eosId = last;
        addEos = true;
      }
    }
  } else if (post !== null && post !== undefined) {
    bad(`post_processor ${preview(isObj(post) ? post.type : post)} is not supported (expected TemplateProcessing or null)`);
  }
  const control = (p: string): number | undefined => {
    const id = idOf.get(p);
    return id !== undefined && types[id] === PieceType.CONTROL ? id : undefined;
  };
  bosId ??= control('<s>') ?? null;
  eosId ??= control('</s>') ?? null;

  return new SentencePieceTokenizer({
    pieces,
    scores,
    types,
    addDummyPrefix,
    escapeWhitespaces: true,
    removeExtraWhitespaces: false,
    byteFallback,
    bosId,
    eosId,
    addBos,
    addEos,
  });
}

/** Read a Hugging Face `tokenizer.json` file. */
export function readHfTokenizerJson(path: string): SentencePieceTokenizer {
  const text = readRegularFileText(path, 'tokenizer file');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LlmError(`${path} is not valid JSON (${(err as Error).message.slice(0, 200)}); expected a Hugging Face tokenizer.json`);
  }
  return sentencePieceFromHfTokenizerJson(json, path);
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
