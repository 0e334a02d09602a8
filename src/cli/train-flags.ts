/**
 * The optimisation-loop flags of every training command (train now; sft, reward, dpo, ppo
 * next): one table with the trainer's defaults, and the code that turns them into TrainOptions.
 *
 *   const SPEC: CommandSpec = { ..., flags: [...trainLoopFlags({ maxIters: 500 })] };
 *   trainLoopOptions(parseCommandLine(SPEC, ['--lr', '3e-4']), 64, 'out/run').lr;   // 0.0003
 */
import { DEFAULT_TRAIN_OPTIONS as D, type TrainOptions } from '../train/trainer.js';
import { MATMUL_DTYPES, type MatmulDtype } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import type { FlagDef, Flags } from './flags.js';

/** The optimisation-loop flags of every training command (pretraining now; SFT, reward, DPO, PPO next). */
export function trainLoopFlags(d: Partial<TrainOptions> = {}): FlagDef[] {
  const o = { ...D, ...d };
  const group = 'Training loop';
  return [
    { name: 'max-iters', kind: 'integer', min: 1, default: o.maxIters, help: 'optimizer steps', group },
    { name: 'batch-size', short: 'b', kind: 'integer', min: 1, default: o.batchSize, help: 'sequences per micro-batch', group },
    { name: 'grad-accum', kind: 'integer', min: 1, default: o.gradAccum, help: 'micro-batches per optimizer step', group },
    { name: 'lr', kind: 'number', min: 0, default: o.lr, help: 'peak learning rate', group },
    { name: 'min-lr', kind: 'number', min: 0, defaultText: 'lr/10', help: 'final learning rate of the cosine decay', group },
    { name: 'warmup-iters', kind: 'integer', min: 0, defaultText: `${o.warmupIters}, at most max-iters/10`, help: 'linear warmup steps', group },
    { name: 'decay-iters', kind: 'integer', min: 0, defaultText: 'max-iters', help: 'steps of cosine decay; 0 = constant lr', group },
    { name: 'weight-decay', kind: 'number', min: 0, default: o.weightDecay, help: 'AdamW decoupled weight decay on matrix weights', group },
    { name: 'beta2', kind: 'number', min: 0, max: 0.999999, default: o.beta2, help: 'AdamW beta2', group },
    { name: 'grad-clip', kind: 'number', min: 0, default: o.gradClip, help: 'clip the global gradient norm; 0 = off', group },
    { name: 'eval-interval', kind: 'integer', min: 1, default: o.evalInterval, help: 'evaluate and checkpoint every N steps', group },
    { name: 'eval-iters', kind: 'integer', min: 1, default: o.evalIters, help: 'batches per evaluation', group },
    { name: 'seed', kind: 'integer', min: 0, default: o.seed, help: 'seed for init, batches and dropout', group },
    { name: 'dtype', kind: 'string', choices: [...MATMUL_DTYPES], default: 'float32', help: 'the linear layers\' products: bf16 multiplies bfloat16 operands with float32 sums (AVX512-BF16 or AMX CPUs; elsewhere it says so and trains in float32); weights, optimizer and loss stay float32', group },
  ];
}

/**
 * TrainOptions from the loop flags (blockSize and outDir come from the command; maxIters too when
 * the command computes the step count, as llmts sft --epochs does: the warmup and decay defaults follow it).
 */
export function trainLoopOptions(f: Flags, blockSize: number, outDir: string, maxIters: number = f.number('max-iters')!): TrainOptions {
  const lr = f.number('lr')!;
  return {
    maxIters,
    batchSize: f.number('batch-size')!,
    blockSize,
    gradAccum: f.number('grad-accum')!,
    lr,
    minLr: f.number('min-lr') ?? lr / 10,
    warmupIters: f.number('warmup-iters') ?? Math.min(D.warmupIters, Math.floor(maxIters / 10)),
    decayIters: f.number('decay-iters') ?? maxIters,
    weightDecay: f.number('weight-decay')!,
    beta1: D.beta1,
    beta2: f.number('beta2')!,
    gradClip: f.number('grad-clip')!,
    evalInterval: f.number('eval-interval')!,
    evalIters: f.number('eval-iters')!,
    seed: f.number('seed')!,
    outDir,
    dtype: f.string('dtype') as MatmulDtype,
  };
}

/**
 * --dtype with --resume: a resumed run keeps its dtype, so only the run's own is accepted (the
 * training loop checks the checkpoint again, also for what this CPU computes).
 */
export function checkResumeDtype(f: Flags, saved: { dtype?: MatmulDtype } | undefined): void {
  if (!f.has('dtype')) return;
  const own = saved?.dtype ?? 'float32';
  const asked = f.string('dtype');
  if (asked !== own) {
    throw new LlmError(`${f.typed('dtype')} ${asked}: this run was trained with --dtype ${own}, and a resumed run keeps its dtype; resume without --dtype, or start a new run in another --out`);
  }
}
