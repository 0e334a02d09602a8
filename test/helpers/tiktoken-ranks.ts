/**
 * Test-only: tiktoken rank files made from the ranks bundled in the js-tiktoken devDependency,
 * so our loader (tiktoken.ts) reads real vocabularies without a network.
 *
 *   const path = writeJsTiktokenRankFile('cl100k_base', tmpDir('bpe'));  // <dir>/cl100k_base.tiktoken
 *   const tok = readTiktoken(path);
 *
 * js-tiktoken stores ranks as lines "<tag> <first rank> <base64> <base64> ...", the tokens of a
 * line having consecutive ranks; a .tiktoken file has one "<base64> <rank>" line per token.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import cl100k from 'js-tiktoken/ranks/cl100k_base';
import o200k from 'js-tiktoken/ranks/o200k_base';
import p50k from 'js-tiktoken/ranks/p50k_base';
import r50k from 'js-tiktoken/ranks/r50k_base';

export type JsTiktokenName = 'r50k_base' | 'p50k_base' | 'cl100k_base' | 'o200k_base';

const RANKS: Record<JsTiktokenName, { pat_str: string; special_tokens: Record<string, number>; bpe_ranks: string }> = {
  r50k_base: r50k,
  p50k_base: p50k,
  cl100k_base: cl100k,
  o200k_base: o200k,
};

/** js-tiktoken's split pattern and special tokens for `name`. */
export function jsTiktokenSpec(name: JsTiktokenName): { patStr: string; specialTokens: Record<string, number> } {
  return { patStr: RANKS[name].pat_str, specialTokens: RANKS[name].special_tokens };
}

/** The .tiktoken rank file text ("<base64> <rank>\n" by rank) of js-tiktoken's ranks for `name`. */
export function jsTiktokenRankText(name: JsTiktokenName): string {
  const byRank: string[] = [];
  for (const line of RANKS[name].bpe_ranks.split('\n')) {
    if (!line) continue;
    const [, first, ...tokens] = line.split(' ');
    const start = Number.parseInt(first, 10);
    tokens.forEach((tok, i) => (byRank[start + i] = tok));
  }
  const out: string[] = [];
  byRank.forEach((tok, rank) => out.push(`${tok} ${rank}\n`));
  return out.join('');
}

/** Write `<dir>/<name>.tiktoken` from js-tiktoken's ranks; returns its path. */
export function writeJsTiktokenRankFile(name: JsTiktokenName, dir: string): string {
  const path = join(dir, `${name}.tiktoken`);
  writeFileSync(path, jsTiktokenRankText(name));
  return path;
}
