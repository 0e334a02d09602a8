/**
 * Tasks with checkable answers, for proving that fine-tuning teaches something.
 *
 * Addition: addition of
 * two numbers asked in words ("What is 23 + 45?" -> "68"). Every pair a + b with a in the range
 * `a` and b in the range `b` is a question (two-digit numbers by default: 90 x 90 = 8,100
 * questions; `b: [1, 9]` adds a digit to a two-digit number, 810 questions); a seeded
 * shuffle puts `heldOut` of them aside for evaluation and the rest (or the first `train` of the
 * rest) in the training set, so no held-out question is ever trained on.
 *
 *   const { train, heldOut } = additionTask({ heldOut: 500, seed: 1 });
 *   heldOut[0];                  // { question: 'What is 23 + 45?', answer: '68' } (some pair)
 *   train.length;                // 7600
 *   alpacaJsonl(train);          // '{"instruction":"What is 23 + 45?","output":"68"}\n...' (llmts sft --data)
 *
 * Digit reversal, a format task small models learn in a few hundred steps (the npm test's
 * version of the recipe): "Reverse the digits of 472." -> "274", every number of `digits` digits.
 *
 *   reversalTask({ heldOut: 100, digits: 3, seed: 1 });   // 100 held out, 800 to train on
 */
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';

/** One question and its one right answer. */
export interface TaskItem {
  question: string;
  answer: string;
}

export interface AdditionTaskOptions {
  /** questions held out for evaluation */
  heldOut: number;
  /** training questions at most (default: every question not held out) */
  train?: number;
  /** smallest and largest first operand (default [10, 99]: two-digit numbers) */
  a?: readonly [number, number];
  /** smallest and largest second operand (default [10, 99]) */
  b?: readonly [number, number];
  /** seeds the shuffle that splits the questions */
  seed?: number;
}

/** The questions of the task, split into training and held-out sets (disjoint). */
export function additionTask(opts: AdditionTaskOptions): { train: TaskItem[]; heldOut: TaskItem[] } {
  const ranges = { a: opts.a ?? [10, 99], b: opts.b ?? [10, 99] };
  for (const [name, [min, max]] of Object.entries(ranges)) {
    if (!(Number.isInteger(min) && Number.isInteger(max) && 0 <= min && min <= max)) throw new LlmError(`the range of operand ${name} must be integers 0 <= min <= max, not [${min}, ${max}]`);
  }
  const all: TaskItem[] = [];
  for (let a = ranges.a[0]; a <= ranges.a[1]; a++) {
    for (let b = ranges.b[0]; b <= ranges.b[1]; b++) all.push({ question: `What is ${a} + ${b}?`, answer: String(a + b) });
  }
  return split(all, opts);
}

export interface ReversalTaskOptions {
  heldOut: number;
  train?: number;
  /** digits of each number (default 3: 100..999) */
  digits?: number;
  seed?: number;
}

/** "Reverse the digits of 472." -> "274" for every number of `digits` digits, split as additionTask does. */
export function reversalTask(opts: ReversalTaskOptions): { train: TaskItem[]; heldOut: TaskItem[] } {
  const digits = opts.digits ?? 3;
  if (!(Number.isInteger(digits) && digits >= 2 && digits <= 6)) throw new LlmError(`digits: give an integer from 2 to 6, not ${digits}`);
  const all: TaskItem[] = [];
  for (let n = 10 ** (digits - 1); n < 10 ** digits; n++) all.push({ question: `Reverse the digits of ${n}.`, answer: [...String(n)].reverse().join('') });
  return split(all, opts);
}

/** A seeded shuffle of all, then the first `heldOut` held out and (the first `train` of) the rest to train on. */
function split(all: TaskItem[], opts: { heldOut: number; train?: number; seed?: number }): { train: TaskItem[]; heldOut: TaskItem[] } {
  if (!(Number.isInteger(opts.heldOut) && opts.heldOut >= 1 && opts.heldOut < all.length)) {
    throw new LlmError(`held-out questions: give between 1 and ${all.length - 1} (the task has ${all.length}), not ${opts.heldOut}`);
  }
  const rng = new Rng(opts.seed ?? 1);
  for (let i = all.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [all[i], all[j]] = [all[j], all[i]];
  }
  const heldOut = all.slice(0, opts.heldOut);
  const rest = all.slice(opts.heldOut);
  return { train: opts.train === undefined ? rest : rest.slice(0, opts.train), heldOut };
}

/** Items as Alpaca JSONL rows ({ instruction, output }), one per line: what llmts sft --data reads. */
export function alpacaJsonl(items: readonly TaskItem[]): string {
  return items.map((it) => JSON.stringify({ instruction: it.question, output: it.answer }) + '\n').join('');
}
