/**
 * The decoder-only Transformer, one definition for GPT-2 and Llama (see config.ts): a trunk and
 * heads.
 *
 *   x = embed(tokens) [+ positions]                      (B, T, C)
 *   for each Block:  x = x + attn(norm_1(x));  x = x + mlp(norm_2(x))
 *   h = norm_f(x)                                        (B, T, C)   hidden()
 *   logits = lm_head(h)                                  (B, T, V)   forward(); other heads: heads.ts
 *
 * Inference runs the same classes on a KV cache (forwardCached): the new tokens' keys and
 * values are appended to the cache and their queries attend over every cached position.
 *
 * Parameters live in one Map keyed by their Hugging Face names (parameters.ts); the layers
 * (layers.ts) only look them up, so loading or exporting a checkpoint is a map copy. Tensors
 * added later (heads, adapters) are registered by name; namedParameters() reports them all.
 *
 *   const model = new Transformer(config, new Rng(1));
 *   model.freeze((name) => name !== 'lm_head.weight');   // train the head only
 *   for (const p of model.namedParameters()) if (p.trainable) ...  // optimizer state by p.name
 *   const ref = model.shareBase();                       // same weights, never records gradients
 */
import {
  Tensor, add, checkpoint, crossEntropy, dropout, embedding, isGradEnabled, noGrad, ropeTables, withBufferScope, withStageScope,
  type RopeTables,
} from '../tensor/index.js';
import { reserveRope } from '../tensor/ops/rope.js';
import { backend, type Backend } from '../backend/index.js';
import { DecodeProgramBuilder, WeightType, weightTypeOf, type DecodeProgram, type DecodeRunner } from '../backend/decode-program.js';
import { LlmError } from '../util/errors.js';
import { Rng, type RngState } from '../util/rng.js';
import { headDim, validateConfig, type ModelConfig } from './config.js';
import { LmHead } from './heads.js';
import { initParameters } from './init.js';
import type { KvCache } from './kv-cache.js';
import {
  Block, Norm, NoDecodeProgram, defaultLayers, getParameter,
  type DecodeScratch, type LayerContext, type LayerFactory, type LinearLayer, type Params, type QuantMap,
} from './layers.js';
import { checkPackedRows, type PackedRows } from './packing.js';
import { parameterSpecs, type NamedParameter, type ParameterOptions, type ParamSpec } from './parameters.js';
import { dequantizeRows, type QuantizedWeight } from './quantized.js';

/** A compiled decode program and, per layer, its KV slots and the cache arrays bound to them. */
interface Decoder {
  /** the backend it was compiled for (a program belongs to one) */
  backend: Backend;
  runner: DecodeRunner;
  logits: Float32Array;
  layers: { k: number; v: number; boundK: Float32Array | null; boundV: Float32Array | null }[];
  /** the RoPE tables' buffer indices and the arrays bound to them (the tables grow: rebound like KV slots) */
  rope: { cos: number; sin: number; boundCos: Float32Array; boundSin: Float32Array } | null;
}

/** A decode program of `rows` rows (Transformer.decodeProgram) and where its parts sit in the buffer table. */
export interface DecodeProgramParts {
  program: DecodeProgram;
  /** (rows, V): row r's logits after a run */
  logits: Float32Array;
  /** per layer: the buffer indices of its K and V slots (bound to the KV cache's arrays before a run) */
  slots: { k: number; v: number }[];
  /** the RoPE tables and their buffer indices (rebound when the tables grow), null for learned positions */
  rope: { tables: RopeTables; cos: number; sin: number } | null;
}

export interface CachedForwardOptions {
  /** logits of every new position (T x V) instead of the last one only (V) */
  allLogits?: boolean;
  /** write the logits here instead of a new array (must hold at least as many floats) */
  out?: Float32Array;
}

export interface HiddenOptions {
  /** keep the final position only (sampling) */
  lastOnly?: boolean;
  /** rows holding several examples (SFT packing): no attention across them, positions restart per example */
  packing?: PackedRows | null;
}

export interface ForwardResult {
  /** (B, T, V), or (B, 1, V) with lastOnly */
  logits: Tensor;
  /** mean cross-entropy when targets were given */
  loss: Tensor | null;
}

