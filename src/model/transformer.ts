/**
 * The decoder-only Transformer, one definition for GPT-2 and Llama (see config.ts):
 *
 *   x = embed(tokens) [+ positions]                      (B, T, C)
 *   for each Block:  x = x + attn(norm_1(x));  x = x + mlp(norm_2(x))
 *   logits = lm_head(norm_f(x))                          (B, T, V)
 *
 * Inference runs the same classes on a KV cache (forwardCached): the new tokens' keys and
 * values are appended to the cache and their queries attend over every cached position.
 *
 * Parameters live in one Map keyed by their Hugging Face names (parameters.ts); the classes
 * below only look them up, so loading or exporting a checkpoint is a map copy.
 */
import {
  Tensor, add, causalSelfAttention, crossEntropy, dropout, embedding, gelu, isGradEnabled, layerNorm, linear,
  noGrad, rmsNorm, rope, ropeTables, splitLastDim, swiglu, withBufferScope, withStageScope, type RopeTables, type WeightLayout,
} from '../tensor/index.js';
import { reserveRope } from '../tensor/ops/rope.js';
import { backend, type Backend } from '../backend/index.js';
import {
  DecodeProgramBuilder, Epilogue, WeightType, weightTypeOf, type DecodeRunner, type DecodeWeight,
} from '../backend/decode-program.js';
import type { KvCache } from '../generate/kv-cache.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { headDim, validateConfig, type ModelConfig } from './config.js';
import { initParameters } from './init.js';
import { parameterSpecs, type ParamSpec } from './parameters.js';
import { dequantizeRows, type QuantizedWeight } from './quantized.js';

type Params = Map<string, Tensor>;
type QuantMap = Map<string, QuantizedWeight>;

/** Shared per-forward context: dropout state and position tables. */
interface Context {
  cfg: ModelConfig;
  /** quantized Linear weights by parameter name (inference only) */
  quantized: QuantMap;
  training: boolean;
  rng: Rng;
  rope: RopeTables | null;
}

function get(params: Params, name: string): Tensor {
  const t = params.get(name);
  if (!t) throw new LlmError(`model is missing parameter '${name}'`);
  return t;
}

function getOptional(params: Params, name: string): Tensor | null {
  return params.get(name) ?? null;
}

/** LayerNorm (gpt2) or RMSNorm (llama) with its gain (and bias). */
class Norm {
  private readonly weight: Tensor;
  private readonly bias: Tensor | null;
  constructor(params: Params, name: string, private readonly ctx: Context) {
    this.weight = get(params, `${name}.weight`);
    this.bias = getOptional(params, `${name}.bias`);
  }
  forward(x: Tensor): Tensor {
    const eps = this.ctx.cfg.normEps;
    return this.ctx.cfg.family === 'gpt2' ? layerNorm(x, this.weight, this.bias, eps) : rmsNorm(x, this.weight, eps);
  }
  emitDecode(b: DecodeProgramBuilder, x: Float32Array, out: Float32Array): void {
    b.norm(this.ctx.cfg.family !== 'gpt2', x, this.weight.data, this.bias?.data ?? null, out, this.weight.size, this.ctx.cfg.normEps);
  }
}

/**
 * y = x W (+ bias). With a quantized weight (ctx.quantized) the product runs on the GGUF blocks
 * (Backend.matmulQuantized); that path has no gradient and refuses to run with autograd on.
 */
class Linear {
  readonly weight: Tensor | null;
  readonly quantized: QuantizedWeight | null;
  readonly bias: Tensor | null;
  constructor(params: Params, name: string, private readonly layout: WeightLayout, quantized?: QuantMap) {
    this.quantized = quantized?.get(`${name}.weight`) ?? null;
    this.weight = this.quantized ? null : get(params, `${name}.weight`);
    this.bias = getOptional(params, `${name}.bias`);
  }
  forward(x: Tensor): Tensor {
    if (!this.quantized) return linear(x, this.weight!, this.bias, this.layout);
    return quantizedLinear(x, this.quantized, this.bias);
  }
  /** The weight as a decode-program operand. */
  decodeWeight(): DecodeWeight {
    const bias = this.bias?.data ?? null;
    const q = this.quantized;
    if (q) return { data: q.blocks, type: weightTypeOf(q.type), N: q.rows, K: q.cols, bias };
    const [r, c] = this.weight!.shape;
    return this.layout === 'out_in'
      ? { data: this.weight!.data, type: WeightType.F32, N: r, K: c, bias }
      : { data: this.weight!.data, type: WeightType.F32_IN_OUT, N: c, K: r, bias };
  }
}

