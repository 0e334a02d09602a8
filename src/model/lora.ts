/**
 * LoRA (Hu et al. 2021) as a LayerFactory: each targeted linear layer becomes
 *
 *   y = base(x) + (dropout(x) Aᵀ Bᵀ) · scaling        scaling = alpha / r  (alpha / √r with rsLoRA)
 *
 * with A (r, in) and B (out, r) in PEFT's shapes whatever the base weight's layout (GPT-2's Conv1D
 * stores W as (in, out): PEFT's fan_in_fan_out; A and B keep the same shapes there). A starts
 * Kaiming-uniform with a = √5 (nn.Linear's default, PEFT's init: U(-1/√in, 1/√in)), B zeros, so a
 * fresh adapter leaves the model's function unchanged.
 *
 *   const model = new Transformer(cfg, params, { layers: loraLayers({ r: 8, alpha: 16, dropout: 0.05, targets: ['q_proj', 'v_proj'], rng }) });
 *   model.freeze((n) => !n.includes('lora_'));   // train the adapters only
 *   mergeLora(model);  ...  unmergeLora(model);  // W += scaling · B A in place, and back
 *
 * Targets are PEFT module names, the last part of a layer's name: Llama q_proj, k_proj, v_proj,
 * o_proj, gate_proj, up_proj, down_proj; GPT-2 c_attn, c_proj (attention's and the MLP's), c_fc.
 *
 * Names: the adapter tensors are registered with the model as `${layer}.lora_A.weight` and
 * `${layer}.lora_B.weight` (e.g. 'model.layers.0.self_attn.q_proj.lora_A.weight'), no weight
 * decay; PEFT's file names are these behind 'base_model.model.' (formats/peft.ts maps them).
 *
 * Decoding: an unmerged adapter runs beside the base weight, so decodeWeight() is null and the
 * model decodes single tokens op by op (forwardCached); once merged the layer is its base weight
 * again and runs inside the decode program.
 *
 * QLoRA: the base layer may hold a quantized weight (GGUF Q8_0/Q4_0 blocks, frozen): the adapter
 * is the same F32 pair beside it and the input gradient flows through the blocks
 * (tensor/ops/quantized-linear.ts). Such a layer cannot merge in place; mergedParameters() folds
 * the adapters into a float copy of the base.
 */
