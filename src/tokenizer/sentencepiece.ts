/**
 * SentencePiece BPE with byte fallback, as used by Llama 1 and 2 (kind 'sentencepiece').
 *
 *   const tok = readSentencePieceModel('tokenizer.model');   // or fromGgufVocab / fromHfTokenizerJson
 *   tok.encode('Hello world');                 // [1, 15043, 3186]  (<s> ▁Hello ▁world)
 *   tok.encode('Hello world', { addBos: false });             // [15043, 3186]
 *   tok.decode([1, 15043, 3186]);              // 'Hello world'
 *
 * Encoding reproduces SentencePiece's `bpe_model.cc` (and so llama.cpp and Hugging Face's
 * Llama tokenizer):
 *  1. Normalisation ('identity' rules only): every ' ' becomes '▁' (U+2581), and a '▁' is put
 *     in front of non-empty text (add_dummy_prefix). With remove_extra_whitespaces, leading and
 *     trailing spaces are dropped and runs of spaces collapse to one first (off for Llama).
 *  2. The text is split into Unicode characters (user-defined pieces match whole, longest
 *     first, and never merge further).
 *  3. Repeatedly, among all adjacent symbol pairs whose concatenation is a piece of the vocab
 *     (NORMAL, USER_DEFINED or UNUSED), the one whose piece has the highest score is merged;
 *     equal scores go to the leftmost pair. A priority queue over pairs and a linked list of
 *     symbols make this O(n log n). UNUSED pieces that result are split back into the two
 *     symbols they were merged from.
 *  4. A symbol that is not a piece becomes its UTF-8 bytes as `<0xXX>` pieces (byte_fallback),
 *     or else <unk> (consecutive unknowns merge into one <unk>, as SentencePiece does).
 *
 * Speed-up (exact, checked per vocabulary): SentencePiece BPE does not pre-split text, but
 * when no mergeable piece contains '▁' right after a character other than '▁' (true for
 * Llama, whose trainer split on whitespace), no merge can ever cross the boundary in front of
 * a '▁' that follows another character. The normalised text is then cut at those boundaries
 * and each word ("▁Hello", "▁▁world", ",\n\nFirst") is merged on its own and memoised. For
 * vocabularies where that does not hold the whole text is merged in one go.
 *
 * Control tokens (<s>, </s>) written in the text are ordinary characters unless
 * `allowedSpecial` lets them through; each stretch of text around an allowed special token is
 * normalised on its own (so it gets its own dummy prefix, as llama.cpp and Hugging Face do).
 *
 * Decoding follows `SentencePieceProcessor::Decode`: '▁' -> ' ', byte pieces -> raw bytes
 * (a run of them is decoded as UTF-8, each invalid byte giving U+FFFD), control tokens -> '',
 * <unk> -> ' ⁇ ' (unk_surface), and the leading '▁' of the first piece is dropped when it
 * starts the text (the dummy prefix; after <s> too). `tokenBytes(id)` gives a piece's raw
 * bytes with no such stripping, so a StreamDecoder sees " Hello" where decode gives "Hello".
 */
import { LlmError } from '../util/errors.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

/** SentencePiece piece types (the same numbers as GGUF's tokenizer.ggml.token_type). */
export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface SentencePieceConfig {
  /** piece text by id ('▁' marks a space) */
  pieces: readonly string[];
  /** merge priority by id (higher merges first) */
  scores: ArrayLike<number>;
  /** PieceType by id */
  types: ArrayLike<number>;
  /** put '▁' in front of the text (default true) */
  addDummyPrefix?: boolean;
  /** drop leading/trailing spaces and collapse runs of spaces (default false) */
  removeExtraWhitespaces?: boolean;
  /** replace ' ' with '▁' (default true) */
  escapeWhitespaces?: boolean;
  /** characters outside the vocabulary become <0xXX> byte pieces (default: when the vocab has all 256) */
  byteFallback?: boolean;
  /** id of the beginning-of-sequence token (default: the control piece '<s>', if any; null: none) */
  bosId?: number | null;
  /** id of the end-of-sequence token (default: the control piece '</s>', if any; null: none) */
  eosId?: number | null;
  /** whether encode() prepends bos by default (default true when there is a bos) */
  addBos?: boolean;
  /** whether encode() appends eos by default (default false) */
  addEos?: boolean;
  /** what <unk> decodes to (default ' ⁇ ') */
  unkSurface?: string;
}

