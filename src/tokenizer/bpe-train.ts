/**
 * Byte-level BPE training (as minbpe's RegexTokenizer and tiktoken's educational trainer):
 *
 *   1. the text is cut into chunks with a split pattern ('gpt2' or 'cl100k', see pretokenize.ts);
 *      merges never cross a chunk boundary. Occurrences of the special tokens are cut out first
 *      and take no part in training.
 *   2. equal chunks are counted once, with their frequency as weight;
 *   3. starting from the 256 byte tokens (id = byte value), the most frequent adjacent pair of
 *      tokens is merged into a new token, again and again, until the vocabulary is full or the
 *      best pair occurs fewer than `minFrequency` times (or no pair is left);
 *   4. the special tokens get the ids after the learned tokens.
 *
 *   const bpe = trainBpe(text, { vocabSize: 4096, pattern: 'gpt2', specialTokens: ['<|endoftext|>'] });
 *   bpe.merges[0]            // { pair: [32, 116], id: 256, count: 23837 }  (' ' + 't', on Tiny Shakespeare)
 *   bpe.tokenBytes[256]      // Uint8Array [32, 116]
 *   bpe.specialTokens        // { '<|endoftext|>': 4095 }
 *   const tok = bpeTokenizerFromTrained(bpe);   // a BpeTokenizer applying the merges in order
 *
 * Token ids are ranks: token i was created by the i-th merge (i >= 256), so a rank-based
 * encoder (tiktoken) and a merge-list encoder (HF, minbpe) both work with the result.
 *
 * Tie-breaking (deterministic): among pairs with the same count, the pair (a, b) with the
 * smallest first id a wins, then the smallest second id b. (minbpe takes the pair seen first
 * in the text instead, so its merges can differ from ours where counts tie.)
 *
 * Repeated bytes: if a pair's bytes equal those of an earlier token (e.g. ('a','bc') after
 * ('ab','c')), the pair is merged into that existing token instead of creating a duplicate,
 * as Hugging Face's trainer does; the merge list then has two entries with the same id and
 * the vocabulary stays free of duplicates (which tiktoken and tokenizer.json require).
 *
 * Speed: pair counts are updated incrementally, only in the chunks that contain the merged
 * pair (an index pair -> chunks is kept), and the best pair comes from a max-heap with lazy
 * deletion (outdated entries are dropped when they reach the top), so no merge recounts the
 * whole corpus.
 */
import { LlmError } from '../util/errors.js';
import { BpeTokenizer } from './bpe.js';
import { SPLIT_PATTERNS, type SplitPattern } from './pretokenize.js';

export interface TrainBpeOptions {
  /** Total vocabulary: 256 byte tokens + learned merges + special tokens. */
  vocabSize: number;
  /** Split pattern (default 'cl100k', GPT-4's; 'gpt2' is GPT-2's). */
  pattern?: SplitPattern;
  /** Stop when the most frequent pair occurs fewer times than this (default 1: merge while any pair is left). */
  minFrequency?: number;
  /** Special tokens, appended after the learned tokens in this order (e.g. ['<|endoftext|>']). */
  specialTokens?: readonly string[];
  /** Called after every merge. */
  onProgress?: (p: BpeTrainProgress) => void;
}

export interface BpeTrainProgress {
  /** merges done so far */
  merges: number;
  /** merges wanted (vocabSize - 256 - special tokens) */
  total: number;
  /** count of the pair just merged */
  count: number;
}

export interface BpeMerge {
  /** the two token ids merged (left, right) */
  pair: [number, number];
  /** the token they become (256 + its position among new tokens; an earlier id for repeated bytes) */
  id: number;
  /** how often the pair occurred in the training text when it was merged */
  count: number;
}

