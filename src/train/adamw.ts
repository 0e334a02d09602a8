/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), PyTorch semantics, and
 * global-norm gradient clipping. The moments are Float32Arrays owned by the optimizer and
 * saved in checkpoints.
 *
 *   const opt = new AdamW(model.parameters().map((t, i) => ({ tensor: t, decay: specs[i].decay })), { weightDecay: 0.1 });
 *   clipGradNorm(model.parameters(), 1.0);
 *   opt.step(lr);
 */
import { backend } from '../backend/index.js';
import type { Tensor } from '../tensor/index.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** applied to parameters with decay = true only */
  weightDecay?: number;
}

export interface OptimizerParam {
  tensor: Tensor;
  decay: boolean;
}

export interface AdamWState {
  step: number;
  m: Float32Array[];
  v: Float32Array[];
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** number of updates done so far */
  stepCount = 0;
  readonly m: Float32Array[];
  readonly v: Float32Array[];

  constructor(readonly params: OptimizerParam[], opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.m = params.map((p) => new Float32Array(p.tensor.size));
    this.v = params.map((p) => new Float32Array(p.tensor.size));
  }

  /** One update with learning rate lr; parameters without a gradient are skipped. */
  step(lr: number): void {
    this.stepCount++;
    const be = backend();
    this.params.forEach((p, i) => {
      const g = p.tensor.grad;
      if (!g) return;
      const wd = p.decay ? this.weightDecay : 0;
      be.adamw(p.tensor.data, g, this.m[i], this.v[i], p.tensor.size, lr, this.beta1, this.beta2, this.eps, wd, this.stepCount);
    });
  }

  zeroGrad(): void {
    for (const p of this.params) p.tensor.zeroGrad();
  }

  getState(): AdamWState {
    return { step: this.stepCount, m: this.m, v: this.v };
  }

  setState(state: AdamWState): void {
    if (state.m.length !== this.m.length || state.v.length !== this.v.length) {
      throw new Error(`optimizer state has ${state.m.length} moments for ${this.m.length} parameters`);
    }
    state.m.forEach((m, i) => this.m[i].set(m));
    state.v.forEach((v, i) => this.v[i].set(v));
    this.stepCount = state.step;
  }
}

/** Global L2 norm of all gradients (missing gradients count as zero). */
export function gradNorm(params: Tensor[]): number {
  const be = backend();
  let ss = 0;
  for (const p of params) if (p.grad) ss += be.sumSquares(p.grad, p.size);
  return Math.sqrt(ss);
}

/**
 * Scale all gradients so their global norm is at most maxNorm (as torch.nn.utils.clip_grad_norm_:
 * coefficient maxNorm / (norm + 1e-6), applied only when below 1). Returns the norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    const be = backend();
    for (const p of params) if (p.grad) be.scale(coef, p.grad, p.grad, p.size);
  }
  return norm;
}
