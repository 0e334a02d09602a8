/**
 * How likely a model finds given text: the negative log-likelihood of continuations after their
 * contexts, and the perplexity over many of them. The fluency check of RL: sampled answers scored
 * under the reference (SFT) model.
 *
 *   const items = chatContinuations(tokenizer, chatml, prompts, answers.map((a) => a.text));
 *   const nll = continuationNll(model, items);         // { nll: [Σ -log p per item], tokens: [count per item] }
 *   perplexity(nll);                                   // { perplexity: exp(Σ nll / Σ tokens), meanNll, tokens }
 *
 * Each item is context ids then continuation ids, one sequence; only the continuation's tokens
 * are scored, each given everything before it (the logits at temperature 1). Sequences are
 * right-padded into batches, which the causal mask makes harmless: a score does not depend on
 * the batch it was computed in. An item longer than the model's context is an error; an empty
 * continuation scores 0 over 0 tokens.
 */
import { encodeChat, type ChatMessage, type ChatTemplate } from '../chat/index.js';
import type { Transformer } from '../model/transformer.js';
import { IGNORE_INDEX, logSoftmaxGather, noGrad } from '../tensor/index.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';

export interface Continuation {
  /** ids before the scored text (at least one: the first scored token needs a position predicting it) */
  context: ArrayLike<number>;
  /** the ids scored */
  continuation: ArrayLike<number>;
}

export interface ContinuationNll {
  /** per item: Σ -log p(token | everything before it) over its continuation */
  nll: Float64Array;
  /** per item: continuation tokens */
  tokens: Int32Array;
}

export interface Perplexity {
  /** exp(meanNll) */
  perplexity: number;
  /** Σ nll / Σ tokens (nats per token) */
  meanNll: number;
  tokens: number;
}

/** Each item's summed negative log-likelihood of its continuation (batches of `batchSize` sequences). */
export function continuationNll(model: Transformer, items: readonly Continuation[], opts: { batchSize?: number } = {}): ContinuationNll {
  const B = opts.batchSize ?? 16;
  if (!(Number.isInteger(B) && B >= 1)) throw new LlmError(`the batch size must be a positive integer, not ${B}`);
  const context = model.config.blockSize;
  items.forEach((it, i) => {
    const n = it.context.length + it.continuation.length;
    if (it.context.length < 1) throw new LlmError(`item ${i + 1} has an empty context: give at least one token before the scored text (a BOS or the prompt)`);
    if (n > context) throw new LlmError(`item ${i + 1} has ${n} tokens, more than the model's context of ${context}`);
  });
  const nll = new Float64Array(items.length);
  const tokens = new Int32Array(items.length);
  noGrad(() => {
    for (let start = 0; start < items.length; start += B) {
      const batch = items.slice(start, start + B);
      const T = Math.max(...batch.map((it) => it.context.length + it.continuation.length));
      const x = new Int32Array(batch.length * T); // (b, T), right-padded with id 0
      const targets = new Int32Array(batch.length * T).fill(IGNORE_INDEX); // position t predicts x[t + 1]
      batch.forEach((it, b) => {
        const p = it.context.length;
        x.set(Array.from(it.context), b * T);
        x.set(Array.from(it.continuation), b * T + p);
        for (let j = 0; j < it.continuation.length; j++) targets[b * T + p + j - 1] = it.continuation[j];
      });
      const { logits } = model.forward(x, batch.length, T); // (b, T, V)
      const logp = logSoftmaxGather(logits, targets).data; // (b*T): 0 where ignored
      batch.forEach((it, b) => {
        let s = 0;
        for (let t = 0; t < T; t++) s -= logp[b * T + t];
        nll[start + b] = s;
        tokens[start + b] = it.continuation.length;
      });
    }
  });
  return { nll, tokens };
}

/** exp of the token-weighted mean negative log-likelihood (NaN over no tokens). */
export function perplexity(scores: ContinuationNll): Perplexity {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < scores.nll.length; i++) {
    sum += scores.nll[i];
    n += scores.tokens[i];
  }
  const meanNll = n > 0 ? sum / n : NaN;
  return { perplexity: Math.exp(meanNll), meanNll, tokens: n };
}

/**
 * Answers to chat prompts as continuations: the prompt rendered as for generation (the assistant
 * turn opened), the answer's text encoded as plain text (no end of turn: the text alone is scored).
 */
export function chatContinuations(tokenizer: Tokenizer, template: ChatTemplate, prompts: readonly (readonly ChatMessage[])[], answers: readonly string[]): Continuation[] {
  if (prompts.length !== answers.length) throw new LlmError(`${answers.length} answers for ${prompts.length} prompts`);
  return prompts.map((messages, i) => ({
    context: encodeChat(tokenizer, template, messages),
    continuation: tokenizer.encode(answers[i], { allowedSpecial: 'none' }),
  }));
}