const QUANTIZED_NO_GRAD = 'this model has quantized (Q8_0/Q4_0) weights, which are inference-only: no gradient flows through them (train from a float checkpoint, or import the GGUF without keepQuantized)';

function quantizedLinear(x: Tensor, w: QuantizedWeight, bias: Tensor | null): Tensor {
  if (isGradEnabled()) throw new LlmError(QUANTIZED_NO_GRAD);
  if (x.lastDim !== w.cols) throw new LlmError(`quantized linear: input width ${x.lastDim} does not fit the weight's ${w.cols} columns`);
  const rows = x.size / w.cols;
  const out = Tensor.empty([...x.shape.slice(0, -1), w.rows]);
  const be = backend();
  be.matmulQuantized(x.data, w.blocks, w.type, out.data, rows, w.rows, w.cols);
  if (bias) be.addBias(out.data, bias.data, out.data, rows, w.rows);
  return out;
}

export class CausalSelfAttention {
  private readonly qkv: Linear | null = null; // gpt2: fused c_attn
  private readonly q: Linear | null = null; // llama: separate projections
  private readonly k: Linear | null = null;
  private readonly v: Linear | null = null;
  private readonly proj: Linear;

  constructor(params: Params, prefix: string, private readonly ctx: Context) {
    if (ctx.cfg.family === 'gpt2') {
      this.qkv = new Linear(params, `${prefix}.attn.c_attn`, 'in_out', ctx.quantized);
      this.proj = new Linear(params, `${prefix}.attn.c_proj`, 'in_out', ctx.quantized);
    } else {
      this.q = new Linear(params, `${prefix}.self_attn.q_proj`, 'out_in', ctx.quantized);
      this.k = new Linear(params, `${prefix}.self_attn.k_proj`, 'out_in', ctx.quantized);
      this.v = new Linear(params, `${prefix}.self_attn.v_proj`, 'out_in', ctx.quantized);
      this.proj = new Linear(params, `${prefix}.self_attn.o_proj`, 'out_in', ctx.quantized);
    }
  }

  /** q, k, v projections with RoPE applied at positions posOffset.. (Llama). */
  private projections(x: Tensor, posOffset: number): [Tensor, Tensor, Tensor] {
    const { cfg } = this.ctx;
    const kvDim = cfg.nKvHead * headDim(cfg);
    let q: Tensor, k: Tensor, v: Tensor;
    if (this.qkv) {
      [q, k, v] = splitLastDim(this.qkv.forward(x), [cfg.nEmbd, kvDim, kvDim]); // (B, T, C), (B, T, kv) x 2
    } else {
      q = this.q!.forward(x);
      k = this.k!.forward(x);
      v = this.v!.forward(x);
    }
    if (this.ctx.rope) {
      q = rope(q, cfg.nHead, this.ctx.rope, posOffset);
      k = rope(k, cfg.nKvHead, this.ctx.rope, posOffset);
    }
    return [q, k, v];
  }

  forward(x: Tensor): Tensor {
    const { cfg } = this.ctx;
    const [q, k, v] = this.projections(x, 0);
    const y = causalSelfAttention(q, k, v, { nHead: cfg.nHead, nKvHead: cfg.nKvHead }); // (B, T, C)
    return dropout(this.proj.forward(y), cfg.dropout, this.ctx.rng, this.ctx.training);
  }

