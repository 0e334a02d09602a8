/**
 * Preference data for the commands that train on pairs (llmts reward, llmts dpo): the flags, and
 * loading, rendering and splitting a file with a report of what was left out.
 *
 *   const data = loadPairData(options, tokenizer, template);   // { train, held, lines for the banner }
 */
import type { ChatTemplate } from '../chat/template.js';
import { loadPreferenceExamples, PREFERENCE_FORMATS, type PreferenceFormat } from '../data/preference-examples.js';
import { badRowsReport, ON_BAD_ROW_CHOICES, type OnBadRow } from '../data/rows.js';
import { splitTrainEval } from '../data/split.js';
import { CHAT_TEMPLATE_NAMES } from '../chat/index.js';
import { renderPreferencePairs, type RenderedPair } from '../align/pairs.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { FlagDef } from './flags.js';

/** What a pair run saves about its data (to rebuild the same pairs on --resume). */
export interface PairDataOptions {
  data: string;
  format: PreferenceFormat | 'auto';
  onBadRow: OnBadRow;
  maxLength: number;
  evalSplit: number;
  /** keep a pair longer than maxLength by cutting its prompt from the left (absent: leave it out) */
  truncatePrompt?: boolean;
}

/** Whom the banner is for: a training run (train / eval counts) or an evaluation (pairs evaluated). */
export type PairDataUse = 'train' | 'evaluate';

export function pairDataFlags(group: string, evalSplit: string): FlagDef[] {
  return [
    { name: 'data', kind: 'string', value: 'PATH', help: 'preference pairs: JSONL rows {prompt, chosen, rejected} or {chosen, rejected} dialogues (HH-RLHF text or messages) (required)', group },
    { name: 'format', kind: 'string', choices: ['auto', ...PREFERENCE_FORMATS], default: 'auto', help: 'data format; auto: decided by the first row that fits one', group },
    { name: 'on-bad-row', kind: 'string', choices: ON_BAD_ROW_CHOICES, default: 'skip', help: 'a row that does not fit the format: skip it (reported with its line) or stop with an error', group },
    { name: 'template', kind: 'string', choices: CHAT_TEMPLATE_NAMES, defaultText: "the model's own, else chatml for a tokenizer with ChatML tokens, else qa", help: 'chat template that renders prompt and answer', group },
    { name: 'max-length', kind: 'integer', min: 2, defaultText: "the model's context", help: 'tokens per rendered answer at most: a pair with a longer side is left out (counted), not cut', group },
    { name: 'truncate-prompt', kind: 'boolean', help: 'keep a pair longer than --max-length by cutting its prompt from the left (oldest turns first, the same tokens from both sides, answers whole); only a pair whose answer alone is too long is left out', group },
    { name: 'eval-split', kind: 'string', value: 'FRACTION', default: evalSplit, help: 'share of the pairs held out for evaluation (chosen by content; 0 = none)', group },
  ];
}

export interface PairData {
  train: RenderedPair[];
  held: RenderedPair[];
  /** banner line: the file, its format, counts */
  summary: string;
  /** what was left out, for stderr (null when nothing) */
  warnings: string[];
}

export function loadPairData(o: PairDataOptions, tokenizer: Tokenizer, template: ChatTemplate, use: PairDataUse = 'train'): PairData {
  const loaded = loadPreferenceExamples(o.data, { format: o.format, onBadRow: o.onBadRow });
  const { pairs, tooLong, truncated } = renderPreferencePairs(loaded.examples, loaded.lines, tokenizer, template, { maxLength: o.maxLength, truncatePrompt: o.truncatePrompt === true });
  const split = splitTrainEval(pairs, { fraction: o.evalSplit, key: (p) => p.key });
  const warnings: string[] = [];
  const report = badRowsReport(o.data, loaded);
  if (report) warnings.push(report);
  if (tooLong.length > 0) {
    warnings.push(`left out ${tooLong.length} pair${tooLong.length === 1 ? '' : 's'} with ${o.truncatePrompt ? 'an answer alone' : 'an answer'} longer than --max-length ${o.maxLength} tokens ` +
      `(lines ${tooLong.slice(0, 5).join(', ')}${tooLong.length > 5 ? ', ...' : ''}); raise --max-length to keep them${o.truncatePrompt ? '' : ', or cut their prompts with --truncate-prompt'}`);
  }
  const counts = use === 'evaluate' ? `${pairs.length} pairs evaluated` : `${pairs.length} pairs: ${split.train.length} train / ${split.eval.length} eval`;
  const summary = `${o.data}: ${loaded.format}, ${loaded.rows} rows, ${loaded.bad.length} bad; ${counts}; ` +
    `${tooLong.length} longer than ${o.maxLength} tokens left out` +
    (o.truncatePrompt ? `, ${truncated.length} with the prompt cut to fit` : '');
  return { train: split.train, held: split.eval, summary, warnings };
}
