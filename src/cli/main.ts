#!/usr/bin/env node
/**
 * llmts: the command-line entry point. One file per command; this one only dispatches and
 * turns errors into one-line messages (a stack trace only with --debug). A command's module is
 * loaded when that command runs, so `llmts run` does not parse the trainer (nor `llmts --help`
 * anything).
 */
import { LlmError } from '../util/errors.js';

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

interface Command {
  run: (argv: string[]) => Promise<void>;
  usage: string;
}

const COMMANDS: Record<string, () => Promise<Command>> = {
  train: async () => import('./train.js').then((m) => ({ run: m.trainCommand, usage: m.TRAIN_USAGE })),
  sample: async () => import('./sample.js').then((m) => ({ run: m.sampleCommand, usage: m.SAMPLE_USAGE })),
  run: async () => import('./run.js').then((m) => ({ run: m.runCommand, usage: m.RUN_USAGE })),
  chat: async () => import('./chat.js').then((m) => ({ run: m.chatCommand, usage: m.CHAT_USAGE })),
  tokenizer: async () => import('./tokenizer.js').then((m) => ({ run: m.tokenizerCommand, usage: m.TOKENIZER_USAGE })),
  convert: async () => import('./convert.js').then((m) => ({ run: m.convertCommand, usage: m.CONVERT_USAGE })),
  info: async () => import('./info.js').then((m) => ({ run: m.infoCommand, usage: m.INFO_USAGE })),
};

async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    process.stderr.write(`llmts: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  const command = await load();
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
