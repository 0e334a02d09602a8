/**
 * Byte-level BPE tokenizer (GPT-2, tiktoken's cl100k_base / o200k_base, GGUF 'gpt2' vocabularies).
 *
 * A vocabulary is a token table (id -> bytes), a merge order, a split pattern and special
 * tokens. Encoding cuts the text into chunks with the split pattern (pretokenize.ts), turns each
 * chunk into its UTF-8 bytes, one token per byte, and then repeatedly merges the adjacent pair of
 * tokens with the lowest rank (the leftmost such pair on ties) until no pair can merge.
 * Two ways to rank pairs:
 *
 *   - tiktoken ranks (no `merges`): a pair can merge when the concatenation of its bytes is a
 *     token, and its rank is that token's id; a chunk that is a whole token becomes that token
 *     directly (`ignoreMerges`, as tiktoken does).
 *   - a merge list (`merges`, GPT-2 merges.txt / GGUF / Hugging Face): only the listed pairs merge,
 *     the i-th pair with rank i.
 *
 *   const tok = await loadTiktoken('cl100k_base');             // tiktoken.ts
 *   tok.encode('hello world');                                  // [15339, 1917]
 *   tok.encode('<|endoftext|>', { allowedSpecial: 'all' });     // [100257]
 *   tok.decode([15339, 1917]);                                  // 'hello world'
 *   tokenizerFromJSON(tok.toJSON())                             // the same tokenizer again
 *
 * Speed: the named patterns are cut by hand-written scanners (no RegExp, no substrings); chunks
 * are looked up in a bounded cache keyed by their UTF-16 code units (open addressing over typed
 * arrays, no string allocation; up to 4 Latin-1 characters packed exactly into the key); ids are
 * collected in a typed array; on a miss the pairs are found in a hash table keyed by the two token
 * ids (for tiktoken ranks filled lazily from a bytes -> id table), with a linear scan for short
 * chunks and a binary heap over a linked list for long ones (O(n log n), no quadratic blow-up).
 *
 * Unused ids (gaps in the vocabulary) and out-of-range ids decode to U+FFFD: decode never throws.
 */
import { LlmError } from '../util/errors.js';
import { chunkScanner, splitRegex, SPLIT_PATTERNS, type ChunkScanner, type SplitPattern } from './pretokenize.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

export interface BpeOptions {
  /** The bytes of each ordinary token by id; null/undefined for ids that are unused or special. */
  tokens: ReadonlyArray<Uint8Array | null | undefined>;
  /**
   * Pairs of token ids in priority order (merges.txt order). Omit for tiktoken ranks: a pair
   * merges when its concatenated bytes are a token, the token's id being the rank.
   */
  merges?: ReadonlyArray<readonly [number, number]>;
  /** 'gpt2' | 'cl100k' | 'o200k' or a regular-expression source (compiled with flags 'gu'). */
  pattern: SplitPattern | string;
  /** e.g. { '<|endoftext|>': 100257 } */
  specialTokens?: Readonly<Record<string, number>>;
  /** A chunk that is itself a token is emitted as that token without merging (default: true without `merges`). */
  ignoreMerges?: boolean;
  bosId?: number;
  eosId?: number;
  /** At least max id + 1 (default); larger for a padded vocabulary. */
  vocabSize?: number;
  /** Name of the vocabulary, e.g. 'cl100k_base' (informative). */
  name?: string;
}

/** The JSON form (`toJSON`), which travels inside checkpoints. */
export interface BpeJson {
  kind: 'bpe';
  name?: string;
  pattern: string;
  vocabSize: number;
  /** base64 of each ordinary token's bytes by id; '' for unused and special ids */
  tokens: string[];
  /** base64 of the merge list as little-endian uint32 pairs (absent: tiktoken ranks) */
  merges?: string;
  ignoreMerges: boolean;
  specialTokens: Record<string, number>;
  bosId?: number;
  eosId?: number;
  [k: string]: unknown;
}

const NO_RANK = 0x7fffffff;
const FFFD = Uint8Array.of(0xef, 0xbf, 0xbd);
/** Chunks up to this many UTF-16 code units are cached. */
const CACHE_MAX_CHUNK = 64;
const CACHE_SLOTS = 1 << 16;
const CACHE_KEY_POOL = 1 << 20;
const CACHE_VAL_POOL = 1 << 19;
/** Flag (with the key length, which is at most CACHE_MAX_CHUNK < 128) of a packed cache key. */
const PACKED = 0x80;
/** Chunks of more bytes than this merge through a heap instead of a linear scan. */
const HEAP_MIN = 128;
/** Most slots of the lazily filled pair table (tiktoken ranks) before it is cleared. */
const PAIR_SLOTS_MAX = 1 << 21;

