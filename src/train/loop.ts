/**
 * One training loop, many objectives. The loop owns the mechanics every training stage shares
 * -- warmup + cosine learning rate, gradient accumulation, global-norm clipping over the
 * trainable parameters, the NaN/inf policy, evaluation cadence, metrics.jsonl, atomic
 * checkpoints, exact resume and a clean stop (Ctrl-C) -- and asks an Objective for the rest:
 * where batches come from and what the loss is. Pretraining is one objective (pretrain.ts);
 * SFT, reward modelling, DPO and PPO plug in the same way (as TRL's trainers share one loop).
 *
 *   const objective: Objective<Batch> = {
 *     name: 'sft',
 *     nextBatch: (rng) => sampleConversations(rng),
 *     weight: (b) => b.targetTokens,                       // accumulation averages over tokens
 *     loss: (model, b) => ({ loss: model.forward(b.x, b.B, b.T, b.y).loss!, tokens: b.B * b.T }),
 *     evaluate: (model, { step, iters }) => ({ valLoss: heldOutLoss(model, iters) }),
 *   };
 *   const loop = new TrainingLoop(model, objective, { ...DEFAULT_LOOP_OPTIONS, outDir: 'out/sft' }, { tokenizer });
 *   await loop.run({ shouldStop: () => interrupted });
 *
 * Everything that influences the sequence of losses is in the checkpoint: the parameters, the
 * optimizer's step and moments (by name, trainable parameters only), the data RNG handed to
 * nextBatch, the dropout RNG, and the objective's own state (state/restore). An objective
 * draws its training randomness only from the rng it is given, and evaluates from generators
 * of its own (seeded by the step), so evaluating never changes the training batches.
 *
 * metrics.jsonl gets one line per step, `{ type: 'train', step, loss, lr, gradNorm,
 * tokensPerSec, ...objective metrics, rss, time }`, and one per evaluation, `{ type: 'eval',
 * step, ...evaluate() }`; loss.svg draws `loss` and any `valLoss`.
 */
import type { NamedParameter } from '../model/parameters.js';
import { join } from 'node:path';
import { existsSync, writeFileSync } from 'node:fs';
import { MATMUL_DTYPES, noGrad, scale, withBufferScope, withMatmulDtype, type MatmulDtype, type Tensor } from '../tensor/index.js';
import { bf16Available } from '../tensor/ops/bf16-gemm.js';
import type { Transformer } from '../model/transformer.js';
import { checkMappedFiles } from '../formats/file-source.js';
import { saveCheckpoint, type CheckpointData } from '../formats/checkpoint.js';
import { LlmError } from '../util/errors.js';
import { Rng, type RngState } from '../util/rng.js';
import { AdamW, clipScale, gradNorm as globalGradNorm } from './adamw.js';
import { lrAt } from './schedule.js';
import { MetricsLog, readMetrics } from './metrics-log.js';
import { writeLossCurve } from './loss-curve.js';

// ---- objectives --------------------------------------------------------------------------------

/** What an objective's loss() returns for one micro-batch. */
export interface ObjectiveLoss {
  /** scalar to minimise: the mean over the micro-batch's items (tokens, pairs...) */
  loss: Tensor;
  /** extra numbers to log with the step (e.g. `rewards/accuracies`), averaged over the micro-batches like the loss */
  metrics?: Record<string, number>;
  /** tokens this micro-batch ran through the model (for tokens/s; default 0) */
  tokens?: number;
}

/** What an evaluation is told: the step just completed and the batches per evaluation (LoopOptions.evalIters). */
export interface EvalContext {
  step: number;
  iters: number;
}

/**
 * A training objective: a source of micro-batches and a loss over them. B is the objective's
 * own batch type; the loop never looks inside it.
 */