export interface TransformerOptions {
  /**
   * Linear weights (and an untied lm_head) given as GGUF blocks instead of float tensors (see
   * QuantizedWeight). They are frozen: such a model trains only adapters (QLoRA: freeze the
   * base), and parameters() refuses while a float base parameter is still trainable.
   */
  quantized?: QuantMap;
  /** builds every linear layer (default: Linear); an adapter factory wraps them (layers.ts) */
  layers?: LayerFactory;
  /**
   * A reference model (what shareBase() builds): hidden/forward always run without autograd, the
   * constructor leaves the tensors' requiresGrad as they are (they may be another model's),
   * namedParameters() reports nothing trainable, freeze() does nothing and unfreeze() refuses.
   */
  reference?: boolean;
}

export class Transformer {
  readonly config: ModelConfig;
  /** the base model's float parameters by Hugging Face name (not registered heads/adapters) */
  readonly params: Params;
  /** the base model's parameter table (parameterSpecs(config)) */
  readonly specs: ParamSpec[];
  /** quantized weights (frozen), by parameter name; these are absent from params */
  readonly quantized: QuantMap;
  /** see TransformerOptions.reference */
  readonly reference: boolean;
  readonly blocks: readonly Block[];
  readonly finalNorm: Norm;
  readonly lmHead: LmHead;
  /**
   * Decode single tokens with a compiled decode program (Backend.compileDecode: one call a token)
   * instead of op by op; both give the same logits. Off only to compare the two. A model with a
   * layer that cannot run inside a program (LinearLayer.decodeWeight() null) decodes op by op.
   */
  useDecodeProgram = true;
  /**
   * Activation checkpointing in training (tensor/ops/checkpoint.ts): each block keeps only its
   * input, and the backward pass recomputes its activations, one block at a time; the same losses
   * and gradients for about a third more compute and a fraction of the activation memory.
   */
  gradientCheckpointing = false;
  private readonly ctx: LayerContext;
  private readonly tokenEmbedding: Tensor | null;
  /** the token table kept quantized (GGUF Q8_0/Q4_0): lookups dequantize only their rows */
  private readonly tokenEmbeddingQuantized: QuantizedWeight | null;
  private readonly positionEmbedding: Tensor | null;
  /** tensors registered after the base (heads, adapters), in registration order */
  private readonly extras = new Map<string, { tensor: Tensor; decay: boolean }>();
  private decoder: Decoder | null = null;
  /** the backend for which compiling met a layer that cannot run in a program */
  private noProgramFor: Backend | null = null;
  private programResets = 0;

  /**
   * Build around existing parameters (checked against the config; every base tensor is made
   * trainable, requiresGrad = true, unless opts.reference), or initialise fresh ones.
   */
  constructor(config: ModelConfig, params: Params | Rng, opts: TransformerOptions = {}) {
    this.config = validateConfig(config);
    this.specs = parameterSpecs(config);
    this.params = params instanceof Rng ? initParameters(config, params) : params;
    this.quantized = opts.quantized ?? new Map();
    this.reference = opts.reference ?? false;
    checkParameters(this.specs, this.params, this.quantized, config, !this.reference);
    const gpt2 = config.family === 'gpt2';
    this.ctx = {
      cfg: config,
      quantized: this.quantized,
      training: false,
      rng: new Rng(0),
      // built lazily, up to the positions a run reaches (a context of 10^8 costs nothing until used)
      rope: gpt2 ? null : ropeTables(config.blockSize, headDim(config), config.ropeTheta, 0),
      factory: opts.layers ?? defaultLayers,
      register: (name, tensor, o) => this.registerParameter(name, tensor, o),
    };
    const embName = gpt2 ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
    this.tokenEmbeddingQuantized = this.quantized.get(embName) ?? null;
    this.tokenEmbedding = this.tokenEmbeddingQuantized ? null : getParameter(this.params, embName);
    this.positionEmbedding = gpt2 ? getParameter(this.params, 'transformer.wpe.weight') : null;
    this.blocks = Array.from({ length: config.nLayer }, (_, l) => new Block(this.params, l, this.ctx));
    this.finalNorm = new Norm(this.params, gpt2 ? 'transformer.ln_f' : 'model.norm', this.ctx);
    this.lmHead = new LmHead(config, this.params, this.quantized);
  }

