/**
 * llmts info: what a model file or directory holds, read from headers where the format allows.
 *
 *   llmts info model.gguf
 *   llmts info out/run
 */
import { closeSync, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ggmlTypeLabel, readGguf } from '../formats/gguf.js';
import { configFromGguf, tokenizerFromGguf } from '../formats/gguf-model.js';
import { readHfConfig } from '../formats/hf-checkpoint.js';
import { parseLlama2cHeader } from '../formats/llama2c.js';
import { validateConfig, type ModelConfig } from '../model/config.js';
import { countParameters } from '../model/parameters.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { tokenizerFromJSON } from '../tokenizer/tokenizer.js';
import { loadCheckpoint } from '../formats/checkpoint.js';
import { LlmError } from '../util/errors.js';
import { printable } from '../util/printable.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { modelPath } from './shared-flags.js';
import { countTypes, formatBytes } from './convert.js';
import { detectModelFormat } from '../formats/load-model.js';

const INFO_SPEC: CommandSpec = {
  name: 'info',
  usage: 'MODEL',
  summary: `Print a model's architecture, sizes, tensor types, file size and tokenizer, read from headers
where the format allows. MODEL is an llm.ts checkpoint (file or run directory), a Hugging Face
model directory, a GGUF file or a llama2.c model file.`,
  flags: [{ name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the model (instead of the positional MODEL)', group: 'Model' }],
};

interface Info {
  format: string;
  config: ModelConfig | null;
  architecture: string;
  params: number;
  types: string;
  fileBytes: number;
  tokenizer: string;
  /** why llm.ts cannot build this model, when the file is readable but not runnable */
  unusable?: string;
}

async function infoCommand(f: Flags): Promise<void> {
  const path = modelPath(f, 'llmts info MODEL');
  const info = await modelInfo(path);
  process.stdout.write(formatInfo(path, info));
}

export const INFO: CommandModule = { spec: INFO_SPEC, run: infoCommand };

export async function modelInfo(path: string): Promise<Info> {
  const { format, file } = detectModelFormat(path);
  if (format === 'gguf') {
    const g = readGguf(file);
    const arch = g.metadata.get('general.architecture');
    let config: ModelConfig | null = null;
    let unusable: string | undefined;
    try {
      config = configFromGguf(g);
    } catch (err) {
      config = null; // an architecture or layout we cannot run: still describe the file, and say why
      unusable = (err as Error).message;
    }
    const params = g.tensors.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
    const tokenizer = ggufTokenizerInfo(g);
    return {
      format: `GGUF v${g.version}`, config, architecture: typeof arch === 'string' ? arch : 'unknown', params,
      types: g.tensors.length === 0 ? 'none (no tensors: a vocabulary-only file)' : countTypes(g.tensors.map((t) => ggmlTypeLabel(t.type))),
      fileBytes: g.fileSize, tokenizer, unusable: g.tensors.length === 0 ? undefined : unusable,
    };
  }
  if (format === 'checkpoint') {
    const ck = loadCheckpoint(file);
    let tokenizer: string;
    try {
      const tok = tokenizerFromJSON(ck.tokenizer);
      tokenizer = `${tok.kind}, ${tok.vocabSize} tokens`;
    } catch (err) {
      tokenizer = `unreadable (${(err as Error).message})`;
    }
    const types = `F32 x ${ck.params.size}` + (ck.optimizer ? ' (+ AdamW moments)' : '');
    return {
      format: 'llm.ts checkpoint', config: ck.config, architecture: ck.config.family, params: countParameters(ck.config),
      types, fileBytes: statSync(file).size, tokenizer,
    };
  }
  if (format === 'hf') {
    const config = readHfConfig(file);
    const files = readdirSync(file).filter((f) => f.endsWith('.safetensors'));
    const dtypes: string[] = [];
    let bytes = 0;
    for (const f of files) {
      bytes += statSync(join(file, f)).size;
      dtypes.push(...safetensorsDtypes(join(file, f)));
    }
    let tokenizer = 'none found';
    try {
      const tok = await loadTokenizer(file);
      tokenizer = `${tok.kind}, ${tok.vocabSize} tokens`;
    } catch {
      /* a directory without tokenizer files */
    }
    return {
      format: 'Hugging Face directory', config, architecture: config.family, params: countParameters(config),
      types: countTypes(dtypes), fileBytes: bytes, tokenizer,
    };
  }
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(256, size));
    readSync(fd, head, 0, head.length, 0);
    const h = parseLlama2cHeader(head, size, file);
    const config = validateConfig({
      family: 'llama', vocabSize: h.vocabSize, blockSize: h.seqLen, nLayer: h.nLayers, nHead: h.nHeads, nKvHead: h.nKvHeads,
      nEmbd: h.dim, hiddenDim: h.hiddenDim, bias: false, tiedEmbeddings: h.sharedClassifier, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
    });
    return {
      format: `llama2.c version ${h.version}`, config, architecture: 'llama', params: countParameters(config),
      types: 'F32', fileBytes: size, tokenizer: 'none (llama2.c keeps it in tokenizer.bin)',
    };
  } finally {
    closeSync(fd);
  }
}