export interface Objective<B, E extends Record<string, number> = Record<string, number>> {
  /** 'pretrain', 'sft', 'reward', 'dpo'...; saved in checkpoints, a resume with another objective is refused */
  readonly name: string;
  /** The next training micro-batch. Draw randomness from `rng` only: the loop saves and restores it. */
  nextBatch(rng: Rng): B;
  /**
   * The items a micro-batch's mean loss is over (its unmasked target tokens, its pairs). The
   * micro-batches of a step are averaged with these weights, so accumulating equals one big
   * batch even when micro-batches differ in size (TRL's num_items_in_batch). A weight of 0
   * skips the micro-batch. Without weight(), every micro-batch counts the same.
   */
  weight?(batch: B): number;
  /**
   * Work before each step that may be asynchronous and produces the data nextBatch will draw:
   * PPO's rollouts (generate with the current policy, score with a reward model or a JavaScript
   * reward). Runs in eval mode; draw randomness from `rng` only. The numbers it returns are logged
   * with the step.
   */
  prepare?(model: Transformer, rng: Rng, step: number): Promise<Record<string, number> | void>;
  /** Forward pass and loss of one micro-batch, with autograd on (the loop calls backward). */
  loss(model: Transformer, batch: B): ObjectiveLoss;
  /**
   * Numbers to log at each evaluation, e.g. { trainLoss, valLoss } (valLoss is drawn on loss.svg).
   * Runs in eval mode without autograd; use generators seeded by ctx.step, not the training rng.
   */
  evaluate?(model: Transformer, ctx: EvalContext): E;
  /** State beyond the data rng needed for exact resume (an epoch position...), as JSON. */
  state?(): unknown;
  /** Take back what state() returned (undefined when the checkpoint holds none). */
  restore?(state: unknown): void;
}

// ---- parameters ---------------------------------------------------------------------------------

export type { NamedParameter } from '../model/parameters.js';

/** The model's parameters (base in spec order, then registered heads/adapters); refuses a quantized base that is not frozen. */
export function namedParameters(model: Transformer): NamedParameter[] {
  model.parameters(); // refuses a model with quantized weights whose base is not frozen, with its own message
  return model.namedParameters();
}

// ---- the loop -----------------------------------------------------------------------------------

export interface LoopOptions {
  maxIters: number;
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
  /** global gradient-norm clip over the trainable parameters; 0 disables (and gradNorm is logged as 0) */
  gradClip: number;
  /** evaluate and checkpoint every this many steps (and at maxIters) */
  evalInterval: number;
  /** batches per evaluation (passed to Objective.evaluate) */
  evalIters: number;
  /** seeds the data rng (seed) and the dropout rng (seed + 1) */
  seed: number;
  /** run directory: ckpt.safetensors, metrics.jsonl, loss.svg */
  outDir: string;
  /**
   * 'bf16': the linear layers multiply bf16 operands with float32 sums in training steps and
   * evaluations (tensor/precision.ts); weights, optimizer state and loss stay float32. On a CPU
   * without AVX512-BF16 or AMX (and without LLMTS_BF16=portable) the run is float32 (said once).
   * Default 'float32'.
   */
  dtype?: MatmulDtype;
}

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  /** the objective's metrics for this step, when it reports any */
  metrics?: Record<string, number>;
}

/** An evaluation: the step and whatever Objective.evaluate returned. */
export type EvalRecord<E = Record<string, number>> = { step: number } & E;

export interface TrainHooks<E = EvalRecord> {
  onStep?: (r: StepRecord) => void;
  onEval?: (r: E) => void;
  /** polled after every step: true stops the run cleanly (checkpoint written) */
  shouldStop?: () => boolean;
}

export interface TrainResult<E = EvalRecord> {
  step: number;
  interrupted: boolean;
  losses: number[];
  lastEval: E | null;
  checkpointPath: string;
  tokensPerSec: number;
}

export interface LoopSetup {
  /** saved in every checkpoint, so the run can be sampled and resumed */
  tokenizer: { toJSON(): unknown };
  /** a checkpoint of this run to continue from (loadCheckpoint) */
  resume?: CheckpointData;
  /** title of loss.svg (default '<family> <objective> loss') */
  curveTitle?: string;
  /** the model's own chat template (Jinja source), saved in every checkpoint */
  chatTemplate?: string;
}

