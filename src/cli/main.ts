#!/usr/bin/env node
/**
 * llmts: the command-line entry point. One file per command, each exporting its flag table
 * (a CommandSpec) and a run function; this file dispatches, parses the flags from the table,
 * applies the common ones (-t) and turns errors into one-line messages (a stack trace only with
 * --debug). A command's module is loaded when that command runs, so `llmts run` does not parse
 * the trainer (nor `llmts --help` anything).
 */
import { readFileSync } from 'node:fs';
import { LlmError } from '../util/errors.js';
import { COMMANDS, type CommandModule } from './commands.js';
import { helpText, parseCommandLine } from './flags.js';

const ENVIRONMENT = `Environment:
  LLMTS_THREADS=N        compute threads (what -t sets; default every core)
  LLMTS_BACKEND=NAME     native (default when its addon loads) or reference (pure TypeScript, slow)
  LLMTS_SIMD=LEVEL       cap the native kernels' SIMD level: avx512, avx2 or portable
  LLMTS_CACHE=DIR        where downloaded datasets and tokenizers are kept (default ~/.cache/llmts)
  LLMTS_MMAP=0           read model files into memory instead of mapping them
  LLMTS_BF16=PATH        --dtype bf16 products: auto (AMX or AVX512-BF16, else float32), portable
                         (bf16 rounding on any CPU, slower), avx512bf16 or amx (only that kernel)`;

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
  sft       supervised fine-tuning on prompt/response data (loss on the responses only)
  merge     fold a LoRA adapter into its base model; write an llm.ts, Hugging Face or GGUF model
  reward    train a reward model on preference pairs; its pairwise accuracy; score answers
  dpo       direct preference optimisation on preference pairs against a frozen reference
  ppo       reinforcement learning against a reward model or a JS reward (PPO, GRPO, RLOO)
  data      split a JSONL file into train and held-out files; write the text of its rows
  serve     serve models over HTTP with OpenAI's API (chat, completions, streaming, batching)

Run 'llmts <command> --help' for the flags of a command. Every command takes --debug (stack
traces on errors); those that compute take -t N (threads). 'llmts --version' prints the version.

${ENVIRONMENT}
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `llmts ${pkg.version} (node ${process.version}, ${process.platform}-${process.arch})`;
}

const wantsHelp = (args: readonly string[]): boolean => args.includes('--help') || args.includes('-h');

async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const [name, ...rest] = argv[0] === '--debug' && argv.length > 1 ? argv.slice(1) : argv;
  if (!name || name === '--help' || name === '-h' || name === 'help' || (name === '--debug' && rest.length === 0)) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(version() + '\n');
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    process.stderr.write(`llmts: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  const loaded = await load();
  let label = name;
  try {
    let command: CommandModule;
    let args = rest;
    if ('subcommands' in loaded) {
      const [sub, ...subArgs] = rest;
      if (sub === undefined || sub.startsWith('-')) {
        if (wantsHelp(rest)) {
          process.stdout.write(loaded.help);
          return 0;
        }
      }
      if (sub === undefined || !Object.hasOwn(loaded.subcommands, sub)) {
        const got = sub === undefined ? 'no subcommand' : `unknown subcommand '${sub}'`;
        const names = Object.keys(loaded.subcommands);
        throw new LlmError(`${got}; use ${names.map((n) => `'llmts ${name} ${n}'`).join(', ')} (see 'llmts ${name} --help')`);
      }
      command = loaded.subcommands[sub];
      args = subArgs;
      label = `${name} ${sub}`;
    } else {
      command = loaded;
    }
    if (wantsHelp(args)) {
      process.stdout.write(helpText(command.spec));
      return 0;
    }
    const flags = parseCommandLine(command.spec, args);
    if (command.spec.flags.some((f) => f.name === 'threads') && flags.has('threads')) {
      const { requestThreads } = await import('../backend/index.js');
      requestThreads(flags.number('threads')!);
    }
    await command.run(flags);
    return 0;
  } catch (err) {
    if (debug) process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    const message = err instanceof LlmError ? err.message : `internal error: ${(err as Error).message ?? String(err)} (rerun with --debug for details)`;
    process.stderr.write(`llmts ${label}: error: ${message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