export interface TrainedBpe {
  /** the split pattern's name and its regular expression (JavaScript syntax, flags 'gu') */
  pattern: SplitPattern;
  regex: string;
  /** bytes of every ordinary token, indexed by id (= rank): 256 single bytes, then the merges' tokens */
  tokenBytes: Uint8Array[];
  /** merges in the order they were learned */
  merges: BpeMerge[];
  /** special token text -> id (ids follow the ordinary tokens) */
  specialTokens: Record<string, number>;
  /** tokenBytes.length + number of special tokens (may be less than asked when training stopped early) */
  vocabSize: number;
  stats: {
    /** UTF-8 bytes of the training text */
    textBytes: number;
    /** chunks after splitting, and distinct chunks */
    chunks: number;
    uniqueChunks: number;
    seconds: number;
    /** why training stopped before reaching vocabSize; absent when it did reach it */
    stoppedEarly?: string;
  };
}

const TRAINABLE_PATTERNS: readonly SplitPattern[] = Object.keys(SPLIT_PATTERNS) as SplitPattern[];

export function trainBpe(text: string, opts: TrainBpeOptions): TrainedBpe {
  const t0 = performance.now();
  const pattern = opts.pattern ?? 'cl100k';
  if (!TRAINABLE_PATTERNS.includes(pattern)) {
    throw new LlmError(`unknown split pattern '${String(pattern)}' (choose one of: ${TRAINABLE_PATTERNS.join(', ')})`);
  }
  const specials = [...(opts.specialTokens ?? [])];
  checkSpecials(specials);
  const minFrequency = opts.minFrequency ?? 1;
  if (!Number.isFinite(minFrequency) || minFrequency < 1) {
    throw new LlmError(`minFrequency must be a number >= 1, got ${minFrequency}`);
  }
  const { vocabSize } = opts;
  const minVocab = 256 + specials.length;
  if (!Number.isInteger(vocabSize) || vocabSize < minVocab || vocabSize > MAX_VOCAB) {
    throw new LlmError(
      `vocab size ${vocabSize} is out of range: it must be an integer from ${minVocab} (256 bytes${specials.length ? ` + ${specials.length} special tokens` : ''}) to ${MAX_VOCAB}`,
    );
  }
  const nOrdinary = vocabSize - specials.length;
  const totalMerges = nOrdinary - 256;

  // 1-2. split (around the special tokens) and count distinct chunks
  const regex = SPLIT_PATTERNS[pattern];
  const counts = new Map<string, number>();
  let nChunks = 0;
  for (const piece of splitAroundSpecials(text, specials)) {
    const re = new RegExp(regex, 'gu');
    let m: RegExpExecArray | null;
    while ((m = re.exec(piece)) !== null) {
      const s = m[0];
      if (s.length === 0) {
        re.lastIndex++; // cannot happen with the built-in patterns; guards against an endless loop
        continue;
      }
      counts.set(s, (counts.get(s) ?? 0) + 1);
      nChunks++;
    }
  }

  const corpus = Corpus.build(counts, vocabSize);
  const tokenBytes: Uint8Array[] = [];
  const idOfBytes = new Map<string, number>();
  for (let b = 0; b < 256; b++) {
    tokenBytes.push(Uint8Array.of(b));
    idOfBytes.set(String.fromCharCode(b), b);
  }

  // 3. merges
  const merges: BpeMerge[] = [];
  let stoppedEarly: string | undefined;
  while (tokenBytes.length < nOrdinary) {
    const best = corpus.best();
    if (best === null) {
      stoppedEarly = `no adjacent pair is left to merge after ${merges.length} merges (the text is too small for this vocab size)`;
      break;
    }
    if (best.count < minFrequency) {
      stoppedEarly = `the most frequent pair occurs ${best.count} times, fewer than min frequency ${minFrequency}, after ${merges.length} merges`;
      break;
    }
    const [a, b] = best.pair;
    const bytes = concat(tokenBytes[a], tokenBytes[b]);
    const latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    let id = idOfBytes.get(latin1);
    if (id === undefined) {
      id = tokenBytes.length;
      tokenBytes.push(bytes);
      idOfBytes.set(latin1, id);
    }
    corpus.merge(a, b, id);
    merges.push({ pair: [a, b], id, count: best.count });
    opts.onProgress?.({ merges: tokenBytes.length - 256, total: totalMerges, count: best.count });
  }

  // 4. special tokens
  const specialTokens: Record<string, number> = {};
  specials.forEach((s, i) => (specialTokens[s] = tokenBytes.length + i));
  return {
    pattern,
    regex,
    tokenBytes,
    merges,
    specialTokens,
    vocabSize: tokenBytes.length + specials.length,
    stats: {
      textBytes: Buffer.byteLength(text, 'utf8'),
      chunks: nChunks,
      uniqueChunks: counts.size,
      seconds: (performance.now() - t0) / 1000,
      ...(stoppedEarly ? { stoppedEarly } : {}),
    },
  };
}

