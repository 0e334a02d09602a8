/**
 * The pretraining objective: next-token prediction on random windows of a token stream (as
 * nanoGPT), evaluated as the mean loss over random train and validation batches.
 *
 *   const objective = new PretrainObjective(model.config, { train, val }, { batchSize: 12, blockSize: 64, seed: 1337 });
 *   const loop = new TrainingLoop(model, objective, options, { tokenizer });
 *   await loop.run();                // metrics.jsonl: { type: 'eval', step, trainLoss, valLoss, ... }
 *
 * Its only state is the loop's data rng (the window starts), so it has no state()/restore().
 * Evaluation batches come from generators seeded by (seed, step): evaluating never changes the
 * training batches, and a resumed run evaluates on the same ones.
 */
import type { Transformer } from '../model/transformer.js';
import type { ModelConfig } from '../model/config.js';
import { LlmError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { estimateLoss } from './evaluate.js';
import type { EvalContext, Objective, ObjectiveLoss } from './loop.js';
import { BatchSampler } from './text-dataset.js';

export interface PretrainData {
  train: ArrayLike<number>;
  val: ArrayLike<number>;
}

export interface PretrainOptions {
  batchSize: number;
  /** tokens per sequence (at most the model's context) */
  blockSize: number;
  /** seeds the evaluation batches (with the step) */
  seed: number;
}

/** One micro-batch: (batchSize, blockSize) inputs and their next tokens, row-major. */
export interface TokenBatch {
  x: Int32Array;
  y: Int32Array;
}

/** What a pretraining evaluation reports. */
export type PretrainEval = { trainLoss: number; valLoss: number };

export class PretrainObjective implements Objective<TokenBatch, PretrainEval> {
  readonly name = 'pretrain';
  private readonly sampler: BatchSampler;

  constructor(config: ModelConfig, readonly data: PretrainData, readonly opts: PretrainOptions) {
    if (opts.blockSize > config.blockSize) {
      throw new LlmError(`--block-size ${opts.blockSize} exceeds the model's context length ${config.blockSize}`);
    }
    this.sampler = new BatchSampler(data.train, opts.blockSize, opts.batchSize);
    new BatchSampler(data.val, opts.blockSize, 1); // validates the val split's length up front
  }

  nextBatch(rng: Rng): TokenBatch {
    return this.sampler.next(rng);
  }

  loss(model: Transformer, { x, y }: TokenBatch): ObjectiveLoss {
    const { batchSize: B, blockSize: T } = this.opts;
    return { loss: model.loss(x, B, T, y), tokens: B * T };
  }

  evaluate(model: Transformer, { step, iters }: EvalContext): PretrainEval {
    const { batchSize: B, blockSize: T, seed } = this.opts;
    const trainLoss = estimateLoss(model, this.data.train, iters, B, T, seed * 1000003 + step);
    return { trainLoss, valLoss: this.validationLoss(model, step, iters) };
  }

  /** Mean validation loss over `iters` random batches (deterministic for a given step). */
  validationLoss(model: Transformer, step: number, iters: number): number {
    const { batchSize: B, blockSize: T, seed } = this.opts;
    return estimateLoss(model, this.data.val, iters, B, T, seed * 1000003 + step + 1);
  }
}
