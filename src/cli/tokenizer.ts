/**
 * llmts tokenizer: train a byte-level BPE vocabulary on a text file, and encode / decode
 * with any tokenizer loadTokenizer accepts.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolveDataset } from '../data/fetch.js';
import { readTextFile } from '../data/text-file.js';
import { trainBpe } from '../tokenizer/bpe-train.js';
import { saveTrainedBpe } from '../tokenizer/bpe-save.js';
import { loadTokenizer, TOKENIZER_SPEC_HELP } from '../tokenizer/load.js';
import type { SplitPattern } from '../tokenizer/pretokenize.js';
import { LlmError } from '../util/errors.js';
import { ProgressLine } from '../util/progress.js';
import type { CommandGroup } from './commands.js';
import { helpText, type CommandSpec, type Flags } from './flags.js';

const SPEC_LINE = `SPEC: ${TOKENIZER_SPEC_HELP}`;

const TRAIN_SPEC: CommandSpec = {
  name: 'tokenizer train',
  usage: '--data PATH|URL|NAME --vocab-size N --out DIR [flags]',
  summary: 'Train a byte-level BPE tokenizer (GPT-2 / GPT-4 style) on a text file.',
  flags: [
    { name: 'data', kind: 'string', value: 'PATH|URL|NAME', help: 'training text: a local file, a URL or a known dataset name (required)' },
    { name: 'vocab-size', kind: 'integer', min: 256, help: 'total tokens: 256 bytes + merges + special tokens (required)' },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'writes DIR/tokenizer.json (Hugging Face) and DIR/tokenizer.tiktoken (required)' },
    { name: 'pattern', kind: 'string', choices: ['gpt2', 'cl100k'], default: 'cl100k', help: 'split pattern: gpt2 (GPT-2) or cl100k (GPT-4)' },
    { name: 'min-frequency', kind: 'integer', min: 1, default: 1, help: 'stop when the most frequent pair occurs fewer than N times' },
    { name: 'special', kind: 'strings', value: 'TEXT', help: "a special token, e.g. '<|endoftext|>'; repeat for more" },
  ],
};

const ENCODE_SPEC: CommandSpec = {
  name: 'tokenizer encode',
  usage: '--tokenizer SPEC [--text TEXT]',
  summary: 'Print the token ids of TEXT (default: all of stdin) as a JSON array.',
  flags: [
    { name: 'tokenizer', kind: 'string', value: 'SPEC', help: 'the tokenizer (required; see SPEC below)' },
    { name: 'text', kind: 'string', defaultText: 'stdin', help: 'the text to encode' },
    { name: 'allow-special', kind: 'boolean', help: 'special tokens written in the text become their ids (default: plain text)' },
  ],
  notes: SPEC_LINE,
};

const DECODE_SPEC: CommandSpec = {
  name: 'tokenizer decode',
  usage: '--tokenizer SPEC [--ids JSON]',
  summary: 'Print the text of a JSON array of token ids (default: read from stdin).',
  flags: [
    { name: 'tokenizer', kind: 'string', value: 'SPEC', help: 'the tokenizer (required; see SPEC below)' },
    { name: 'ids', kind: 'string', value: 'JSON', defaultText: 'stdin', help: 'the ids, e.g. [15496, 995]' },
  ],
  notes: SPEC_LINE,
};

const SPECS = [TRAIN_SPEC, ENCODE_SPEC, DECODE_SPEC];
for (const spec of SPECS) (spec as { siblings?: CommandSpec[] }).siblings = SPECS.filter((s) => s !== spec);

export const TOKENIZER: CommandGroup = {
  name: 'tokenizer',
  subcommands: {
    train: { spec: TRAIN_SPEC, run: trainTokenizer },
    encode: { spec: ENCODE_SPEC, run: encode },
    decode: { spec: DECODE_SPEC, run: decode },
  },
  help: `Usage: llmts tokenizer <train|encode|decode> [flags]

Train a byte-level BPE tokenizer (GPT-2 / GPT-4 style), or encode and decode text with any
tokenizer. 'llmts tokenizer <subcommand> --help' shows one; all three follow.

${SPECS.map((s) => helpText(s)).join('\n')}`,
};

async function trainTokenizer(f: Flags): Promise<void> {
  noPositionals(f);
  const vocabSize = f.number('vocab-size');
  const minFrequency = f.number('min-frequency')!;
  const pattern = f.string('pattern')!;
  const specials = f.strings('special');
  const dataSpec = f.string('data');
  const out = f.string('out');
  if (!dataSpec) throw new LlmError('--data is required (the text file to train the tokenizer on)');
  if (vocabSize === undefined) throw new LlmError('--vocab-size is required (e.g. --vocab-size 4096)');
  if (!out) throw new LlmError('--out is required (the directory that receives tokenizer.json and tokenizer.tiktoken)');

  const path = await resolveDataset(dataSpec);
  if (statSync(path).size === 0) throw new LlmError(`data file ${path} is empty; give a text file with some content`);
  const text = readTextFile(path);
  const progress = new ProgressLine(vocabSize - 256 - specials.length, { label: 'bpe' });
  let bpe;
  try {
    bpe = trainBpe(text, {
      vocabSize, pattern: pattern as SplitPattern, minFrequency, specialTokens: specials,
      onProgress: (s) => progress.update(s.merges, { count: s.count }),
    });
  } finally {
    progress.done();
  }
  const files = saveTrainedBpe(bpe, out);
  const log = (s: string): void => void process.stdout.write(s + '\n');
  const { stats } = bpe;
  log(`trained ${bpe.vocabSize} tokens (${bpe.merges.length} merges${specials.length ? `, ${specials.length} special` : ''}) ` +
    `on ${stats.textBytes.toLocaleString('en-US')} bytes (${stats.uniqueChunks.toLocaleString('en-US')} distinct chunks) in ${stats.seconds.toFixed(2)} s`);
  if (stats.stoppedEarly) log(`stopped before --vocab-size ${vocabSize}: ${stats.stoppedEarly}`);
  log(`wrote ${files.tokenizerJson} and ${files.tiktoken}`);
}

async function encode(f: Flags): Promise<void> {
  noPositionals(f);
  const tokenizer = await loadTokenizer(requireSpec(f));
  const text = f.string('text') ?? readStdin();
  const ids = tokenizer.encode(text, { allowedSpecial: f.bool('allow-special') ? 'all' : 'none' });
  process.stdout.write(JSON.stringify(ids) + '\n');
}

async function decode(f: Flags): Promise<void> {
  noPositionals(f);
  const tokenizer = await loadTokenizer(requireSpec(f));
  const raw = f.string('ids') ?? readStdin();
  let ids: unknown;
  try {
    ids = JSON.parse(raw);
  } catch {
    throw new LlmError(`ids must be a JSON array of integers like [15496, 995], got ${preview(raw)}`);
  }
  if (!Array.isArray(ids)) throw new LlmError(`ids must be a JSON array of integers like [15496, 995], got ${preview(raw)}`);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= tokenizer.vocabSize) {
      throw new LlmError(`id ${JSON.stringify(id)} at position ${i} is not a token id of this tokenizer (0..${tokenizer.vocabSize - 1})`);
    }
  });
  process.stdout.write(tokenizer.decode(ids as number[]));
}

function noPositionals(f: Flags): void {
  if (f.positionals.length > 0) throw new LlmError(`unexpected argument '${f.positionals[0]}' (see 'llmts ${f.spec.name} --help')`);
}

function requireSpec(f: Flags): string {
  const spec = f.string('tokenizer');
  if (!spec) throw new LlmError(`--tokenizer is required: ${TOKENIZER_SPEC_HELP}`);
  return spec;
}

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch (err) {
    throw new LlmError(`cannot read stdin: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (pass --text or --ids instead)`);
  }
}

function preview(s: string): string {
  const t = JSON.stringify(s.trim());
  return t.length > 40 ? t.slice(0, 37) + '..."' : t;
}