/**
 * A tokenizer for the trained vocabulary. By default it merges by the learned merge list (the
 * pair merged earliest in training first, as Hugging Face and minbpe encode); with
 * `{ ranks: true }` by tiktoken ranks (a pair merges when its bytes are a token, lowest id
 * first), which is what a .tiktoken file of the same vocabulary gives. Both decode back to
 * the text; they may split a few chunks differently.
 */
export function bpeTokenizerFromTrained(bpe: TrainedBpe, opts: { ranks?: boolean } = {}): BpeTokenizer {
  return new BpeTokenizer({
    tokens: bpe.tokenBytes,
    ...(opts.ranks ? {} : { merges: bpe.merges.map((m) => m.pair) }),
    pattern: bpe.pattern,
    specialTokens: bpe.specialTokens,
  });
}

/** Largest vocabulary trainBpe accepts (pair keys a * MAX_VOCAB + b stay exact doubles). */
export const MAX_VOCAB = 1 << 24;

function checkSpecials(specials: string[]): void {
  const seen = new Set<string>();
  for (const s of specials) {
    if (typeof s !== 'string' || s.length === 0) throw new LlmError('special tokens must be non-empty strings');
    if (seen.has(s)) throw new LlmError(`special token ${JSON.stringify(s)} is listed twice`);
    seen.add(s);
  }
}

