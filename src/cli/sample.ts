/**
 * llmts sample: load a checkpoint and stream generated text.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { generateTokens, type GenerateOptions } from '../generate/generate.js';
import { Transformer } from '../model/transformer.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { StreamDecoder } from '../tokenizer/stream-decoder.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { LlmError } from '../util/errors.js';
import { numberFlag, parseFlags, stringFlag, type FlagSpec } from './args.js';

export const SAMPLE_USAGE = `Usage: llmts sample --ckpt PATH [flags]

Generate text from a checkpoint written by 'llmts train'.

  --ckpt PATH          checkpoint file, or a run directory holding ckpt.safetensors (required)
  --prompt TEXT        text to continue (default: a newline)
  --max-tokens N       tokens to generate (default 500)
  --temperature X      0 = greedy; higher = more random (default 0.8)
  --top-k N            sample among the k most likely tokens; 0 = all (default 200)
  --seed N             random seed; same seed, same text (default 1337)
`;

const FLAGS: FlagSpec = {
  ckpt: { type: 'string' }, prompt: { type: 'string' }, 'max-tokens': { type: 'string' },
  temperature: { type: 'string' }, 'top-k': { type: 'string' }, seed: { type: 'string' },
};

export async function sampleCommand(argv: string[]): Promise<void> {
  const p = parseFlags(argv, FLAGS, 'sample');
  let path = stringFlag(p, 'ckpt') ?? p.positionals[0];
  if (!path) throw new LlmError('--ckpt is required (a checkpoint file or the --out directory of a training run)');
  if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'ckpt.safetensors');
  const ck = loadCheckpoint(path);
  const model = new Transformer(ck.config, ck.params);
  const tokenizer = tokenizerFromJSON(ck.tokenizer);
  printSample(model, tokenizer, stringFlag(p, 'prompt') ?? '\n', {
    maxTokens: numberFlag(p, 'max-tokens', { integer: true, min: 0 }) ?? 500,
    temperature: numberFlag(p, 'temperature', { min: 0 }) ?? 0.8,
    topK: numberFlag(p, 'top-k', { integer: true, min: 0 }) ?? 200,
    seed: numberFlag(p, 'seed', { integer: true, min: 0 }) ?? 1337,
  });
  process.stdout.write('\n');
}

/** Print the prompt, then each generated piece of text as soon as it exists. */
export function printSample(model: Transformer, tokenizer: Tokenizer, prompt: string, opts: GenerateOptions): void {
  const ids = tokenizer.encode(prompt);
  process.stdout.write(prompt);
  const stream = new StreamDecoder(tokenizer); // never prints half of a multi-byte character
  for (const id of generateTokens(model, ids, opts)) process.stdout.write(stream.push(id));
  process.stdout.write(stream.flush());
}