const SPACE = '\u2581';
const DEFAULT_UNK_SURFACE = ' \u2047 ';
const utf8Encoder = new TextEncoder();
const MAX_CACHE = 100_000;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATE_G = new RegExp(LONE_SURROGATE.source, 'g');
/** words longer than this are not memoised */
const MAX_CACHED_WORD = 256;

interface PairEntry {
  score: number;
  left: number;
  right: number;
  size: number;
}

export class SentencePieceTokenizer implements Tokenizer {
  readonly kind = 'sentencepiece';
  readonly pieces: readonly string[];
  readonly scores: Float32Array;
  readonly types: Uint8Array;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
  readonly byteFallback: boolean;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly unkId?: number;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly unkSurface: string;
  readonly specialTokens: Readonly<Record<string, number>>;

  /** NORMAL, USER_DEFINED, UNUSED pieces: the ones merges may produce */
  private readonly mergeable = new Map<string, number>();
  /** UNKNOWN, CONTROL, BYTE pieces (looked up first, as SentencePiece's PieceToId does) */
  private readonly reserved = new Map<string, number>();
  /** byte value -> id of its <0xXX> piece, -1 when missing */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** user-defined pieces grouped by first UTF-16 unit, longest first */
  private readonly userDefined = new Map<string, string[]>();
  private readonly splitAtSpaces: boolean;
  private readonly bytesById: Uint8Array[];
  private readonly cache = new Map<string, number[]>();