/** The text with every occurrence of a special token cut out, as the pieces between them. */
function splitAroundSpecials(text: string, specials: string[]): string[] {
  if (specials.length === 0) return [text];
  // longest first, so that a special which is a prefix of another does not cut it
  const alternatives = [...specials].sort((x, y) => y.length - x.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return text.split(new RegExp(alternatives.join('|'), 'u'));
}

function concat(x: Uint8Array, y: Uint8Array): Uint8Array {
  const out = new Uint8Array(x.length + y.length);
  out.set(x, 0);
  out.set(y, x.length);
  return out;
}

/**
 * The distinct chunks as token sequences (one flat array; each chunk shrinks in place as
 * pairs merge), with the pair counts, the pair -> chunks index and the heap of pairs.
 */
class Corpus {
  private readonly heap = new PairHeap();
  private readonly pairCount = new Map<number, number>();
  /** chunks that contain (or once contained) the pair; may hold stale entries and repeats */
  private readonly pairChunks = new Map<number, number[]>();
  /** merge number at which a chunk was last visited, to skip repeats in pairChunks lists */
  private readonly visited: Int32Array;
  private mergeNo = 0;

  private constructor(
    private readonly tokens: Int32Array,
    private readonly start: Int32Array,
    private readonly len: Int32Array,
    private readonly weight: Float64Array,
    private readonly mul: number,
  ) {
    this.visited = new Int32Array(start.length).fill(-1);
    for (let c = 0; c < start.length; c++) {
      const s = start[c];
      const e = s + len[c] - 1;
      const w = weight[c];
      for (let i = s; i < e; i++) {
        const k = tokens[i] * mul + tokens[i + 1];
        this.pairCount.set(k, (this.pairCount.get(k) ?? 0) + w);
        this.noteChunk(k, c);
      }
    }
    for (const [k, n] of this.pairCount) this.heap.push(n, k);
  }

  /** Chunks of one byte or less never hold a pair and are left out. */
  static build(counts: Map<string, number>, vocabSize: number): Corpus {
    const chunks: Buffer[] = [];
    const weights: number[] = [];
    let total = 0;
    for (const [s, n] of counts) {
      const b = Buffer.from(s, 'utf8');
      if (b.length < 2) continue;
      chunks.push(b);
      weights.push(n);
      total += b.length;
    }
    const tokens = new Int32Array(total);
    const start = new Int32Array(chunks.length);
    const len = new Int32Array(chunks.length);
    let off = 0;
    chunks.forEach((b, c) => {
      start[c] = off;
      len[c] = b.length;
      for (let i = 0; i < b.length; i++) tokens[off + i] = b[i];
      off += b.length;
    });
    return new Corpus(tokens, start, len, Float64Array.from(weights), Math.max(vocabSize, 256));
  }

  /** The most frequent pair (ties: smallest ids), or null when no pair is left. */
  best(): { pair: [number, number]; count: number } | null {
    for (;;) {
      const top = this.heap.peek();
      if (top === null) return null;
      if (this.pairCount.get(top.key) === top.count) {
        return { pair: [Math.floor(top.key / this.mul), top.key % this.mul], count: top.count };
      }
      this.heap.pop(); // outdated entry
    }
  }

  /** Replace every (a, b) by `id` in the chunks that hold it, updating counts, index and heap. */
  merge(a: number, b: number, id: number): void {
    const key = a * this.mul + b;
    const list = this.pairChunks.get(key) ?? [];
    this.pairChunks.delete(key);
    const mergeNo = this.mergeNo++;
    const { tokens, start, len, weight, mul, visited } = this;
    const delta = new Map<number, number>();
    const add = (k: number, d: number): void => void delta.set(k, (delta.get(k) ?? 0) + d);
    for (const c of list) {
      if (visited[c] === mergeNo) continue;
      visited[c] = mergeNo;
      const s = start[c];
      const n = len[c];
      const e = s + n - 1;
      let found = false;
      for (let i = s; i < e; i++) {
        if (tokens[i] === a && tokens[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue; // stale entry: an earlier merge removed the pair from this chunk
      const w = weight[c];
      for (let i = s; i < e; i++) add(tokens[i] * mul + tokens[i + 1], -w);
      let j = s;
      for (let i = s; i < s + n; ) {
        if (i < e && tokens[i] === a && tokens[i + 1] === b) {
          tokens[j++] = id;
          i += 2;
        } else {
          tokens[j++] = tokens[i++];
        }
      }
      len[c] = j - s;
      for (let i = s; i < j - 1; i++) {
        const k = tokens[i] * mul + tokens[i + 1];
        add(k, w);
        // pairs without the new token were already adjacent before, so already indexed
        if (tokens[i] === id || tokens[i + 1] === id) this.noteChunk(k, c);
      }
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const n = (this.pairCount.get(k) ?? 0) + d;
      if (n <= 0) {
        this.pairCount.delete(k);
      } else {
        this.pairCount.set(k, n);
        this.heap.push(n, k);
      }
    }
  }

  private noteChunk(k: number, c: number): void {
    const list = this.pairChunks.get(k);
    if (list === undefined) this.pairChunks.set(k, [c]);
    else if (list[list.length - 1] !== c) list.push(c);
  }
}

/** Max-heap of (count, key): higher count first, then smaller key. Entries are never updated in place. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly keys: number[] = [];

  private above(i: number, j: number): boolean {
    const ci = this.counts[i];
    const cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i];
    this.counts[i] = this.counts[j];
    this.counts[j] = c;
    const k = this.keys[i];
    this.keys[i] = this.keys[j];
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  peek(): { count: number; key: number } | null {
    return this.counts.length === 0 ? null : { count: this.counts[0], key: this.keys[0] };
  }

  pop(): void {
    const last = this.counts.length - 1;
    if (last < 0) return;
    this.swap(0, last);
    this.counts.pop();
    this.keys.pop();
    const n = this.counts.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.above(l, m)) m = l;
      if (r < n && this.above(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}
