/**
 * Turning a text into training data, and sampling batches from it (as nanoGPT).
 *
 *   const tok = CharTokenizer.fromText(text);
 *   const { train, val } = prepareTextDataset({ text, tokenizer: tok, outDir: 'data/shakespeare_char' });
 *   // writes data/shakespeare_char/train.bin (first 90% of tokens) and val.bin (last 10%)
 *
 *   const sampler = new BatchSampler(train, 64, 12, new Rng(1337));
 *   const { x, y } = sampler.next();  // x, y: Int32Array(12 * 64), y[i] = token after x[i]
 *   sampler.next(otherRng);           // the same, drawing the starts from another generator
 */
import { join } from 'node:path';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { toTokenArray, writeTokenShard } from './token-shards.js';

export interface PrepareTextDatasetOptions {
  text: string;
  tokenizer: Tokenizer;
  /** Fraction of tokens (taken from the end) used for validation; default 0.1. */
  valFraction?: number;
  /** Directory receiving train.bin and val.bin (llm.c token shards). */
  outDir: string;
}

export interface PreparedTextDataset {
  train: Uint16Array | Uint32Array;
  val: Uint16Array | Uint32Array;
  trainPath: string;
  valPath: string;
}

/** Encode `text`, split it into train (first part) and val (last `valFraction`), and write both shards. */
export function prepareTextDataset(opts: PrepareTextDatasetOptions): PreparedTextDataset {
  const valFraction = opts.valFraction ?? 0.1;
  if (!(valFraction >= 0 && valFraction < 1)) {
    throw new LlmError(`valFraction must be in [0, 1), got ${valFraction}`);
  }
  const tokens = toTokenArray(opts.tokenizer.encode(opts.text), 'encoded text');
  if (tokens.length === 0) throw new LlmError('cannot prepare a dataset from an empty text; check the data file');
  const n = Math.floor(tokens.length * (1 - valFraction));
  const train = tokens.slice(0, n);
  const val = tokens.slice(n);
  const trainPath = join(opts.outDir, 'train.bin');
  const valPath = join(opts.outDir, 'val.bin');
  writeTokenShard(trainPath, train);
  writeTokenShard(valPath, val);
  return { train, val, trainPath, valPath };
}

/**
 * Random batches of contiguous windows: x[b] = tokens[s .. s+blockSize), y[b] the
 * same window shifted by one, with s = rng.int(tokens.length - blockSize) drawn per row.
 * Every call to next() returns fresh arrays.
 */
export class BatchSampler {
  constructor(
    readonly tokens: ArrayLike<number>,
    readonly blockSize: number,
    readonly batchSize: number,
    /** default generator of next(); without one, every next() call passes its own */
    private readonly rng: Rng | null = null,
  ) {
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new LlmError(`blockSize must be a positive integer, got ${blockSize}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new LlmError(`batchSize must be a positive integer, got ${batchSize}`);
    if (tokens.length < blockSize + 1) {
      throw new LlmError(
        `dataset has ${tokens.length} tokens but blockSize ${blockSize} needs at least ${blockSize + 1}; use more data or a smaller block size`,
      );
    }
  }

  /** x, y: Int32Array of shape (batchSize, blockSize), row-major; the starts come from `rng` (default: the sampler's). */
  next(rng: Rng | null = this.rng): { x: Int32Array; y: Int32Array } {
    if (!rng) throw new Error('BatchSampler.next: this sampler has no generator of its own; pass one');
    const T = this.blockSize;
    const x = new Int32Array(this.batchSize * T);
    const y = new Int32Array(this.batchSize * T);
    const data = this.tokens;
    for (let b = 0; b < this.batchSize; b++) {
      const start = rng.int(data.length - T);
      const row = b * T;
      for (let t = 0; t < T; t++) {
        x[row + t] = data[start + t];
        y[row + t] = data[start + t + 1];
      }
    }
    return { x, y };
  }
}