  constructor(config: SentencePieceConfig) {
    const { pieces, scores, types } = config;
    const n = pieces.length;
    if (n === 0) throw new LlmError('SentencePiece vocabulary is empty; load a tokenizer.model, GGUF or tokenizer.json that has pieces');
    if (scores.length !== n || types.length !== n) {
      throw new LlmError(`SentencePiece vocabulary has ${n} pieces but ${scores.length} scores and ${types.length} types; all three must have one entry per id`);
    }
    this.pieces = Object.freeze([...pieces]);
    this.scores = Float32Array.from(scores);
    this.types = new Uint8Array(n);
    const special: Record<string, number> = {};
    let unkId: number | undefined;
    let allBytes = 0;
    for (let id = 0; id < n; id++) {
      const piece = pieces[id];
      const type = types[id];
      if (typeof piece !== 'string') throw new LlmError(`SentencePiece piece ${id} is not a string (${String(piece)}); the vocabulary is corrupt`);
      if (!(type >= 1 && type <= 6 && Number.isInteger(type))) {
        throw new LlmError(`SentencePiece piece ${id} (${JSON.stringify(piece)}) has type ${type}; types are 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte`);
      }
      if (Number.isNaN(this.scores[id])) throw new LlmError(`SentencePiece piece ${id} (${JSON.stringify(piece)}) has score NaN; the vocabulary is corrupt`);
      this.types[id] = type;
      const isMergeable = type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED;
      if (isMergeable && piece === '') {
        throw new LlmError(`SentencePiece piece ${id} is empty; only control pieces may be empty`);
      }
      const map = isMergeable ? this.mergeable : this.reserved;
      if (!map.has(piece)) map.set(piece, id); // duplicates: the first id wins
      if (type === PieceType.UNKNOWN) {
        if (unkId === undefined) unkId = id;
        special[piece] = id;
      } else if (type === PieceType.CONTROL) {
        if (piece !== '' && !(piece in special)) special[piece] = id;
      } else if (type === PieceType.BYTE) {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
        if (!m) throw new LlmError(`SentencePiece piece ${id} (${JSON.stringify(piece)}) has type byte but is not of the form <0xXX>`);
        const b = parseInt(m[1], 16);
        if (this.byteIds[b] < 0) {
          this.byteIds[b] = id;
          allBytes++;
        }
      } else if (type === PieceType.USER_DEFINED) {
        const list = this.userDefined.get(piece[0]) ?? [];
        list.push(piece);
        this.userDefined.set(piece[0], list);
      }
    }
    for (const list of this.userDefined.values()) list.sort((a, b) => b.length - a.length);
    this.unkId = unkId;
    this.specialTokens = Object.freeze(special);
    this.addDummyPrefix = config.addDummyPrefix ?? true;
    this.removeExtraWhitespaces = config.removeExtraWhitespaces ?? false;
    this.escapeWhitespaces = config.escapeWhitespaces ?? true;
    this.byteFallback = config.byteFallback ?? allBytes === 256;
    this.unkSurface = config.unkSurface ?? DEFAULT_UNK_SURFACE;
    this.bosId = config.bosId === null ? undefined : (this.checkId(config.bosId, 'bosId') ?? this.controlId('<s>'));
    this.eosId = config.eosId === null ? undefined : (this.checkId(config.eosId, 'eosId') ?? this.controlId('</s>'));
    this.addBos = (config.addBos ?? true) && this.bosId !== undefined;
    this.addEos = (config.addEos ?? false) && this.eosId !== undefined;

    // May words be merged separately? Only if no mergeable piece has '▁' after another character.
    let safe = true;
    for (const piece of this.mergeable.keys()) {
      for (let i = piece.indexOf(SPACE, 1); i > 0; i = piece.indexOf(SPACE, i + 1)) {
        if (piece[i - 1] !== SPACE) {
          safe = false;
          break;
        }
      }
      if (!safe) break;
    }
    this.splitAtSpaces = safe;

    this.bytesById = new Array<Uint8Array>(n);
    const unkBytes = utf8Encoder.encode(this.unkSurface);
    for (let id = 0; id < n; id++) {
      switch (this.types[id]) {
        case PieceType.CONTROL:
          this.bytesById[id] = new Uint8Array(0);
          break;
        case PieceType.UNKNOWN:
          this.bytesById[id] = unkBytes;
          break;
        case PieceType.BYTE:
          this.bytesById[id] = Uint8Array.of(parseInt(pieces[id].slice(3, 5), 16));
          break;
        default:
          this.bytesById[id] = utf8Encoder.encode(pieces[id].replaceAll(SPACE, ' '));
      }
    }
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /** The id of a piece (as SentencePiece's PieceToId; undefined when absent). */
  pieceToId(piece: string): number | undefined {
    return this.reserved.get(piece) ?? this.mergeable.get(piece);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new LlmError(`SentencePiece encode needs a string, got ${typeof text}`);
    const out: number[] = [];
    const auto = opts.addBos !== false;
    if ((opts.addBos ?? this.addBos) && this.bosId !== undefined) out.push(this.bosId);
    const specials = this.allowedSpecials(opts.allowedSpecial);
    if (specials.length === 0) {
      this.encodeSegment(text, out);
    } else {
      const re = new RegExp(specials.map(escapeRegExp).join('|'), 'g');
      let last = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        this.encodeSegment(text.slice(last, m.index), out);
        out.push(this.specialTokens[m[0]]);
        last = m.index + m[0].length;
      }
      this.encodeSegment(text.slice(last), out);
    }
    if (auto && this.addEos && this.eosId !== undefined) out.push(this.eosId);
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let text = '';
    let isBosWs = true;
    let bosWsSeen = false;
    let bytes: number[] = [];
    const n = this.pieces.length;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= n) {
        throw new LlmError(`token id ${id} (position ${i}) is out of range for a SentencePiece tokenizer with ${n} pieces (ids 0..${n - 1})`);
      }
      const type = this.types[id];
      if (type === PieceType.BYTE) {
        bytes.push(this.bytesById[id][0]);
        continue;
      }
      if (bytes.length > 0) {
        text += decodeByteRun(bytes);
        bytes = [];
      }
      if (bosWsSeen || text.length > 0) isBosWs = false;
      bosWsSeen = false;
      if (type === PieceType.CONTROL) continue;
      if (type === PieceType.UNKNOWN) {
        text += this.unkSurface;
        continue;
      }
      let piece = this.pieces[id];
      if (isBosWs && (this.addDummyPrefix || this.removeExtraWhitespaces) && piece.startsWith(SPACE)) {
        piece = piece.slice(1);
        bosWsSeen = !this.removeExtraWhitespaces;
      }
      text += piece.replaceAll(SPACE, ' ');
    }
    if (bytes.length > 0) text += decodeByteRun(bytes);
    return text;
  }

  tokenBytes(id: number): Uint8Array {
    const b = Number.isInteger(id) ? this.bytesById[id] : undefined;
    if (b === undefined) {
      throw new LlmError(`token id ${id} is out of range for a SentencePiece tokenizer with ${this.pieces.length} pieces (ids 0..${this.pieces.length - 1})`);
    }
    return b;
  }

  /**
   * `{ kind: 'sentencepiece', pieces: string[], scores: base64 of float32 LE, types: one digit
   * per id, ...options }` — about 0.5 MB for Llama's 32,000 pieces.
   */
  toJSON(): SentencePieceJSON {
    const le = new Uint8Array(this.scores.length * 4);
    const view = new DataView(le.buffer);
    this.scores.forEach((s, i) => view.setFloat32(i * 4, s, true));
    return {
      kind: 'sentencepiece',
      pieces: [...this.pieces],
      scores: Buffer.from(le).toString('base64'),
      types: Array.from(this.types, (t) => String(t)).join(''),
      addDummyPrefix: this.addDummyPrefix,
      removeExtraWhitespaces: this.removeExtraWhitespaces,
      escapeWhitespaces: this.escapeWhitespaces,
      byteFallback: this.byteFallback,
      bosId: this.bosId ?? null,
      eosId: this.eosId ?? null,
      addBos: this.addBos,
      addEos: this.addEos,
      unkSurface: this.unkSurface,
    };
  }

  static fromJSON(json: unknown): SentencePieceTokenizer {
    const bad = (what: string): never => {
      throw new LlmError(`sentencepiece tokenizer description is malformed: ${what} (re-save it with tokenizer.toJSON())`);
    };
    if (typeof json !== 'object' || json === null) return bad('not an object');
    const j = json as Record<string, unknown>;
    if (j.kind !== 'sentencepiece') bad(`kind is ${JSON.stringify(j.kind)}, expected "sentencepiece"`);
    if (!Array.isArray(j.pieces) || j.pieces.some((p) => typeof p !== 'string')) bad('"pieces" must be an array of strings');
    if (typeof j.scores !== 'string') bad('"scores" must be a base64 string');
    if (typeof j.types !== 'string' || !/^[1-6]*$/.test(j.types as string)) bad('"types" must be a string of digits 1-6');
    const pieces = j.pieces as string[];
    const raw = Buffer.from(j.scores as string, 'base64');
    if (raw.length !== pieces.length * 4) bad(`"scores" holds ${raw.length} bytes, expected ${pieces.length * 4}`);
    if ((j.types as string).length !== pieces.length) bad(`"types" has ${(j.types as string).length} entries, expected ${pieces.length}`);
    const scores = new Float32Array(pieces.length);
    for (let i = 0; i < scores.length; i++) scores[i] = raw.readFloatLE(i * 4);
    const types = Array.from(j.types as string, (c) => c.charCodeAt(0) - 48);
    const bool = (k: string): boolean | undefined => {
      if (j[k] === undefined) return undefined;
      if (typeof j[k] !== 'boolean') bad(`"${k}" must be true or false`);
      return j[k] as boolean;
    };
    const id = (k: string): number | null | undefined => {
      if (j[k] === undefined || j[k] === null) return j[k] as null | undefined;
      if (typeof j[k] !== 'number') bad(`"${k}" must be a token id or null`);
      return j[k] as number;
    };
    if (j.unkSurface !== undefined && typeof j.unkSurface !== 'string') bad('"unkSurface" must be a string');
    return new SentencePieceTokenizer({
      pieces,
      scores,
      types,
      addDummyPrefix: bool('addDummyPrefix'),
      removeExtraWhitespaces: bool('removeExtraWhitespaces'),
      escapeWhitespaces: bool('escapeWhitespaces'),
      byteFallback: bool('byteFallback'),
      bosId: id('bosId'),
      eosId: id('eosId'),
      addBos: bool('addBos'),
      addEos: bool('addEos'),
      unkSurface: j.unkSurface as string | undefined,
    });
  }

  // ---------------------------------------------------------------------------------------

  private checkId(id: number | undefined, what: string): number | undefined {
    if (id === undefined || id < 0) return undefined;
    if (!Number.isInteger(id) || id >= this.pieces.length) {
      throw new LlmError(`SentencePiece ${what} ${id} is not a valid id (the vocabulary has ${this.pieces.length} pieces)`);
    }
    return id;
  }

  private controlId(piece: string): number | undefined {
    const id = this.reserved.get(piece);
    return id !== undefined && this.types[id] === PieceType.CONTROL ? id : undefined;
  }

  private allowedSpecials(allowed: EncodeOptions['allowedSpecial']): string[] {
    if (allowed === undefined || allowed === 'none') return [];
    const names = Object.keys(this.specialTokens);
    const list = allowed === 'all' ? names : names.filter((s) => allowed.has(s));
    return list.sort((a, b) => b.length - a.length);
  }

  /** Normalise one stretch of text and append its pieces' ids. */
  private encodeSegment(segment: string, out: number[]): void {
    let s = segment;
    // a lone surrogate is not a character: it becomes U+FFFD, as any UTF-8 consumer would see it
    if (LONE_SURROGATE.test(s)) s = s.replace(LONE_SURROGATE_G, '\uFFFD');
    if (this.removeExtraWhitespaces) s = s.replace(/^ +| +$/g, '').replace(/ {2,}/g, ' ');
    if (s === '') return;
    if (this.escapeWhitespaces) s = s.replaceAll(' ', SPACE);
    if (this.addDummyPrefix) s = SPACE + s;
    const start = out.length;
    if (!this.splitAtSpaces) {
      this.bpe(s, out);
      return;
    }
    let begin = 0;
    for (let i = s.indexOf(SPACE, 1); ; i = s.indexOf(SPACE, i + 1)) {
      if (i < 0) {
        this.word(s.slice(begin), out, start);
        return;
      }
      if (s[i - 1] !== SPACE) {
        this.word(s.slice(begin, i), out, start);
        begin = i;
      }
    }
  }

  /** One word of a split text, through the memo. */
  private word(w: string, out: number[], segmentStart: number): void {
    let ids = this.cache.get(w);
    if (ids === undefined) {
      ids = [];
      this.bpe(w, ids);
      if (w.length <= MAX_CACHED_WORD) {
        if (this.cache.size >= MAX_CACHE) this.cache.clear();
        this.cache.set(w, ids);
      }
    }
    let k = 0;
    // consecutive unknowns merge into one <unk> across word boundaries too
    if (!this.byteFallback && ids.length > 0 && ids[0] === this.unkId && out.length > segmentStart && out[out.length - 1] === this.unkId) k = 1;
    for (; k < ids.length; k++) out.push(ids[k]);
  }

  /** SentencePiece's BPE over one normalised string; appends ids to `out`. */
  private bpe(text: string, out: number[]): void {
    // initial symbols: characters, or whole user-defined pieces (frozen)
    const sym: string[] = [];
    const frozen: boolean[] = [];
    for (let i = 0; i < text.length; ) {
      const ud = this.userDefined.size > 0 ? this.matchUserDefined(text, i) : undefined;
      if (ud !== undefined) {
        sym.push(ud);
        frozen.push(true);
        i += ud.length;
        continue;
      }
      const c = text.charCodeAt(i);
      const len = c >= 0xd800 && c < 0xdc00 && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
      sym.push(len === 1 ? text[i] : text.slice(i, i + 2));
      frozen.push(false);
      i += len;
    }
    const n = sym.length;
    if (n === 0) return;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    let revMerge: Map<string, [string, string]> | undefined;
    const heap: PairEntry[] = [];
    const tryPair = (left: number, right: number): void => {
      if (left < 0 || right < 0 || frozen[left] || frozen[right]) return;
      const piece = sym[left] + sym[right];
      const id = this.mergeable.get(piece);
      if (id === undefined) return;
      heapPush(heap, { score: this.scores[id], left, right, size: piece.length });
      if (this.types[id] === PieceType.UNUSED) (revMerge ??= new Map()).set(piece, [sym[left], sym[right]]);
    };
    for (let i = 0; i + 1 < n; i++) tryPair(i, i + 1);
    while (heap.length > 0) {
      const top = heapPop(heap);
      const l = top.left;
      const r = top.right;
      // stale: one side merged away, or grew since the pair was queued
      if (sym[l] === '' || sym[r] === '' || sym[l].length + sym[r].length !== top.size) continue;
      sym[l] = sym[l] + sym[r];
      sym[r] = '';
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      tryPair(prev[l], l);
      tryPair(l, next[l]);
    }
    let prevUnk = false;
    const emit = (piece: string): void => {
      const id = this.reserved.get(piece) ?? this.mergeable.get(piece) ?? this.unkId;
      if (id !== undefined && this.types[id] === PieceType.UNUSED && revMerge?.has(piece)) {
        const [a, b] = revMerge.get(piece)!;
        emit(a);
        emit(b);
        return;
      }
      if (id === undefined || this.types[id] === PieceType.UNKNOWN) {
        if (this.byteFallback) {
          for (const b of utf8Encoder.encode(piece)) {
            const bid = this.byteIds[b] >= 0 ? this.byteIds[b] : this.unkId;
            if (bid === undefined) throw this.noUnk(piece);
            out.push(bid);
          }
        } else {
          if (id === undefined) throw this.noUnk(piece);
          if (!prevUnk) out.push(id);
        }
        prevUnk = true;
        return;
      }
      out.push(id);
      prevUnk = false;
    };
    for (let i = 0; i >= 0; i = next[i]) emit(sym[i]);
  }

  private matchUserDefined(text: string, i: number): string | undefined {
    const list = this.userDefined.get(text[i]);
    if (list === undefined) return undefined;
    for (const p of list) if (text.startsWith(p, i)) return p;
    return undefined;
  }

  private noUnk(piece: string): LlmError {
    return new LlmError(`text contains ${JSON.stringify(piece)}, which this SentencePiece vocabulary cannot encode (it has neither that piece, byte fallback, nor an <unk> piece); remove it from the text`);
  }
}

