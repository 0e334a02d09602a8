/**
 * A held-out split (`--eval-split 0.05`) decided by each item's own content, not its position:
 * an item goes to eval when a seeded hash of its key falls under the fraction. Appending rows to
 * a file, or reordering it, moves no existing row across the split; identical rows always land
 * on the same side, so an exact duplicate never sits in both train and eval.
 *
 *   const { train, eval: held } = splitTrainEval(examples, { fraction: 0.05, seed: 0 });
 *   // about 5% of the examples in `held` (binomially: 7,473 GSM8K rows give 397 at seed 0),
 *   // the same ones on every run; seed 1 picks another 5%
 *   splitTrainEval(examples, { fraction: 0 });   // everything in train
 *
 * The key defaults to JSON.stringify(item): for normalised examples that is their content, so the
 * split does not depend on the file's format or on extra fields. With fraction > 0 and at least
 * two items, eval is never empty: if no hash falls under the fraction (tiny data), the item with
 * the smallest hash goes to eval. Order within train and within eval is kept.
 */
import { createHash } from 'node:crypto';
import { LlmError } from '../util/errors.js';

export interface SplitOptions<T> {
  /** Share of items held out, in [0, 1). */
  fraction: number;
  /** Changes which items are held out (default 0). */
  seed?: number;
  /** The text that decides an item's side (default JSON.stringify). */
  key?: (item: T) => string;
}

/** Items split into train and eval (see the file comment). */
export function splitTrainEval<T>(items: readonly T[], opts: SplitOptions<T>): { train: T[]; eval: T[] } {
  const { fraction } = opts;
  if (!(fraction >= 0 && fraction < 1)) throw new LlmError(`the eval split must be a fraction in [0, 1), not ${fraction} (e.g. 0.05 holds out 5%)`);
  const seed = opts.seed ?? 0;
  const key = opts.key ?? ((item: T) => JSON.stringify(item));
  const train: T[] = [];
  const held: T[] = [];
  if (fraction === 0) return { train: [...items], eval: held };
  let smallest = -1;
  let smallestU = Infinity;
  items.forEach((item, i) => {
    const u = splitHash(key(item), seed);
    if (u < fraction) held.push(item);
    else train.push(item);
    if (u < smallestU) {
      smallestU = u;
      smallest = i;
    }
  });
  if (held.length === 0 && items.length >= 2) {
    const moved = items[smallest];
    return { train: items.filter((_, i) => i !== smallest), eval: [moved] };
  }
  return { train, eval: held };
}

/**
 * A number in [0, 1) from `text` and `seed`: the first 48 bits of sha256(seed, NUL, text).
 *
 *   splitHash('hello', 0);   // the same value on every machine and run
 */
export function splitHash(text: string, seed: number): number {
  const h = createHash('sha256').update(`${seed}\0`).update(text).digest();
  return h.readUIntBE(0, 6) / 2 ** 48;
}

/** Parses an --eval-split value: a fraction in [0, 1). */
export function parseEvalSplit(s: string): number {
  const f = Number(s);
  if (s.trim() === '' || !(f >= 0 && f < 1)) throw new LlmError(`--eval-split must be a fraction in [0, 1), not '${s}' (e.g. 0.05 holds out 5%)`);
  return f;
}
