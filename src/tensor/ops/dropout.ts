/**
 * Inverted dropout: during training each element is zeroed with probability p and the
 * survivors are scaled by 1/(1-p); at p = 0 or in evaluation the input passes through.
 */
import { allocFloats } from '../storage.js';
import { backend } from '../../backend/index.js';
import { Tensor, record } from '../tensor.js';
import type { Rng } from '../../util/rng.js';

export function dropout(x: Tensor, p: number, rng: Rng, training = true): Tensor {
  if (!training || p === 0) return x;
  if (p < 0 || p >= 1) throw new Error(`dropout: probability ${p} must be in [0, 1)`);
  const keep = 1 / (1 - p);
  const mask = allocFloats(x.size);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.uniform() < p ? 0 : keep;
  const be = backend();
  const out = Tensor.empty(x.shape);
  be.mul(x.data, mask, out.data, x.size);
  return record(out, [x], () => {
    const g = out.grad!;
    const gx = x.ensureGrad();
    for (let i = 0; i < g.length; i++) gx[i] += g[i] * mask[i];
  });
}
