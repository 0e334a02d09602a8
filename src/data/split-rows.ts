/**
 * A held-out split of a JSONL file's rows, written as two files a user can pass to any command
 * (`llmts data split`): exactly round(fraction · rows) rows held out, chosen by content.
 *
 *   const { train, held } = splitRows(['{"a":1}', '{"a":2}', ...], { fraction: 0.1, seed: 0 });
 *   // held: the ~10% of rows whose splitHash(row text, seed) is smallest; both lists keep file order
 *
 * Each row's side depends only on its own text and the seed (splitHash of data/split.ts), not on
 * its position: shuffling the file gives the same two sets, and another seed another 10%. Rows
 * are ranked by that hash and the round(fraction · n) smallest are held out (at least one and at
 * most n - 1 when 0 < fraction and n >= 2); rows with identical text share a hash and always land
 * on the same side, so the held-out count can exceed the target by the duplicates of the last row.
 */
import { LlmError } from '../util/errors.js';
import { splitHash } from './split.js';

export interface RowSplit {
  train: string[];
  held: string[];
}

/** The rows split into train and held out (see the file comment). */
export function splitRows(rows: readonly string[], opts: { fraction: number; seed?: number }): RowSplit {
  const { fraction } = opts;
  if (!(fraction >= 0 && fraction < 1)) throw new LlmError(`the held-out fraction must be in [0, 1), not ${fraction} (e.g. 0.1 holds out 10%)`);
  const n = rows.length;
  let target = Math.round(fraction * n);
  if (fraction > 0 && n >= 2) target = Math.min(Math.max(target, 1), n - 1);
  if (target === 0) return { train: [...rows], held: [] };
  const hashes = rows.map((row) => splitHash(row, opts.seed ?? 0));
  const ranked = [...hashes].sort((a, b) => a - b);
  const cut = ranked[target - 1]; // hashes up to and including this one are held out
  const train: string[] = [];
  const held: string[] = [];
  rows.forEach((row, i) => (hashes[i] <= cut ? held : train).push(row));
  return { train, held };
}

/**
 * The non-blank lines of a JSONL text, each checked to be one JSON value; a line that is not is
 * an LlmError naming `path` and its line. CRLF endings are read as LF; lines keep their text.
 */
export function jsonlLines(text: string, path: string): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    try {
      JSON.parse(line);
    } catch {
      const hint = i === 0 && line.trim() === '[' ? ' (a JSON array file: write it one row per line, as JSONL)' : ' (give JSON Lines: one JSON value per line)';
      throw new LlmError(`${path}:${i + 1}: not a JSON value${hint}`);
    }
    out.push(line);
  });
  return out;
}
