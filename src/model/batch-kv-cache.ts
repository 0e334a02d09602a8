/**
 * A KV cache with a batch dimension: per layer one array of keys and one of values, each
 * (slots, capacity, kvDim), where slot s holds one sequence's positions 0..lengths[s]-1. The
 * sequences of a batch decode step (batch-step.ts) read and write their own slot; a prompt is
 * prefilled into its slot through an ordinary KvCache that views the slot's rows (slotCache).
 * Capacity (positions per slot) grows for all slots together (doubling, from 256, up to maxT),
 * so memory is slots x capacity x kvDim x 2 x layers floats, not slots x the whole context.
 *
 *   const cache = new BatchKvCache(model.config, 8);       // 8 sequences at most
 *   model.forwardCached(promptIds, cache.slotCache(3));     // prefill slot 3: cache.lengths[3] = prompt length
 *   step.run(tokens, slots, n);                             // one token for each of n slots (BatchStep)
 *   cache.truncate(3, 0);                                   // slot 3 free again
 */
import { headDim, type ModelConfig } from './config.js';
import { KvCache } from './kv-cache.js';
import { LlmError } from '../util/errors.js';

export class BatchKvCache {
  readonly slots: number;
  readonly nLayer: number;
  /** positions a slot can hold at most */
  readonly maxT: number;
  /** nKvHead * headDim: the width of one cached row */
  readonly kvDim: number;
  /** per layer: (slots, capacity, kvDim) keys and values; replaced (grown) by reserve() */
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  /** positions held per slot */
  readonly lengths: Int32Array;
  private cap = 0;

  constructor(readonly config: ModelConfig, slots: number, maxT = config.blockSize) {
    if (!Number.isInteger(slots) || slots < 1 || slots > 1024) throw new LlmError(`a batch KV cache holds 1 to 1024 sequences, got ${slots}`);
    if (!Number.isInteger(maxT) || maxT < 1) throw new LlmError(`KV cache length must be a positive integer, got ${maxT}`);
    if (maxT > config.blockSize) throw new LlmError(`KV cache length ${maxT} exceeds the model's context of ${config.blockSize}`);
    this.slots = slots;
    this.nLayer = config.nLayer;
    this.maxT = maxT;
    this.kvDim = config.nKvHead * headDim(config);
    this.k = Array.from({ length: this.nLayer }, () => new Float32Array(0));
    this.v = Array.from({ length: this.nLayer }, () => new Float32Array(0));
    this.lengths = new Int32Array(slots);
  }

  /** Positions each slot has room for now. */
  get capacity(): number {
    return this.cap;
  }

  /** Make room for positions 0..n-1 in every slot (n <= maxT), keeping what is held. */
  reserve(n: number): void {
    if (n <= this.cap) return;
    if (n > this.maxT) throw new LlmError(`KV cache overflow: ${n} positions > ${this.maxT}`);
    const cap = Math.min(this.maxT, Math.max(n, 2 * this.cap, 256));
    const w = this.kvDim;
    for (let l = 0; l < this.nLayer; l++) {
      for (const rows of [this.k, this.v]) {
        const grown = new Float32Array(this.slots * cap * w);
        for (let s = 0; s < this.slots; s++) {
          grown.set(rows[l].subarray(s * this.cap * w, (s * this.cap + this.lengths[s]) * w), s * cap * w);
        }
        rows[l] = grown;
      }
    }
    this.cap = cap;
  }

  /** Keep positions 0..n-1 of slot s only (0 frees it). */
  truncate(s: number, n: number): void {
    this.checkSlot(s);
    if (!Number.isInteger(n) || n < 0 || n > this.lengths[s]) {
      throw new LlmError(`cannot truncate slot ${s}, holding ${this.lengths[s]} positions, to ${n}`);
    }
    this.lengths[s] = n;
  }

  /** Make slot `to` hold a copy of positions 0..n-1 of slot `from` (a shared prompt). */
  copyPrefix(from: number, to: number, n: number): void {
    this.checkSlot(from);
    this.checkSlot(to);
    if (!Number.isInteger(n) || n < 0 || n > this.lengths[from]) {
      throw new LlmError(`cannot copy ${n} positions from slot ${from}, which holds ${this.lengths[from]}`);
    }
    if (from === to) return this.truncate(to, n);
    const w = this.kvDim, cap = this.cap;
    for (let l = 0; l < this.nLayer; l++) {
      for (const rows of [this.k, this.v]) rows[l].copyWithin(to * cap * w, from * cap * w, (from * cap + n) * w);
    }
    this.lengths[to] = n;
  }

  /**
   * A KvCache over slot s (at its current length) for Transformer.forwardCached: what it appends
   * lands in the slot, and lengths[s] follows it. Valid until the next reserve() of another view
   * or a batch step that grows the cache; take a new one for each use.
   */
  slotCache(s: number): KvCache {
    this.checkSlot(s);
    return new SlotKvCache(this, s);
  }

  /** Bytes the cache holds now. */
  get bytes(): number {
    return 2 * this.nLayer * this.slots * this.cap * this.kvDim * 4;
  }

  private checkSlot(s: number): void {
    if (!Number.isInteger(s) || s < 0 || s >= this.slots) throw new LlmError(`slot ${s} is not one of the cache's ${this.slots} slots`);
  }
}

/** One slot of a BatchKvCache as a KvCache (its k/v arrays view the slot's rows). */
class SlotKvCache extends KvCache {
  constructor(private readonly batch: BatchKvCache, private readonly slot: number) {
    super(batch.config, batch.maxT);
    super.advance(batch.lengths[slot]);
    this.point();
  }

  override reserve(n: number): void {
    this.batch.reserve(n);
    this.point();
  }

  override advance(T: number): void {
    super.advance(T);
    this.batch.lengths[this.slot] = this.pos;
  }

  override truncate(n: number): void {
    super.truncate(n);
    this.batch.lengths[this.slot] = n;
  }

  override reset(): void {
    super.reset();
    this.batch.lengths[this.slot] = 0;
  }

  override get bytes(): number {
    return 2 * this.nLayer * this.batch.capacity * this.kvDim * 4;
  }

  /** Point the arrays at the slot's rows of the batch arrays (after they grew). */
  private point(): void {
    const n = this.batch.capacity * this.kvDim;
    for (let l = 0; l < this.nLayer; l++) {
      this.k[l] = this.batch.k[l].subarray(this.slot * n, (this.slot + 1) * n);
      this.v[l] = this.batch.v[l].subarray(this.slot * n, (this.slot + 1) * n);
    }
  }
}