export class BpeTokenizer implements Tokenizer {
  readonly kind = 'bpe';
  readonly vocabSize: number;
  readonly name?: string;
  /** The split pattern as given: a name ('cl100k') or a regular-expression source. */
  readonly pattern: string;
  readonly specialTokens: Readonly<Record<string, number>>;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly ignoreMerges: boolean;

  /** bytes of id i: data[off[i] .. off[i+1]] (ordinary and special tokens) */
  private readonly data: Uint8Array;
  private readonly off: Uint32Array;
  /** 1 ordinary, 2 special, 3 both, 0 unused */
  private readonly kindOf: Uint8Array;
  /** open-addressing table: bytes of an ordinary token -> id */
  private readonly byId: Int32Array;
  private readonly byMask: number;
  private readonly byteToId = new Int32Array(256);
  /** raw polynomial hash of each ordinary token's bytes; pow[k] = HASH_BASE^k */
  private readonly tokHash: Int32Array;
  private readonly pow: Int32Array;
  /** open-addressing table: (left id, right id) -> rank, merged id (rank NO_RANK: cannot merge) */
  private pairKeyA = new Int32Array(0);
  private pairKeyB = new Int32Array(0);
  private pairRank = new Int32Array(0);
  private pairId = new Int32Array(0);
  private pairMask = 0;
  private pairCount = 0;
  /** tiktoken ranks: pairs are looked up by their bytes when first met, then remembered */
  private readonly lazyPairs: boolean;
  /** the merge list (flat pairs) when given, for toJSON */
  private readonly merges: Uint32Array | null;
  private readonly ordinaryCount: number;

  private readonly scanner: ChunkScanner | null;
  private readonly regex: RegExp;
  private allSpecialRegex: RegExp | null = null;

  // scratch buffers for one chunk
  private bytes = new Uint8Array(256);
  private ids = new Int32Array(256);
  private ranks = new Int32Array(256);
  private mids = new Int32Array(256);

  // chunk cache (allocated on first use)
  /** per slot 4 ints: hash, key offset in cKeyPool (-1: empty), key length | value count << 8, value (the id, or an offset in cValPool) */
  private cache: Int32Array | null = null;
  private cKeyPool = new Uint16Array(0);
  private cValPool = new Int32Array(0);
  private cCount = 0;
  private cKeyTop = 0;
  private cValTop = 0;

  constructor(opts: BpeOptions) {
    const tokens = opts?.tokens;
    if (!Array.isArray(tokens)) throw new LlmError('BPE tokenizer needs options { tokens: Uint8Array[] by id, pattern, ... }');
    const specials = opts.specialTokens ?? {};
    this.name = opts.name;
    this.pattern = opts.pattern;
    this.ignoreMerges = opts.ignoreMerges ?? !opts.merges;
    this.bosId = opts.bosId;
    this.eosId = opts.eosId;

    // vocabulary size and token bytes
    let size = tokens.length;
    const specialEntries = Object.entries(specials);
    for (const [text, id] of specialEntries) {
      if (!Number.isInteger(id) || id < 0) throw new LlmError(`special token ${JSON.stringify(text)} has invalid id ${id}; ids must be non-negative integers`);
      if (text.length === 0) throw new LlmError(`a special token has empty text (id ${id}); give every special token its text`);
      size = Math.max(size, id + 1);
    }
    if (opts.vocabSize !== undefined) {
      if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < size) {
        throw new LlmError(`BPE vocabSize ${opts.vocabSize} is smaller than the tokens need (${size}); omit it or pass at least ${size}`);
      }
      size = opts.vocabSize;
    }
    this.vocabSize = size;
    const specialBytes = new Map<number, Uint8Array>();
    const utf8 = new TextEncoder();
    for (const [text, id] of specialEntries) {
      if (specialBytes.has(id)) throw new LlmError(`special tokens share id ${id}; give each special token its own id`);
      specialBytes.set(id, utf8.encode(text));
    }
    const kindOf = new Uint8Array(size);
    let total = 0;
    let ordinary = 0;
    for (let i = 0; i < size; i++) {
      const t = i < tokens.length ? tokens[i] : null;
      const sp = specialBytes.get(i);
      if (t != null) {
        if (!(t instanceof Uint8Array) || t.length === 0) throw new LlmError(`BPE token ${i} must be a non-empty Uint8Array of its bytes`);
        if (sp && !bytesEqual(sp, t)) {
          throw new LlmError(`id ${i} is both ordinary token ${JSON.stringify(Buffer.from(t).toString('latin1'))} and a special token with other text; give the special token a free id`);
        }
        kindOf[i] = sp ? 3 : 1;
        total += t.length;
        ordinary++;
      } else if (sp) {
        kindOf[i] = 2;
        total += sp.length;
      }
    }
    this.ordinaryCount = ordinary;
    this.kindOf = kindOf;
    const off = new Uint32Array(size + 1);
    const data = new Uint8Array(total);
    let pos = 0;
    for (let i = 0; i < size; i++) {
      off[i] = pos;
      const b = kindOf[i] & 1 ? tokens[i]! : kindOf[i] === 2 ? specialBytes.get(i)! : null;
      if (b) {
        data.set(b, pos);
        pos += b.length;
      }
    }
    off[size] = pos;
    this.data = data;
    this.off = off;
    this.specialTokens = Object.freeze({ ...specials });

