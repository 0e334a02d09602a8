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
