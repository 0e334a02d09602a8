/**
 * Direct preference optimisation as an Objective of the shared TrainingLoop (dpoLoss in
 * losses.ts, with TRL's metric names): the policy's log-probabilities of the chosen and rejected
 * answers against those of a frozen reference model.
 *
 *   const reference = model.shareBase();        // LoRA: the base without adapters; full: a second copy of the SFT model
 *   const objective = new DpoObjective(reference, train, held, { pairsPerBatch: 4, seed, padId, beta: 0.1 });
 *   await new TrainingLoop(model, objective, options, { tokenizer }).run();
 *   // train steps log rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/...
 *
 * The reference's log-probabilities are computed once per pair, when the pair is first drawn
 * (noGrad), and kept: the reference never changes, so a resumed run recomputes the same numbers.
 * (TRL precomputes them over the whole data set; computing on first use costs the same over an
 * epoch and nothing for pairs a short run never reaches.)
 */
import { noGrad } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import type { EvalContext, Objective, ObjectiveLoss } from '../train/loop.js';
import { EpochOrder } from '../train/epoch-order.js';
import { Rng } from '../util/rng.js';
import { dpoLoss, type DpoLossType } from './losses.js';
import { answerLogProbs } from './log-probs.js';
import { chosenAndRejected, makePairBatch, type PairBatch, type RenderedPair } from './pairs.js';

export interface DpoObjectiveOptions {
  pairsPerBatch: number;
  seed: number;
  padId: number;
  beta: number;
  lossType?: DpoLossType;
}

export type DpoEval = Record<string, number>;

/** A batch plus which pairs it holds (to look up and keep their reference log-probabilities). */
export interface DpoBatch extends PairBatch {
  pairs: readonly RenderedPair[];
}

export class DpoObjective implements Objective<DpoBatch, DpoEval> {
  readonly name = 'dpo';
  private readonly order: EpochOrder;
  /** reference log-probabilities by pair: [chosen, rejected] */
  private readonly refCache = new Map<RenderedPair, [number, number]>();

  constructor(readonly reference: Transformer, readonly train: readonly RenderedPair[], readonly held: readonly RenderedPair[], readonly opts: DpoObjectiveOptions) {
    this.order = new EpochOrder(train.length, 'training pairs');
  }

  get epochs(): number {
    return this.order.epochs;
  }

  nextBatch(rng: Rng): DpoBatch {
    const picked = this.order.take(this.train, this.opts.pairsPerBatch, rng);
    return { ...makePairBatch(picked, this.opts.padId), pairs: picked };
  }

  weight(batch: DpoBatch): number {
    return batch.P;
  }

  /** The reference's log π of each pair's chosen and rejected answer, (P,) each. */
  referenceLogProbs(batch: DpoBatch): { chosen: Float32Array; rejected: Float32Array } {
    const P = batch.P;
    const missing = batch.pairs.filter((p) => !this.refCache.has(p));
    if (missing.length > 0) {
      const b = makePairBatch(missing, this.opts.padId);
      const lp = noGrad(() => answerLogProbs(this.reference, b).data);
      missing.forEach((p, i) => this.refCache.set(p, [lp[i], lp[b.P + i]]));
    }
    const chosen = new Float32Array(P), rejected = new Float32Array(P);
    batch.pairs.forEach((p, i) => {
      const [c, r] = this.refCache.get(p)!;
      chosen[i] = c;
      rejected[i] = r;
    });
    return { chosen, rejected };
  }

  loss(model: Transformer, batch: DpoBatch): ObjectiveLoss {
    const ref = this.referenceLogProbs(batch);
    const lp = answerLogProbs(model, batch); // (2P,)
    const [chosen, rejected] = chosenAndRejected(lp, batch.P);
    const { loss, metrics } = dpoLoss(chosen, rejected, ref.chosen, ref.rejected, {
      beta: this.opts.beta, lossType: this.opts.lossType,
      chosenLengths: batch.answerTokens.subarray(0, batch.P), rejectedLengths: batch.answerTokens.subarray(batch.P),
    });
    return { loss, metrics, tokens: 2 * batch.P * batch.T };
  }

  /** The DPO loss and reward metrics over pairs in micro-batches (no autograd), means over pairs. */
  evaluatePairs(model: Transformer, pairs: readonly RenderedPair[]): Record<string, number> {
    const B = this.opts.pairsPerBatch;
    const sums: Record<string, number> = {};
    let n = 0;
    noGrad(() => {
      for (let i = 0; i < pairs.length; i += B) {
        const slice = pairs.slice(i, i + B);
        const batch: DpoBatch = { ...makePairBatch(slice, this.opts.padId), pairs: slice };
        const { loss, metrics } = this.loss(model, batch);
        const all = { loss: loss.item(), ...metrics };
        for (const [k, v] of Object.entries(all)) sums[k] = (sums[k] ?? 0) + v * batch.P;
        n += batch.P;
      }
    });
    for (const k of Object.keys(sums)) sums[k] /= Math.max(n, 1);
    return sums;
  }

  evaluate(model: Transformer, { step, iters }: EvalContext): DpoEval {
    const B = this.opts.pairsPerBatch;
    const rng = new Rng(this.opts.seed * 1000003 + step);
    const n = Math.min(iters * B, this.train.length);
    const trainPick = Array.from({ length: n }, () => this.train[rng.int(this.train.length)]);
    const out: DpoEval = { trainLoss: this.evaluatePairs(model, trainPick).loss };
    if (this.held.length > 0) {
      const h = this.evaluatePairs(model, this.held.slice(0, iters * B));
      out.valLoss = h.loss;
      for (const [k, v] of Object.entries(h)) if (k !== 'loss') out[`eval_${k}`] = v;
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