  /**
   * x: (1, T, C) for positions cache.pos..cache.pos+T-1 (no gradient). Appends this layer's
   * keys and values to the cache and attends over positions 0..pos+t.
   */
  forwardCached(x: Tensor, cache: KvCache, layer: number): Tensor {
    const { cfg } = this.ctx;
    const hs = headDim(cfg);
    const kvDim = cfg.nKvHead * hs;
    const T = x.shape[1];
    const pos = cache.pos;
    const [q, k, v] = this.projections(x, pos);
    const kc = cache.k[layer];
    const vc = cache.v[layer];
    kc.set(k.data.subarray(0, T * kvDim), pos * kvDim);
    vc.set(v.data.subarray(0, T * kvDim), pos * kvDim);
    const y = Tensor.empty([1, T, cfg.nEmbd]);
    const scale = 1 / Math.sqrt(hs);
    if (pos === 0 && T > 1) {
      // a fresh prompt is plain causal self-attention over its own rows: the tiled training kernel
      // (cache rows 0..T-1 are exactly k and v in its (1, T, kvDim) layout)
      const lse = Tensor.empty([cfg.nHead * T]);
      backend().attentionForward(q.data, kc, vc, y.data, lse.data, { B: 1, T, nHead: cfg.nHead, nKvHead: cfg.nKvHead, headDim: hs, scale });
    } else {
      backend().attentionCached(q.data, kc, vc, y.data, { Tq: T, pos, nHead: cfg.nHead, nKvHead: cfg.nKvHead, headDim: hs, scale });
    }
    return this.proj.forward(y);
  }

  /** Decode-program ops of forwardCached for one token: xn (normed input) -> x += attention. */
  emitDecode(b: DecodeProgramBuilder, s: DecodeScratch, slots: { k: number; v: number }): void {
    const { cfg } = this.ctx;
    const hs = headDim(cfg);
    const kvDim = cfg.nKvHead * hs;
    let q = s.q, k = s.k, v = s.v;
    if (this.qkv) {
      b.matvec(s.xn, [{ w: this.qkv.decodeWeight(), out: s.qkv }]);
      [q, k, v] = [s.qkv.subarray(0, cfg.nEmbd), s.qkv.subarray(cfg.nEmbd, cfg.nEmbd + kvDim), s.qkv.subarray(cfg.nEmbd + kvDim)];
    } else {
      b.matvec(s.xn, [{ w: this.q!.decodeWeight(), out: q }, { w: this.k!.decodeWeight(), out: k }, { w: this.v!.decodeWeight(), out: v }]);
    }
    if (this.ctx.rope) {
      b.rope(q, cfg.nHead, hs, this.ctx.rope.cos, this.ctx.rope.sin);
      b.rope(k, cfg.nKvHead, hs, this.ctx.rope.cos, this.ctx.rope.sin);
    }
    b.kvStore(k, slots.k, kvDim);
    b.kvStore(v, slots.v, kvDim);
    b.attention(q, slots.k, slots.v, s.att, cfg.nHead, cfg.nKvHead, hs, 1 / Math.sqrt(hs));
    b.matvec(s.att, [{ w: this.proj.decodeWeight(), out: s.x, accumulate: true }]);
  }
}

export class MLP {
  private readonly fc: Linear | null = null; // gpt2
  private readonly gate: Linear | null = null; // llama
  private readonly up: Linear | null = null;
  private readonly down: Linear;

  constructor(params: Params, prefix: string, private readonly ctx: Context) {
    if (ctx.cfg.family === 'gpt2') {
      this.fc = new Linear(params, `${prefix}.mlp.c_fc`, 'in_out', ctx.quantized);
      this.down = new Linear(params, `${prefix}.mlp.c_proj`, 'in_out', ctx.quantized);
    } else {
      this.gate = new Linear(params, `${prefix}.mlp.gate_proj`, 'out_in', ctx.quantized);
      this.up = new Linear(params, `${prefix}.mlp.up_proj`, 'out_in', ctx.quantized);
      this.down = new Linear(params, `${prefix}.mlp.down_proj`, 'out_in', ctx.quantized);
    }
  }

  forward(x: Tensor): Tensor {
    const h = this.fc ? gelu(this.fc.forward(x)) : swiglu(this.gate!.forward(x), this.up!.forward(x)); // (B, T, hidden)
    return dropout(this.down.forward(h), this.ctx.cfg.dropout, this.ctx.rng, this.ctx.training);
  }

