/**
 * What the learning recipes (bench/sft-learn.ts, grpo-learn.ts, rlhf-learn.ts) share: running one
 * `llmts` step unless its output is already there from the same command on the same inputs, and
 * loading a model to score it.
 *
 *   const step = runStep(dir, 'base', join(dir, 'base', 'ckpt.safetensors'), ['train', '--data', text, ...], fresh);
 *   const { model, tok } = await loadForScoring(join(dir, 'base'));
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join as join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadAnyModel } from '../src/formats/load-model.js';
import { Transformer } from '../src/model/transformer.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** the flags whose values are input files (a directory stands for its ckpt.safetensors) */
const INPUT_FLAGS = ['--data', '--tokenizer', '--prompts', '--reward', '-m'];

export interface Step {
  name: string;
  /** wall seconds, null when reused */
  seconds: number | null;
  reused: boolean;
  command: string;
}

export function hashFile(p: string): string {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** The file an input flag's value names (`--reward NAME=PATH` names PATH; a run directory, its checkpoint). */
function inputFile(value: string): string {
  const path = !existsSync(value) && /^\w+=/.test(value) ? value.slice(value.indexOf('=') + 1) : value;
  return statSync(path).isDirectory() ? join(path, 'ckpt.safetensors') : path;
}

/**
 * Run `llmts args` (its output to stderr), unless `output` exists from the same command on the
 * same inputs (the files named by --data, --tokenizer, --prompts, --reward and -m, by content);
 * the record of what made it is `DIR/NAME.step`. A failed step throws, naming its command.
 */
export function runStep(dir: string, name: string, output: string, args: string[], fresh: boolean): Step {
  const command = args.map((a) => (/^[\w./=,:-]+$/.test(a) ? a : `'${a}'`)).join(' ');
  const inputs = args.flatMap((a, i) => (INPUT_FLAGS.includes(args[i - 1]) ? [a] : []))
    .map(inputFile)
    .map((p) => `${p} ${hashFile(p)}`);
  const record = [command, ...inputs].join('\n');
  const recordPath = join(dir, `${name.replace(/\W+/g, '-')}.step`);
  if (!fresh && existsSync(output) && existsSync(recordPath) && readFileSync(recordPath, 'utf8') === record) {
    process.stderr.write(`${name}: reusing ${output}\n`);
    return { name, seconds: null, reused: true, command };
  }
  process.stderr.write(`${name}: llmts ${command}\n`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) throw new Error(`${name} failed (exit ${r.status}): llmts ${command}`);
  writeFileSync(recordPath, record);
  return { name, seconds: (performance.now() - t0) / 1000, reused: false, command };
}

/** A model and its tokenizer, in evaluation mode (no dropout), to score or sample from. */
export async function loadForScoring(path: string): Promise<{ model: Transformer; tok: Tokenizer }> {
  const l = await loadAnyModel(path);
  const model = new Transformer(l.config, l.params);
  model.eval();
  return { model, tok: l.tokenizer! };
}

/** A recipe's command line: --dir (default `defaultDir`), --shared (../shared/data beside the repository), --threads, --fresh, --help. */
export function recipeOptions(defaultDir: string): { dir: string; shared: string; threads: string; fresh: boolean; help: boolean } {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, shared: { type: 'string' }, threads: { type: 'string' }, fresh: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  return {
    dir: resolve(values.dir ?? defaultDir),
    shared: resolve(values.shared ?? fileURLToPath(new URL('../../../shared/data', import.meta.url))),
    threads: values.threads ?? '2',
    fresh: values.fresh ?? false,
    help: values.help ?? false,
  };
}
