/**
 * Reward modelling as an Objective of the shared TrainingLoop: the trunk plus a scalar head
 * (`score.weight`, heads.ts) read at each sequence's last token, trained on preference pairs with
 * the Bradley–Terry loss (losses.ts rewardPairLoss), as TRL's RewardTrainer.
 *
 *   const head = addScalarHead(model, { rng });
 *   const objective = new RewardObjective(head, train, held, { pairsPerBatch: 8, seed: 1337, padId });
 *   await new TrainingLoop(model, objective, options, { tokenizer }).run();
 *   // metrics.jsonl: train steps carry accuracy / margin; evals { trainLoss, valLoss, accuracy, margin }
 *
 * Pairs are drawn in shuffled epochs (EpochOrder, exact resume); a micro-batch of P pairs is one
 * (2P, T) forward pass, chosen rows over rejected rows. Evaluation is deterministic: the held-out
 * pairs in file order (all of them, or evalIters micro-batches), and as many training pairs picked
 * by a generator seeded by (seed, step).
 */
import { gather, noGrad, type Tensor } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { ScalarHead } from '../model/heads.js';
import type { EvalContext, Objective, ObjectiveLoss } from '../train/loop.js';
import { EpochOrder } from '../train/epoch-order.js';
import { Rng } from '../util/rng.js';
import { rewardPairLoss } from './losses.js';
import { chosenAndRejected, makePairBatch, type PairBatch, type RenderedAnswer, type RenderedPair } from './pairs.js';

export interface RewardObjectiveOptions {
  /** pairs per micro-batch */
  pairsPerBatch: number;
  /** seeds the evaluation's choice of training pairs (with the step) */
  seed: number;
  /** input id of padding positions */
  padId: number;
  /** TRL's center_rewards_coefficient (0 or absent: off) */
  centerCoefficient?: number;
}

/** Held-out metrics: valLoss/accuracy/margin only when pairs are held out. */
export type RewardEval = { trainLoss: number; trainAccuracy: number; valLoss: number; accuracy: number; margin: number };

/** Rewards (2P,) at each row's last token: hidden → head → pick. */
export function sequenceRewards(model: Transformer, head: ScalarHead, batch: PairBatch): Tensor {
  const rows = 2 * batch.P;
  const scores = head.forward(model.hidden(batch.x, rows, batch.T)); // (2P, T)
  return gather(scores, batch.last); // (2P,)
}


/** The reward of each rendered sequence (prompt + answer), read at its last token: (n,) floats. */
export function sequenceScores(model: Transformer, head: ScalarHead, rows: readonly RenderedAnswer[], padId: number): Float32Array {
  let T = 1;
  for (const r of rows) T = Math.max(T, r.ids.length);
  const x = new Int32Array(rows.length * T).fill(padId);
  const last = new Int32Array(rows.length);
  rows.forEach((r, b) => {
    x.set(r.ids, b * T);
    last[b] = b * T + r.ids.length - 1;
  });
  const scores = head.forward(model.hidden(x, rows.length, T)); // (n, T)
  return Float32Array.from(gather(scores, last).data);
}

export function pairLoss(model: Transformer, head: ScalarHead, batch: PairBatch, centerCoefficient = 0): ObjectiveLoss {
  const [chosen, rejected] = chosenAndRejected(sequenceRewards(model, head, batch), batch.P);
  const { loss, metrics } = rewardPairLoss(chosen, rejected, { centerCoefficient });
  let tokens = 0;
  for (let b = 0; b < 2 * batch.P; b++) tokens += batch.last[b] - b * batch.T + 1;
  return { loss, metrics, tokens };
}

/** Pairwise accuracy, mean margin and mean loss over pairs, in micro-batches of B (deterministic, no autograd). */
export function evaluatePairs(model: Transformer, head: ScalarHead, pairs: readonly RenderedPair[], B: number, padId: number): { loss: number; accuracy: number; margin: number } {
  let loss = 0, correct = 0, margin = 0;
  noGrad(() => {
    for (let i = 0; i < pairs.length; i += B) {
      const batch = makePairBatch(pairs.slice(i, i + B), padId);
      const r = sequenceRewards(model, head, batch).data;
      for (let p = 0; p < batch.P; p++) {
        const d = r[p] - r[batch.P + p];
        if (d > 0) correct++;
        margin += d;
        loss += d >= 0 ? Math.log1p(Math.exp(-d)) : -d + Math.log1p(Math.exp(d)); // -log σ(d)
      }
    }
  });
  const n = Math.max(pairs.length, 1);
  return { loss: loss / n, accuracy: correct / n, margin: margin / n };
}

export class RewardObjective implements Objective<PairBatch, RewardEval> {
  readonly name = 'reward';
  private readonly order: EpochOrder;

  constructor(readonly head: ScalarHead, readonly train: readonly RenderedPair[], readonly held: readonly RenderedPair[], readonly opts: RewardObjectiveOptions) {
    this.order = new EpochOrder(train.length, 'training pairs');
  }

  get epochs(): number {
    return this.order.epochs;
  }

  nextBatch(rng: Rng): PairBatch {
    const picked = this.order.take(this.train, this.opts.pairsPerBatch, rng);
    return makePairBatch(picked, this.opts.padId);
  }

  weight(batch: PairBatch): number {
    return batch.P;
  }

  loss(model: Transformer, batch: PairBatch): ObjectiveLoss {
    return pairLoss(model, this.head, batch, this.opts.centerCoefficient ?? 0);
  }

  evaluate(model: Transformer, { step, iters }: EvalContext): RewardEval {
    const B = this.opts.pairsPerBatch;
    const rng = new Rng(this.opts.seed * 1000003 + step);
    const n = Math.min(iters * B, this.train.length);
    const trainPick = Array.from({ length: n }, () => this.train[rng.int(this.train.length)]);
    const t = evaluatePairs(model, this.head, trainPick, B, this.opts.padId);
    const out = { trainLoss: t.loss, trainAccuracy: t.accuracy } as RewardEval;
    if (this.held.length > 0) {
      const h = evaluatePairs(model, this.head, this.held.slice(0, iters * B), B, this.opts.padId);
      Object.assign(out, { valLoss: h.loss, accuracy: h.accuracy, margin: h.margin });
    }
    return out;
  }

  state(): unknown {
    return this.order.state();
  }

  restore(state: unknown): void {
    this.order.restore(state);
  }
}