  /** Decode-program ops of forward for one token: xn (normed input) -> x += mlp. */
  emitDecode(b: DecodeProgramBuilder, s: DecodeScratch): void {
    if (this.fc) b.matvec(s.xn, [{ w: this.fc.decodeWeight(), out: s.h1 }], Epilogue.GELU);
    else b.matvec(s.xn, [{ w: this.gate!.decodeWeight(), out: s.h1 }, { w: this.up!.decodeWeight(), out: s.h2 }], Epilogue.SWIGLU);
    b.matvec(s.h1, [{ w: this.down.decodeWeight(), out: s.x, accumulate: true }]);
  }
}

export class Block {
  private readonly norm1: Norm;
  private readonly attn: CausalSelfAttention;
  private readonly norm2: Norm;
  private readonly mlp: MLP;

  constructor(params: Params, layer: number, ctx: Context) {
    const gpt2 = ctx.cfg.family === 'gpt2';
    const prefix = gpt2 ? `transformer.h.${layer}` : `model.layers.${layer}`;
    this.norm1 = new Norm(params, gpt2 ? `${prefix}.ln_1` : `${prefix}.input_layernorm`, ctx);
    this.attn = new CausalSelfAttention(params, prefix, ctx);
    this.norm2 = new Norm(params, gpt2 ? `${prefix}.ln_2` : `${prefix}.post_attention_layernorm`, ctx);
    this.mlp = new MLP(params, prefix, ctx);
  }

  forward(x: Tensor): Tensor {
    x = add(x, this.attn.forward(this.norm1.forward(x)));
    return add(x, this.mlp.forward(this.norm2.forward(x)));
  }

  forwardCached(x: Tensor, cache: KvCache, layer: number): Tensor {
    x = add(x, this.attn.forwardCached(this.norm1.forward(x), cache, layer));
    return add(x, this.mlp.forward(this.norm2.forward(x)));
  }

  emitDecode(b: DecodeProgramBuilder, s: DecodeScratch, slots: { k: number; v: number }): void {
    this.norm1.emitDecode(b, s.x, s.xn);
    this.attn.emitDecode(b, s, slots);
    this.norm2.emitDecode(b, s.x, s.xn);
    this.mlp.emitDecode(b, s);
  }
}

/** The activations of one decode step (a decode program's own buffers). */
interface DecodeScratch {
  /** the residual stream (C) */
  x: Float32Array;
  /** normed x (C) */
  xn: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** GPT-2's fused q|k|v (C + 2 kv) */
  qkv: Float32Array;
  /** attention output (C) */
  att: Float32Array;
  /** MLP hidden (hidden), SwiGLU's second product */
  h1: Float32Array;
  h2: Float32Array;
  logits: Float32Array;
}

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

export interface CachedForwardOptions {
  /** logits of every new position (T x V) instead of the last one only (V) */
  allLogits?: boolean;
  /** write the logits here instead of a new array (must hold at least as many floats) */
  out?: Float32Array;
}

export interface ForwardResult {
  /** (B, T, V), or (B, 1, V) with lastOnly */
  logits: Tensor;
  /** mean cross-entropy when targets were given */
  loss: Tensor | null;
}

export class Transformer {
  readonly config: ModelConfig;
  readonly params: Params;
  readonly specs: ParamSpec[];
  private readonly ctx: Context;
  private readonly blocks: Block[];
  private readonly tokenEmbedding: Tensor | null;
  /** the token table kept quantized (GGUF Q8_0/Q4_0): lookups dequantize only their rows */
  private readonly tokenEmbeddingQuantized: QuantizedWeight | null;
  private readonly positionEmbedding: Tensor | null;
  private readonly finalNorm: Norm;
  private readonly head: Tensor | null;
  private readonly headQuantized: QuantizedWeight | null;
  /** quantized weights (inference only), by parameter name; these are absent from params */
  readonly quantized: QuantMap;
  /**
   * Decode single tokens with a compiled decode program (Backend.compileDecode: one call a token)
   * instead of op by op; both give the same logits. Off only to compare the two.
   */
  useDecodeProgram = true;
  private decoder: Decoder | null = null;