    // bytes -> id for ordinary tokens
    let maxLen = 1;
    const tokHash = new Int32Array(size);
    let cap = 1024;
    while (cap < ordinary * 2) cap <<= 1;
    const byId = new Int32Array(cap).fill(-1);
    this.byId = byId;
    this.byMask = cap - 1;
    for (let i = 0; i < size; i++) {
      if ((kindOf[i] & 1) === 0) continue;
      const s = off[i];
      const e = off[i + 1];
      if (e - s > maxLen) maxLen = e - s;
      const raw = rawHash(data, s, e);
      tokHash[i] = raw;
      let slot = mix(raw) & this.byMask;
      for (;;) {
        const j = byId[slot];
        if (j < 0) {
          byId[slot] = i;
          break;
        }
        if (off[j + 1] - off[j] === e - s && rangeEqual(data, off[j], data, s, e - s)) break; // duplicate bytes: the lower id wins
        slot = (slot + 1) & this.byMask;
      }
    }
    this.tokHash = tokHash;
    this.pow = new Int32Array(maxLen + 1);
    this.pow[0] = 1;
    for (let k = 1; k <= maxLen; k++) this.pow[k] = Math.imul(this.pow[k - 1], HASH_BASE);
    for (let b = 0; b < 256; b++) {
      this.bytes[0] = b;
      const id = this.lookupBytes(this.bytes, 0, 1);
      if (id < 0) throw new LlmError(`BPE vocabulary has no token for the single byte 0x${b.toString(16).padStart(2, '0')}; a byte-level BPE needs all 256 byte tokens`);
      this.byteToId[b] = id;
    }

    // pair table: from the merge list, or (tiktoken ranks) filled in as pairs are met
    const m = opts.merges;
    this.lazyPairs = !m;
    this.merges = m ? new Uint32Array(m.length * 2) : null;
    let pcap = 1 << 16;
    while (m && pcap < m.length * 2) pcap <<= 1;
    this.pairAllocate(pcap);
    if (m) {
      for (let r = 0; r < m.length; r++) {
        const pair = m[r];
        const a = pair?.[0];
        const b = pair?.[1];
        if (!this.isOrdinary(a) || !this.isOrdinary(b)) {
          throw new LlmError(`BPE merge ${r} (${JSON.stringify(pair)}) names an id that is not an ordinary token; merges must pair ordinary token ids`);
        }
        this.merges![2 * r] = a;
        this.merges![2 * r + 1] = b;
        const id = this.lookupConcat(a, b);
        if (id < 0) {
          throw new LlmError(`BPE merge ${r} (${a}, ${b}) makes bytes that are no token of the vocabulary; every merge result must be a token`);
        }
        const slot = this.pairSlot(a, b);
        if (this.pairKeyA[slot] < 0) this.pairInsert(slot, a, b, r, id); // a repeated pair keeps its first rank
      }
    }

    if (typeof opts.pattern !== 'string') {
      throw new LlmError(`BPE split pattern must be one of ${Object.keys(SPLIT_PATTERNS).join(', ')} or a regular-expression string`);
    }
    try {
      this.regex = splitRegex(opts.pattern);
    } catch (err) {
      throw new LlmError(`BPE split pattern is not a valid JavaScript regular expression: ${(err as Error).message} (use 'gpt2', 'cl100k', 'o200k' or a valid pattern)`);
    }
    this.scanner = chunkScanner(opts.pattern);

