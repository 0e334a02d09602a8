/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), PyTorch semantics, and
 * global-norm gradient clipping. The moments are Float32Arrays owned by the optimizer, kept
 * for the parameters it is given (the trainable ones) and keyed by parameter name, so a
 * checkpoint's moments find their parameters by name, whatever else the model holds.
 *
 *   const opt = new AdamW(
 *     model.specs.map((s) => ({ name: s.name, tensor: model.params.get(s.name)!, decay: s.decay })),
 *     { weightDecay: 0.1 },
 *   );
 *   clipGradNorm(opt.tensors, 1.0);
 *   opt.step(lr);
 *   opt.getState();   // { step: 1, m: Map { 'transformer.wte.weight' => Float32Array, ... }, v: Map {...} }
 */
import { backend } from '../backend/index.js';
import type { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** applied to parameters with decay = true only */
  weightDecay?: number;
}

export interface OptimizerParam {
  /**
   * The parameter's name, the key of its moments in getState/setState and in checkpoints.
   * Unnamed parameters (scripts optimising a bare tensor list) are keyed by position: '#0', '#1', ...
   */
  name?: string;
  tensor: Tensor;
  decay: boolean;
}

/** The optimizer's state: update count and both moments of every optimised parameter, by name. */
export interface AdamWState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** number of updates done so far */
  stepCount = 0;
  /** the names of the optimised parameters, in the order given */
  readonly names: readonly string[];
  /** the optimised tensors, in the order given (for clipGradNorm) */
  readonly tensors: readonly Tensor[];
  /** first and second moments by parameter name (the arrays the updates write) */
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  // the same arrays by position: step() runs without a Map lookup per parameter
  private readonly mList: Float32Array[];
  private readonly vList: Float32Array[];

  constructor(readonly params: OptimizerParam[], opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.names = params.map((p, i) => p.name ?? `#${i}`);
    this.tensors = params.map((p) => p.tensor);
    this.mList = params.map((p) => new Float32Array(p.tensor.size));
    this.vList = params.map((p) => new Float32Array(p.tensor.size));
    this.names.forEach((name, i) => {
      if (this.m.has(name)) throw new LlmError(`AdamW: parameter '${name}' is given twice; every optimised parameter needs its own name`);
      this.m.set(name, this.mList[i]);
      this.v.set(name, this.vList[i]);
    });
  }

  /**
   * One update with learning rate lr; parameters without a gradient are skipped. The gradients
   * are read times `gradScale` (see clipScale: clipping without a pass over the gradients).
   */
  step(lr: number, gradScale = 1): void {
    this.stepCount++;
    const be = backend();
    this.params.forEach((p, i) => {
      const g = p.tensor.grad;
      if (!g) return;
      const wd = p.decay ? this.weightDecay : 0;
      be.adamw(p.tensor.data, g, this.mList[i], this.vList[i], p.tensor.size, lr, this.beta1, this.beta2, this.eps, wd, this.stepCount, gradScale);
      p.tensor.version++; // derived copies (the bf16 weight) refresh once, at their next use
    });
  }

  zeroGrad(): void {
    for (const p of this.params) p.tensor.zeroGrad();
  }

  /** The live state (the arrays are the optimizer's own: copy them to keep a snapshot). */
  getState(): AdamWState {
    return { step: this.stepCount, m: this.m, v: this.v };
  }

  /**
   * Take over a saved state, matching moments to parameters by name. Every optimised parameter
   * needs both moments, of its size, and the state may hold no others: a state from a model
   * with other trainable parameters (a different head, adapter or set of frozen layers) is an
   * LlmError naming what is missing and what is extra. `source` names the state in messages.
   */
  setState(state: AdamWState, source = 'the optimizer state'): void {
    const missing = this.names.filter((n) => !state.m.has(n) || !state.v.has(n));
    const extra = [...new Set([...state.m.keys(), ...state.v.keys()])].filter((n) => !this.m.has(n));
    if (missing.length > 0 || extra.length > 0) {
      const parts: string[] = [];
      if (missing.length > 0) parts.push(`it has no moments for ${missing.length} trainable parameter${missing.length === 1 ? '' : 's'} of this model (${listNames(missing)})`);
      if (extra.length > 0) parts.push(`it has moments for ${extra.length} parameter${extra.length === 1 ? '' : 's'} this model does not train (${listNames(extra)})`);
      throw new LlmError(`${source} does not fit this model's trainable parameters: ${parts.join('; ')}. It was saved from a model with other trainable parameters; resume with the same model, heads, adapters and frozen parameters`);
    }
    for (const [i, name] of this.names.entries()) {
      const m = state.m.get(name)!;
      const v = state.v.get(name)!;
      if (m.length !== this.mList[i].length || v.length !== this.vList[i].length) {
        throw new LlmError(`${source}: the moments of '${name}' hold ${m.length} and ${v.length} values, the parameter has ${this.mList[i].length}`);
      }
    }
    this.names.forEach((name, i) => {
      this.mList[i].set(state.m.get(name)!);
      this.vList[i].set(state.v.get(name)!);
    });
    this.stepCount = state.step;
  }
}

/** 'a', 'b', 'c' and 4 more */
function listNames(names: string[], shown = 4): string {
  const head = names.slice(0, shown).map((n) => `'${n}'`).join(', ');
  return names.length > shown ? `${head} and ${names.length - shown} more` : head;
}

/** Global L2 norm of all gradients (missing gradients count as zero). */
export function gradNorm(params: readonly Tensor[]): number {
  const be = backend();
  let ss = 0;
  for (const p of params) if (p.grad) ss += be.sumSquares(p.grad, p.size);
  return Math.sqrt(ss);
}

/**
 * The factor that brings a global gradient norm down to at most maxNorm, as
 * torch.nn.utils.clip_grad_norm_ computes it: maxNorm / (norm + 1e-6) when below 1, else 1.
 * `opt.step(lr, clipScale(gradNorm(params), maxNorm))` clips inside the update.
 */
export function clipScale(norm: number, maxNorm: number): number {
  const coef = maxNorm / (norm + 1e-6);
  return coef < 1 ? coef : 1;
}

/**
 * Scale all gradients so their global norm is at most maxNorm (as torch.nn.utils.clip_grad_norm_:
 * coefficient maxNorm / (norm + 1e-6), applied only when below 1). Returns the norm before clipping.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  const coef = clipScale(norm, maxNorm);
  if (coef < 1) {
    const be = backend();
    for (const p of params) if (p.grad) be.scale(coef, p.grad, p.grad, p.size);
  }
  return norm;
}
