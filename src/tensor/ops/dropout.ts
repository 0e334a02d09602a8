/**
 * Inverted dropout: during training each element is zeroed with probability p and the
 * survivors are scaled by 1/(1-p); at p = 0 or in evaluation the input passes through.
 * The mask comes from the backend (Backend.dropoutMask: a counter-based hash of a key and each
 * element's index); the key is two draws of the generator (nextU32), which continues after them.
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
  const be = backend();
  const key0 = rng.nextU32(), key1 = rng.nextU32();
  be.dropoutMask(mask, x.size, p, keep, key0, key1, 0); // mask[i] = hash(key, i) < p ? 0 : keep
  const out = Tensor.empty(x.shape);
  be.mul(x.data, mask, out.data, x.size);
  return record(out, [x], () => {
    const g = out.grad!;
    if (x.grad === null) {
      be.mul(g, mask, x.ensureGrad(), x.size); // a fresh gradient: written, not added to
      return;
    }
    const gx = x.grad;
    for (let i = 0; i < g.length; i++) gx[i] += g[i] * mask[i];
  });
}
