/**
 * The key/value cache of one sequence: per layer, the keys and values (after RoPE) of every
 * position seen so far (layers x maxT x kvDim floats each at most). Memory is reserved as the
 * sequence grows (doubling, from 256 positions), not for the whole context up front: a
 * 100-token prompt on a 2048-context model does not zero 2048 positions per layer first.
 *
 *   const cache = new KvCache(model.config);           // maxT defaults to the context length
 *   model.forwardCached(promptIds, cache);             // prefill: cache.pos = prompt length
 *   model.forwardCached(Int32Array.of(next), cache);   // decode one token
 *   cache.truncate(n);                                 // forget positions >= n
 *   cache.reset();                                     // empty
 */
import { headDim, type ModelConfig } from './config.js';
import { LlmError } from '../util/errors.js';

export class KvCache {
  readonly nLayer: number;
  readonly maxT: number;
  /** nKvHead * headDim: the width of one cached row */
  readonly kvDim: number;
  /** per layer: (capacity, kvDim) keys and values; replaced (grown) by reserve() */
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  private position = 0;
  private capacity = 0;

  constructor(config: ModelConfig, maxT = config.blockSize) {
    if (!Number.isInteger(maxT) || maxT < 1) throw new LlmError(`KV cache length must be a positive integer, got ${maxT}`);
    if (maxT > config.blockSize) throw new LlmError(`KV cache length ${maxT} exceeds the model's context of ${config.blockSize}`);
    this.nLayer = config.nLayer;
    this.maxT = maxT;
    this.kvDim = config.nKvHead * headDim(config);
    this.k = Array.from({ length: this.nLayer }, () => new Float32Array(0));
    this.v = Array.from({ length: this.nLayer }, () => new Float32Array(0));
  }

  /** Make room for positions 0..n-1 (n <= maxT), keeping what is held; called before a forward. */
  reserve(n: number): void {
    if (n <= this.capacity) return;
    if (n > this.maxT) throw new LlmError(`KV cache overflow: ${n} positions > ${this.maxT}`);
    const cap = Math.min(this.maxT, Math.max(n, 2 * this.capacity, 256));
    const keep = this.position * this.kvDim;
    for (let l = 0; l < this.nLayer; l++) {
      for (const rows of [this.k, this.v]) {
        const grown = new Float32Array(cap * this.kvDim);
        grown.set(rows[l].subarray(0, keep));
        rows[l] = grown;
      }
    }
    this.capacity = cap;
  }

  /** Number of positions held (the position of the next token). */
  get pos(): number {
    return this.position;
  }

  /** Positions still free. */
  get remaining(): number {
    return this.maxT - this.position;
  }

  reset(): void {
    this.position = 0;
  }

  /** Keep positions 0..n-1 only (e.g. to reuse a shared prompt prefix). */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.position) {
      throw new LlmError(`cannot truncate a KV cache holding ${this.position} positions to ${n}`);
    }
    this.position = n;
  }

  /** Called by the model after every layer has appended T positions. */
  advance(T: number): void {
    if (this.position + T > this.maxT) throw new LlmError(`KV cache overflow: ${this.position} + ${T} positions > ${this.maxT}`);
    this.position += T;
  }

  /** Bytes the cache holds now (it grows up to 2 x layers x maxT x kvDim x 4). */
  get bytes(): number {
    return 2 * this.nLayer * this.capacity * this.kvDim * 4;
  }
}
