/**
 * llmts tokenizer: train a byte-level BPE vocabulary on a text file, and encode / decode
 * with any tokenizer loadTokenizer accepts.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolveDataset } from '../data/fetch.js';
import { trainBpe } from '../tokenizer/bpe-train.js';
import { saveTrainedBpe } from '../tokenizer/bpe-save.js';
import { BUILTIN_TOKENIZERS, loadTokenizer, TOKENIZER_SPEC_HELP } from '../tokenizer/load.js';
import type { SplitPattern } from '../tokenizer/pretokenize.js';
import { LlmError } from '../util/errors.js';
import { ProgressLine } from '../util/progress.js';
import { numberFlag, parseFlags, stringFlag, type FlagSpec } from './args.js';

export const TOKENIZER_USAGE = `Usage: llmts tokenizer <train|encode|decode> [flags]

Train a byte-level BPE tokenizer (GPT-2 / GPT-4 style), or encode and decode text.

llmts tokenizer train --data PATH|URL|NAME --vocab-size N --out DIR [flags]
  --data PATH|URL|NAME   training text: a local file, a URL or a known dataset name (required)
  --vocab-size N         total tokens: 256 bytes + merges + special tokens (required)
  --out DIR              writes DIR/tokenizer.json (Hugging Face) and DIR/tokenizer.tiktoken (required)
  --pattern NAME         split pattern: gpt2 (GPT-2) or cl100k (GPT-4) (default cl100k)
  --min-frequency N      stop when the most frequent pair occurs fewer than N times (default 1)
  --special TEXT         a special token, e.g. '<|endoftext|>'; repeat for more (default none)

llmts tokenizer encode --tokenizer SPEC [--text TEXT]
  prints the token ids of TEXT (default: all of stdin) as a JSON array
  --allow-special        special tokens written in the text become their ids (default: plain text)

llmts tokenizer decode --tokenizer SPEC [--ids JSON]
  prints the text of a JSON array of ids (default: read from stdin)

SPEC: a tokenizer.json, tokenizer.model, .tiktoken, .gguf or llm.ts checkpoint (.safetensors)
  file, a directory holding one, or a built-in name (${BUILTIN_TOKENIZERS.join(', ')})
`;

const FLAGS: FlagSpec = {
  data: { type: 'string' }, 'vocab-size': { type: 'string' }, out: { type: 'string' }, pattern: { type: 'string' },
  'min-frequency': { type: 'string' }, special: { type: 'string', multiple: true },
  tokenizer: { type: 'string' }, text: { type: 'string' }, ids: { type: 'string' }, 'allow-special': { type: 'boolean' },
};

const SUBCOMMAND_FLAGS: Record<string, string[]> = {
  train: ['data', 'vocab-size', 'out', 'pattern', 'min-frequency', 'special'],
  encode: ['tokenizer', 'text', 'allow-special'],
  decode: ['tokenizer', 'ids'],
};

export async function tokenizerCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || !(sub in SUBCOMMAND_FLAGS)) {
    const got = sub === undefined ? 'no subcommand' : `unknown subcommand '${sub}'`;
    throw new LlmError(`${got}; use 'llmts tokenizer train', 'encode' or 'decode' (see 'llmts tokenizer --help')`);
  }
  const p = parseFlags(rest, FLAGS, 'tokenizer');
  if (p.positionals.length > 0) throw new LlmError(`unexpected argument '${p.positionals[0]}' (see 'llmts tokenizer --help')`);
  for (const name of Object.keys(p.values)) {
    if (!SUBCOMMAND_FLAGS[sub].includes(name)) throw new LlmError(`--${name} is not a flag of 'llmts tokenizer ${sub}' (see 'llmts tokenizer --help')`);
  }
  if (sub === 'train') return trainTokenizer(p);
  if (sub === 'encode') return encode(p);
  return decode(p);
}

async function trainTokenizer(p: ReturnType<typeof parseFlags>): Promise<void> {
  const vocabSize = numberFlag(p, 'vocab-size', { integer: true, min: 256 });
  const minFrequency = numberFlag(p, 'min-frequency', { integer: true, min: 1 }) ?? 1;
  const pattern = stringFlag(p, 'pattern') ?? 'cl100k';
  if (pattern !== 'gpt2' && pattern !== 'cl100k') throw new LlmError(`--pattern ${pattern}: must be gpt2 or cl100k`);
  const specials = (p.values.special as unknown as string[] | undefined) ?? [];
  const dataSpec = stringFlag(p, 'data');
  const out = stringFlag(p, 'out');
  if (!dataSpec) throw new LlmError('--data is required (the text file to train the tokenizer on)');
  if (vocabSize === undefined) throw new LlmError('--vocab-size is required (e.g. --vocab-size 4096)');
  if (!out) throw new LlmError('--out is required (the directory that receives tokenizer.json and tokenizer.tiktoken)');

  const path = await resolveDataset(dataSpec);
  if (statSync(path).size === 0) throw new LlmError(`data file ${path} is empty; give a text file with some content`);
  const text = readFileSync(path, 'utf8');
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

async function encode(p: ReturnType<typeof parseFlags>): Promise<void> {
  const tokenizer = await loadTokenizer(requireSpec(p));
  const text = stringFlag(p, 'text') ?? readStdin();
  const ids = tokenizer.encode(text, { allowedSpecial: p.values['allow-special'] ? 'all' : 'none' });
  process.stdout.write(JSON.stringify(ids) + '\n');
}

async function decode(p: ReturnType<typeof parseFlags>): Promise<void> {
  const tokenizer = await loadTokenizer(requireSpec(p));
  const raw = stringFlag(p, 'ids') ?? readStdin();
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

function requireSpec(p: ReturnType<typeof parseFlags>): string {
  const spec = stringFlag(p, 'tokenizer');
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
