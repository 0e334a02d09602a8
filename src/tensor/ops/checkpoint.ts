/**
 * Activation checkpointing ("gradient checkpointing", Chen et al. 2016): y = fn(x), keeping only x
 * and y for the backward pass.
 *
 *   forward   fn runs without autograd in a stage scope: its activations go back to the buffer pool
 *             as soon as it returns, only y stays.
 *   backward  fn runs again from x with autograd on, in a buffer scope of its own, and y's gradient
 *             is back-propagated through that copy: x's gradient and those of `params` (the
 *             trainable tensors fn reads) accumulate as usual, then the copy's buffers return to the
 *             pool for the next block.
 *
 * A stack of checkpointed blocks thus holds one block's activations at a time instead of all of
 * them, for one more forward pass of compute (QLoRA trains this way). `replay` is state fn draws
 * from (the dropout rng): saved before the forward and restored for the recomputation, so it draws
 * the same masks and the results and gradients equal fn's without checkpointing, bit for bit.
 *
 *   for (const block of blocks) x = checkpoint((h) => block.forward(h), x, blockParams, rngReplay);
 */
import { noGrad, record, Tensor, isGradEnabled } from '../tensor.js';
import { withBufferScope, withStageScope } from '../storage.js';
import { matmulDtype, withMatmulDtype } from '../precision.js';

/** State fn reads that must be the same when it runs again (e.g. an Rng's). */
export interface Replay {
  save(): unknown;
  restore(state: unknown): void;
}

export function checkpoint(fn: (x: Tensor) => Tensor, x: Tensor, params: readonly Tensor[], replay?: Replay): Tensor {
  if (!isGradEnabled()) return fn(x);
  const state = replay?.save();
  const dtype = matmulDtype(); // the recomputation multiplies as the forward pass did
  const y = noGrad(() => withStageScope(() => fn(x), (t) => t.data));
  return record(y, [x, ...params], () => {
    if (!isGradEnabled()) throw new Error('checkpoint: backward() ran without autograd, so the block cannot be recomputed');
    const dy = y.grad!;
    const gx = x.requiresGrad ? x.ensureGrad() : null; // in the enclosing scope: it outlives the recomputation
    withBufferScope(() => {
      const now = replay?.save();
      replay?.restore(state);
      try {
        const xr = new Tensor(x.data, x.shape, x.requiresGrad);
        if (gx) xr.grad = gx; // the recomputation adds straight into x's gradient
        const yr = withMatmulDtype(dtype, () => fn(xr));
        if (yr.requiresGrad) yr.backward(dy);
      } finally {
        if (replay) replay.restore(now);
      }
    });
  });
}