  /**
   * Build around existing parameters (checked against the config), or initialise fresh ones.
   * opts.quantized: Linear weights (and an untied lm_head) given as GGUF blocks instead of float
   * tensors (see QuantizedWeight); such a model runs inference only (forwardCached, or forward
   * under noGrad), and parameters() refuses.
   */
  constructor(config: ModelConfig, params: Params | Rng, opts: { quantized?: QuantMap } = {}) {
    this.config = validateConfig(config);
    this.specs = parameterSpecs(config);
    this.params = params instanceof Rng ? initParameters(config, params) : params;
    this.quantized = opts.quantized ?? new Map();
    checkParameters(this.specs, this.params, this.quantized, config);
    const gpt2 = config.family === 'gpt2';
    this.ctx = {
      cfg: config,
      quantized: this.quantized,
      training: false,
      rng: new Rng(0),
      // built lazily, up to the positions a run reaches (a context of 10^8 costs nothing until used)
      rope: gpt2 ? null : ropeTables(config.blockSize, headDim(config), config.ropeTheta, 0),
    };
    const embName = gpt2 ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
    this.tokenEmbeddingQuantized = this.quantized.get(embName) ?? null;
    this.tokenEmbedding = this.tokenEmbeddingQuantized ? null : get(this.params, embName);
    this.positionEmbedding = gpt2 ? get(this.params, 'transformer.wpe.weight') : null;
    this.blocks = Array.from({ length: config.nLayer }, (_, l) => new Block(this.params, l, this.ctx));
    this.finalNorm = new Norm(this.params, gpt2 ? 'transformer.ln_f' : 'model.norm', this.ctx);
    this.headQuantized = config.tiedEmbeddings ? this.tokenEmbeddingQuantized : this.quantized.get('lm_head.weight') ?? null;
    this.head = this.headQuantized ? null : config.tiedEmbeddings ? this.tokenEmbedding : get(this.params, 'lm_head.weight');
  }

  /** (…shape, C) token embeddings, from the float table or the quantized one. */
  private embedTokens(tokens: Int32Array, shape: number[]): Tensor {
    if (!this.tokenEmbeddingQuantized) return embedding(this.tokenEmbedding!, tokens, shape);
    if (isGradEnabled()) throw new LlmError(QUANTIZED_NO_GRAD);
    const w = this.tokenEmbeddingQuantized;
    const out = Tensor.empty([...shape, w.cols]);
    dequantizeRows(w, tokens, out.data);
    return out;
  }

  private headForward(x: Tensor): Tensor {
    return this.headQuantized ? quantizedLinear(x, this.headQuantized, null) : linear(x, this.head!, null, 'out_in');
  }

  /** Training mode enables dropout, drawing masks from rng. */
  train(rng: Rng): void {
    this.ctx.training = true;
    this.ctx.rng = rng;
  }

  eval(): void {
    this.ctx.training = false;
  }

  /** Parameters in a fixed order (the order of the spec table). */
  parameters(): Tensor[] {
    if (this.quantized.size > 0) {
      throw new LlmError(`this model has ${this.quantized.size} quantized (Q8_0/Q4_0) weights and runs inference only; training and exporting need float weights (import the GGUF without keepQuantized)`);
    }
    return this.specs.map((s) => this.params.get(s.name)!);
  }