/** The tokenizer in a GGUF file's metadata, as llm.ts reads it (a char vocabulary shows as char). */
function ggufTokenizerInfo(g: ReturnType<typeof readGguf>): string {
  const model = g.metadata.get('tokenizer.ggml.model');
  if (model === undefined) return 'none';
  const stored = model === 'llama' ? 'SentencePiece' : model === 'gpt2' ? 'byte-level BPE' : 'other';
  try {
    const tok = tokenizerFromGguf(g);
    if (!tok) return 'none';
    if (tok.kind === 'char') return `char, ${tok.vocabSize} characters (stored as a ${String(model)} vocabulary)`;
    return `${String(model)} (${stored}), ${tok.vocabSize} tokens`;
  } catch (err) {
    return `${String(model)} (${stored}), unreadable: ${(err as Error).message}`;
  }
}

function safetensorsDtypes(path: string): string[] {
  const fd = openSync(path, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const len = Number(lenBuf.readBigUInt64LE(0));
    if (len > 100_000_000 || len > fstatSync(fd).size) throw new LlmError(`${path}: not a safetensors file`);
    const header = Buffer.alloc(len);
    readSync(fd, header, 0, len, 8);
    const json = JSON.parse(header.toString('utf8')) as Record<string, { dtype?: string }>;
    return Object.entries(json).filter(([k]) => k !== '__metadata__').map(([, v]) => String(v.dtype));
  } catch (err) {
    if (err instanceof LlmError) throw err;
    throw new LlmError(`${path}: unreadable safetensors header`);
  } finally {
    closeSync(fd);
  }
}

function formatInfo(path: string, i: Info): string {
  const rows: [string, string][] = [['model', path], ['format', i.format], ['architecture', i.architecture]];
  const c = i.config;
  rows.push(['parameters', `${(i.params / 1e6).toFixed(2)}M (${i.params})`]);
  if (c) {
    rows.push(
      ['layers', String(c.nLayer)],
      ['heads', c.nKvHead === c.nHead ? String(c.nHead) : `${c.nHead} (${c.nKvHead} key/value)`],
      ['embedding', String(c.nEmbd)],
      ['mlp hidden', String(c.hiddenDim)],
      ['context', String(c.blockSize)],
      ['vocab', String(c.vocabSize)],
      ['tied embeddings', c.tiedEmbeddings ? 'yes' : 'no'],
    );
  }
  rows.push(['tensor types', i.types], ['file size', formatBytes(i.fileBytes)], ['tokenizer', i.tokenizer]);
  if (i.unusable) rows.push(['runnable', `no: ${i.unusable}`]);
  const w = Math.max(...rows.map(([k]) => k.length));
  // every value may come from the file: escaped, so it cannot forge lines or drive the terminal
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${printable(v)}\n`).join('');
}
