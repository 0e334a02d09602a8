/**
 * The sampling flags shared by `llmts run` and `llmts chat`: one flag table, one parser,
 * one set of defaults (llama.cpp's: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).
 */
import type { TextGenerateOptions } from '../generate/generate.js';
import { numberFlag, type FlagSpec, type Parsed } from './args.js';

export const SAMPLING_FLAGS: FlagSpec = {
  'max-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' },
  'top-p': { type: 'string' }, 'min-p': { type: 'string' }, 'repeat-penalty': { type: 'string' },
  seed: { type: 'string' }, stop: { type: 'string', multiple: true }, tokenizer: { type: 'string' },
};

export function samplingOptions(p: Parsed, minTokens = 0): TextGenerateOptions {
  return {
    maxTokens: numberFlag(p, 'max-tokens', { integer: true, min: minTokens }) ?? 256,
    temperature: numberFlag(p, 'temperature', { min: 0 }) ?? 0.8,
    topK: numberFlag(p, 'top-k', { integer: true, min: 0 }) ?? 40,
    topP: numberFlag(p, 'top-p', { min: 0, max: 1 }) ?? 0.95,
    minP: numberFlag(p, 'min-p', { min: 0, max: 1 }) ?? 0.05,
    repetitionPenalty: numberFlag(p, 'repeat-penalty', { min: 0 }) ?? 1,
    seed: numberFlag(p, 'seed', { integer: true, min: 0 }) ?? 1337,
    stop: (p.values.stop as unknown as string[] | undefined) ?? [],
  };
}