  /**
   * tokens: (B, T) ids; targets: (B, T) next-token ids (IGNORE_INDEX rows are masked).
   * lastOnly computes the head for the final position only (sampling).
   */
  forward(tokens: Int32Array, B: number, T: number, targets?: Int32Array, opts: { lastOnly?: boolean } = {}): ForwardResult {
    const cfg = this.config;
    if (tokens.length !== B * T) throw new LlmError(`forward: ${tokens.length} tokens do not form a (${B}, ${T}) batch`);
    if (T > cfg.blockSize) throw new LlmError(`sequence of ${T} tokens is longer than the model's context of ${cfg.blockSize}`);
    let x = this.embedTokens(tokens, [B, T]); // (B, T, C)
    if (this.positionEmbedding) {
      const positions = new Int32Array(T).map((_, t) => t);
      x = add(x, embedding(this.positionEmbedding, positions, [1, T])); // (B, T, C) + (1, T, C)
    }
    x = dropout(x, cfg.dropout, this.ctx.rng, this.ctx.training);
    if (isGradEnabled()) {
      for (const block of this.blocks) x = block.forward(x);
    } else {
      // nothing to backpropagate: one layer's activations at a time (evaluation, scoring)
      for (const block of this.blocks) {
        const input = x;
        x = withStageScope(() => block.forward(input), (y) => y.data);
      }
    }
    if (opts.lastOnly) x = lastPosition(x, B, T);
    x = this.finalNorm.forward(x);
    const logits = this.headForward(x); // (B, T, V)
    const loss = targets ? crossEntropy(logits, targets) : null;
    return { logits, loss };
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
    if (T === 1 && this.useDecodeProgram) return this.decodeOne(tokens[0], cache, opts.out);
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
        const logits = this.headForward(x); // (1, T or 1, V)
        const out = opts.out ?? new Float32Array(n);
        out.set(logits.data.subarray(0, n));
        return out;
      }));
    } finally {
      this.ctx.training = training;
    }
  }

  /** forwardCached of one token through the decode program (compiled on first use). */
  private decodeOne(token: number, cache: KvCache, out?: Float32Array): Float32Array {
    const V = this.config.vocabSize;
    if (!Number.isInteger(token) || token < 0 || token >= V) {
      throw new LlmError(`embedding: token id ${token} at position 0 is outside the vocabulary [0, ${V})`);
    }
    const pos = cache.pos;
    const tables = this.ctx.rope;
    if (tables) reserveRope(tables, pos + 1);
    if (this.decoder?.backend !== backend()) this.decoder = this.compileDecoder();
    const d = this.decoder;
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

  /**
   * The decode program of this model: the ops forwardCached runs for one token, emitted by the
   * same classes, over buffers of its own (activations, logits) and one slot per layer for the
   * KV cache's keys and values (bound to a cache's arrays before each run).
   */
  private compileDecoder(): Decoder {
    const cfg = this.config;
    const kvDim = cfg.nKvHead * headDim(cfg);
    const f = (n: number) => new Float32Array(n);
    const s: DecodeScratch = {
      x: f(cfg.nEmbd), xn: f(cfg.nEmbd), q: f(cfg.nEmbd), k: f(kvDim), v: f(kvDim), qkv: f(cfg.nEmbd + 2 * kvDim),
      att: f(cfg.nEmbd), h1: f(cfg.hiddenDim), h2: f(cfg.hiddenDim), logits: f(cfg.vocabSize),
    };
    const b = new DecodeProgramBuilder();
    const emb = this.tokenEmbeddingQuantized;
    if (emb) b.embed(emb.blocks, weightTypeOf(emb.type), emb.cols, s.x);
    else b.embed(this.tokenEmbedding!.data, WeightType.F32, cfg.nEmbd, s.x);
    if (this.positionEmbedding) b.addRow(this.positionEmbedding.data, cfg.nEmbd, s.x);
    const layers = this.blocks.map((block) => {
      const slots = { k: b.slot(f(0)), v: b.slot(f(0)) };
      block.emitDecode(b, s, slots);
      return { ...slots, boundK: null, boundV: null };
    });
    this.finalNorm.emitDecode(b, s.x, s.xn);
    const head: DecodeWeight = this.headQuantized
      ? { data: this.headQuantized.blocks, type: weightTypeOf(this.headQuantized.type), N: this.headQuantized.rows, K: this.headQuantized.cols, bias: null }
      : { data: this.head!.data, type: WeightType.F32, N: cfg.vocabSize, K: cfg.nEmbd, bias: null };
    b.matvec(s.xn, [{ w: head, out: s.logits }]);
    const be = backend();
    const t = this.ctx.rope;
    // the tables' indices (buf() gives an array already in the table its index)
    const rope = t ? { cos: b.buf(t.cos), sin: b.buf(t.sin), boundCos: t.cos, boundSin: t.sin } : null;
    const runner = be.compileDecode(b.build());
    return { backend: be, runner, logits: s.logits, layers, rope };
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

function checkParameters(specs: ParamSpec[], params: Params, quantized: QuantMap, cfg: ModelConfig): void {
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
    t.requiresGrad = true;
  }
}
