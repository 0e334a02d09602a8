/**
 * A chat model's answers to many prompts, and the two scores that read them: exact match
 * against reference answers (greedy decoding), and the share of answers the model ended itself
 * with its end-of-turn (sampled answers, under a cap on new tokens).
 *
 *   const t = chatTemplate('chatml');
 *   const prompts = [[{ role: 'user', content: 'What is 2 + 2?' }]];
 *   const answers = answerPrompts(model, tokenizer, t, prompts, { maxTokens: 8 });   // greedy
 *   answers[0];                          // { text: '4', ended: true, tokens: 2 }
 *   exactMatch(answers, ['4']);          // { correct: 1, total: 1, rate: 1 }
 *   endOfTurnRate(answerPrompts(model, tokenizer, t, prompts, { maxTokens: 200, temperature: 0.8, topK: 40, seed: 1 }));
 *   // { ended: 1, total: 1, rate: 1 }
 *
 * Each prompt is rendered by the template with the generation prompt (as llmts chat does) and
 * decoded on the KV cache. An answer ends at the template's end of turn: a stop token (the
 * tokenizer's EOS and the template's special stop tokens, e.g. ChatML's <|im_end|>) or one of its
 * text stop strings (qa's '\nQ:') or the caller's `stop` strings; the answer's text stops before
 * it, and `ended` says it was reached. An answer cut by the cap or the context has ended false.
 * Sampled prompt i uses seed + i, so a score does not depend on the order of the prompts.
 */
import { chatStopTokens, encodeChat, type ChatMessage, type ChatTemplate } from '../chat/index.js';
import { generateCached } from '../generate/generate.js';
import type { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';

export interface AnswerOptions {
  /** new tokens per answer at most (the end-of-turn token counts) */
  maxTokens: number;
  /** 0 (default): greedy; above 0: sampled */
  temperature?: number;
  /** sampling only: keep the K most likely tokens (0 = all; default 0) */
  topK?: number;
  /** sampling only: nucleus (1 = off; default 1) */
  topP?: number;
  /** sampling seed of the first prompt (prompt i: seed + i; default 1) */
  seed?: number;
  /** more strings that end an answer, besides the template's (e.g. '\n' for one-line answers) */
  stop?: string[];
}

export interface Answer {
  /** the answer's text, without its end of turn */
  text: string;
  /** the model ended the answer itself (stop token or stop string) before the cap and the context */
  ended: boolean;
  /** tokens generated (an end-of-turn token included) */
  tokens: number;
}

/** The model's answer to each prompt (a conversation ending with a user message). */
export function answerPrompts(
  model: Transformer, tokenizer: Tokenizer, template: ChatTemplate, prompts: readonly (readonly ChatMessage[])[], opts: AnswerOptions,
): Answer[] {
  if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 1)) throw new LlmError(`maxTokens must be a positive integer, not ${opts.maxTokens}`);
  const stopTokens = chatStopTokens(tokenizer, template);
  const stopStrings = [...template.stop.filter((s) => !template.specials.includes(s)), ...(opts.stop ?? [])].filter((s) => s !== '');
  const context = model.config.blockSize;
  return prompts.map((messages, i) => {
    const ids = encodeChat(tokenizer, template, messages);
    if (ids.length >= context) throw new LlmError(`prompt ${i} has ${ids.length} tokens, but the model's context holds ${context}: no room for an answer`);
    const out: number[] = [];
    let generated = 0;
    let ended = false;
    let text = '';
    const gen = generateCached(model, ids, {
      maxTokens: opts.maxTokens, temperature: opts.temperature ?? 0, topK: opts.topK ?? 0, topP: opts.topP ?? 1,
      seed: (opts.seed ?? 1) + i, stopTokens, contextOverflow: 'stop',
    });
    for (const { id } of gen) {
      generated++;
      if (stopTokens.includes(id)) {
        ended = true;
        break;
      }
      out.push(id);
      text = tokenizer.decode(out);
      const cut = firstStop(text, stopStrings);
      if (cut >= 0) {
        text = text.slice(0, cut);
        ended = true;
        break;
      }
    }
    return { text, ended, tokens: generated };
  });
}

/** Where the first stop string starts in text (-1: none). */
function firstStop(text: string, stops: readonly string[]): number {
  let at = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

export interface ExactMatch {
  correct: number;
  total: number;
  /** correct / total */
  rate: number;
}

/** Answers whose text, trimmed, equals the reference answer, trimmed. */
export function exactMatch(answers: readonly Answer[], references: readonly string[]): ExactMatch {
  if (answers.length !== references.length) throw new LlmError(`${answers.length} answers for ${references.length} reference answers`);
  let correct = 0;
  answers.forEach((a, i) => {
    if (a.text.trim() === references[i].trim()) correct++;
  });
  return { correct, total: answers.length, rate: answers.length > 0 ? correct / answers.length : NaN };
}

/** Answers the model ended itself (end-of-turn token or stop string). */
export function endOfTurnRate(answers: readonly Answer[]): { ended: number; total: number; rate: number } {
  const ended = answers.filter((a) => a.ended).length;
  return { ended, total: answers.length, rate: answers.length > 0 ? ended / answers.length : NaN };
}
