/**
 * llmts data: prepare dataset files for the other commands.
 *
 *   llmts data split pairs.jsonl --eval-split 0.1 -o out/split     # out/split/train.jsonl, out/split/heldout.jsonl
 *   llmts data text out/split/train.jsonl --field chosen --field rejected -o out/train.txt   # text for llmts train
 */
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { jsonlLines, splitRows } from '../data/split-rows.js';
import { parseEvalSplit } from '../data/split.js';
import { readTextFile } from '../data/text-file.js';
import { rowsText } from '../data/text-fields.js';
import { requireRegularFile } from '../util/regular-file.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import type { CommandGroup } from './commands.js';
import { helpText, type CommandSpec, type Flags } from './flags.js';

const SPLIT_SPEC: CommandSpec = {
  name: 'data split',
  usage: 'FILE -o DIR [--eval-split FRACTION] [--seed N]',
  summary: `Split a JSONL file into DIR/train.jsonl and DIR/heldout.jsonl: exactly round(FRACTION x rows)
rows held out (chosen by a seeded hash of each row's text, so the same rows on every machine and in
any file order; identical rows stay together), every line copied unchanged, file order kept. The
two files are written atomically. Train on one and evaluate on the other with any command.`,
  flags: [
    { name: 'data', kind: 'string', value: 'PATH', help: 'the JSONL file to split (or give it as the positional FILE)' },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'directory that receives train.jsonl and heldout.jsonl (required)' },
    { name: 'eval-split', kind: 'string', value: 'FRACTION', default: '0.1', help: 'share of the rows held out, in [0, 1)' },
    { name: 'seed', kind: 'integer', min: 0, default: 0, help: 'another seed holds out other rows' },
  ],
  notes: `  llmts data split ../shared/data/hh-rlhf/harmless-base-train.jsonl -o out/hh      # 1768 train / 197 held out`,
};

const TEXT_SPEC: CommandSpec = {
  name: 'data text',
  usage: 'FILE --field NAME [--field NAME ...] -o OUT.txt',
  summary: `Write the text of JSON rows as one UTF-8 text file (for llmts train and llmts tokenizer
train): the named string fields of each row, in order, each followed by the separator. A row
without one of the fields, or with one that is not a string, is an error naming its line.`,
  flags: [
    { name: 'data', kind: 'string', value: 'PATH', help: 'the JSONL (or JSON array) file (or give it as the positional FILE)' },
    { name: 'field', kind: 'strings', value: 'NAME', help: 'a string field to write; repeat for more, written in the order given (required)' },
    { name: 'separator', kind: 'string', value: 'TEXT', default: '\\n\\n', help: 'written after each field; \\n and \\t stand for newline and tab' },
    { name: 'out', short: 'o', kind: 'string', value: 'FILE', help: 'the text file to write (required)' },
  ],
  notes: `  llmts data text pairs.jsonl --field chosen --field rejected -o pairs.txt
  llmts data text docs.jsonl --field text --separator '\\n' -o docs.txt`,
};

const SPECS = [SPLIT_SPEC, TEXT_SPEC];
for (const spec of SPECS) (spec as { siblings?: CommandSpec[] }).siblings = SPECS.filter((s) => s !== spec);

export const DATA: CommandGroup = {
  name: 'data',
  subcommands: {
    split: { spec: SPLIT_SPEC, run: splitCommand },
    text: { spec: TEXT_SPEC, run: textCommand },
  },
  help: `Usage: llmts data <split|text> [flags]

Prepare dataset files: split a JSONL file into a training and a held-out file, or write the text
of its rows for pretraining. 'llmts data <subcommand> --help' shows one; both follow.

${SPECS.map((s) => helpText(s)).join('\n')}`,
};

const log = (s: string): void => void process.stdout.write(s + '\n');

/** The input file: --data or the one positional. */
function inputFile(f: Flags, usage: string): string {
  if (f.positionals.length > 1) throw new LlmError(`one input file, not ${f.positionals.length}: llmts ${usage}`);
  const given = f.string('data');
  if (given !== undefined && f.positionals.length > 0) throw new LlmError(`give the input file once: as FILE or as --data, not both`);
  const path = given ?? f.positionals[0];
  if (path === undefined) throw new LlmError(`give the input file: llmts ${usage}`);
  requireRegularFile(path, 'data file');
  return path;
}

function requireOut(f: Flags, what: string): string {
  const out = f.string('out');
  if (out === undefined) throw new LlmError(`give ${what}: -o ${what === 'the output directory' ? 'DIR' : 'FILE'}`);
  return out;
}

async function splitCommand(f: Flags): Promise<void> {
  const path = inputFile(f, `data split FILE -o DIR`);
  const outDir = requireOut(f, 'the output directory');
  const fraction = parseEvalSplit(f.string('eval-split')!);
  const rows = jsonlLines(readTextFile(path, 'give a JSONL file'), path);
  if (rows.length === 0) throw new LlmError(`${path} holds no rows`);
  const { train, held } = splitRows(rows, { fraction, seed: f.number('seed')! });
  const write = (name: string, lines: string[]): string => {
    const file = join(outDir, name);
    writeFileAtomic(file, lines.map((l) => l + '\n').join(''));
    return file;
  };
  const trainFile = write('train.jsonl', train);
  const heldFile = write('heldout.jsonl', held);
  log(`${path}: ${rows.length} rows: ${train.length} -> ${trainFile}, ${held.length} held out -> ${heldFile}`);
}

async function textCommand(f: Flags): Promise<void> {
  const path = inputFile(f, `data text FILE --field NAME -o OUT.txt`);
  const out = requireOut(f, 'the text file to write');
  const fields = f.strings('field');
  if (fields.length === 0) throw new LlmError('give the fields to write: --field NAME (repeat for more)');
  if (statSync(path).size === 0) throw new LlmError(`${path} is empty`);
  const separator = f.string('separator')!.replace(/\\(n|t|\\)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
  const r = rowsText(path, fields, separator);
  writeFileAtomic(out, r.text);
  log(`${path}: ${r.rows} rows, ${r.fields} fields (${fields.join(', ')}): ${Buffer.byteLength(r.text).toLocaleString('en-US')} bytes -> ${out}`);
}
