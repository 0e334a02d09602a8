/**
 * Pretraining as one class: the shared TrainingLoop (loop.ts: AdamW, warmup + cosine schedule,
 * gradient accumulation and clipping, periodic evaluation, atomic checkpoints, exact resume)
 * running the pretraining objective (pretrain.ts: next-token prediction on random windows).
 *
 *   const trainer = new Trainer(model, tokenizer, { train, val }, { ...DEFAULT_TRAIN_OPTIONS, outDir: 'out/x' });
 *   const result = await trainer.run({ onStep: (r) => console.log(r.step, r.loss) });
 *   // resume: new Trainer(new Transformer(ck.config, ck.params), tokenizer, data, options, loadCheckpoint(path))
 */
import type { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { CheckpointData } from '../formats/checkpoint.js';
import type { AdamW } from './adamw.js';
import { withMatmulDtype } from '../tensor/index.js';
import { TrainingLoop, type LoopOptions, type TrainHooks as LoopHooks, type TrainResult as LoopResult } from './loop.js';
import { PretrainObjective, type PretrainData, type PretrainEval, type TokenBatch } from './pretrain.js';

export type { StepRecord } from './loop.js';

export interface TrainOptions extends LoopOptions {
  batchSize: number;
  blockSize: number;
}

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = {
  maxIters: 2000, batchSize: 12, blockSize: 64, gradAccum: 1,
  lr: 1e-3, minLr: 1e-4, warmupIters: 100, decayIters: 2000,
  weightDecay: 0.1, beta1: 0.9, beta2: 0.99, gradClip: 1.0,
  evalInterval: 250, evalIters: 20, seed: 1337, outDir: 'out',
};

export interface EvalRecord {
  step: number;
  trainLoss: number;
  valLoss: number;
}

export type TrainHooks = LoopHooks<EvalRecord>;
export type TrainResult = LoopResult<EvalRecord>;

export class Trainer {
  readonly loop: TrainingLoop<TokenBatch, TrainOptions, PretrainEval>;
  readonly objective: PretrainObjective;

  constructor(
    readonly model: Transformer,
    readonly tokenizer: Tokenizer,
    readonly data: PretrainData,
    readonly opts: TrainOptions,
    resume?: CheckpointData,
  ) {
    this.objective = new PretrainObjective(model.config, data, opts);
    this.loop = new TrainingLoop(model, this.objective, opts, { tokenizer, resume, curveTitle: `${model.config.family} training loss` });
  }

  get optimizer(): AdamW {
    return this.loop.optimizer;
  }

  get checkpointPath(): string {
    return this.loop.checkpointPath;
  }

  get metricsPath(): string {
    return this.loop.metricsPath;
  }

  /** optimizer steps done */
  get step(): number {
    return this.loop.step;
  }

  /** Run until opts.maxIters (or until hooks.shouldStop); yields to the event loop every step. */
  run(hooks: TrainHooks = {}): Promise<TrainResult> {
    return this.loop.run(hooks);
  }

  /** Mean train and val loss over `batches` random batches each (deterministic for a given step), in the run's dtype. */
  evaluate(batches: number): EvalRecord {
    return { step: this.step, ...withMatmulDtype(this.loop.dtype, () => this.objective.evaluate(this.model, { step: this.step, iters: batches })) };
  }

  /** Mean validation loss over `batches` random batches (deterministic for a given step), in the run's dtype. */
  validationLoss(batches: number): number {
    return withMatmulDtype(this.loop.dtype, () => this.objective.validationLoss(this.model, this.step, batches));
  }

  saveCheckpoint(): void {
    this.loop.saveCheckpoint();
  }
}
