/**
 * GPT-2 style initialisation: N(0, 0.02) for weights and embeddings, residual output
 * projections N(0, 0.02/sqrt(2*nLayer)), biases 0, norm gains 1.
 */
import { Tensor } from '../tensor/index.js';
import type { Rng } from '../util/rng.js';
import type { ModelConfig } from './config.js';
import { parameterSpecs } from './parameters.js';

export const INIT_STD = 0.02;

export function initParameters(cfg: ModelConfig, rng: Rng): Map<string, Tensor> {
  const params = new Map<string, Tensor>();
  const residualStd = INIT_STD / Math.sqrt(2 * cfg.nLayer);
  for (const spec of parameterSpecs(cfg)) {
    let t: Tensor;
    switch (spec.init) {
      case 'normal': t = Tensor.randn(spec.shape, rng, INIT_STD, true); break;
      case 'residual': t = Tensor.randn(spec.shape, rng, residualStd, true); break;
      case 'zeros': t = Tensor.zeros(spec.shape, true); break;
      case 'ones': t = Tensor.full(spec.shape, 1, true); break;
    }
    t.name = spec.name;
    params.set(spec.name, t);
  }
  return params;
}
