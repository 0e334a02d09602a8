/**
 * Pre-tokenization: the regular expressions that cut text into chunks before byte-level BPE
 * (merges never cross a chunk boundary). JavaScript has no possessive quantifiers or inline
 * case-insensitive groups, so the patterns are written in equivalent plain form.
 *
 *   preTokenize("Hello world's 12345", 'cl100k')  // ['Hello', ' world', "'s", ' ', '123', '45']
 */
export type SplitPattern = 'gpt2' | 'cl100k' | 'o200k';

const CONTRACTIONS_CI = "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])";

export const SPLIT_PATTERNS: Readonly<Record<SplitPattern, string>> = {
  // GPT-2 (and r50k_base / p50k_base)
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  // GPT-4 (cl100k_base)
  cl100k: `${CONTRACTIONS_CI}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
  // GPT-4o (o200k_base)
  o200k: [
    `[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:${CONTRACTIONS_CI})?`,
    `[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:${CONTRACTIONS_CI})?`,
    '\\p{N}{1,3}',
    ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*',
    '\\s*[\\r\\n]+',
    '\\s+(?!\\S)',
    '\\s+',
  ].join('|'),
};

const compiled = new Map<string, RegExp>();

/** A global Unicode RegExp for a named pattern or a pattern string (e.g. from tokenizer.json). */
export function splitRegex(pattern: SplitPattern | string): RegExp {
  const source = pattern in SPLIT_PATTERNS ? SPLIT_PATTERNS[pattern as SplitPattern] : pattern;
  let re = compiled.get(source);
  if (!re) {
    re = new RegExp(source, 'gu');
    compiled.set(source, re);
  }
  return re;
}

/** The chunks of text, in order; their concatenation is the text. */
export function preTokenize(text: string, pattern: SplitPattern | string): string[] {
  const re = splitRegex(pattern);
  return text.match(re) ?? [];
}

// ---------------------------------------------------------------------------------------------
// Hand-written scanners for the three named patterns (used by the BPE encoder's hot path).
// Each returns the end of the chunk that starts at `pos`, treating `end` as the end of the
// input (so a segment between special tokens needs no slicing). They reproduce the regular
// expressions above exactly, backtracking order included (test/tokenizer/bpe.test.ts
// compares them on adversarial and random text); character classes come from the same
// JavaScript Unicode properties (\s is JavaScript's: it includes U+FEFF but not U+0085).
// ---------------------------------------------------------------------------------------------

/** Returns the end (exclusive) of the chunk that starts at `pos` in `text`, `pos < end`. */
export type ChunkScanner = (text: string, pos: number, end: number) => number;

const C_L = 1; // \p{L}
const C_N = 2; // \p{N}
const C_S = 4; // \s
const C_UP = 8; // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
const C_LO = 16; // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
const C_KNOWN = 128;
const C_LNS = C_L | C_N | C_S;

const RE_L = /^\p{L}$/u;
const RE_N = /^\p{N}$/u;
const RE_S = /^\s$/u;
const RE_UP = /^[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]$/u;
const RE_LO = /^[\p{Ll}\p{Lm}\p{Lo}\p{M}]$/u;

/** Class bits of every code point, filled in on first sight (lone surrogates included). */
const CLASS = new Uint8Array(0x110000);

function classifySlow(cp: number): number {
  const s = String.fromCodePoint(cp);
  const c =
    C_KNOWN |
    (RE_L.test(s) ? C_L : 0) |
    (RE_N.test(s) ? C_N : 0) |
    (RE_S.test(s) ? C_S : 0) |
    (RE_UP.test(s) ? C_UP : 0) |
    (RE_LO.test(s) ? C_LO : 0);
  CLASS[cp] = c;
  return c;
}
for (let cp = 0; cp < 0x80; cp++) classifySlow(cp);

/** Width in UTF-16 code units of the character last read by `cls`. */
let W = 1;

/** Class bits of the code point at `i` (< end); sets W to its width. */
function cls(t: string, i: number, end: number): number {
  let cp = t.charCodeAt(i);
  if (cp < 0x80) {
    W = 1;
    return CLASS[cp];
  }
  W = 1;
  if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < end) {
    const lo = t.charCodeAt(i + 1);
    if (lo >= 0xdc00 && lo <= 0xdfff) {
      cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
      W = 2;
    }
  }
  const c = CLASS[cp];
  return c !== 0 ? c : classifySlow(cp);
}

/** End of the run of characters whose class has any of `bits`, from i. */
function runWith(t: string, i: number, end: number, bits: number): number {
  while (i < end) {
    const c = t.charCodeAt(i);
    if (c < 0x80) {
      if ((CLASS[c] & bits) === 0) return i;
      i++;
    } else {
      if ((cls(t, i, end) & bits) === 0) return i;
      i += W;
    }
  }
  return i;
}

/** End of the run of characters outside \s, \p{L} and \p{N}, from i. */
function runOther(t: string, i: number, end: number): number {
  while (i < end) {
    const c = t.charCodeAt(i);
    if (c < 0x80) {
      if ((CLASS[c] & C_LNS) !== 0) return i;
      i++;
    } else {
      if ((cls(t, i, end) & C_LNS) !== 0) return i;
      i += W;
    }
  }
  return i;
}

/** Chunk end for a whitespace character at p: \s*[\r\n]+ (if asked) | \s+(?!\S) | \s+ */
function scanSpace(t: string, p: number, end: number, newlineRule: boolean): number {
  let e = p;
  let lastNl = -1;
  while (e < end) {
    const c = t.charCodeAt(e);
    if (c === 10 || c === 13) lastNl = e;
    else if (c < 0x80 ? (CLASS[c] & C_S) === 0 : (cls(t, e, end) & C_S) === 0) break;
    e++; // every \s character is in the BMP
  }
  if (newlineRule && lastNl >= 0) return lastNl + 1;
  if (e === end || e - p === 1) return e;
  return e - 1;
}

/** 's 't 're 've 'm 'll 'd after the apostrophe at p (case-sensitive, GPT-2); chunk end or -1 */
function contractionLower(t: string, p: number, end: number): number {
  if (p + 1 >= end) return -1;
  const d = t.charCodeAt(p + 1);
  if (d === 0x73 || d === 0x74 || d === 0x6d || d === 0x64) return p + 2; // s t m d
  if (p + 2 >= end) return -1;
  const e = t.charCodeAt(p + 2);
  if ((d === 0x72 && e === 0x65) || (d === 0x76 && e === 0x65) || (d === 0x6c && e === 0x6c)) return p + 3; // re ve ll
  return -1;
}

/** The same, ASCII case-insensitive (cl100k, o200k); chunk end or -1 */
function contractionAnyCase(t: string, p: number, end: number): number {
  if (p + 1 >= end || t.charCodeAt(p) !== 0x27) return -1;
  const d = t.charCodeAt(p + 1) | 0x20;
  if (d === 0x73 || d === 0x74 || d === 0x6d || d === 0x64) return p + 2;
  if (p + 2 >= end) return -1;
  const e = t.charCodeAt(p + 2) | 0x20;
  if ((d === 0x72 && e === 0x65) || (d === 0x76 && e === 0x65) || (d === 0x6c && e === 0x6c)) return p + 3;
  return -1;
}

/** 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
const scanGpt2: ChunkScanner = (t, p, end) => {
  const c = t.charCodeAt(p);
  if (c === 0x27) {
    const e = contractionLower(t, p, end);
    if (e >= 0) return e;
  }
  let k = cls(t, p, end);
  let q = p + W;
  if (c === 0x20 && q < end) {
    const k2 = cls(t, q, end);
    if ((k2 & C_S) === 0) {
      k = k2;
      q += W;
    }
  }
  if (k & C_L) return runWith(t, q, end, C_L);
  if (k & C_N) return runWith(t, q, end, C_N);
  if ((k & C_S) === 0) return runOther(t, q, end);
  return scanSpace(t, p, end, false);
};

/** cl100k: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
const scanCl100k: ChunkScanner = (t, p, end) => {
  const c = t.charCodeAt(p);
  if (c === 0x27) {
    const e = contractionAnyCase(t, p, end);
    if (e >= 0) return e;
  }
  const k = cls(t, p, end);
  const q = p + W;
  if (k & C_L) return runWith(t, q, end, C_L);
  if (k & C_N) {
    // \p{N}{1,3}
    let e = q;
    for (let n = 1; n < 3 && e < end; n++) {
      if ((cls(t, e, end) & C_N) === 0) break;
      e += W;
    }
    return e;
  }
  // here the character is not a letter or digit
  if (c !== 10 && c !== 13 && q < end) {
    const k2 = cls(t, q, end);
    if (k2 & C_L) return runWith(t, q + W, end, C_L);
    if (c === 0x20 && (k2 & C_LNS) === 0) return newlines(t, runOther(t, q + W, end), end);
  }
  if ((k & C_S) === 0) return newlines(t, runOther(t, q, end), end);
  return scanSpace(t, p, end, true);
};

/** [\r\n]* from i */
function newlines(t: string, i: number, end: number): number {
  while (i < end) {
    const c = t.charCodeAt(i);
    if (c !== 10 && c !== 13) break;
    i++;
  }
  return i;
}

/** [\r\n/]* from i */
function newlinesSlashes(t: string, i: number, end: number): number {
  while (i < end) {
    const c = t.charCodeAt(i);
    if (c !== 10 && c !== 13 && c !== 0x2f) break;
    i++;
  }
  return i;
}

/** [UP]*[LO]+ from q with the regex's backtracking; its end or -1 */
function upperThenLower(t: string, q: number, end: number): number {
  let i = q;
  let lastLoEnd = -1;
  while (i < end) {
    const k = cls(t, i, end);
    if ((k & C_UP) === 0) {
      if (k & C_LO) return runWith(t, i + W, end, C_LO);
      return lastLoEnd;
    }
    i += W;
    if (k & C_LO) lastLoEnd = i;
  }
  return lastLoEnd;
}

/**
 * o200k: [^\r\n\p{L}\p{N}]?[UP]*[LO]+(?:'(?i:[sdmt]|ll|ve|re))?
 *      | [^\r\n\p{L}\p{N}]?[UP]+[LO]*(?:'(?i:[sdmt]|ll|ve|re))?
 *      | \p{N}{1,3} | ?[^\s\p{L}\p{N}]+[\r\n/]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 * with UP = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and LO = [\p{Ll}\p{Lm}\p{Lo}\p{M}].
 */
const scanO200k: ChunkScanner = (t, p, end) => {
  const c = t.charCodeAt(p);
  const k = cls(t, p, end);
  const q = p + W;
  const prefix = (k & (C_L | C_N)) === 0 && c !== 10 && c !== 13 && q < end;
  // first alternative: with the optional prefix character, then without
  let e = prefix ? upperThenLower(t, q, end) : -1;
  if (e < 0 && k & (C_UP | C_LO)) e = upperThenLower(t, p, end);
  // second alternative
  if (e < 0) {
    if (prefix && cls(t, q, end) & C_UP) e = runWith(t, runWith(t, q, end, C_UP), end, C_LO);
    else if (k & C_UP) e = runWith(t, runWith(t, p, end, C_UP), end, C_LO);
  }
  if (e >= 0) {
    const e2 = e < end && t.charCodeAt(e) === 0x27 ? contractionAnyCase(t, e, end) : -1;
    return e2 >= 0 ? e2 : e;
  }
  if (k & C_N) {
    let e3 = q;
    for (let n = 1; n < 3 && e3 < end; n++) {
      if ((cls(t, e3, end) & C_N) === 0) break;
      e3 += W;
    }
    return e3;
  }
  if (c === 0x20 && q < end && (cls(t, q, end) & C_LNS) === 0) return newlinesSlashes(t, runOther(t, q + W, end), end);
  if ((k & C_S) === 0) return newlinesSlashes(t, runOther(t, q, end), end);
  return scanSpace(t, p, end, true);
};

const SCANNERS: Readonly<Record<SplitPattern, ChunkScanner>> = { gpt2: scanGpt2, cl100k: scanCl100k, o200k: scanO200k };

/** The hand-written scanner for a named pattern (or its exact source string); null for other patterns. */
export function chunkScanner(pattern: SplitPattern | string): ChunkScanner | null {
  for (const name of Object.keys(SPLIT_PATTERNS) as SplitPattern[]) {
    if (pattern === name || pattern === SPLIT_PATTERNS[name]) return SCANNERS[name];
  }
  return null;
}

/** preTokenize through the hand-written scanner (same chunks, faster); falls back to the regex. */
export function scanChunks(text: string, pattern: SplitPattern | string): string[] {
  const scan = chunkScanner(pattern);
  if (!scan) return preTokenize(text, pattern);
  const out: string[] = [];
  for (let p = 0; p < text.length; ) {
    const e = scan(text, p, text.length);
    out.push(text.slice(p, e));
    p = e;
  }
  return out;
}
