/**
 * llmts sample: load a checkpoint and stream generated text.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { generateTokens, type GenerateOptions } from '../generate/generate.js';
import { Transformer } from '../model/transformer.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { StreamDecoder } from '../tokenizer/stream-decoder.js';
import { loadCheckpoint } from '../formats/checkpoint.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { samplingFlags, samplingOptions } from './sampling-flags.js';
import { THREADS_FLAG } from './shared-flags.js';

const SAMPLE_SPEC: CommandSpec = {
  name: 'sample',
  usage: '--ckpt PATH [flags]',
  summary: "Generate text from a checkpoint written by 'llmts train' (the prompt is printed first).",
  flags: [
    { name: 'ckpt', short: 'm', aliases: ['model'], kind: 'string', value: 'PATH', help: 'checkpoint file, or a run directory holding ckpt.safetensors (required)', group: 'Model' },
    { name: 'prompt', short: 'p', kind: 'string', defaultText: 'a newline', help: 'text to continue', group: 'Sampling' },
    ...samplingFlags({ maxTokens: 500, topK: 200, topP: 1, minP: 0 }).filter((d) => d.name !== 'stop'),
    THREADS_FLAG,
  ],
};

async function sampleCommand(f: Flags): Promise<void> {
  let path = f.string('ckpt') ?? f.positionals[0];
  if (!path) throw new LlmError('--ckpt is required (a checkpoint file or the --out directory of a training run)');
  if (f.positionals.length > (f.has('ckpt') ? 0 : 1)) throw new LlmError(`unexpected argument '${f.positionals.at(-1)}' (quote the prompt and pass it with -p)`);
  if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'ckpt.safetensors');
  const ck = loadCheckpoint(path);
  const model = new Transformer(ck.config, ck.params, { quantized: ck.quantized }); // a QLoRA run's base stays quantized
  const tokenizer = tokenizerFromJSON(ck.tokenizer);
  printSample(model, tokenizer, f.string('prompt') ?? '\n', samplingOptions(f));
  process.stdout.write('\n');
}

export const SAMPLE: CommandModule = { spec: SAMPLE_SPEC, run: sampleCommand };

/** Print the prompt, then each generated piece of text as soon as it exists. */
export function printSample(model: Transformer, tokenizer: Tokenizer, prompt: string, opts: GenerateOptions): void {
  const ids = tokenizer.encode(prompt);
  process.stdout.write(prompt);
  const stream = new StreamDecoder(tokenizer); // never prints half of a multi-byte character
  for (const id of generateTokens(model, ids, opts)) process.stdout.write(stream.push(id));
  process.stdout.write(stream.flush());
}
