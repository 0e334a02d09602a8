/**
 * Preference pairs ready for a reward model or DPO: each answer rendered after its prompt, and
 * batches that stack the chosen rows over the rejected rows (one forward pass for both, as TRL).
 *
 *   const { pairs, tooLong } = renderPreferencePairs(examples, lines, tokenizer, template, { maxLength: 256 });
 *   const batch = makePairBatch(pairs.slice(0, 4), padId);   // x: (2P, T); rows 0..P-1 chosen, P..2P-1 rejected
 *   batch.last;      // (2P,) flat index into (2P, T) of each row's last token (where a reward model reads its score)
 *   batch.targets;   // (2P*T) next-token targets on the answer tokens only, IGNORE_INDEX elsewhere (DPO's log π)
 *
 * Rendering: with a chat template the prompt's messages and the answer as the assistant's turn
 * (renderPromptCompletion: answer + end-of-turn are the "completion"); with none, plain text
 * prompt + answer + EOS. A pair with either side longer than maxLength is left out and counted, as
 * TRL's RewardTrainer filters rather than truncates (a cut answer would be scored on what it is
 * not). With truncatePrompt, such a pair is kept by cutting its prompt from the left instead (the
 * oldest turns go; a leading BOS stays): the same number of prompt tokens from both sides, so
 * both answers follow the same most recent context, and the answers whole. Only a pair whose
 * longer answer alone does not fit is then left out. A pair whose two renderings are the same
 * token ids is an error naming its line.
 *
 *   renderPreferencePairs(examples, lines, tokenizer, template, { maxLength: 256, truncatePrompt: true });
 *   // { pairs, tooLong: lines whose answer alone is too long, truncated: lines whose prompt was cut }
 */
import { IGNORE_INDEX, gather, type Tensor } from '../tensor/index.js';
import { renderPromptCompletion } from '../chat/render.js';
import type { ChatTokenizer } from '../chat/encode.js';
import type { ChatTemplate } from '../chat/template.js';
import type { PreferenceExample } from '../data/preference-examples.js';
import { LlmError } from '../util/errors.js';

/** One side of a pair: ids and 1 on the answer's tokens (its end-of-turn included). */
export interface RenderedAnswer {
  ids: Int32Array;
  answerMask: Uint8Array;
}

export interface RenderedPair {
  chosen: RenderedAnswer;
  rejected: RenderedAnswer;
  /** the data-file line of the pair's row */
  line: number;
  /** what decides the pair's side of the train/eval split */
  key: string;
}

export interface RenderPairsResult {
  pairs: RenderedPair[];
  /** lines of the pairs left out because a side is longer than maxLength */
  tooLong: number[];
  /** lines of the pairs kept by cutting their prompt (truncatePrompt) */
  truncated: number[];
}

export interface RenderPairsOptions {
  /** tokens per rendered side at most */
  maxLength: number;
  /** cut a long pair's prompt from the left instead of leaving the pair out */
  truncatePrompt?: boolean;
}

/** One answer after its prompt; with no template the prompt must be a single user turn (plain text). */
export function renderAnswer(tokenizer: ChatTokenizer, template: ChatTemplate | null, example: PreferenceExample, answer: string): RenderedAnswer {
  let prompt: string | PreferenceExample['prompt'] = example.prompt;
  if (template === null) {
    if (example.prompt.length !== 1 || example.prompt[0].role !== 'user') {
      throw new LlmError(`a prompt of ${example.prompt.length} messages needs a chat template (give --template)`);
    }
    prompt = example.prompt[0].content;
  }
  const { ids, lossMask } = renderPromptCompletion(tokenizer, template, prompt, answer);
  return { ids: Int32Array.from(ids), answerMask: Uint8Array.from(lossMask) };
}

