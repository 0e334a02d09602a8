/**
 * llmts convert: write a model as a llama.cpp GGUF file, a Hugging Face directory or a
 * llama2.c model file (+ tokenizer.bin next to it when the model has a SentencePiece tokenizer).
 *
 *   llmts convert out/run --to gguf --quant q8_0 --out model-q8.gguf
 *   llmts convert model.gguf --to hf --out hf-dir
 *   llmts convert hf-dir --to llama2c --out model.bin             # run.c's legacy format (v0)
 *
 * Also exports `loadAnyModel`, which opens every model format llm.ts reads: an llm.ts checkpoint
 * (file, or a run directory holding ckpt.safetensors), a Hugging Face directory, a GGUF file
 * (dequantized to float32) or a llama2.c model file.
 */
import { basename, dirname, join } from 'node:path';
import { exportGgufModel, GGUF_QUANTS, type GgufQuant } from '../formats/gguf-model.js';
import { exportHfCheckpoint } from '../formats/hf-checkpoint.js';
import { writeLlama2c } from '../formats/llama2c-write.js';
import { writeLlama2cTokenizer } from '../tokenizer/llama2c-tokenizer.js';
import type { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';
import type { BpeTokenizer } from '../tokenizer/bpe.js';
import { hfTokenizerJsonString } from '../tokenizer/bpe-save.js';
import type { CharTokenizer } from '../tokenizer/char.js';
import { charTokenizerJsonString } from '../tokenizer/hf-char.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { SPLIT_PATTERNS, type SplitPattern } from '../tokenizer/pretokenize.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { MODEL_FLAGS, modelPath } from './shared-flags.js';
import { loadAnyModel } from '../formats/load-model.js';

const CONVERT_SPEC: CommandSpec = {
  name: 'convert',
  usage: 'MODEL --to gguf|hf|llama2c --out PATH [flags]',
  summary: `Convert a model. MODEL is an llm.ts checkpoint (file, or a training run's directory), a
Hugging Face model directory, a GGUF file or a llama2.c model file.`,
  flags: [
    { name: 'to', kind: 'string', value: 'gguf|hf|llama2c', help: 'output format (required)', group: 'Output' },
    { name: 'out', short: 'o', kind: 'string', value: 'PATH', help: 'output file (gguf, llama2c) or directory (hf) (required)', group: 'Output' },
    { name: 'quant', kind: 'string', value: 'TYPE', defaultText: 'f32', help: `GGUF type of the weight matrices: ${GGUF_QUANTS.join(', ')}; norms and biases stay f32; rows not a multiple of 32 fall back to f16`, group: 'Output' },
    { name: 'name', kind: 'string', help: 'general.name of the GGUF file', group: 'Output' },
    { name: 'no-vocab', kind: 'boolean', help: 'write a GGUF file without tokenizer metadata (llama.cpp then cannot tokenize; use it for a model whose vocabulary lives elsewhere)', group: 'Output' },
    { name: 'llama2c-version', kind: 'string', value: 'N', defaultText: '0', help: 'llama2.c layout: 0 = legacy header, what llama2.c\'s run.c reads; 1 = export.py\'s 256-byte "ak42" header', group: 'Output' },
    ...MODEL_FLAGS,
  ],
  notes: `GGUF files follow llama.cpp's conventions (architecture llama or gpt2). llama2.c files are
float32 Llama models (no biases, RoPE theta 10000, RMSNorm eps 1e-5, as run.c hard-codes);
with a SentencePiece tokenizer, llama2.c's tokenizer.bin is written next to the model file.

  llmts convert out/shakespeare-char --to gguf --quant q8_0 -o shakespeare-q8.gguf
  llmts convert model.gguf --to hf -o hf-dir`,
};

async function convertCommand(f: Flags): Promise<void> {
  const path = modelPath(f, 'llmts convert MODEL --to gguf|hf|llama2c --out PATH');
  const to = f.string('to');
  if (to !== 'gguf' && to !== 'hf' && to !== 'llama2c') throw new LlmError(`--to must be gguf, hf or llama2c${to === undefined ? '' : `, got '${to}'`}`);
  const out = f.string('out');
  if (!out) throw new LlmError('--out PATH is required');
  const quant = (f.string('quant') ?? 'f32').toLowerCase();
  if (!GGUF_QUANTS.includes(quant as GgufQuant)) throw new LlmError(`--quant ${quant}: choose one of ${GGUF_QUANTS.join(', ')}`);
  if (to !== 'gguf' && f.has('quant')) throw new LlmError(`--quant applies to --to gguf only (${to === 'hf' ? 'Hugging Face' : 'llama2.c'} export is float32)`);
  const l2cVersion = f.string('llama2c-version');
  if (l2cVersion !== undefined && to !== 'llama2c') throw new LlmError('--llama2c-version applies to --to llama2c only');
  if (l2cVersion !== undefined && l2cVersion !== '0' && l2cVersion !== '1') {
    throw new LlmError(`--llama2c-version must be 0 (legacy, what run.c reads) or 1, got '${l2cVersion}'`);
  }
  const tokSpec = f.string('tokenizer');
  const model = await loadAnyModel(path, { keepQuantized: false, tokenizer: !tokSpec });
  const tokenizer = tokSpec ? await loadTokenizer(tokSpec) : model.tokenizer;
  if (to === 'gguf') {
    if (!f.bool('no-vocab') && !tokenizer) {
      throw new LlmError(`${path} carries no tokenizer: pass --tokenizer SPEC, or --no-vocab for a file without a vocabulary`);
    }
    const res = exportGgufModel(out, model.config, model.params, {
      quant: quant as GgufQuant,
      name: f.string('name'),
      tokenizer: f.bool('no-vocab') ? null : tokenizer,
      chatTemplate: model.chatTemplate,
    });
    const types = countTypes(res.tensors.map((t) => t.type));
    process.stdout.write(`wrote ${out}: ${model.config.family} GGUF, ${res.tensors.length} tensors (${types}), ${formatBytes(res.bytes)}\n`);
    return;
  }
  if (to === 'llama2c') {
    const version = l2cVersion === '1' ? 1 : 0;
    if (basename(out) === 'tokenizer.bin') throw new LlmError(`--out ${out}: tokenizer.bin is the name of the llama2.c tokenizer written next to the model; name the model file e.g. model.bin`);
    const res = writeLlama2c(out, model.config, model.params, { version });
    const note = writeLlama2cTokenizerNextTo(out, tokenizer, model.config.vocabSize);
    process.stdout.write(`wrote ${out}: llama2.c version ${version} model, float32, ${model.config.tiedEmbeddings ? 'shared' : 'separate'} classifier, ${formatBytes(res.bytes)}${note}\n`);
    return;
  }
  exportHfCheckpoint(out, model.config, model.params, { bosTokenId: tokenizer?.bosId, eosTokenId: tokenizer?.eosId, chatTemplate: model.chatTemplate });
  let note = '';
  if (tokenizer) note = writeHfTokenizer(out, tokenizer);
  process.stdout.write(`wrote ${out}: ${model.config.family} Hugging Face checkpoint (config.json, model.safetensors${note})\n`);
}

export const CONVERT: CommandModule = { spec: CONVERT_SPEC, run: convertCommand };

/** llama2.c's tokenizer.bin in the model file's directory; returns a note for the summary. */
function writeLlama2cTokenizerNextTo(modelFile: string, tok: Tokenizer | null, vocabSize: number): string {
  if (!tok) return '; no tokenizer.bin: the model carries no tokenizer (pass --tokenizer SPEC with a SentencePiece tokenizer.model)';
  if (tok.kind !== 'sentencepiece') return `; no tokenizer.bin: llama2.c's run.c needs a SentencePiece tokenizer, this one is ${tok.kind}`;
  if (tok.vocabSize !== vocabSize) return `; no tokenizer.bin: the tokenizer has ${tok.vocabSize} pieces but the model's vocabulary is ${vocabSize}`;
  const file = join(dirname(modelFile), 'tokenizer.bin');
  const res = writeLlama2cTokenizer(file, tok as SentencePieceTokenizer);
  return `; wrote ${file} (llama2.c tokenizer, ${res.tokens} tokens, ${formatBytes(res.bytes)})`;
}

/**
 * tokenizer.json for a char tokenizer (BPE over the characters, no merges, Fuse decoder) or a
 * byte-level BPE tokenizer with a merge list; returns a note for the summary.
 */
export function writeHfTokenizer(dir: string, tok: Tokenizer): string {
  if (tok.kind === 'char') {
    writeFileAtomic(join(dir, 'tokenizer.json'), charTokenizerJsonString(tok as CharTokenizer));
    return ', tokenizer.json';
  }
  if (tok.kind !== 'bpe') return `; no tokenizer.json: ${tok.kind} tokenizers are not exported to Hugging Face yet`;
  const bpe = tok as BpeTokenizer;
  const merges = bpe.mergeList();
  const json = bpe.toJSON();
  const tokenBytes = json.tokens.map((b) => Buffer.from(b, 'base64'));
  if (!merges || tokenBytes.some((b) => b.length === 0)) return '; no tokenizer.json: this BPE vocabulary has gaps or no merge list';
  const regex = Object.hasOwn(SPLIT_PATTERNS, bpe.pattern) ? SPLIT_PATTERNS[bpe.pattern as SplitPattern] : bpe.pattern;
  writeFileAtomic(join(dir, 'tokenizer.json'), hfTokenizerJsonString({
    regex, tokenBytes, merges: merges.map((pair) => ({ pair })), specialTokens: bpe.specialTokens,
  }));
  return ', tokenizer.json';
}

export function countTypes(types: string[]): string {
  const counts = new Map<string, number>();
  for (const t of types) counts.set(t, (counts.get(t) ?? 0) + 1);
  return [...counts].map(([t, n]) => `${t} x ${n}`).join(', ');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]} (${n} bytes)`;
}