import { Tensor, isGradEnabled, loraBranch, type WeightLayout } from '../tensor/index.js';
import type { DecodeWeight } from '../backend/decode-program.js';
import { LlmError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import type { Family } from './config.js';
import { defaultLayers, type LayerContext, type LayerFactory, type LinearLayer, type Linear } from './layers.js';
import { dequantizeToParameter } from './quantized.js';
import type { Transformer } from './transformer.js';

export interface LoraOptions {
  /** rank */
  r: number;
  /** scaling numerator (PEFT lora_alpha) */
  alpha: number;
  /** dropout probability on the adapter's input (training mode only) */
  dropout: number;
  /** PEFT module names to adapt (see LORA_MODULES) */
  targets: string[];
  /** rank-stabilised scaling alpha / √r */
  rslora?: boolean;
  /** draws the initial A */
  rng: Rng;
}

/** The linear modules of each family, by PEFT (Hugging Face) module name. */
export const LORA_MODULES: Readonly<Record<Family, readonly string[]>> = {
  llama: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  gpt2: ['c_attn', 'c_proj', 'c_fc'],
};

/** The LoRA scaling factor. */
export function loraScaling(r: number, alpha: number, rslora = false): number {
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** A linear layer with a LoRA adapter beside (or merged into) its base weight. */
export class LoraLinear implements LinearLayer {
  readonly name: string;
  readonly A: Tensor;
  readonly B: Tensor;
  readonly scaling: number;
  readonly inDim: number;
  readonly outDim: number;
  private mergedFlag = false;

  constructor(
    readonly base: Linear,
    readonly layout: WeightLayout,
    readonly opts: Readonly<Omit<LoraOptions, 'rng'>>,
    private readonly ctx: LayerContext,
    rng: Rng,
  ) {
    this.name = base.name;
    const [inDim, outDim] = layerDims(base, layout);
    this.inDim = inDim;
    this.outDim = outDim;
    const r = opts.r;
    this.scaling = loraScaling(r, opts.alpha, opts.rslora);
    // kaiming_uniform_(a=√5): gain √(2/(1+5)), bound = gain·√(3/fan_in) = 1/√in
    const bound = 1 / Math.sqrt(inDim);
    this.A = Tensor.zeros([r, inDim], true);
    for (let i = 0; i < this.A.size; i++) this.A.data[i] = (2 * rng.uniform() - 1) * bound;
    this.B = Tensor.zeros([outDim, r], true);
  }

  /** The adapter is folded into the base weight (mergeLora). */
  get merged(): boolean {
    return this.mergedFlag;
  }

  forward(x: Tensor): Tensor {
    const y = this.base.forward(x);
    if (this.mergedFlag) {
      if (isGradEnabled() && (this.A.requiresGrad || this.B.requiresGrad)) {
        throw new LlmError(`LoRA layer '${this.name}' is merged into its base weight: unmerge it (unmergeLora) before training the adapter`);
      }
      return y;
    }
    // y + scaling · (dropout(x) Aᵀ) Bᵀ, fused: keeps only (..., r) and the dropout bits (tensor/ops/lora-branch.ts)
    const drop = this.ctx.training && this.opts.dropout > 0 ? { p: this.opts.dropout, rng: this.ctx.rng } : null;
    return loraBranch(y, x, this.A, this.B, this.scaling, drop);
  }

  decodeWeight(): DecodeWeight | null {
    return this.mergedFlag ? this.base.decodeWeight() : null;
  }

  /** W ± scaling · B A in the weight's own layout, accumulated in float64. */
  applyDelta(sign: 1 | -1): void {
    const w = this.base.weight;
    if (!w) throw new LlmError(`LoRA layer '${this.name}' has a quantized base weight: merging in place needs a float one (mergedParameters widens it into a copy)`);
    this.addDeltaTo(w.data, sign);
    w.version++; // its bf16 copy, if any, is stale
  }

  /** W ± scaling · B A for a float weight W of the base's shape and layout (the model's own or a copy). */
  addDeltaTo(W: Float32Array, sign: 1 | -1): void {
    const { inDim, outDim } = this;
    const r = this.opts.r;
    const A = this.A.data, B = this.B.data;
    const s = sign * this.scaling;
    const row = new Float64Array(inDim);
    for (let o = 0; o < outDim; o++) {
      row.fill(0);
      for (let k = 0; k < r; k++) {
        const b = B[o * r + k];
        if (b === 0) continue;
        const off = k * inDim;
        for (let i = 0; i < inDim; i++) row[i] += b * A[off + i];
      }
      if (this.layout === 'out_in') for (let i = 0; i < inDim; i++) W[o * inDim + i] += s * row[i];
      else for (let i = 0; i < inDim; i++) W[i * outDim + o] += s * row[i];
    }
  }

  setMerged(merged: boolean): void {
    this.mergedFlag = merged;
  }
}

function layerDims(base: Linear, layout: WeightLayout): [number, number] {
  if (base.weight) {
    const [d0, d1] = base.weight.shape;
    return layout === 'out_in' ? [d1, d0] : [d0, d1];
  }
  const q = base.quantized!; // rows = outputs
  return [q.cols, q.rows];
}

/** The module name PEFT targets: the last part of a layer name ('model.layers.0.self_attn.q_proj' -> 'q_proj'). */
export function moduleName(layer: string): string {
  return layer.slice(layer.lastIndexOf('.') + 1);
}

function checkOptions(opts: LoraOptions): void {
  if (!Number.isInteger(opts.r) || opts.r < 1) throw new LlmError(`LoRA rank r must be a positive integer, got ${opts.r}`);
  if (!Number.isFinite(opts.alpha) || opts.alpha <= 0) throw new LlmError(`LoRA alpha must be a positive number, got ${opts.alpha}`);
  if (!(opts.dropout >= 0 && opts.dropout < 1)) throw new LlmError(`LoRA dropout must be in [0, 1), got ${opts.dropout}`);
  if (!Array.isArray(opts.targets) || opts.targets.length === 0) throw new LlmError('LoRA needs at least one target module (e.g. q_proj, v_proj)');
}

/**
 * The LayerFactory that adds a LoRA adapter to every linear layer whose module name is in
 * opts.targets (others get the default Linear). A target that is no linear module of the model's
 * family is refused when the model is built.
 */
export function loraLayers(opts: LoraOptions): LayerFactory {
  checkOptions(opts);
  const { rng, ...rest } = opts;
  const settings = Object.freeze({ ...rest, targets: [...rest.targets], rslora: rest.rslora ?? false });
  const targets = new Set(settings.targets);
  let checkedFamily: Family | null = null;
  return {
    linear(params, name, layout, ctx): LinearLayer {
      if (checkedFamily !== ctx.cfg.family) {
        const known = LORA_MODULES[ctx.cfg.family];
        for (const t of targets) {
          if (!known.includes(t)) {
            throw new LlmError(`LoRA target '${t}' is not a linear module of a ${ctx.cfg.family} model (its modules: ${known.join(', ')})`);
          }
        }
        checkedFamily = ctx.cfg.family;
      }
      const base = defaultLayers.linear(params, name, layout, ctx) as Linear;
      if (!targets.has(moduleName(name))) return base;
      const layer = new LoraLinear(base, layout, settings, ctx, rng);
      ctx.register(`${name}.lora_A.weight`, layer.A, { decay: false });
      ctx.register(`${name}.lora_B.weight`, layer.B, { decay: false });
      return layer;
    },
  };
}

/** The model's LoRA layers, block by block. */
export function loraLinears(model: Transformer): LoraLinear[] {
  return model.linears().filter((l): l is LoraLinear => l instanceof LoraLinear);
}

function requireLora(model: Transformer, what: string): LoraLinear[] {
  const layers = loraLinears(model);
  if (layers.length === 0) throw new LlmError(`${what}: the model has no LoRA layers (build it with loraLayers)`);
  return layers;
}

/**
 * Fold every adapter into its base weight (W += scaling · B A, in the weight's layout); the layers
 * then compute base(x) only and run inside the decode program. Layers already merged are skipped.
 * The base weights change in place: a model sharing them (shareBase) sees the merged weights.
 */
export function mergeLora(model: Transformer): void {
  for (const l of requireLora(model, 'mergeLora')) {
    if (l.merged) continue;
    l.applyDelta(1);
    l.setMerged(true);
  }
  model.resetDecodeProgram();
}

/** Undo mergeLora: W -= scaling · B A (restores the base weights up to float32 rounding). */
export function unmergeLora(model: Transformer): void {
  for (const l of requireLora(model, 'unmergeLora')) {
    if (!l.merged) continue;
    l.applyDelta(-1);
    l.setMerged(false);
  }
  model.resetDecodeProgram();
}

/**
 * The base parameters with every adapter folded in, as a new map of float tensors; the model is
 * left as it is. Quantized weights are widened back to float (dequantizeToParameter) and the
 * adapter added to that copy: what a LoRA run over a quantized base (QLoRA) exports as its merged
 * model, since adding the adapter to Q4_0/Q8_0 blocks would round most of it away. Layers
 * without an adapter share their tensors with the model; adapted float weights are copied
 * (an adapter already merged in place is not added twice).
 */
export function mergedParameters(model: Transformer): Map<string, Tensor> {
  const adapted = new Map(loraLinears(model).map((l) => [`${l.name}.weight`, l]));
  const out = new Map<string, Tensor>();
  for (const spec of model.specs) {
    const q = model.quantized.get(spec.name);
    const layer = adapted.get(spec.name);
    const float = model.params.get(spec.name);
    if (!q && (!layer || layer.merged)) {
      out.set(spec.name, float!);
      continue;
    }
    const data = q ? dequantizeToParameter(model.config, spec.name, q) : Float32Array.from(float!.data);
    if (layer && !layer.merged) layer.addDeltaTo(data, 1);
    out.set(spec.name, new Tensor(data, [...spec.shape]));
  }
  return out;
}

/** Trainable parameters (elements) against all the model holds (quantized weights included). */
export function trainableParameterCount(model: Transformer): { trainable: number; total: number; fraction: number } {
  let trainable = 0, total = 0;
  for (const p of model.namedParameters()) {
    total += p.tensor.size;
    if (p.trainable) trainable += p.tensor.size;
  }
  for (const w of model.quantized.values()) total += w.rows * w.cols;
  return { trainable, total, fraction: total === 0 ? 0 : trainable / total };
}