/** Every pair rendered; see the file comment. */
export function renderPreferencePairs(
  examples: readonly PreferenceExample[], lines: readonly number[], tokenizer: ChatTokenizer, template: ChatTemplate | null, opts: RenderPairsOptions,
): RenderPairsResult {
  if (!(Number.isInteger(opts.maxLength) && opts.maxLength >= 2)) throw new LlmError(`the maximum length must be an integer >= 2 tokens, not ${opts.maxLength}`);
  const pairs: RenderedPair[] = [];
  const tooLong: number[] = [];
  const truncated: number[] = [];
  examples.forEach((example, i) => {
    const line = lines[i] ?? i + 1;
    let chosen: RenderedAnswer, rejected: RenderedAnswer;
    try {
      chosen = renderAnswer(tokenizer, template, example, example.chosen);
      rejected = renderAnswer(tokenizer, template, example, example.rejected);
    } catch (err) {
      if (err instanceof LlmError) throw new LlmError(`line ${line}: ${err.message}`);
      throw err;
    }
    if (sameIds(chosen.ids, rejected.ids)) throw new LlmError(`line ${line}: the chosen and rejected answers render to the same tokens; a pair must differ`);
    if (chosen.ids.length > opts.maxLength || rejected.ids.length > opts.maxLength) {
      const cut = opts.truncatePrompt ? cutPrompts(chosen, rejected, opts.maxLength, tokenizer.bosId) : null;
      if (cut === null) {
        tooLong.push(line);
        return;
      }
      [chosen, rejected] = cut;
      truncated.push(line);
    }
    pairs.push({ chosen, rejected, line, key: JSON.stringify(example) });
  });
  return { pairs, tooLong, truncated };
}

/** Where a rendered side's answer starts: its first answer token (the answer runs to the end). */
function answerStart(r: RenderedAnswer): number {
  const i = r.answerMask.indexOf(1);
  return i < 0 ? r.ids.length : i;
}

/**
 * Both sides with the same number of prompt tokens cut after an optional leading BOS, so that the
 * longer side fits maxLength; null when the answers alone (with the BOS) do not fit.
 */
function cutPrompts(chosen: RenderedAnswer, rejected: RenderedAnswer, maxLength: number, bosId: number | undefined): [RenderedAnswer, RenderedAnswer] | null {
  const head = bosId !== undefined && chosen.ids[0] === bosId && rejected.ids[0] === bosId ? 1 : 0;
  const excess = Math.max(chosen.ids.length, rejected.ids.length) - maxLength;
  const cut = (r: RenderedAnswer): RenderedAnswer | null => {
    if (answerStart(r) - head < excess) return null; // the prompt is too short to give up that many tokens
    const keep = (a: Int32Array | Uint8Array): typeof a => {
      const out = a.slice(0, a.length - excess);
      out.set(a.subarray(0, head), 0);
      out.set(a.subarray(head + excess), head);
      return out;
    };
    return { ids: keep(r.ids) as Int32Array, answerMask: keep(r.answerMask) as Uint8Array };
  };
  const c = cut(chosen);
  const r = cut(rejected);
  return c === null || r === null ? null : [c, r];
}

function sameIds(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** P pairs as one (2P, T) batch: chosen rows first, then rejected, right-padded with padId. */
export interface PairBatch {
  /** (2P, T) input ids */
  x: Int32Array;
  /** (2P, T) next-token targets: ids[t+1] where that token belongs to the answer, IGNORE_INDEX elsewhere */
  targets: Int32Array;
  /** (2P,) flat index (row * T + t) of each row's last real token */
  last: Int32Array;
  /** (2P,) answer tokens per row (targets that count) */
  answerTokens: Int32Array;
  P: number;
  T: number;
  /** the data-file lines of the batch's pairs */
  lines: number[];
}

export function makePairBatch(pairs: readonly RenderedPair[], padId: number): PairBatch {
  if (pairs.length === 0) throw new LlmError('a preference batch needs at least one pair');
  const P = pairs.length;
  const rows = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
  let T = 1;
  for (const r of rows) T = Math.max(T, r.ids.length);
  const x = new Int32Array(2 * P * T).fill(padId);
  const targets = new Int32Array(2 * P * T).fill(IGNORE_INDEX);
  const last = new Int32Array(2 * P);
  const answerTokens = new Int32Array(2 * P);
  rows.forEach((r, b) => {
    const n = r.ids.length;
    x.set(r.ids, b * T);
    for (let t = 0; t + 1 < n; t++) {
      if (r.answerMask[t + 1] === 1) {
        targets[b * T + t] = r.ids[t + 1];
        answerTokens[b]++;
      }
    }
    last[b] = b * T + n - 1;
  });
  return { x, targets, last, answerTokens, P, T, lines: pairs.map((p) => p.line) };
}

/** The chosen and rejected halves, (P,) each, of a per-row (2P,) tensor of a PairBatch. */
export function chosenAndRejected(perRow: Tensor, P: number): [chosen: Tensor, rejected: Tensor] {
  const rows = (offset: number): Int32Array => Int32Array.from({ length: P }, (_, i) => offset + i);
  return [gather(perRow, rows(0)), gather(perRow, rows(P))];
}
