/**
 * Open any model file llm.ts reads, by looking at it: an llm.ts checkpoint (file or run
 * directory), a Hugging Face directory, a GGUF file or a llama2.c file.
 *
 *   const m = await loadAnyModel('stories15M.bin');   // { format, config, params, tokenizer | null }
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig } from '../model/config.js';
import type { QuantizedWeight } from '../model/quantized.js';
import type { Tensor } from '../tensor/index.js';
import { hfTokenizerFile, loadTokenizer } from '../tokenizer/load.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { loadCheckpoint } from './checkpoint.js';
import { LlmError } from '../util/errors.js';
import { readJsonFile, requireRegularFile } from '../util/regular-file.js';
import type { FileSourceMode } from './file-source.js';
import { importGgufModel } from './gguf-model.js';
import { importHfCheckpoint } from './hf-checkpoint.js';
import { readLlama2c } from './llama2c.js';
import { MAX_HEADER_BYTES } from './safetensors.js';

export type ModelFormat = 'checkpoint' | 'hf' | 'gguf' | 'llama2c';

export interface LoadedModel {
  format: ModelFormat;
  /** the file or directory read */
  path: string;
  config: ModelConfig;
  params: Map<string, Tensor>;
  /** GGUF Q8_0/Q4_0 Linear weights kept quantized (inference only); absent for other formats */
  quantized?: Map<string, QuantizedWeight>;
  tokenizer: Tokenizer | null;
  /** how the weights were read: 'mmap' (views into a copy-on-write mapping of the file) or 'read' (file-source.ts) */
  source: FileSourceMode;
  /** the model's own chat template (Jinja source), when its files carry one */
  chatTemplate?: string;
}

/**
 * Which format `path` holds, by content (directories: config.json or ckpt.safetensors). Only
 * regular files are opened: a FIFO or device would block forever.
 */
export function detectModelFormat(path: string): { format: ModelFormat; file: string } {
  if (!existsSync(path)) throw new LlmError(`model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, 'config.json'))) return { format: 'hf', file: path };
    if (existsSync(join(path, 'ckpt.safetensors'))) return { format: 'checkpoint', file: join(path, 'ckpt.safetensors') };
    throw new LlmError(`${path} holds neither config.json (Hugging Face) nor ckpt.safetensors (llm.ts)`);
  }
  requireRegularFile(path, 'model file');
  const head = Buffer.alloc(16);
  const fd = openSync(path, 'r');
  let n: number;
  try {
    n = readSync(fd, head, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  if (n >= 4 && head.toString('latin1', 0, 4) === 'GGUF') return { format: 'gguf', file: path };
  // safetensors: a plausible header length, then '{'. Whether the file holds that much is the
  // loader's to say (a cut checkpoint is 'truncated', not a bad llama2.c header). A legacy
  // llama2.c header cannot match: its bytes 0..7 are dim and hidden_dim, at least 2^32 as a u64.
  if (n >= 9 && head[8] === 0x7b /* { */ && head.readBigUInt64LE(0) <= BigInt(MAX_HEADER_BYTES)) return { format: 'checkpoint', file: path };
  // no magic: the name says what the user meant, and the error speaks of that format
  const what = n === 0 ? 'the file is empty' : `it starts with ${describeHead(head.subarray(0, Math.min(n, 8)))}`;
  if (/\.gguf$/i.test(path)) throw new LlmError(`${path} is not a GGUF file: ${what}, not the magic 'GGUF' (truncated or not downloaded completely?)`);
  if (/\.safetensors$/i.test(path)) {
    throw new LlmError(`${path} is not a safetensors checkpoint: ${what}, not an 8-byte header length followed by a JSON header (truncated or not downloaded completely?)`);
  }
  if (n === 0) throw new LlmError(`${path} is empty; a model file is a GGUF, safetensors checkpoint or llama2.c .bin file`);
  return { format: 'llama2c', file: path };
}

/** The first bytes of a file for an error message: printable text quoted, else hex. */
function describeHead(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('latin1');
  if (/^[\x20-\x7e]+$/.test(text)) return `'${text}'`;
  return `bytes ${Buffer.from(bytes).toString('hex').replace(/(..)/g, '$1 ').trim()}`;
}

/**
 * Open any model llm.ts reads, with its tokenizer when the format carries one. GGUF Q8_0/Q4_0
 * matrices stay quantized (`quantized`, for the quantized kernels) unless keepQuantized is false.
 */
export async function loadAnyModel(path: string, opts: { keepQuantized?: boolean; tokenizer?: boolean } = {}): Promise<LoadedModel> {
  const { format, file } = detectModelFormat(path);
  // opts.tokenizer false: the caller brings its own (--tokenizer), so the model's is not read
  const wantTokenizer = opts.tokenizer ?? true;
  switch (format) {
    case 'hf': {
      const hf = importHfCheckpoint(file);
      // no tokenizer file: no tokenizer; a tokenizer file that does not load is an error in its terms
      const tokFile = wantTokenizer ? hfTokenizerFile(file) : null;
      if (tokFile) requireRegularFile(tokFile, 'tokenizer file');
      const tokenizer = tokFile ? await loadTokenizer(tokFile) : null;
      return { format, path: file, ...hf, tokenizer, chatTemplate: wantTokenizer ? hfChatTemplate(file) : undefined };
    }
    case 'checkpoint': {
      const ck = loadCheckpoint(file);
      let tokenizer: Tokenizer | null = null;
      if (wantTokenizer) {
        try {
          tokenizer = tokenizerFromJSON(ck.tokenizer);
        } catch (err) {
          if (err instanceof LlmError) throw new LlmError(`checkpoint ${file}: its tokenizer: ${err.message}`);
          throw err;
        }
      }
      return { format, path: file, config: ck.config, params: ck.params, tokenizer, source: ck.source ?? 'read', chatTemplate: wantTokenizer ? ck.chatTemplate : undefined };
    }
    case 'gguf': {
      const g = importGgufModel(file, { keepQuantized: opts.keepQuantized ?? true });
      const template = g.gguf.metadata.get('tokenizer.chat_template');
      return {
        format, path: file, config: g.config, params: g.params, quantized: g.quantized, tokenizer: g.tokenizer, source: g.source,
        chatTemplate: typeof template === 'string' ? template : undefined,
      };
    }
    case 'llama2c': {
      const m = readLlama2c(file);
      return { format, path: file, ...m, tokenizer: null };
    }
  }
}


/** The chat template in a Hugging Face directory's tokenizer_config.json (the default one of a list), if any. */
function hfChatTemplate(dir: string): string | undefined {
  const path = join(dir, 'tokenizer_config.json');
  if (!existsSync(path)) return undefined;
  const json = readJsonFile(path, 'tokenizer config file'); // a broken one is an error, not 'no template'
  const t = typeof json === 'object' && json !== null ? (json as { chat_template?: unknown }).chat_template : undefined;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((e) => typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    return typeof named?.template === 'string' ? named.template : undefined;
  }
  return undefined;
}
