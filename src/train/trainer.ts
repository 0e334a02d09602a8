/**
 * The pretraining loop: next-token prediction with AdamW, warmup + cosine schedule,
 * gradient accumulation and clipping, periodic evaluation, atomic checkpoints and exact resume.
 *
 * Everything that influences the sequence of losses is in the checkpoint: parameters,
 * optimizer moments and step, the data sampler's RNG and the dropout RNG. Evaluation draws
 * its batches from a generator seeded by (seed, step), so it never disturbs training.
 */
import { join } from 'node:path';
import { existsSync, writeFileSync } from 'node:fs';
import { scale, withBufferScope } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { checkMappedFiles } from '../formats/file-source.js';
import { LlmError } from '../util/errors.js';
import { Rng, type RngState } from '../util/rng.js';
import { AdamW, clipGradNorm } from './adamw.js';
import { saveCheckpoint, type CheckpointData } from './checkpoint.js';
import { estimateLoss } from './evaluate.js';
import { lrAt } from './schedule.js';
import { BatchSampler } from './text-dataset.js';
import { MetricsLog, readMetrics } from './metrics-log.js';
import { writeLossCurve } from './loss-curve.js';

export interface TrainOptions {
  maxIters: number;
  batchSize: number;
  blockSize: number;
  /** micro-batches per optimizer step */
  gradAccum: number;
  lr: number;
  minLr: number;
  warmupIters: number;
  /** cosine decay reaches minLr here (usually maxIters); 0 keeps lr constant */
  decayIters: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** global gradient-norm clip; 0 disables */
  gradClip: number;
  /** evaluate and checkpoint every this many steps */
  evalInterval: number;
  /** batches per evaluation */
  evalIters: number;
  seed: number;
  outDir: string;
}

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = {
  maxIters: 2000, batchSize: 12, blockSize: 64, gradAccum: 1,
  lr: 1e-3, minLr: 1e-4, warmupIters: 100, decayIters: 2000,
  weightDecay: 0.1, beta1: 0.9, beta2: 0.99, gradClip: 1.0,
  evalInterval: 250, evalIters: 20, seed: 1337, outDir: 'out',
};

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
}

export interface EvalRecord {
  step: number;
  trainLoss: number;
  valLoss: number;
}

export interface TrainHooks {
  onStep?: (r: StepRecord) => void;
  onEval?: (r: EvalRecord) => void;
  /** polled after every step: true stops the run cleanly (checkpoint written) */
  shouldStop?: () => boolean;
}

export interface TrainResult {
  step: number;
  interrupted: boolean;
  losses: number[];
  lastEval: EvalRecord | null;
  checkpointPath: string;
  tokensPerSec: number;
}

interface TrainerState {
  step: number;
  dataRng: RngState;
  dropoutRng: RngState;
  options: TrainOptions;
}

export class Trainer {
  readonly optimizer: AdamW;
  readonly checkpointPath: string;
  readonly metricsPath: string;
  step = 0;
  private readonly dataRng: Rng;
  private readonly dropoutRng: Rng;
  private readonly sampler: BatchSampler;
  private lastCheckpointStep = -1;

  constructor(
    readonly model: Transformer,
    readonly tokenizer: Tokenizer,
    readonly data: { train: ArrayLike<number>; val: ArrayLike<number> },
    readonly opts: TrainOptions,
    resume?: CheckpointData,
  ) {
    if (opts.blockSize > model.config.blockSize) {
      throw new LlmError(`--block-size ${opts.blockSize} exceeds the model's context length ${model.config.blockSize}`);
    }
    this.checkpointPath = join(opts.outDir, 'ckpt.safetensors');
    this.metricsPath = join(opts.outDir, 'metrics.jsonl');
    this.optimizer = new AdamW(
      model.parameters().map((tensor, i) => ({ tensor, decay: model.specs[i].decay })),
      { beta1: opts.beta1, beta2: opts.beta2, weightDecay: opts.weightDecay },
    );
    this.dataRng = new Rng(opts.seed);
    this.dropoutRng = new Rng(opts.seed + 1);
    if (resume) this.restore(resume);
    this.sampler = new BatchSampler(data.train, opts.blockSize, opts.batchSize, this.dataRng);
    new BatchSampler(data.val, opts.blockSize, 1, new Rng(0)); // validates the val split's length up front
  }

  private restore(ck: CheckpointData): void {
    const state = ck.trainer as unknown as TrainerState;
    if (!ck.optimizer || typeof state.step !== 'number' || !state.dataRng || !state.dropoutRng) {
      throw new LlmError('checkpoint has no training state to resume from (it is an export, not a training checkpoint)');
    }
    this.optimizer.setState(ck.optimizer);
    this.step = state.step;
    this.dataRng.setState(state.dataRng);
    this.dropoutRng.setState(state.dropoutRng);
    this.lastCheckpointStep = state.step;
  }