/** The 'trainer' metadata of a checkpoint. */
interface LoopState {
  step: number;
  dataRng: RngState;
  dropoutRng: RngState;
  /** the options the run was started with (the CLI resumes from them) */
  options: unknown;
  /** absent in checkpoints written before objectives existed: those are 'pretrain' */
  objective?: string;
  objectiveState?: unknown;
  /** the products' dtype the run computed in (absent: float32) */
  dtype?: MatmulDtype;
}

/** Keys of a metrics line the loop writes itself. */
const RESERVED_METRICS = new Set(['type', 'step', 'loss', 'lr', 'gradNorm', 'tokensPerSec', 'dtype', 'rss', 'time']);

export class TrainingLoop<B, O extends LoopOptions = LoopOptions, E extends Record<string, number> = Record<string, number>> {
  readonly optimizer: AdamW;
  readonly checkpointPath: string;
  readonly metricsPath: string;
  /** optimizer steps done */
  step = 0;
  /** every parameter the model reports (all are checkpointed) */
  readonly parameters: NamedParameter[];
  /** the tensors the optimizer updates and clipping covers */
  readonly trainable: Tensor[];
  readonly dataRng: Rng;
  readonly dropoutRng: Rng;
  /** the dtype the products compute in: opts.dtype, or float32 where bf16 is asked for but this CPU lacks it */
  readonly dtype: MatmulDtype;
  private readonly tokenizer: { toJSON(): unknown };
  private readonly curveTitle: string;
  private readonly chatTemplate: string | undefined;
  private lastCheckpointStep = -1;

  constructor(readonly model: Transformer, readonly objective: Objective<B, E>, readonly opts: O, setup: LoopSetup) {
    this.checkpointPath = join(opts.outDir, 'ckpt.safetensors');
    this.metricsPath = join(opts.outDir, 'metrics.jsonl');
    this.tokenizer = setup.tokenizer;
    this.curveTitle = setup.curveTitle ?? `${model.config.family} ${objective.name} loss`;
    this.chatTemplate = setup.chatTemplate;
    this.parameters = namedParameters(model);
    const trainable = this.parameters.filter((p) => p.trainable);
    if (trainable.length === 0) throw new LlmError('nothing to train: every parameter of the model is frozen');
    this.trainable = trainable.map((p) => p.tensor);
    this.optimizer = new AdamW(
      trainable.map((p) => ({ name: p.name, tensor: p.tensor, decay: p.decay })),
      { beta1: opts.beta1, beta2: opts.beta2, weightDecay: opts.weightDecay },
    );
    this.dataRng = new Rng(opts.seed);
    this.dropoutRng = new Rng(opts.seed + 1);
    const asked = opts.dtype ?? 'float32';
    if (!MATMUL_DTYPES.includes(asked)) throw new LlmError(`dtype '${String(asked)}' is not one of ${MATMUL_DTYPES.join(', ')}`);
    this.dtype = asked === 'bf16' && bf16Available() ? 'bf16' : 'float32';
    if (setup.resume) this.restore(setup.resume);
  }

