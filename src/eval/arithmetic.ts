/**
 * A task with checkable answers, for proving that fine-tuning teaches something: addition of
 * two numbers asked in words ("What is 23 + 45?" -> "68"). Every pair a + b with a and b in
 * [min, max] is a question (two-digit numbers by default: 90 x 90 = 8,100 questions); a seeded
 * shuffle puts `heldOut` of them aside for evaluation and the rest (or the first `train` of the
 * rest) in the training set, so no held-out question is ever trained on.
 *
 *   const { train, heldOut } = additionTask({ heldOut: 500, seed: 1 });
 *   heldOut[0];                  // { question: 'What is 23 + 45?', answer: '68' } (some pair)
 *   train.length;                // 7600
 *   alpacaJsonl(train);          // '{"instruction":"What is 23 + 45?","output":"68"}\n...' (llmts sft --data)
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
  /** smallest and largest operand (default 10 and 99: two-digit numbers) */
  min?: number;
  max?: number;
  /** seeds the shuffle that splits the questions */
  seed?: number;
}

/** The questions of the task, split into training and held-out sets (disjoint). */
export function additionTask(opts: AdditionTaskOptions): { train: TaskItem[]; heldOut: TaskItem[] } {
  const min = opts.min ?? 10;
  const max = opts.max ?? 99;
  if (!(Number.isInteger(min) && Number.isInteger(max) && 0 <= min && min <= max)) throw new LlmError(`the operands' range must be integers 0 <= min <= max, not [${min}, ${max}]`);
  const all: TaskItem[] = [];
  for (let a = min; a <= max; a++) for (let b = min; b <= max; b++) all.push({ question: `What is ${a} + ${b}?`, answer: String(a + b) });
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
