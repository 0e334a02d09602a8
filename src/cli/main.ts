#!/usr/bin/env node
/**
 * llmts: the command-line entry point. One file per command; this one only dispatches and
 * turns errors into one-line messages (a stack trace only with --debug).
 */
import { LlmError } from '../util/errors.js';
import { trainCommand, TRAIN_USAGE } from './train.js';
import { sampleCommand, SAMPLE_USAGE } from './sample.js';
import { runCommand, RUN_USAGE } from './run.js';
import { chatCommand, CHAT_USAGE } from './chat.js';
import { tokenizerCommand, TOKENIZER_USAGE } from './tokenizer.js';
import { convertCommand, CONVERT_USAGE } from './convert.js';
import { infoCommand, INFO_USAGE } from './info.js';

const USAGE = `llmts — train and run language models in TypeScript

Usage: llmts <command> [flags]

Commands:
  train     pretrain a GPT-2 or Llama model on a text file (next-token prediction)
  sample    generate text from a checkpoint
  run       generate text from a checkpoint or Hugging Face model on the KV cache (streaming)
  chat      chat with a model interactively (chat templates, streamed answers)
  tokenizer train a byte-level BPE tokenizer; encode and decode text with any tokenizer
  convert   convert a model to GGUF (f32, f16, q8_0, q4_0), a Hugging Face directory or llama2.c
  info      describe a model file: architecture, sizes, tensor types, tokenizer

Run 'llmts <command> --help' for the flags of a command. Add --debug to any command
to see stack traces. Environment: LLMTS_BACKEND=reference|native, LLMTS_CACHE=<dir>.
`;

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; usage: string }> = {
  train: { run: trainCommand, usage: TRAIN_USAGE },
  sample: { run: sampleCommand, usage: SAMPLE_USAGE },
  run: { run: runCommand, usage: RUN_USAGE },
  chat: { run: chatCommand, usage: CHAT_USAGE },
  tokenizer: { run: tokenizerCommand, usage: TOKENIZER_USAGE },
  convert: { run: convertCommand, usage: CONVERT_USAGE },
  info: { run: infoCommand, usage: INFO_USAGE },
};

async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`llmts: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage);
    return 0;
  }
  try {
    await command.run(rest);
    return 0;
  } catch (err) {
    if (debug) process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    const message = err instanceof LlmError ? err.message : `internal error: ${(err as Error).message ?? String(err)} (rerun with --debug for details)`;
    process.stderr.write(`\nllmts ${name}: error: ${message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