export interface SentencePieceJSON {
  kind: 'sentencepiece';
  pieces: string[];
  scores: string;
  types: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  byteFallback: boolean;
  bosId: number | null;
  eosId: number | null;
  addBos: boolean;
  addEos: boolean;
  unkSurface: string;
  [k: string]: unknown;
}

// --- max-heap on (score, then smaller left) ------------------------------------------------

function before(a: PairEntry, b: PairEntry): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

function heapPush(h: PairEntry[], e: PairEntry): void {
  let i = h.length;
  h.push(e);
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!before(e, h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = e;
}

function heapPop(h: PairEntry[]): PairEntry {
  const top = h[0];
  const last = h.pop()!;
  const n = h.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const c = l + 1 < n && before(h[l + 1], h[l]) ? l + 1 : l;
      if (!before(h[c], last)) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
  }
  return top;
}

/** A run of byte pieces as text, SentencePiece style: each byte not part of a valid UTF-8 character is U+FFFD. */
function decodeByteRun(bytes: number[]): string {
  let s = '';
  let i = 0;
  while (i < bytes.length) {
    const len = utf8CharLength(bytes, i);
    if (len === 0) {
      s += '\uFFFD';
      i++;
    } else {
      s += len === 1 ? String.fromCharCode(bytes[i]) : Buffer.from(bytes.slice(i, i + len)).toString('utf8');
      i += len;
    }
  }
  return s;
}

/** Length of the valid UTF-8 character at bytes[i], or 0 if none. */
function utf8CharLength(b: number[], i: number): number {
  const c = b[i];
  if (c < 0x80) return 1;
  let len: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c === 0xe0) lo = 0xa0;
    else if (c === 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c === 0xf0) lo = 0x90;
    else if (c === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + len > b.length) return 0;
  if (b[i + 1] < lo || b[i + 1] > hi) return 0;
  for (let k = 2; k < len; k++) if ((b[i + k] & 0xc0) !== 0x80) return 0;
  return len;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
