/**
 * Embedding lookup: weight (V, C), ids (any shape, as Int32Array of n ids) -> (...idsShape, C).
 * Backward scatter-adds the output gradient into the rows that were read.
 */
import { backend } from '../../backend/index.js';
import { Tensor, record, shapeError } from '../tensor.js';

export function embedding(weight: Tensor, ids: Int32Array, idsShape: number[] = [ids.length]): Tensor {
  const [V, C] = weight.shape;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= V || !Number.isInteger(ids[i])) {
      shapeError('embedding', `token id ${ids[i]} at position ${i} is outside the vocabulary [0, ${V})`);
    }
  }
  const out = Tensor.empty([...idsShape, C]);
  const be = backend();
  be.embeddingForward(weight.data, ids, out.data, ids.length, C);
  return record(out, [weight], () => {
    be.embeddingBackward(out.grad!, ids, weight.ensureGrad(), ids.length, C);
  });
}
