/**
 * Mean loss over a number of random batches, without recording gradients.
 * The batches come from their own generator, seeded per call, so evaluating never changes
 * the training data order (and a resumed run sees the same batches).
 */
import { noGrad, withBufferScope } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import { Rng } from '../util/rng.js';
import { BatchSampler } from './text-dataset.js';

export function estimateLoss(
  model: Transformer, tokens: ArrayLike<number>, batches: number, batchSize: number, blockSize: number, seed: number,
): number {
  const sampler = new BatchSampler(tokens, blockSize, batchSize, new Rng(seed));
  model.eval();
  let total = 0;
  noGrad(() => {
    for (let i = 0; i < batches; i++) {
      const { x, y } = sampler.next();
      total += withBufferScope(() => model.loss(x, batchSize, blockSize, y).item());
    }
  });
  return total / batches;
}