  /**
   * A reference model over the same base weights (the same Tensors and Float32Arrays, nothing
   * copied; the default layers, so without this model's adapters or registered heads), for DPO's
   * and PPO's frozen reference policy. It never records gradients (its hidden/forward run under
   * noGrad), so it needs no requiresGrad flags of its own: freezing or unfreezing this model
   * changes what this model trains, never what the reference computes. Sharing is right while the
   * base is frozen (LoRA); when this model's base weights are trained, the reference sees the
   * updates: give it a copy instead (new Transformer(config, copiedParams, { reference: true })).
   */
  shareBase(): Transformer {
    return new Transformer(this.config, this.params, { quantized: this.quantized, reference: true });
  }

  /**
   * (…shape, C) token embeddings, from the float table or the quantized one (frozen: its rows are
   * widened, and nothing flows back into it).
   */
  private embedTokens(tokens: Int32Array, shape: number[]): Tensor {
    if (!this.tokenEmbeddingQuantized) return embedding(this.tokenEmbedding!, tokens, shape);
    const w = this.tokenEmbeddingQuantized;
    const out = Tensor.empty([...shape, w.cols]);
    dequantizeRows(w, tokens, out.data);
    return out;
  }

  /** Training mode enables dropout, drawing masks from rng. */
  train(rng: Rng): void {
    this.ctx.training = true;
    this.ctx.rng = rng;
  }

  eval(): void {
    this.ctx.training = false;
  }

  // ---------------------------------------------------------------------------------------------
  // Named parameters
  // ---------------------------------------------------------------------------------------------

  /**
   * Add a tensor this model holds beyond the base (a head's, an adapter's) under a Hugging Face
   * style name. The name must be new (not a base parameter, quantized weight or registered one).
   * Sets tensor.name and tensor.requiresGrad = trainable (default true; false on a reference model).
   */
  registerParameter(name: string, tensor: Tensor, opts: ParameterOptions): void {
    if (this.params.has(name) || this.quantized.has(name) || this.specs.some((s) => s.name === name) || this.extras.has(name)) {
      throw new LlmError(`cannot register parameter '${name}': the model already has a parameter of that name`);
    }
    for (const t of [...this.params.values(), ...[...this.extras.values()].map((e) => e.tensor)]) {
      if (t === tensor) throw new LlmError(`cannot register parameter '${name}': that tensor is already the model's '${t.name}'`);
    }
    tensor.name = name;
    tensor.requiresGrad = (opts.trainable ?? true) && !this.reference;
    if (!tensor.requiresGrad) tensor.grad = null;
    this.extras.set(name, { tensor, decay: opts.decay });
  }

  /**
   * Every tensor the model holds, in a fixed order: the base parameters in parameterSpecs order
   * (quantized weights excepted: they are in model.quantized), then registered ones in
   * registration order. A tied LM head is the token embedding (one entry). Optimizers keep state
   * for the trainable ones, keyed by name; checkpoints write them all.
   */
  namedParameters(): NamedParameter[] {
    const out: NamedParameter[] = [];
    const entry = (name: string, tensor: Tensor, decay: boolean): NamedParameter =>
      ({ name, tensor, trainable: !this.reference && tensor.requiresGrad, decay });
    for (const s of this.specs) if (!this.quantized.has(s.name)) out.push(entry(s.name, this.params.get(s.name)!, s.decay));
    for (const [name, e] of this.extras) out.push(entry(name, e.tensor, e.decay));
    return out;
  }

  /**
   * The trainable tensors, in namedParameters() order (all of the base's unless frozen). A model
   * with quantized weights trains adapters only: refused while a base parameter is trainable.
   */
  parameters(): Tensor[] {
    const named = this.namedParameters();
    if (this.quantized.size > 0) {
      const base = new Set(this.specs.map((s) => s.name));
      const open = named.find((p) => p.trainable && base.has(p.name));
      if (open) {
        throw new LlmError(`this model has ${this.quantized.size} quantized (Q8_0/Q4_0) weights, which stay frozen, and its base parameter '${open.name}' is trainable: freeze the base and train adapters on it (LoRA), or train from float weights (import the GGUF without keepQuantized)`);
      }
    }
    return named.filter((p) => p.trainable).map((p) => p.tensor);
  }

