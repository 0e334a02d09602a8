/**
 * One decode step for many sequences at once: the model's decode program compiled for a batch
 * (Transformer.decodeProgram(rows)), run over a BatchKvCache. Row r feeds tokens[r] to the
 * sequence in slots[r] at that slot's next position; every linear layer is then one (n, C) x
 * (C, N) product, so the weights stream from memory once per step instead of once per sequence,
 * and attention runs per sequence over its own cached length.
 *
 *   const cache = new BatchKvCache(model.config, 8);
 *   const step = new BatchStep(model, cache);
 *   model.forwardCached(prompt, cache.slotCache(s), { out });   // prefill slot s (matrix products over its tokens)
 *   const logits = step.run(Int32Array.of(7, 9), Int32Array.of(0, 3), 2);   // (2, V): slots 0 and 3 advance by one
 *
 * Each row's logits equal, bit for bit, those of forwardCached on that sequence alone (the batch
 * program keeps the single-token program's arithmetic per row). A model with a layer that cannot
 * run inside a decode program (an unmerged LoRA adapter) or with useDecodeProgram off runs its
 * rows one by one through forwardCached instead: the same results, without the batch speed-up.
 */
import { backend, type Backend } from '../backend/index.js';
import type { DecodeRunner } from '../backend/decode-program.js';
import { reserveRope } from '../tensor/ops/rope.js';
import { LlmError } from '../util/errors.js';
import type { BatchKvCache } from './batch-kv-cache.js';
import { NoDecodeProgram } from './layers.js';
import type { DecodeProgramParts, Transformer } from './transformer.js';

interface Compiled {
  backend: Backend;
  /** model.decodeProgramResets when compiled */
  resets: number;
  runner: DecodeRunner;
  parts: DecodeProgramParts;
  /** per layer, the K and V arrays bound to its slots */
  boundK: (Float32Array | null)[];
  boundV: (Float32Array | null)[];
  boundCos: Float32Array | null;
  boundSin: Float32Array | null;
}

export class BatchStep {
  private compiled: Compiled | null = null;
  /** the backend (and reset count) for which the model had no program */
  private noProgram: { backend: Backend; resets: number } | null = null;
  private readonly positions: Int32Array;
  /** logits of the op-by-op fallback, (slots, V) */
  private fallbackLogits: Float32Array | null = null;

  constructor(readonly model: Transformer, readonly cache: BatchKvCache) {
    const cfg = model.config;
    if (cache.nLayer !== cfg.nLayer || cache.config.nKvHead !== cfg.nKvHead || cache.config.nEmbd !== cfg.nEmbd || cache.config.nHead !== cfg.nHead) {
      throw new LlmError(`the batch KV cache (${cache.nLayer} layers x ${cache.kvDim}) does not fit this model (${cfg.nLayer} layers)`);
    }
    this.positions = new Int32Array(cache.slots);
  }

  /**
   * Feed tokens[r] to slot slots[r] for r < n (distinct slots, each with room for one more
   * position); returns the (n, V) logits, row r for slots[r]: a view that the next run overwrites.
   */
  run(tokens: Int32Array, slots: Int32Array, n: number): Float32Array {
    const cache = this.cache;
    const V = this.model.config.vocabSize;
    if (!Number.isInteger(n) || n < 1 || n > cache.slots) throw new LlmError(`a batch step runs 1 to ${cache.slots} rows, got ${n}`);
    if (tokens.length < n || slots.length < n) throw new LlmError(`a batch step of ${n} rows needs ${n} tokens and slots`);
    let longest = 0;
    for (let r = 0; r < n; r++) {
      const s = slots[r];
      if (!Number.isInteger(s) || s < 0 || s >= cache.slots) throw new LlmError(`row ${r}: slot ${s} is not one of the cache's ${cache.slots} slots`);
      for (let q = 0; q < r; q++) if (slots[q] === s) throw new LlmError(`rows ${q} and ${r} both feed slot ${s}`);
      const t = tokens[r];
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new LlmError(`row ${r}: token id ${t} is outside the vocabulary [0, ${V})`);
      if (cache.lengths[s] >= cache.maxT) throw new LlmError(`row ${r}: slot ${s} is full (${cache.maxT} positions)`);
      this.positions[r] = cache.lengths[s];
      longest = Math.max(longest, cache.lengths[s] + 1);
    }
    const c = this.model.useDecodeProgram ? this.program() : null;
    if (!c) return this.runOneByOne(tokens, slots, n);
    cache.reserve(longest);
    const rope = c.parts.rope;
    if (rope) {
      reserveRope(rope.tables, longest);
      if (c.boundCos !== rope.tables.cos) c.runner.bind(rope.cos, (c.boundCos = rope.tables.cos));
      if (c.boundSin !== rope.tables.sin) c.runner.bind(rope.sin, (c.boundSin = rope.tables.sin));
    }
    for (let l = 0; l < c.parts.slots.length; l++) {
      const s = c.parts.slots[l];
      if (c.boundK[l] !== cache.k[l]) c.runner.bind(s.k, (c.boundK[l] = cache.k[l]));
      if (c.boundV[l] !== cache.v[l]) c.runner.bind(s.v, (c.boundV[l] = cache.v[l]));
    }
    c.runner.runBatch(tokens, this.positions, slots, n, cache.capacity);
    for (let r = 0; r < n; r++) cache.lengths[slots[r]]++;
    return c.parts.logits.subarray(0, n * V);
  }

  /** The batch program for the current backend (compiled when missing or stale); null if the model has none. */
  private program(): Compiled | null {
    const be = backend();
    const resets = this.model.decodeProgramResets;
    if (this.compiled?.backend === be && this.compiled.resets === resets) return this.compiled;
    if (this.noProgram?.backend === be && this.noProgram.resets === resets) return null;
    this.compiled = null;
    try {
      const parts = this.model.decodeProgram(this.cache.slots);
      const L = parts.slots.length;
      this.compiled = {
        backend: be, resets, runner: be.compileDecode(parts.program), parts,
        boundK: new Array<Float32Array | null>(L).fill(null), boundV: new Array<Float32Array | null>(L).fill(null), boundCos: null, boundSin: null,
      };
      return this.compiled;
    } catch (err) {
      if (!(err instanceof NoDecodeProgram)) throw err;
      this.noProgram = { backend: be, resets };
      return null;
    }
  }

  /** Each row through forwardCached on its slot (models without a decode program). */
  private runOneByOne(tokens: Int32Array, slots: Int32Array, n: number): Float32Array {
    const V = this.model.config.vocabSize;
    this.fallbackLogits ??= new Float32Array(this.cache.slots * V);
    const out = this.fallbackLogits;
    for (let r = 0; r < n; r++) {
      this.model.forwardCached(Int32Array.of(tokens[r]), this.cache.slotCache(slots[r]), { out: out.subarray(r * V, (r + 1) * V) });
    }
    return out.subarray(0, n * V);
  }
}
