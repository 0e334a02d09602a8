/**
 * A trained reward model, as `llmts reward train` leaves it in its run directory: the trunk (with
 * its LoRA adapters when it was trained with --lora), the scalar head `score.weight`, the
 * tokenizer and the chat template its pairs were rendered with. Used to score answers (llmts
 * reward eval|score) and as PPO's reward.
 *
 *   const rm = loadRewardModel('out/rm');
 *   scoreAnswers(rm, [{ prompt: [{ role: 'user', content: 'Hi' }], answer: 'Hello!' }]);   // Float32Array [r]
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chatTemplate, jinjaChatTemplate, type ChatMessage, type ChatTemplate, type ChatTemplateName } from '../chat/index.js';
import { loadCheckpoint } from '../formats/checkpoint.js';
import { buildRunModel, restoreRegistered, type RunLoraOptions } from '../finetune/lora-model.js';
import { addScalarHead, SCALAR_HEAD_NAME, type ScalarHead } from '../model/heads.js';
import type { Transformer } from '../model/transformer.js';
import { noGrad } from '../tensor/index.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { renderAnswer, type RenderedAnswer } from './pairs.js';
import { sequenceScores } from './reward.js';

/** What a reward run saves about itself (beyond the loop's options) to be rebuilt. */
export interface RewardRunSettings {
  objective: 'reward';
  seed: number;
  template: string;
  templateSource?: string;
  lora?: RunLoraOptions;
  maxLength: number;
}

export interface RewardModel {
  path: string;
  model: Transformer;
  head: ScalarHead;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** the longest rendering it was trained on (longer inputs are refused) */
  maxLength: number;
}

export function isRewardRun(o: unknown): o is RewardRunSettings {
  const s = o as Partial<RewardRunSettings> | undefined;
  return s?.objective === 'reward' && typeof s.template === 'string' && typeof s.seed === 'number';
}

/** The reward model of a run directory (or its ckpt.safetensors). */
export function loadRewardModel(dirOrFile: string): RewardModel {
  const path = existsSync(dirOrFile) && statSync(dirOrFile).isDirectory() ? join(dirOrFile, 'ckpt.safetensors') : dirOrFile;
  if (!existsSync(path)) throw new LlmError(`no reward model at ${path}; give the run directory of an llmts reward train run`);
  const ck = loadCheckpoint(path);
  const o = (ck.trainer as { options?: unknown }).options;
  if (!isRewardRun(o) || !ck.extras.has(SCALAR_HEAD_NAME)) {
    throw new LlmError(`${path} is not a reward model (no '${SCALAR_HEAD_NAME}' head or reward run settings); train one with llmts reward train`);
  }
  const tokenizer = tokenizerFromJSON(ck.tokenizer);
  const model = buildRunModel(ck.config, ck.params, o.lora, o.seed);
  const head = addScalarHead(model, { init: 'zeros' });
  restoreRegistered(model, ck.params, ck.extras, path);
  model.freeze();
  model.eval();
  const template = o.template === 'jinja' ? jinjaChatTemplate(o.templateSource ?? '', tokenizer) : chatTemplate(o.template as ChatTemplateName);
  return { path, model, head, tokenizer, template, maxLength: o.maxLength };
}

/** One answer to score: the conversation before it (ending with the user) and the answer. */
export interface AnswerToScore {
  prompt: ChatMessage[];
  answer: string;
}

/**
 * The reward of each answer, in micro-batches of `batchSize` (no autograd). A rendering longer
 * than the reward model's context is an error, or with `overLong: 'cut'` is cut to the context
 * and scored at its last token (RL: an answer that ran to the end of the policy's context gets
 * the template's end-of-turn tokens added and, re-tokenized, can exceed it).
 */
export function scoreAnswers(rm: RewardModel, items: readonly AnswerToScore[], batchSize = 8, opts: { overLong?: 'error' | 'cut' } = {}): Float32Array {
  const context = rm.model.config.blockSize;
  const rendered: RenderedAnswer[] = items.map((it, i) => {
    const r = renderAnswer(rm.tokenizer, rm.template, { prompt: it.prompt, chosen: it.answer, rejected: '' }, it.answer);
    if (r.ids.length <= context) return r;
    if (opts.overLong !== 'cut') throw new LlmError(`answer ${i + 1}: ${r.ids.length} tokens with its prompt, longer than the reward model's context of ${context}`);
    return { ids: r.ids.subarray(0, context), answerMask: r.answerMask.subarray(0, context) };
  });
  const out = new Float32Array(items.length);
  noGrad(() => {
    for (let i = 0; i < rendered.length; i += batchSize) {
      const s = sequenceScores(rm.model, rm.head, rendered.slice(i, i + batchSize), rm.tokenizer.eosId ?? 0);
      out.set(s, i);
    }
  });
  return out;
}