  /**
   * Stop training the parameters whose name passes `filter` (default: all): requiresGrad = false
   * and their gradient buffers are dropped; a backward pass then allocates none for them. Shared
   * tensors are one tensor: freezing 'transformer.wte.weight' also freezes a tied LM head.
   * Takes effect for graphs recorded afterwards. On a reference model it does nothing.
   */
  freeze(filter: (name: string) => boolean = () => true): void {
    if (this.reference) return;
    for (const p of this.namedParameters()) {
      if (!filter(p.name)) continue;
      p.tensor.requiresGrad = false;
      p.tensor.grad = null;
    }
  }

  /** Train again the parameters whose name passes `filter` (default: all). Refused on a reference model. */
  unfreeze(filter: (name: string) => boolean = () => true): void {
    if (this.reference) throw new LlmError('a reference model never trains (it may share its weights with the model being trained): unfreeze that model instead');
    for (const p of this.namedParameters()) if (filter(p.name)) p.tensor.requiresGrad = true;
  }

  // ---------------------------------------------------------------------------------------------
  // Forward passes
  // ---------------------------------------------------------------------------------------------

  /**
   * The trunk: tokens (B, T) -> hidden states (B, T, C) after the final norm, what every head
   * reads. Dropout in training mode; without autograd each layer runs in a stage scope (one
   * layer's activations held at a time). lastOnly keeps the final position only: (B, 1, C), no
   * gradient through that selection (sampling). packing: rows holding several examples (packing.ts),
   * each seeing only itself at positions from 0, as if run one by one.
   */
  hidden(tokens: Int32Array, B: number, T: number, opts: HiddenOptions = {}): Tensor {
    if (this.reference && isGradEnabled()) return noGrad(() => this.hidden(tokens, B, T, opts));
    const cfg = this.config;
    if (tokens.length !== B * T) throw new LlmError(`forward: ${tokens.length} tokens do not form a (${B}, ${T}) batch`);
    if (T > cfg.blockSize) throw new LlmError(`sequence of ${T} tokens is longer than the model's context of ${cfg.blockSize}`);
    const packing = opts.packing ?? null;
    if (packing) checkPackedRows(packing, B, T);
    let x = this.embedTokens(tokens, [B, T]); // (B, T, C)
    if (this.positionEmbedding && packing) {
      x = add(x, embedding(this.positionEmbedding, packing.positions, [B, T])); // (B, T, C) + (B, T, C)
    } else if (this.positionEmbedding) {
      const positions = new Int32Array(T).map((_, t) => t);
      x = add(x, embedding(this.positionEmbedding, positions, [1, T])); // (B, T, C) + (1, T, C)
    }
    x = dropout(x, cfg.dropout, this.ctx.rng, this.ctx.training);
    if (isGradEnabled() && this.gradientCheckpointing) {
      // the dropout rng replays its draws when a block is recomputed
      const rng = { save: () => this.ctx.rng.getState(), restore: (s: unknown) => this.ctx.rng.setState(s as RngState) };
      this.blocks.forEach((block, l) => {
        x = checkpoint((h) => block.forward(h, packing), x, this.blockParameters(l), rng);
      });
    } else if (isGradEnabled()) {
      for (const block of this.blocks) x = block.forward(x, packing);
    } else {
      // nothing to backpropagate: one layer's activations at a time (evaluation, scoring)
      for (const block of this.blocks) {
        const input = x;
        x = withStageScope(() => block.forward(input, packing), (y) => y.data);
      }
    }
    if (opts.lastOnly) x = lastPosition(x, B, T); // (B, 1, C)
    return this.finalNorm.forward(x);
  }

