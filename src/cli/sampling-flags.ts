/**
 * The sampling flags shared by run, chat, sample (and later serve): one table, one set of
 * defaults (llama.cpp's: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) that a command may
 * override, and the code that turns them into generation options.
 *
 *   const SPEC: CommandSpec = { ..., flags: [...samplingFlags({ maxTokens: 500 })] };
 *   samplingOptions(parseCommandLine(SPEC, ['-n', '20']));   // { maxTokens: 20, temperature: 0.8, ... }
 */
import type { TextGenerateOptions } from '../generate/generate.js';
import { LlmError } from '../util/errors.js';
import type { FlagDef, Flags } from './flags.js';

export interface SamplingDefaults {
  maxTokens?: number;
  topK?: number;
  topP?: number;
  minP?: number;
}

/** The sampling flags, with llama.cpp's defaults unless a command overrides some. */
export function samplingFlags(d: SamplingDefaults = {}): FlagDef[] {
  const group = 'Sampling';
  return [
    { name: 'max-tokens', short: 'n', kind: 'integer', min: 0, default: d.maxTokens ?? 256, help: 'tokens to generate at most', group },
    { name: 'temperature', kind: 'number', min: 0, default: 0.8, help: '0 = greedy; higher = more random', group },
    { name: 'top-k', kind: 'integer', min: 0, default: d.topK ?? 40, help: 'sample among the k most likely tokens; 0 = all', group },
    { name: 'top-p', kind: 'number', min: 0, max: 1, default: d.topP ?? 0.95, help: 'nucleus sampling: the smallest set with probability >= X; 1 = off', group },
    { name: 'min-p', kind: 'number', min: 0, max: 1, default: d.minP ?? 0.05, help: 'drop tokens below X times the top probability; 0 = off', group },
    { name: 'repeat-penalty', kind: 'number', above: 0, default: 1, help: '> 1 discourages the last 64 tokens; 1 = off', group },
    { name: 'seed', short: 's', kind: 'integer', min: 0, default: 1337, help: 'random seed: same seed, same text', group },
    { name: 'stop', kind: 'strings', value: 'TEXT', help: 'stop when the text contains TEXT (not printed); repeatable', group },
  ];
}

export function samplingOptions(f: Flags, minTokens = 0): TextGenerateOptions {
  const maxTokens = f.number('max-tokens')!;
  if (maxTokens < minTokens) throw new LlmError(`${f.typed('max-tokens')} ${maxTokens}: must be at least ${minTokens}`);
  return {
    maxTokens,
    temperature: f.number('temperature')!,
    topK: f.number('top-k')!,
    topP: f.number('top-p')!,
    minP: f.number('min-p')!,
    repetitionPenalty: f.number('repeat-penalty')!,
    seed: f.number('seed')!,
    stop: f.spec.flags.some((d) => d.name === 'stop') ? f.strings('stop') : [],
  };
}

