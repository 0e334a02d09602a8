/**
 * The layers of the Transformer's trunk, one class per concept of the paper:
 *
 *   Norm                 LayerNorm (gpt2) or RMSNorm (llama)
 *   Linear               y = x W (+ b), float or quantized weight (the default LinearLayer)
 *   CausalSelfAttention  q, k, v projections [+ RoPE], causal attention, output projection
 *   MLP                  GELU (gpt2) or SwiGLU (llama)
 *   Block                x = x + attn(norm_1(x));  x = x + mlp(norm_2(x))
 *
 * Every linear layer is built through a LayerFactory (ctx.factory), so an adapter (LoRA) can wrap
 * any of them without the model knowing:
 *
 *   const lora: LayerFactory = {
 *     linear(params, name, layout, ctx) {
 *       const base = defaultLayers.linear(params, name, layout, ctx);
 *       const A = ..., B = ...;                        // its own tensors
 *       ctx.register(`${name}.lora_A.weight`, A, { decay: false });
 *       return { name, forward: (x) => add(base.forward(x), ...), decodeWeight: () => null };
 *     },
 *   };
 *   const model = new Transformer(config, params, { layers: lora });
 *
 * Layers look their parameters up by Hugging Face name in the model's Map (parameters.ts).
 * Each class also emits its part of the decode program (one token; src/backend/decode-program.ts).
 */