  /**
   * The language model: lmHead(hidden(tokens)). tokens: (B, T) ids; targets: (B, T) next-token
   * ids (IGNORE_INDEX rows are masked). lastOnly computes the head for the final position only.
   */
  forward(tokens: Int32Array, B: number, T: number, targets?: Int32Array, opts: HiddenOptions = {}): ForwardResult {
    if (this.reference && isGradEnabled()) return noGrad(() => this.forward(tokens, B, T, targets, opts));
    const h = this.hidden(tokens, B, T, opts); // (B, T, C)
    const logits = this.lmHead.forward(h); // (B, T, V)
    const loss = targets ? crossEntropy(logits, targets) : null;
    return { logits, loss };
  }
  /**
   * The mean next-token cross-entropy alone (what training needs): forward(...).loss without the
   * logits, through LmHead.loss, which takes the head in chunks of rows on large vocabularies.
   */
  loss(tokens: Int32Array, B: number, T: number, targets: Int32Array, opts: HiddenOptions = {}): Tensor {
    if (this.reference && isGradEnabled()) return noGrad(() => this.loss(tokens, B, T, targets, opts));
    return this.lmHead.loss(this.hidden(tokens, B, T, opts), targets); // (B, T, C) -> scalar
  }


  /**
   * Inference on a KV cache, for one sequence: runs `tokens` (positions cache.pos..cache.pos+T-1)
   * through the model, appends their keys and values to the cache and advances cache.pos.
   * Returns the logits of the last new position (V floats), or of all T positions (T x V) with
   * allLogits. No gradient, no dropout; intermediate buffers are pooled.
   */
  forwardCached(tokens: Int32Array, cache: KvCache, opts: CachedForwardOptions = {}): Float32Array {
    const cfg = this.config;
    const T = tokens.length;
    if (T === 0) throw new LlmError('forwardCached: no tokens given');
    if (cache.nLayer !== cfg.nLayer || cache.kvDim !== cfg.nKvHead * headDim(cfg)) {
      throw new LlmError(`the KV cache (${cache.nLayer} layers x ${cache.kvDim}) does not fit this model (${cfg.nLayer} layers x ${cfg.nKvHead * headDim(cfg)})`);
    }
    if (cache.pos + T > cache.maxT) {
      throw new LlmError(`${cache.pos} cached + ${T} new tokens exceed the context of ${cache.maxT} positions`);
    }
    const n = (opts.allLogits ? T : 1) * cfg.vocabSize;
    if (opts.out && opts.out.length < n) throw new LlmError(`forwardCached: the logits buffer holds ${opts.out.length} floats, ${n} needed`);
    if (T === 1 && this.useDecodeProgram && this.noProgramFor !== backend()) {
      const logits = this.decodeOne(tokens[0], cache, opts.out);
      if (logits) return logits;
    }
    const training = this.ctx.training;
    this.ctx.training = false;
    try {
      return noGrad(() => withBufferScope(() => {
        const pos = cache.pos;
        cache.reserve(pos + T);
        let x = this.embedTokens(tokens, [1, T]); // (1, T, C)
        if (this.positionEmbedding) {
          const positions = Int32Array.from({ length: T }, (_, t) => pos + t);
          x = add(x, embedding(this.positionEmbedding, positions, [1, T]));
        }
        // one layer's activations at a time: each layer's buffers are recycled by the next
        for (let l = 0; l < this.blocks.length; l++) {
          const input = x;
          x = withStageScope(() => this.blocks[l].forwardCached(input, cache, l), (y) => y.data);
        }
        cache.advance(T);
        if (!opts.allLogits) x = lastPosition(x, 1, T);
        x = this.finalNorm.forward(x);
        const logits = this.lmHead.forward(x); // (1, T or 1, V)
        const out = opts.out ?? new Float32Array(n);
        out.set(logits.data.subarray(0, n));
        return out;
      }));
    } finally {
      this.ctx.training = training;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Decode program
  // ---------------------------------------------------------------------------------------------

  /**
   * Forget the compiled decode program: the next single-token decode compiles a new one. Needed
   * only when a layer's decodeWeight() would now return different arrays (an adapter merged into a
   * weight of its own, or one that can now run in a program); in-place updates of the weights a
   * program already reads need nothing.
   */
  resetDecodeProgram(): void {
    this.decoder = null;
    this.noProgramFor = null;
    this.programResets++;
  }

  /** How many times resetDecodeProgram() was called: a batch program compiled before a reset is stale. */
  get decodeProgramResets(): number {
    return this.programResets;
  }

  /** The tensors of block l (base and registered, e.g. its adapters), for checkpointing. */
  private blockParameters(l: number): Tensor[] {
    const prefix = this.config.family === 'gpt2' ? `transformer.h.${l}.` : `model.layers.${l}.`;
    return this.namedParameters().filter((p) => p.name.startsWith(prefix)).map((p) => p.tensor);
  }

  /** Every linear layer of the trunk (the factory's products), block by block. */
  linears(): LinearLayer[] {
    return this.blocks.flatMap((b) => b.linears());
  }

  /** forwardCached of one token through the decode program (compiled on first use); null when the model has none. */
  private decodeOne(token: number, cache: KvCache, out?: Float32Array): Float32Array | null {
    const V = this.config.vocabSize;
    if (!Number.isInteger(token) || token < 0 || token >= V) {
      throw new LlmError(`embedding: token id ${token} at position 0 is outside the vocabulary [0, ${V})`);
    }
    const pos = cache.pos;
    const tables = this.ctx.rope;
    if (tables) reserveRope(tables, pos + 1);
    const d = this.compiledDecoder();
    if (!d) return null;
    if (tables && d.rope) {
      if (d.rope.boundCos !== tables.cos) d.runner.bind(d.rope.cos, (d.rope.boundCos = tables.cos));
      if (d.rope.boundSin !== tables.sin) d.runner.bind(d.rope.sin, (d.rope.boundSin = tables.sin));
    }
    cache.reserve(pos + 1);
    for (let l = 0; l < d.layers.length; l++) {
      const s = d.layers[l];
      if (s.boundK !== cache.k[l]) d.runner.bind(s.k, (s.boundK = cache.k[l]));
      if (s.boundV !== cache.v[l]) d.runner.bind(s.v, (s.boundV = cache.v[l]));
    }
    d.runner.run(token, pos);
    cache.advance(1);
    const logits = out ?? new Float32Array(V);
    logits.set(d.logits);
    return logits;
  }

  /** The program for the current backend, compiled when missing; null if a layer cannot run in one. */
  private compiledDecoder(): Decoder | null {
    const be = backend();
    if (this.decoder?.backend === be) return this.decoder;
    try {
      this.decoder = this.compileDecoder();
      return this.decoder;
    } catch (err) {
      if (!(err instanceof NoDecodeProgram)) throw err;
      this.decoder = null;
      this.noProgramFor = be;
      return null;
    }
  }

  /**
   * The decode program of this model: the ops forwardCached runs for one token, emitted by the
   * same classes, over buffers of its own (activations, logits) and one slot per layer for the
   * KV cache's keys and values (bound to a cache's arrays before each run). Throws NoDecodeProgram
   * when a linear layer cannot run inside a program.
   */
  private compileDecoder(): Decoder {
    const { program, logits, slots, rope } = this.decodeProgram(1);
    const be = backend();
    const runner = be.compileDecode(program);
    const layers = slots.map((s) => ({ ...s, boundK: null, boundV: null }));
    const bound = rope ? { cos: rope.cos, sin: rope.sin, boundCos: rope.tables.cos, boundSin: rope.tables.sin } : null;
    return { backend: be, runner, logits, layers, rope: bound };
  }

  /**
   * The decode program for one token (rows = 1) or for `rows` tokens of different sequences at
   * once (a batch program: every activation buffer holds `rows` rows, program.rowStrides says how
   * far apart; src/model/batch-step.ts runs it). Throws NoDecodeProgram when a linear layer
   * cannot run inside a program.
   */
  decodeProgram(rows = 1): DecodeProgramParts {
    if (!Number.isInteger(rows) || rows < 1) throw new LlmError(`a decode program needs a positive row count, got ${rows}`);
    const cfg = this.config;
    const kvDim = cfg.nKvHead * headDim(cfg);
    const widths = new Map<ArrayBufferLike, number>();
    const f = (n: number) => {
      const a = new Float32Array(rows * n);
      widths.set(a.buffer, n);
      return a;
    };
    const s: DecodeScratch = {
      x: f(cfg.nEmbd), xn: f(cfg.nEmbd), q: f(cfg.nEmbd), k: f(kvDim), v: f(kvDim), qkv: f(cfg.nEmbd + 2 * kvDim),
      att: f(cfg.nEmbd), h1: f(cfg.hiddenDim), h2: f(cfg.hiddenDim), logits: f(cfg.vocabSize),
    };
    if (this.ctx.rope) reserveRope(this.ctx.rope, 1); // the program checks the tables hold a position
    const b = new DecodeProgramBuilder();
    const emb = this.tokenEmbeddingQuantized;
    if (emb) b.embed(emb.blocks, weightTypeOf(emb.type), emb.cols, s.x);
    else b.embed(this.tokenEmbedding!.data, WeightType.F32, cfg.nEmbd, s.x);
    if (this.positionEmbedding) b.addRow(this.positionEmbedding.data, cfg.nEmbd, s.x);
    const slots = this.blocks.map((block) => {
      const layerSlots = { k: b.slot(new Float32Array(0)), v: b.slot(new Float32Array(0)) };
      block.emitDecode(b, s, layerSlots);
      return layerSlots;
    });
    this.finalNorm.emitDecode(b, s.x, s.xn);
    b.matvec(s.xn, [{ w: this.lmHead.decodeWeight(), out: s.logits }]);
    const t = this.ctx.rope;
    // the tables' indices (buf() gives an array already in the table its index)
    const rope = t ? { tables: t, cos: b.buf(t.cos), sin: b.buf(t.sin) } : null;
    const program = b.build();
    // a scratch array and the views emitted from it (GPT-2's q|k|v) are rows of the scratch's width
    if (rows > 1) program.rowStrides = Int32Array.from(program.buffers, (buf) => widths.get(buf.buffer) ?? 0);
    return { program, logits: s.logits, slots, rope };
  }
}

/** (B, T, C) -> (B, 1, C), no gradient (used for sampling only). */
function lastPosition(x: Tensor, B: number, T: number): Tensor {
  const C = x.lastDim;
  const out = Tensor.zeros([B, 1, C]);
  for (let b = 0; b < B; b++) out.data.set(x.data.subarray((b * T + T - 1) * C, (b * T + T) * C), b * C);
  return out;
}

/** Which quantized weights a config allows: 2-D Linear weights, the token embedding and an untied lm_head. */
function quantizable(spec: ParamSpec, cfg: ModelConfig): boolean {
  if (spec.shape.length !== 2) return false;
  if (spec.name === 'transformer.wte.weight' || spec.name === 'model.embed_tokens.weight') return true;
  if (spec.name === 'lm_head.weight') return !cfg.tiedEmbeddings;
  return /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj|self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(spec.name);
}

/** Check params (and quantized weights) against the spec table; name them, and make them trainable when asked. */
function checkParameters(specs: ParamSpec[], params: Params, quantized: QuantMap, cfg: ModelConfig, trainable: boolean): void {
  for (const name of quantized.keys()) {
    const spec = specs.find((s) => s.name === name);
    if (!spec || !quantizable(spec, cfg)) throw new LlmError(`'${name}' cannot be a quantized weight (only Linear weights, the token embedding and an untied lm_head can)`);
    const q = quantized.get(name)!;
    // rows-of-outputs orientation: (out, in) = the spec for 'out_in', its transpose for GPT-2's Conv1D (in, out)
    const inOut = cfg.family === 'gpt2' && name !== 'lm_head.weight' && name !== 'transformer.wte.weight';
    const want = inOut ? [spec.shape[1], spec.shape[0]] : spec.shape;
    if (q.rows !== want[0] || q.cols !== want[1]) {
      throw new LlmError(`quantized weight '${name}' is ${q.rows} x ${q.cols} (out x in), the config needs ${want[0]} x ${want[1]}`);
    }
  }
  for (const s of specs) {
    if (quantized.has(s.name)) continue;
    const t = params.get(s.name);
    if (!t) throw new LlmError(`checkpoint is missing parameter '${s.name}'`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new LlmError(`parameter '${s.name}' has shape [${t.shape.join(', ')}] but the config needs [${s.shape.join(', ')}]`);
    }
    t.name = s.name;
    if (trainable) t.requiresGrad = true;
  }
}
