/**
 * Autoregressive generation by re-running the model on the last blockSize tokens for every
 * new token (the KV-cache inference engine replaces this path later; this one is simple and
 * always agrees with training).
 *
 *   for (const id of generateTokens(model, promptIds, { maxTokens: 100, temperature: 0.8, topK: 200, seed: 1 })) ...
 */
import { noGrad, withBufferScope } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { sampleToken, type SamplingOptions } from './sampler.js';

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
}

export function* generateTokens(model: Transformer, prompt: number[], opts: GenerateOptions): Generator<number> {
  if (prompt.length === 0) throw new LlmError('the prompt is empty: give at least one character or token');
  const rng = new Rng(opts.seed);
  const context = [...prompt];
  const window = model.config.blockSize;
  model.eval();
  for (let n = 0; n < opts.maxTokens; n++) {
    const ids = Int32Array.from(context.slice(-window));
    const next = withBufferScope(() => {
      const { logits } = noGrad(() => model.forward(ids, 1, ids.length, undefined, { lastOnly: true }));
      return sampleToken(logits.data, opts, rng);
    });
    context.push(next);
    yield next;
  }
}