import {
  Tensor, add, causalSelfAttention, dropout, gelu, isGradEnabled, layerNorm, linear, rmsNorm, rope, splitLastDim,
  swiglu, type RopeTables, type WeightLayout,
} from '../tensor/index.js';
import { backend } from '../backend/index.js';
import { DecodeProgramBuilder, Epilogue, WeightType, weightTypeOf, type DecodeWeight } from '../backend/decode-program.js';
import { LlmError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { headDim, type ModelConfig } from './config.js';
import type { KvCache } from './kv-cache.js';
import type { PackedRows } from './packing.js';
import type { ParameterOptions } from './parameters.js';
import type { QuantizedWeight } from './quantized.js';

/** A model's float parameters by Hugging Face name. */
export type Params = Map<string, Tensor>;
/** Quantized Linear weights by parameter name (inference only). */
export type QuantMap = Map<string, QuantizedWeight>;

/** Shared per-model context of the layers: config, dropout state, position tables, the factory. */
export interface LayerContext {
  cfg: ModelConfig;
  /** quantized Linear weights by parameter name (inference only) */
  quantized: QuantMap;
  /** dropout on (Transformer.train) */
  training: boolean;
  /** dropout masks are drawn from this */
  rng: Rng;
  /** RoPE tables (llama), grown on demand; null for gpt2's learned positions */
  rope: RopeTables | null;
  /** builds every linear layer */
  factory: LayerFactory;
  /** add a tensor a layer owns (an adapter's) to the model's named parameters (Transformer.registerParameter) */
  register(name: string, tensor: Tensor, opts: ParameterOptions): void;
}

/** What attention and the MLP need of a linear layer. */
export interface LinearLayer {
  /** the parameter prefix, e.g. 'model.layers.0.self_attn.q_proj' (its weight is `${name}.weight`) */
  readonly name: string;
  /** x (..., in) -> (..., out) */
  forward(x: Tensor): Tensor;
  /**
   * The layer as a decode-program operand (weight (out, in) or (in, out), bias), read when the
   * program is compiled; the program keeps the arrays, so in-place updates show. Return null when
   * the layer cannot run inside a program (e.g. an adapter computed beside the base weight): the
   * model then decodes single tokens op by op, through forward(). A wrapper that can instead return
   * a merged weight must call Transformer.resetDecodeProgram() whenever that merged weight changes.
   */
  decodeWeight(): DecodeWeight | null;
}

/** Builds the model's linear layers; the default one builds Linear. */
export interface LayerFactory {
  /**
   * name: the parameter prefix (e.g. 'model.layers.0.self_attn.q_proj', 'transformer.h.0.attn.c_attn');
   * layout: how `${name}.weight` is stored ('out_in' nn.Linear, 'in_out' GPT-2 Conv1D).
   */
  linear(params: Params, name: string, layout: WeightLayout, ctx: LayerContext): LinearLayer;
}

export const defaultLayers: LayerFactory = {
  linear: (params, name, layout, ctx) => new Linear(params, name, layout, ctx.quantized),
};

export function getParameter(params: Params, name: string): Tensor {
  const t = params.get(name);
  if (!t) throw new LlmError(`model is missing parameter '${name}'`);
  return t;
}

/** LayerNorm (gpt2) or RMSNorm (llama) with its gain (and bias). */
export class Norm {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(params: Params, readonly name: string, private readonly ctx: LayerContext) {
    this.weight = getParameter(params, `${name}.weight`);
    this.bias = params.get(`${name}.bias`) ?? null;
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
 * y = x W (+ bias). With a quantized weight the product runs on the GGUF blocks
 * (Backend.matmulQuantized); that path has no gradient and refuses to run with autograd on.
 */
export class Linear implements LinearLayer {
  readonly weight: Tensor | null;
  readonly quantized: QuantizedWeight | null;
  readonly bias: Tensor | null;
  constructor(params: Params, readonly name: string, readonly layout: WeightLayout, quantized?: QuantMap) {
    this.quantized = quantized?.get(`${name}.weight`) ?? null;
    this.weight = this.quantized ? null : getParameter(params, `${name}.weight`);
    this.bias = params.get(`${name}.bias`) ?? null;
  }
  forward(x: Tensor): Tensor {
    if (!this.quantized) return linear(x, this.weight!, this.bias, this.layout);
    return quantizedLinear(x, this.quantized, this.bias);
  }
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

export const QUANTIZED_NO_GRAD = 'this model has quantized (Q8_0/Q4_0) weights, which are inference-only: no gradient flows through them (train from a float checkpoint, or import the GGUF without keepQuantized)';

/** y = x Wᵀ (+ bias) on GGUF blocks (rows = outputs); inference only. */
export function quantizedLinear(x: Tensor, w: QuantizedWeight, bias: Tensor | null): Tensor {
  if (isGradEnabled()) throw new LlmError(QUANTIZED_NO_GRAD);
  if (x.lastDim !== w.cols) throw new LlmError(`quantized linear: input width ${x.lastDim} does not fit the weight's ${w.cols} columns`);
  const rows = x.size / w.cols;
  const out = Tensor.empty([...x.shape.slice(0, -1), w.rows]);
  const be = backend();
  be.matmulQuantized(x.data, w.blocks, w.type, out.data, rows, w.rows, w.cols);
  if (bias) be.addBias(out.data, bias.data, out.data, rows, w.rows);
  return out;
}

/** Thrown while a decode program is emitted when a layer cannot run inside one (caught by the model). */
export class NoDecodeProgram extends Error {
  constructor(readonly layer: string) {
    super(`layer '${layer}' cannot run inside a decode program`);
  }
}

/** layer.decodeWeight(), or NoDecodeProgram. */
function operand(layer: LinearLayer): DecodeWeight {
  const w = layer.decodeWeight();
  if (!w) throw new NoDecodeProgram(layer.name);
  return w;
}

/** The activations of one decode step (a decode program's own buffers). */
export interface DecodeScratch {
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

export class CausalSelfAttention {
  readonly qkv: LinearLayer | null = null; // gpt2: fused c_attn
  readonly q: LinearLayer | null = null; // llama: separate projections
  readonly k: LinearLayer | null = null;
  readonly v: LinearLayer | null = null;
  readonly proj: LinearLayer;

  constructor(params: Params, prefix: string, private readonly ctx: LayerContext) {
    const make = (name: string, layout: WeightLayout) => ctx.factory.linear(params, `${prefix}.${name}`, layout, ctx);
    if (ctx.cfg.family === 'gpt2') {
      this.qkv = make('attn.c_attn', 'in_out');
      this.proj = make('attn.c_proj', 'in_out');
    } else {
      this.q = make('self_attn.q_proj', 'out_in');
      this.k = make('self_attn.k_proj', 'out_in');
      this.v = make('self_attn.v_proj', 'out_in');
      this.proj = make('self_attn.o_proj', 'out_in');
    }
  }

  /** The linear layers, in parameter order. */
  linears(): LinearLayer[] {
    return this.qkv ? [this.qkv, this.proj] : [this.q!, this.k!, this.v!, this.proj];
  }

  /** q, k, v projections with RoPE applied at positions posOffset.. or at `positions` (B*T) (Llama). */
  private projections(x: Tensor, posOffset: number, positions: Int32Array | null = null): [Tensor, Tensor, Tensor] {
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
      q = rope(q, cfg.nHead, this.ctx.rope, posOffset, positions);
      k = rope(k, cfg.nKvHead, this.ctx.rope, posOffset, positions);
    }
    return [q, k, v];
  }

  /** x: (B, T, C); packing: rows holding several examples (each attends to itself only, positions restart). */
  forward(x: Tensor, packing: PackedRows | null = null): Tensor {
    const { cfg } = this.ctx;
    const [q, k, v] = this.projections(x, 0, packing?.positions ?? null);
    const segmentStart = packing?.segmentStart ?? null;
    const y = causalSelfAttention(q, k, v, { nHead: cfg.nHead, nKvHead: cfg.nKvHead, segmentStart }); // (B, T, C)
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
      b.matvec(s.xn, [{ w: operand(this.qkv), out: s.qkv }]);
      [q, k, v] = [s.qkv.subarray(0, cfg.nEmbd), s.qkv.subarray(cfg.nEmbd, cfg.nEmbd + kvDim), s.qkv.subarray(cfg.nEmbd + kvDim)];
    } else {
      b.matvec(s.xn, [{ w: operand(this.q!), out: q }, { w: operand(this.k!), out: k }, { w: operand(this.v!), out: v }]);
    }
    if (this.ctx.rope) {
      b.rope(q, cfg.nHead, hs, this.ctx.rope.cos, this.ctx.rope.sin);
      b.rope(k, cfg.nKvHead, hs, this.ctx.rope.cos, this.ctx.rope.sin);
    }
    b.kvStore(k, slots.k, kvDim);
    b.kvStore(v, slots.v, kvDim);
    b.attention(q, slots.k, slots.v, s.att, cfg.nHead, cfg.nKvHead, hs, 1 / Math.sqrt(hs));
    b.matvec(s.att, [{ w: operand(this.proj), out: s.x, accumulate: true }]);
  }
}

export class MLP {
  readonly fc: LinearLayer | null = null; // gpt2
  readonly gate: LinearLayer | null = null; // llama
  readonly up: LinearLayer | null = null;
  readonly down: LinearLayer;

  constructor(params: Params, prefix: string, private readonly ctx: LayerContext) {
    const make = (name: string, layout: WeightLayout) => ctx.factory.linear(params, `${prefix}.${name}`, layout, ctx);
    if (ctx.cfg.family === 'gpt2') {
      this.fc = make('mlp.c_fc', 'in_out');
      this.down = make('mlp.c_proj', 'in_out');
    } else {
      this.gate = make('mlp.gate_proj', 'out_in');
      this.up = make('mlp.up_proj', 'out_in');
      this.down = make('mlp.down_proj', 'out_in');
    }
  }

  /** The linear layers, in parameter order. */
  linears(): LinearLayer[] {
    return this.fc ? [this.fc, this.down] : [this.gate!, this.up!, this.down];
  }

  forward(x: Tensor): Tensor {
    const h = this.fc ? gelu(this.fc.forward(x)) : swiglu(this.gate!.forward(x), this.up!.forward(x)); // (B, T, hidden)
    return dropout(this.down.forward(h), this.ctx.cfg.dropout, this.ctx.rng, this.ctx.training);
  }

  /** Decode-program ops of forward for one token: xn (normed input) -> x += mlp. */
  emitDecode(b: DecodeProgramBuilder, s: DecodeScratch): void {
    if (this.fc) b.matvec(s.xn, [{ w: operand(this.fc), out: s.h1 }], Epilogue.GELU);
    else b.matvec(s.xn, [{ w: operand(this.gate!), out: s.h1 }, { w: operand(this.up!), out: s.h2 }], Epilogue.SWIGLU);
    b.matvec(s.h1, [{ w: operand(this.down), out: s.x, accumulate: true }]);
  }
}

export class Block {
  readonly norm1: Norm;
  readonly attn: CausalSelfAttention;
  readonly norm2: Norm;
  readonly mlp: MLP;

  constructor(params: Params, layer: number, ctx: LayerContext) {
    const gpt2 = ctx.cfg.family === 'gpt2';
    const prefix = gpt2 ? `transformer.h.${layer}` : `model.layers.${layer}`;
    this.norm1 = new Norm(params, gpt2 ? `${prefix}.ln_1` : `${prefix}.input_layernorm`, ctx);
    this.attn = new CausalSelfAttention(params, prefix, ctx);
    this.norm2 = new Norm(params, gpt2 ? `${prefix}.ln_2` : `${prefix}.post_attention_layernorm`, ctx);
    this.mlp = new MLP(params, prefix, ctx);
  }

  forward(x: Tensor, packing: PackedRows | null = null): Tensor {
    x = add(x, this.attn.forward(this.norm1.forward(x), packing));
    return add(x, this.mlp.forward(this.norm2.forward(x)));
  }

  forwardCached(x: Tensor, cache: KvCache, layer: number): Tensor {
    x = add(x, this.attn.forwardCached(this.norm1.forward(x), cache, layer));
    return add(x, this.mlp.forward(this.norm2.forward(x)));
  }

  /** Decode-program ops of forwardCached for one token: s.x -> s.x after this block. */
  emitDecode(b: DecodeProgramBuilder, s: DecodeScratch, slots: { k: number; v: number }): void {
    this.norm1.emitDecode(b, s.x, s.xn);
    this.attn.emitDecode(b, s, slots);
    this.norm2.emitDecode(b, s.x, s.xn);
    this.mlp.emitDecode(b, s);
  }

  /** The block's linear layers (attention, then MLP). */
  linears(): LinearLayer[] {
    return [...this.attn.linears(), ...this.mlp.linears()];
  }
}