  private restore(ck: CheckpointData): void {
    const state = ck.trainer as unknown as Partial<LoopState>;
    if (!ck.optimizer || typeof state.step !== 'number' || !state.dataRng || !state.dropoutRng) {
      throw new LlmError('checkpoint has no training state to resume from (it is an export, not a training checkpoint)');
    }
    const saved = typeof state.objective === 'string' ? state.objective : 'pretrain';
    if (saved !== this.objective.name) {
      throw new LlmError(`the checkpoint is from a '${saved}' run and cannot resume as '${this.objective.name}'; start the '${this.objective.name}' run from its weights instead`);
    }
    const savedDtype = state.dtype ?? 'float32';
    const savedAsked = (state.options as Partial<LoopOptions> | undefined)?.dtype ?? 'float32';
    const asked = this.opts.dtype ?? 'float32';
    if (savedAsked !== asked || savedDtype !== this.dtype) {
      const here = asked === this.dtype ? asked : `${asked}, which computes in ${this.dtype} here`;
      const there = savedAsked === savedDtype ? savedDtype : `${savedAsked}, computed in ${savedDtype}`;
      throw new LlmError(`the checkpoint's run was trained with dtype ${there}; a resumed run keeps its dtype, and this one asks for ${here}. Resume with the run's own dtype (on a CPU that gives it), or start a new run from its weights`);
    }
    this.optimizer.setState(ck.optimizer, "the checkpoint's optimizer state");
    this.step = state.step;
    this.dataRng.setState(state.dataRng);
    this.dropoutRng.setState(state.dropoutRng);
    this.objective.restore?.(state.objectiveState);
    this.lastCheckpointStep = state.step;
  }