  /** Run until opts.maxIters (or until hooks.shouldStop); yields to the event loop every step. */
  async run(hooks: TrainHooks = {}): Promise<TrainResult> {
    const o = this.opts;
    const log = new MetricsLog(this.metricsPath);
    this.truncateMetricsAfter(this.step);
    const tokensPerStep = o.batchSize * o.blockSize * o.gradAccum;
    const losses: number[] = [];
    let lastEval: EvalRecord | null = null;
    let interrupted = false;
    let tokensPerSec = 0;
    let timedSteps = 0;
    let timedSeconds = 0;
    this.model.train(this.dropoutRng);
    try {
      while (this.step < o.maxIters) {
        const t0 = performance.now();
        const lr = lrAt(this.step, { lr: o.lr, minLr: o.minLr, warmupIters: o.warmupIters, decayIters: o.decayIters });
        // one buffer scope per step: activations and intermediate gradients are recycled
        const { loss, gradNorm } = withBufferScope(() => this.trainStep(lr));
        checkMappedFiles(); // weights loaded from a mapped checkpoint that was truncated meanwhile
        this.step++;
        const seconds = (performance.now() - t0) / 1000;
        if (this.step > 1) {
          timedSteps++;
          timedSeconds += seconds;
        }
        tokensPerSec = timedSteps > 0 ? (tokensPerStep * timedSteps) / timedSeconds : tokensPerStep / seconds;
        losses.push(loss);
        const record: StepRecord = { step: this.step, loss, lr, gradNorm, tokensPerSec };
        log.append({ type: 'train', ...record, rss: process.memoryUsage.rss(), time: Date.now() });
        hooks.onStep?.(record);

        const stop = hooks.shouldStop?.() ?? false;
        if (this.step % o.evalInterval === 0 || this.step === o.maxIters) {
          lastEval = this.evaluate(o.evalIters);
          log.append({ type: 'eval', ...lastEval, time: Date.now() });
          hooks.onEval?.(lastEval);
          this.model.train(this.dropoutRng);
          this.saveCheckpoint();
        }
        if (stop) {
          interrupted = this.step < o.maxIters;
          break;
        }
        await new Promise<void>((resolve) => setImmediate(resolve)); // let signals (Ctrl-C) in
      }
    } finally {
      log.close();
    }
    if (this.lastCheckpointStep !== this.step) this.saveCheckpoint();
    this.model.eval();
    writeLossCurve(this.metricsPath, join(o.outDir, 'loss.svg'), { title: `${this.model.config.family} training loss` });
    return { step: this.step, interrupted, losses, lastEval, checkpointPath: this.checkpointPath, tokensPerSec };
  }

  /** Forward, backward (with accumulation), clip and update; returns the mean loss. */
  private trainStep(lr: number): { loss: number; gradNorm: number } {
    const o = this.opts;
    this.optimizer.zeroGrad();
    let loss = 0;
    for (let micro = 0; micro < o.gradAccum; micro++) {
      const { x, y } = this.sampler.next();
      const out = this.model.forward(x, o.batchSize, o.blockSize, y).loss!;
      const value = out.item();
      if (!Number.isFinite(value)) this.failNonFinite(value);
      loss += value / o.gradAccum;
      (o.gradAccum > 1 ? scale(out, 1 / o.gradAccum) : out).backward();
    }
    const gradNorm = o.gradClip > 0 ? clipGradNorm(this.model.parameters(), o.gradClip) : 0;
    if (!Number.isFinite(gradNorm)) this.failNonFinite(gradNorm, 'gradient norm');
    this.optimizer.step(lr);
    return { loss, gradNorm };
  }

  /** Mean train and val loss over `batches` random batches each. */
  evaluate(batches: number): EvalRecord {
    const o = this.opts;
    const seed = o.seed * 1000003 + this.step;
    const trainLoss = estimateLoss(this.model, this.data.train, batches, o.batchSize, o.blockSize, seed);
    return { step: this.step, trainLoss, valLoss: this.validationLoss(batches) };
  }

  /** Mean validation loss over `batches` random batches (deterministic for a given step). */
  validationLoss(batches: number): number {
    const o = this.opts;
    return estimateLoss(this.model, this.data.val, batches, o.batchSize, o.blockSize, o.seed * 1000003 + this.step + 1);
  }

  saveCheckpoint(): void {
    const state: TrainerState = {
      step: this.step,
      dataRng: this.dataRng.getState(),
      dropoutRng: this.dropoutRng.getState(),
      options: this.opts,
    };
    saveCheckpoint(this.checkpointPath, {
      config: this.model.config,
      params: this.model.params,
      tokenizer: this.tokenizer.toJSON(),
      trainer: state as unknown as Record<string, unknown>,
      optimizer: {
        ...this.optimizer.getState(),
        hyper: { beta1: this.optimizer.beta1, beta2: this.optimizer.beta2, eps: this.optimizer.eps, weightDecay: this.optimizer.weightDecay },
      },
    });
    this.lastCheckpointStep = this.step;
  }

  private failNonFinite(value: number, what = 'loss'): never {
    const kept = this.lastCheckpointStep >= 0
      ? `the last good checkpoint (step ${this.lastCheckpointStep}) is kept at ${this.checkpointPath}`
      : 'no checkpoint had been written yet';
    throw new LlmError(
      `${what} became ${value} at step ${this.step + 1}; training stopped and ${kept}. Try a lower --lr or check the data.`,
    );
  }

  /** On resume, drop metric records from steps after the checkpoint (they will be redone). */
  private truncateMetricsAfter(step: number): void {
    if (!existsSync(this.metricsPath)) return;
    const kept = readMetrics(this.metricsPath).filter((r) => typeof r.step !== 'number' || r.step <= step);
    writeFileSync(this.metricsPath, kept.map((r) => JSON.stringify(r) + '\n').join(''));
  }
}