    for (const [label, id] of [['bosId', opts.bosId], ['eosId', opts.eosId]] as const) {
      if (id !== undefined && (!Number.isInteger(id) || id < 0 || id >= size)) {
        throw new LlmError(`BPE ${label} ${id} is out of range for a vocabulary of ${size} tokens`);
      }
    }
  }

  /** Rebuild from `toJSON()` output. */
  static fromJSON(json: unknown): BpeTokenizer {
    const j = json as Partial<BpeJson>;
    const shape = 'BPE tokenizer description must look like { "kind": "bpe", "pattern": "...", "tokens": [base64...], "specialTokens": {...} }';
    if (typeof j !== 'object' || j === null || j.kind !== 'bpe' || typeof j.pattern !== 'string' || !Array.isArray(j.tokens)) {
      throw new LlmError(shape);
    }
    const tokens = j.tokens.map((s, i) => {
      if (typeof s !== 'string') throw new LlmError(`BPE tokenizer description: tokens[${i}] is not a base64 string`);
      return s === '' ? null : base64ToBytes(s);
    });
    let merges: [number, number][] | undefined;
    if (j.merges !== undefined) {
      if (typeof j.merges !== 'string') throw new LlmError('BPE tokenizer description: "merges" must be a base64 string of uint32 pairs');
      const raw = base64ToBytes(j.merges);
      if (raw.length % 8 !== 0) throw new LlmError('BPE tokenizer description: "merges" length is not a whole number of uint32 pairs');
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      merges = new Array(raw.length / 8);
      for (let i = 0; i < merges.length; i++) merges[i] = [view.getUint32(8 * i, true), view.getUint32(8 * i + 4, true)];
    }
    const specials = j.specialTokens ?? {};
    if (typeof specials !== 'object' || specials === null) throw new LlmError('BPE tokenizer description: "specialTokens" must be an object of text -> id');
    return new BpeTokenizer({
      tokens,
      merges,
      pattern: j.pattern,
      specialTokens: specials,
      ignoreMerges: j.ignoreMerges,
      bosId: j.bosId,
      eosId: j.eosId,
      vocabSize: j.vocabSize,
      name: j.name,
    });
  }

  toJSON(): BpeJson {
    let last = -1;
    for (let i = 0; i < this.vocabSize; i++) if (this.kindOf[i] & 1) last = i;
    const tokens = new Array<string>(last + 1);
    for (let i = 0; i <= last; i++) {
      tokens[i] = this.kindOf[i] & 1 ? Buffer.from(this.data.buffer, this.data.byteOffset + this.off[i], this.off[i + 1] - this.off[i]).toString('base64') : '';
    }
    const json: BpeJson = {
      kind: 'bpe',
      ...(this.name !== undefined ? { name: this.name } : {}),
      pattern: this.pattern,
      vocabSize: this.vocabSize,
      tokens,
      ignoreMerges: this.ignoreMerges,
      specialTokens: { ...this.specialTokens },
    };
    if (this.merges) {
      const le = new Uint8Array(this.merges.length * 4);
      const view = new DataView(le.buffer);
      for (let i = 0; i < this.merges.length; i++) view.setUint32(4 * i, this.merges[i], true);
      json.merges = Buffer.from(le).toString('base64');
    }
    if (this.bosId !== undefined) json.bosId = this.bosId;
    if (this.eosId !== undefined) json.eosId = this.eosId;
    return json;
  }

  /** Number of ordinary (non-special) tokens. */
  get ordinaryTokens(): number {
    return this.ordinaryCount;
  }

  /** The merge list as [left, right] id pairs in priority order, or null for tiktoken ranks. */
  mergeList(): [number, number][] | null {
    if (!this.merges) return null;
    const out: [number, number][] = new Array(this.merges.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = [this.merges[2 * i], this.merges[2 * i + 1]];
    return out;
  }

  /** Whether `id` is an ordinary token (not unused, not only special). */
  isOrdinary(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize && (this.kindOf[id] & 1) === 1;
  }

  /** The id of the ordinary token with exactly these bytes, or -1. */
  tokenId(bytes: Uint8Array): number {
    return this.lookupBytes(bytes, 0, bytes.length);
  }

  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new LlmError(`token id ${id} is out of range for this ${this.vocabSize}-token BPE vocabulary (ids 0..${this.vocabSize - 1})`);
    }
    if (this.kindOf[id] === 0) return FFFD.slice();
    return this.data.slice(this.off[id], this.off[id + 1]);
  }

  decode(ids: ArrayLike<number>): string {
    const n = ids.length;
    let len = 0;
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      len += id === (id | 0) && id >= 0 && id < this.vocabSize && this.kindOf[id] !== 0 ? this.off[id + 1] - this.off[id] : 3;
    }
    const out = new Uint8Array(len);
    let p = 0;
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (id === (id | 0) && id >= 0 && id < this.vocabSize && this.kindOf[id] !== 0) {
        const s = this.off[id];
        const e = this.off[id + 1];
        for (let k = s; k < e; k++) out[p++] = this.data[k];
      } else {
        // unused or invalid id (e.g. sampled from a padded vocabulary): U+FFFD, never throw
        out[p++] = 0xef;
        out[p++] = 0xbf;
        out[p++] = 0xbd;
      }
    }
    return UTF8.decode(out);
  }

  encode(text: string, opts?: EncodeOptions): number[] {
    if (typeof text !== 'string') throw new LlmError(`BPE encode needs a string, got ${typeof text}`);
    this.beginOutput(text.length);
    if (opts?.addBos && this.bosId !== undefined) this.put(this.bosId);
    const re = this.specialRegex(opts?.allowedSpecial ?? 'none');
    if (re === null) {
      this.encodeRange(text, 0, text.length);
      return this.takeOutput();
    }
    re.lastIndex = 0;
    let start = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > start) this.encodeRange(text, start, m.index);
      this.put(this.specialTokens[m[0]]);
      start = m.index + m[0].length;
    }
    if (start < text.length) this.encodeRange(text, start, text.length);
    return this.takeOutput();
  }

  /** Encode treating every special token's text as plain text. */
  encodeOrdinary(text: string): number[] {
    this.beginOutput(text.length);
    this.encodeRange(text, 0, text.length);
    return this.takeOutput();
  }

  // ------------------------------------------------------------------------------------------

  private specialRegex(allowed: 'all' | 'none' | ReadonlySet<string>): RegExp | null {
    if (allowed === 'none') return null;
    if (allowed === 'all') {
      if (!this.allSpecialRegex) {
        const all = Object.keys(this.specialTokens);
        if (all.length === 0) return null;
        this.allSpecialRegex = alternation(all);
      }
      return this.allSpecialRegex;
    }
    if (!(allowed instanceof Set)) {
      throw new LlmError(`allowedSpecial must be 'all', 'none' or a Set of special-token texts, got ${JSON.stringify(allowed)}`);
    }
    if (allowed.size === 0) return null;
    for (const s of allowed) {
      if (!Object.hasOwn(this.specialTokens, s)) {
        const known = Object.keys(this.specialTokens);
        throw new LlmError(
          `allowedSpecial names ${JSON.stringify(s)}, which is not a special token of this tokenizer (known: ${known.length ? known.slice(0, 8).join(' ') : 'none'})`,
        );
      }
    }
    return alternation([...allowed]);
  }

  // ids are collected in a typed array (much faster than growing a JS array), then copied once
  private ob = new Int32Array(1024);
  private on = 0;

  private beginOutput(textLength: number): void {
    this.on = 0;
    const want = Math.min(((textLength / 3) | 0) + 64, 1 << 24); // English runs at ~4 characters per token
    if (this.ob.length < want) this.ob = new Int32Array(want);
  }

  private put(id: number): void {
    if (this.on === this.ob.length) this.growOutput(1);
    this.ob[this.on++] = id;
  }

  private growOutput(extra: number): void {
    let cap = this.ob.length * 2;
    while (cap < this.on + extra) cap *= 2;
    const b = new Int32Array(cap);
    b.set(this.ob.subarray(0, this.on));
    this.ob = b;
  }

  private takeOutput(): number[] {
    const n = this.on;
    const ob = this.ob;
    const res: number[] = n <= 1 << 24 ? new Array(n) : [];
    if (n <= 1 << 24) for (let i = 0; i < n; i++) res[i] = ob[i];
    else for (let i = 0; i < n; i++) res.push(ob[i]);
    if (ob.length > 1 << 22) this.ob = new Int32Array(1024); // do not hold on to more than 16 MB
    this.on = 0;
    return res;
  }

  /** Encode text[start, end) (no special tokens). */
  private encodeRange(text: string, start: number, end: number): void {
    const scan = this.scanner;
    if (scan !== null) {
      for (let p = start; p < end; ) {
        const e = scan(text, p, end);
        this.encodeCached(text, p, e);
        p = e;
      }
      return;
    }
    const seg = start === 0 && end === text.length ? text : text.slice(start, end);
    const re = this.regex;
    re.lastIndex = 0;
    for (let m = re.exec(seg); m !== null; m = re.exec(seg)) {
      const len = m[0].length;
      if (len === 0) {
        re.lastIndex++;
        continue;
      }
      this.encodeCached(seg, m.index, m.index + len);
    }
  }

  /**
   * Encode the chunk t[s, e), through the cache. Keys of up to 4 Latin-1 characters are packed
   * exactly into the 32-bit key (no key comparison); longer ones are FNV-1a hashes of the UTF-16
   * code units, confirmed against the stored characters.
   */
  private encodeCached(t: string, s: number, e: number): void {
    const len = e - s;
    const cache = this.cache;
    if (len > CACHE_MAX_CHUNK || cache === null) {
      this.encodeMiss(t, s, e);
      return;
    }
    if (len <= 4) {
      let h = 0;
      let i = s;
      for (; i < e; i++) {
        const c = t.charCodeAt(i);
        if (c > 0xff) break;
        h = (h << 8) | c;
      }
      if (i === e) {
        const want = len | PACKED;
        let slot = packedSlot(h);
        for (;;) {
          if (cache[slot + 1] < 0) break;
          const lens = cache[slot + 2];
          if (cache[slot] === h && (lens & 0xff) === want) {
            this.emitCached(lens >>> 8, cache[slot + 3]);
            return;
          }
          slot = (slot + 4) & (CACHE_SLOTS * 4 - 1);
        }
        this.encodeMiss(t, s, e);
        return;
      }
    }
    let h = 0x811c9dc5 | 0;
    for (let i = s; i < e; i++) h = Math.imul(h ^ t.charCodeAt(i), 0x01000193);
    let slot = ((h ^ (h >>> 15)) & (CACHE_SLOTS - 1)) << 2;
    for (;;) {
      const ko = cache[slot + 1];
      if (ko < 0) break;
      const lens = cache[slot + 2];
      if (cache[slot] === h && (lens & 0xff) === len) {
        const pool = this.cKeyPool;
        let k = 0;
        while (k < len && pool[ko + k] === t.charCodeAt(s + k)) k++;
        if (k === len) {
          this.emitCached(lens >>> 8, cache[slot + 3]);
          return;
        }
      }
      slot = (slot + 4) & (CACHE_SLOTS * 4 - 1);
    }
    this.encodeMiss(t, s, e);
  }

  /** Append a cached value: the id itself when cnt is 1, else cnt ids from cValPool[v]. */
  private emitCached(cnt: number, v: number): void {
    if (this.on + cnt > this.ob.length) this.growOutput(cnt);
    const ob = this.ob;
    if (cnt === 1) ob[this.on++] = v;
    else {
      const vp = this.cValPool;
      let o = this.on;
      for (let j = v, je = v + cnt; j < je; j++) ob[o++] = vp[j];
      this.on = o;
    }
  }

  /** Encode the chunk t[s, e) by BPE, and remember it in the cache. */
  private encodeMiss(t: string, s: number, e: number): void {
    const before = this.on;
    this.bpeChunk(t, s, e);
    const len = e - s;
    if (len > CACHE_MAX_CHUNK) return;
    if (this.cache === null) this.allocCache();
    const n = this.on - before;
    if (this.cCount >= CACHE_SLOTS >> 1 || this.cKeyTop + len > CACHE_KEY_POOL || this.cValTop + n > CACHE_VAL_POOL) {
      this.clearCache();
    }
    const cache = this.cache!;
    // the key as encodeCached computes it
    let h = 0;
    let packed = len <= 4;
    for (let i = s; packed && i < e; i++) {
      const c = t.charCodeAt(i);
      if (c > 0xff) packed = false;
      h = (h << 8) | c;
    }
    let slot: number;
    if (packed) slot = packedSlot(h);
    else {
      h = 0x811c9dc5 | 0;
      for (let i = s; i < e; i++) h = Math.imul(h ^ t.charCodeAt(i), 0x01000193);
      slot = ((h ^ (h >>> 15)) & (CACHE_SLOTS - 1)) << 2;
    }
    while (cache[slot + 1] >= 0) slot = (slot + 4) & (CACHE_SLOTS * 4 - 1);
    cache[slot] = h;
    if (packed) cache[slot + 1] = 0;
    else {
      const ko = this.cKeyTop;
      for (let k = 0; k < len; k++) this.cKeyPool[ko + k] = t.charCodeAt(s + k);
      this.cKeyTop += len;
      cache[slot + 1] = ko;
    }
    cache[slot + 2] = (packed ? len | PACKED : len) | (n << 8);
    if (n === 1) cache[slot + 3] = this.ob[before];
    else {
      const vo = this.cValTop;
      for (let k = 0; k < n; k++) this.cValPool[vo + k] = this.ob[before + k];
      this.cValTop += n;
      cache[slot + 3] = vo;
    }
    this.cCount++;
  }

  private allocCache(): void {
    this.cache = new Int32Array(CACHE_SLOTS * 4);
    this.cKeyPool = new Uint16Array(CACHE_KEY_POOL);
    this.cValPool = new Int32Array(CACHE_VAL_POOL);
    this.clearCache();
  }

  private clearCache(): void {
    const cache = this.cache!;
    for (let i = 1; i < cache.length; i += 4) cache[i] = -1;
    this.cCount = 0;
    this.cKeyTop = 0;
    this.cValTop = 0;
  }

  /** UTF-8 bytes of text[s, e) into this.bytes (lone surrogates as U+FFFD); returns the count. */
  private utf8Chunk(t: string, s: number, e: number): number {
    if (this.bytes.length < (e - s) * 3) this.growScratch((e - s) * 3);
    const b = this.bytes;
    let n = 0;
    for (let i = s; i < e; i++) {
      const c = t.charCodeAt(i);
      if (c < 0x80) b[n++] = c;
      else if (c < 0x800) {
        b[n++] = 0xc0 | (c >> 6);
        b[n++] = 0x80 | (c & 63);
      } else if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < e ? t.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          const cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
          b[n++] = 0xf0 | (cp >> 18);
          b[n++] = 0x80 | ((cp >> 12) & 63);
          b[n++] = 0x80 | ((cp >> 6) & 63);
          b[n++] = 0x80 | (cp & 63);
          i++;
        } else {
          b[n++] = 0xef;
          b[n++] = 0xbf;
          b[n++] = 0xbd;
        }
      } else {
        b[n++] = 0xe0 | (c >> 12);
        b[n++] = 0x80 | ((c >> 6) & 63);
        b[n++] = 0x80 | (c & 63);
      }
    }
    return n;
  }

  private growScratch(n: number): void {
    let cap = this.bytes.length;
    while (cap < n) cap *= 2;
    this.bytes = new Uint8Array(cap);
    this.ids = new Int32Array(cap);
    this.ranks = new Int32Array(cap);
    this.mids = new Int32Array(cap);
  }

  /** BPE-encode the chunk text[s, e) into out (no cache). */
  private bpeChunk(t: string, s: number, e: number): void {
    const n = this.utf8Chunk(t, s, e);
    const bytes = this.bytes;
    if (n === 1) {
      this.put(this.byteToId[bytes[0]]);
      return;
    }
    if (this.ignoreMerges) {
      const whole = this.lookupBytes(bytes, 0, n);
      if (whole >= 0) {
        this.put(whole);
        return;
      }
    }
    if (n >= HEAP_MIN) {
      this.mergeHeap(n);
      return;
    }
    const ids = this.ids;
    const ranks = this.ranks;
    const mids = this.mids;
    const b2i = this.byteToId;
    for (let i = 0; i < n; i++) ids[i] = b2i[bytes[i]];
    let m = n;
    for (let i = 0; i < m - 1; i++) this.rankPair(ids[i], ids[i + 1], i);
    for (;;) {
      let best = NO_RANK;
      let bi = -1;
      for (let i = 0; i < m - 1; i++) {
        if (ranks[i] < best) {
          best = ranks[i];
          bi = i;
        }
      }
      if (bi < 0) break;
      ids[bi] = mids[bi];
      m--;
      for (let j = bi + 1; j < m; j++) ids[j] = ids[j + 1];
      for (let j = bi + 1; j < m - 1; j++) {
        ranks[j] = ranks[j + 1];
        mids[j] = mids[j + 1];
      }
      if (bi > 0) this.rankPair(ids[bi - 1], ids[bi], bi - 1);
      if (bi < m - 1) this.rankPair(ids[bi], ids[bi + 1], bi);
    }
    for (let i = 0; i < m; i++) this.put(ids[i]);
  }

  /** ranks[i], mids[i] := rank and merged id of the pair (a, b), or NO_RANK. */
  private rankPair(a: number, b: number, i: number): void {
    const ka = this.pairKeyA;
    const mask = this.pairMask;
    let slot = pairHash(a, b) & mask;
    for (;;) {
      const x = ka[slot];
      if (x < 0) break;
      if (x === a && this.pairKeyB[slot] === b) {
        this.ranks[i] = this.pairRank[slot];
        this.mids[i] = this.pairId[slot];
        return;
      }
      slot = (slot + 1) & mask;
    }
    if (!this.lazyPairs) {
      this.ranks[i] = NO_RANK;
      return;
    }
    // tiktoken ranks: the pair merges into the token with the concatenated bytes, if any
    const id = this.lookupConcat(a, b);
    const rank = id >= 0 ? id : NO_RANK;
    if (this.pairCount >= (mask + 1) >> 1) {
      if (mask + 1 < PAIR_SLOTS_MAX) this.pairGrow();
      else this.pairAllocate(mask + 1); // full: forget and start again
      slot = this.pairSlot(a, b);
    }
    this.pairInsert(slot, a, b, rank, id);
    this.ranks[i] = rank;
    this.mids[i] = id;
  }

  /** The slot holding (a, b), or the empty slot where it goes. */
  private pairSlot(a: number, b: number): number {
    let slot = pairHash(a, b) & this.pairMask;
    for (;;) {
      const x = this.pairKeyA[slot];
      if (x < 0 || (x === a && this.pairKeyB[slot] === b)) return slot;
      slot = (slot + 1) & this.pairMask;
    }
  }

  private pairInsert(slot: number, a: number, b: number, rank: number, id: number): void {
    this.pairKeyA[slot] = a;
    this.pairKeyB[slot] = b;
    this.pairRank[slot] = rank;
    this.pairId[slot] = id;
    this.pairCount++;
  }

  private pairAllocate(cap: number): void {
    this.pairKeyA = new Int32Array(cap).fill(-1);
    this.pairKeyB = new Int32Array(cap);
    this.pairRank = new Int32Array(cap);
    this.pairId = new Int32Array(cap);
    this.pairMask = cap - 1;
    this.pairCount = 0;
  }

  private pairGrow(): void {
    const { pairKeyA: ka, pairKeyB: kb, pairRank: pr, pairId: pi } = this;
    this.pairAllocate(ka.length * 2);
    for (let s = 0; s < ka.length; s++) {
      if (ka[s] >= 0) this.pairInsert(this.pairSlot(ka[s], kb[s]), ka[s], kb[s], pr[s], pi[s]);
    }
  }

  /** id of the ordinary token whose bytes are those of a then b, or -1 */
  private lookupConcat(a: number, b: number): number {
    const off = this.off;
    const data = this.data;
    const oa = off[a];
    const la = off[a + 1] - oa;
    const ob = off[b];
    const lb = off[b + 1] - ob;
    if (la + lb >= this.pow.length) return -1; // longer than any token
    const raw = (Math.imul(this.tokHash[a], this.pow[lb]) + this.tokHash[b]) | 0;
    const byId = this.byId;
    let slot = mix(raw) & this.byMask;
    for (;;) {
      const j = byId[slot];
      if (j < 0) return -1;
      const o = off[j];
      if (off[j + 1] - o === la + lb && rangeEqual(data, o, data, oa, la) && rangeEqual(data, o + la, data, ob, lb)) return j;
      slot = (slot + 1) & this.byMask;
    }
  }

  /** Merge n bytes (in this.bytes) with a binary heap over a linked list: O(n log n). */
  private mergeHeap(n: number): void {
    const ids = this.ids; // token of the node starting at byte i (-1: removed)
    const ranks = this.ranks; // rank of the pair (i, next[i])
    const mids = this.mids;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const heap = new Float64Array(3 * n); // n - 1 pairs at first, at most 2 more per merge (stale entries stay until popped)
    let size = 0;
    for (let i = 0; i < n; i++) {
      ids[i] = this.byteToId[this.bytes[i]];
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const push = (key: number): void => {
      let i = size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= key) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = key;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap[--size];
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= size) break;
        if (c + 1 < size && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= last) break;
        heap[i] = heap[c];
        i = c;
      }
      heap[i] = last;
      return top;
    };
    for (let i = 0; i + 1 < n; i++) {
      this.rankPair(ids[i], ids[i + 1], i);
      if (ranks[i] !== NO_RANK) push(ranks[i] * n + i);
    }
    ranks[n - 1] = NO_RANK;
    while (size > 0) {
      const key = pop();
      const r = Math.floor(key / n);
      const i = key - r * n;
      if (ids[i] < 0 || ranks[i] !== r) continue; // stale
      const j = next[i];
      ids[i] = mids[i];
      ids[j] = -1;
      ranks[j] = NO_RANK;
      const k = next[j];
      next[i] = k;
      if (k >= 0) prev[k] = i;
      const p = prev[i];
      if (p >= 0) {
        this.rankPair(ids[p], ids[i], p);
        if (ranks[p] !== NO_RANK) push(ranks[p] * n + p);
      }
      if (k >= 0) {
        this.rankPair(ids[i], ids[k], i);
        if (ranks[i] !== NO_RANK) push(ranks[i] * n + i);
      } else ranks[i] = NO_RANK;
    }
    for (let i = 0; i >= 0; i = next[i]) this.put(ids[i]);
  }

  /** id of the ordinary token with bytes b[s, e), or -1 */
  private lookupBytes(b: Uint8Array, s: number, e: number): number {
    return this.lookupHashed(rawHash(b, s, e), b, s, e);
  }

  /** lookupBytes given rawHash(b, s, e) */
  private lookupHashed(raw: number, b: Uint8Array, s: number, e: number): number {
    const byId = this.byId;
    const off = this.off;
    const data = this.data;
    const len = e - s;
    let slot = mix(raw) & this.byMask;
    for (;;) {
      const j = byId[slot];
      if (j < 0) return -1;
      const o = off[j];
      if (off[j + 1] - o === len && rangeEqual(data, o, b, s, len)) return j;
      slot = (slot + 1) & this.byMask;
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Polynomial hash of bytes (so substring hashes follow from prefix hashes); mix() before use. */
const HASH_BASE = 0x01000193;
function rawHash(b: Uint8Array, s: number, e: number): number {
  let h = 0;
  for (let i = s; i < e; i++) h = (Math.imul(h, HASH_BASE) + b[i]) | 0;
  return h;
}

function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function pairHash(a: number, b: number): number {
  const h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca77);
  return h ^ (h >>> 15);
}

/** Cache slot (times 4) of a packed key. */
function packedSlot(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return ((h ^ (h >>> 13)) & (CACHE_SLOTS - 1)) << 2;
}

function rangeEqual(a: Uint8Array, ao: number, b: Uint8Array, bo: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (a[ao + k] !== b[bo + k]) return false;
  return true;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && rangeEqual(a, 0, b, 0, a.length);
}

function base64ToBytes(s: string): Uint8Array {
  const buf = Buffer.from(s, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** A global regex matching any of `texts`, the longest first where several match at one place. */
function alternation(texts: string[]): RegExp {
  const sorted = [...texts].sort((a, b) => b.length - a.length);
  return new RegExp(sorted.map((s) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')).join('|'), 'gu');
}