  /** Run until opts.maxIters (or until hooks.shouldStop); yields to the event loop every step. */
  async run(hooks: TrainHooks<EvalRecord<E>> = {}): Promise<TrainResult<EvalRecord<E>>> {
    const o = this.opts;
    const log = new MetricsLog(this.metricsPath);
    this.truncateMetricsAfter(this.step);
    const losses: number[] = [];
    let lastEval: EvalRecord<E> | null = null;
    let interrupted = false;
    let tokensPerSec = 0;
    let timedTokens = 0;
    let timedSeconds = 0;
    this.model.train(this.dropoutRng);
    try {
      while (this.step < o.maxIters) {
        const t0 = performance.now();
        let prepared: Record<string, number> | void = undefined;
        if (this.objective.prepare) {
          this.model.eval();
          prepared = await this.objective.prepare(this.model, this.dataRng, this.step);
          this.model.train(this.dropoutRng);
        }
        const lr = lrAt(this.step, { lr: o.lr, minLr: o.minLr, warmupIters: o.warmupIters, decayIters: o.decayIters });
        // one buffer scope per step: activations and intermediate gradients are recycled
        const stepped = withBufferScope(() => withMatmulDtype(this.dtype, () => this.trainStep(lr)));
        const { loss, gradNorm, tokens } = stepped;
        const metrics = prepared ? { ...prepared, ...stepped.metrics } : stepped.metrics;
        checkMappedFiles(); // weights loaded from a mapped checkpoint that was truncated meanwhile
        this.step++;
        const seconds = (performance.now() - t0) / 1000;
        if (this.step > 1) { // the first step (allocation, warm-up) is not timed
          timedTokens += tokens;
          timedSeconds += seconds;
        }
        tokensPerSec = timedSeconds > 0 ? timedTokens / timedSeconds : tokens / seconds;
        losses.push(loss);
        const record: StepRecord = { step: this.step, loss, lr, gradNorm, tokensPerSec };
        if (metrics) record.metrics = metrics;
        const dtype = this.dtype === 'bf16' ? { dtype: this.dtype } : {}; // float32 lines stay as they were
        log.append({ type: 'train', step: this.step, loss, lr, gradNorm, tokensPerSec, ...dtype, ...metrics, rss: process.memoryUsage.rss(), time: Date.now() });
        hooks.onStep?.(record);

        const stop = hooks.shouldStop?.() ?? false;
        if (this.step % o.evalInterval === 0 || this.step === o.maxIters) {
          lastEval = this.evaluate(o.evalIters);
          if (lastEval) {
            log.append({ type: 'eval', ...lastEval, time: Date.now() });
            hooks.onEval?.(lastEval);
          }
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
    writeLossCurve(this.metricsPath, join(o.outDir, 'loss.svg'), { title: this.curveTitle });
    return { step: this.step, interrupted, losses, lastEval, checkpointPath: this.checkpointPath, tokensPerSec };
  }

  /**
   * Draw the step's micro-batches, then forward and backward each with its share of the step's
   * weight, clip and update. Returns the weighted mean loss and metrics.
   */
  private trainStep(lr: number): { loss: number; gradNorm: number; tokens: number; metrics: Record<string, number> | null } {
    const o = this.opts;
    const obj = this.objective;
    this.optimizer.zeroGrad();
    const batches: B[] = [];
    for (let micro = 0; micro < o.gradAccum; micro++) batches.push(obj.nextBatch(this.dataRng));
    const weights = batches.map((b) => (obj.weight ? obj.weight(b) : 1));
    let total = 0;
    for (const w of weights) {
      if (!(w >= 0) || !Number.isFinite(w)) throw new LlmError(`objective '${obj.name}': a micro-batch weight of ${w} at step ${this.step + 1}; weights count items and must be finite and >= 0`);
      total += w;
    }
    if (total === 0) throw new LlmError(`objective '${obj.name}': the micro-batches of step ${this.step + 1} hold nothing to learn from (their weights sum to 0)`);
    let loss = 0;
    let tokens = 0;
    let metrics: Record<string, number> | null = null;
    for (let i = 0; i < batches.length; i++) {
      const w = weights[i];
      if (w === 0) continue;
      const out = obj.loss(this.model, batches[i]);
      const value = out.loss.item();
      if (!Number.isFinite(value)) this.failNonFinite(value);
      loss += (value * w) / total; // w = 1, total = gradAccum: value / gradAccum
      const share = w / total;
      (share === 1 ? out.loss : scale(out.loss, share)).backward();
      tokens += out.tokens ?? 0;
      if (out.metrics) {
        metrics ??= {};
        for (const [k, v] of Object.entries(out.metrics)) {
          if (RESERVED_METRICS.has(k)) throw new LlmError(`objective '${obj.name}': metric name '${k}' is taken by the loop's own record; rename it`);
          metrics[k] = (metrics[k] ?? 0) + (v * w) / total;
        }
      }
    }
    // clipping is folded into the update: the optimizer reads the gradients times the clip factor
    const gradNorm = o.gradClip > 0 ? globalGradNorm(this.trainable) : 0;
    if (!Number.isFinite(gradNorm)) this.failNonFinite(gradNorm, 'gradient norm');
    this.optimizer.step(lr, o.gradClip > 0 ? clipScale(gradNorm, o.gradClip) : 1);
    return { loss, gradNorm, tokens, metrics };
  }

  /** The objective's evaluation at the current step (eval mode, no autograd); null without one. */
  evaluate(iters: number): EvalRecord<E> | null {
    if (!this.objective.evaluate) return null;
    this.model.eval();
    const values = noGrad(() => withMatmulDtype(this.dtype, () => this.objective.evaluate!(this.model, { step: this.step, iters })));
    for (const k of Object.keys(values)) {
      if (k === 'step' || k === 'type' || k === 'time') throw new LlmError(`objective '${this.objective.name}': evaluation metric name '${k}' is taken by the loop's own record; rename it`);
    }
    return { step: this.step, ...values };
  }

  /** Write the checkpoint now (atomically): every parameter, the trainable ones' moments, and the loop's state. */
  saveCheckpoint(): void {
    const state: LoopState = {
      step: this.step,
      dataRng: this.dataRng.getState(),
      dropoutRng: this.dropoutRng.getState(),
      options: this.opts,
      objective: this.objective.name,
    };
    if (this.dtype !== 'float32') state.dtype = this.dtype;
    if (this.objective.state) state.objectiveState = this.objective.state();
    const o = this.optimizer;
    saveCheckpoint(this.checkpointPath, {
      config: this.model.config,
      params: new Map(this.parameters.map((p) => [p.name, p.tensor])),
      quantized: this.model.quantized.size > 0 ? this.model.quantized : undefined, // a frozen quantized base (QLoRA)
      tokenizer: this.tokenizer.toJSON(),
      trainer: state as unknown as Record<string, unknown>,
      optimizer: { ...o.getState(), hyper: { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay } },
      ...(this.chatTemplate !== undefined ? { chatTemplate: this.chatTemplate } : {}),
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
