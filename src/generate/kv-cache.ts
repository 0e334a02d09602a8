/**
 * The key/value cache of one sequence: per layer, the keys and values (after RoPE) of every
 * position seen so far, preallocated once (layers x maxT x kvDim floats each), so prefill and
 * decode never allocate cache memory.
 *
 *   const cache = new KvCache(model.config);           // maxT defaults to the context length
 *   model.forwardCached(promptIds, cache);             // prefill: cache.pos = prompt length
 *   model.forwardCached(Int32Array.of(next), cache);   // decode one token
 *   cache.truncate(n);                                 // forget positions >= n
 *   cache.reset();                                     // empty
 */
import { headDim, type ModelConfig } from '../model/config.js';
import { LlmError } from '../util/errors.js';

export class KvCache {
  readonly nLayer: number;
  readonly maxT: number;
  /** nKvHead * headDim: the width of one cached row */
  readonly kvDim: number;
  /** per layer: (maxT, kvDim) keys and values */
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  private position = 0;

  constructor(config: ModelConfig, maxT = config.blockSize) {
    if (!Number.isInteger(maxT) || maxT < 1) throw new LlmError(`KV cache length must be a positive integer, got ${maxT}`);
    if (maxT > config.blockSize) throw new LlmError(`KV cache length ${maxT} exceeds the model's context of ${config.blockSize}`);
    this.nLayer = config.nLayer;
    this.maxT = maxT;
    this.kvDim = config.nKvHead * headDim(config);
    this.k = Array.from({ length: this.nLayer }, () => new Float32Array(maxT * this.kvDim));
    this.v = Array.from({ length: this.nLayer }, () => new Float32Array(maxT * this.kvDim));
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

  /** Bytes held by the cache. */
  get bytes(): number {
    return 2 * this.nLayer * this.maxT * this.kvDim * 4;
  }
}
