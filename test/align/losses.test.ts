/**
 * The alignment losses (src/align/losses.ts) against TRL's formulas on fixed tensors
 * (test/fixtures/alignment/losses.json, made by scripts/make_alignment_fixture.py in float64 and
 * stored to 10 significant digits, hence the 1e-8 tolerance),
 * and float64 gradient checks of each.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Tensor, withFloat64Storage } from '../../src/tensor/index.js';
import { referenceBackend, setBackend, backend } from '../../src/backend/index.js';
import { dpoLoss, gae, maskedWhiten, ppoPolicyLoss, ppoValueLoss, rewardPairLoss, type DpoLossType } from '../../src/align/losses.js';
import { gradcheck, param } from '../helpers/gradcheck.js';

const FIXTURE = JSON.parse(readFileSync(new URL('../../../test/fixtures/alignment/losses.json', import.meta.url), 'utf8'));

/** Run fn in float64 on the reference backend (the fixture's precision). */
function float64<T>(fn: () => T): T {
  const previous = backend();
  setBackend(referenceBackend);
  try {
    return withFloat64Storage(fn);
  } finally {
    setBackend(previous);
  }
}

/** A leaf tensor in the engine's storage precision (float64 inside float64()). */
function leaf(values: number[], shape = [values.length]): Tensor {
  const t = Tensor.zeros(shape, true);
  t.data.set(values);
  return t;
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

describe('alignment losses equal TRL\'s formulas (float64 fixture)', () => {
  it('Bradley-Terry reward loss, with margins and reward centering; accuracy and margin', () => {
    for (const c of FIXTURE.reward) {
      float64(() => {
        const rc = leaf(c.chosen), rr = leaf(c.rejected);
        const { loss, metrics } = rewardPairLoss(rc, rr, { margin: c.margin, centerCoefficient: c.center ?? 0 });
        close([loss.item()], [c.loss], 1e-8, 'loss');
        loss.backward();
        close(rc.grad!, c.dchosen, 1e-8, 'dchosen');
        close(rr.grad!, c.drejected, 1e-8, 'drejected');
        close([metrics.accuracy, metrics.margin], [c.accuracy, c.margin_mean], 1e-8, 'metrics');
      });
    }
  });

  it('DPO sigmoid, hinge and ipo losses and TRL\'s reward metrics', () => {
    for (const c of FIXTURE.dpo) {
      float64(() => {
        const pc = leaf(c.policy_chosen), pr = leaf(c.policy_rejected);
        const { loss, metrics } = dpoLoss(pc, pr, c.ref_chosen, c.ref_rejected, {
          beta: c.beta, lossType: c.type as DpoLossType, chosenLengths: c.chosen_lengths, rejectedLengths: c.rejected_lengths,
        });
        close([loss.item()], [c.loss], 1e-8, `${c.type} loss`);
        loss.backward();
        close(pc.grad!, c.dchosen, 1e-8, `${c.type} dchosen`);
        close(pr.grad!, c.drejected, 1e-8, `${c.type} drejected`);
        for (const k of Object.keys(c.metrics)) close([metrics[k]], [c.metrics[k]], 1e-8, k);
      });
    }
  });

  it('GAE, masked whitening, clipped policy and value losses', () => {
    for (const c of FIXTURE.ppo) {
      float64(() => {
        // advantages, returns and the PPO constants are Float32Arrays (rollout buffers): float32 precision
        const mask = Uint8Array.from(c.mask);
        const { advantages, returns } = gae(Float32Array.from(c.rewards), Float32Array.from(c.values), c.B, c.T, c.gamma, c.lam);
        close(advantages, c.advantages, 1e-6, 'advantages');
        close(returns, c.returns, 1e-6, 'returns');
        const white = maskedWhiten(advantages, mask);
        close(white, c.whitened, 1e-6, 'whitened');
        const logp = leaf(c.logp, [c.B, c.T]);
        const pg = ppoPolicyLoss(logp, Float32Array.from(c.old_logp), white, mask, c.clip);
        close([pg.loss.item()], [c.pg_loss], 1e-6, 'policy loss');
        pg.loss.backward();
        close(logp.grad!, c.dlogp, 1e-6, 'dlogp');
        const v = leaf(c.vpred, [c.B, c.T]);
        const vf = ppoValueLoss(v, Float32Array.from(c.values), returns, mask, c.clip_v);
        close([vf.loss.item()], [c.vf_loss], 1e-6, 'value loss');
        vf.loss.backward();
        close(v.grad!, c.dvpred, 1e-6, 'dvpred');
      });
    }
  });
});

describe('alignment losses: float64 gradient checks', () => {
  it('reward pair loss with margin and centering', () => {
    gradcheck('rewardPairLoss', (rng) => [param(rng, [5]), param(rng, [5])],
      ([a, b]) => rewardPairLoss(a, b, { margin: [0.1, 0, 0.3, 0.2, 0.5], centerCoefficient: 0.05 }).loss);
  });
  for (const lossType of ['sigmoid', 'ipo', 'hinge'] as const) {
    it(`dpo ${lossType}`, () => {
      gradcheck(`dpoLoss ${lossType}`, (rng) => [param(rng, [4]), param(rng, [4])],
        ([a, b]) => dpoLoss(a, b, [0.3, -0.2, 0.1, 0.4], [-0.1, 0.2, 0.5, -0.3], { beta: 0.7, lossType, chosenLengths: [3, 1, 4, 2], rejectedLengths: [2, 5, 1, 1] }).loss);
    });
  }
  it('ppo policy and value losses', () => {
    const mask = Uint8Array.from([1, 1, 1, 0, 1, 1, 0, 0]);
    const adv = Float32Array.from([0.5, -1, 2, 0, -0.3, 0.8, 0, 0]);
    const old = Float32Array.from([0.1, -0.2, 0.05, 0, 0.3, -0.1, 0, 0]);
    gradcheck('ppoPolicyLoss', (rng) => [param(rng, [2, 4], 0.1)], ([lp]) => ppoPolicyLoss(lp, old, adv, mask, 0.2).loss);
    const ret = Float32Array.from([0.2, 0.1, -0.4, 0, 1, 0.5, 0, 0]);
    gradcheck('ppoValueLoss', (rng) => [param(rng, [2, 4], 0.5)], ([v]) => ppoValueLoss(v, old, ret, mask, 0.2).loss);
  });
});

describe('alignment losses: bad input', () => {
  it('mismatched lengths, a bad beta, ipo without lengths, too few positions to whiten', () => {
    assert.throws(() => rewardPairLoss(leaf([1, 2]), leaf([1])), /two \(P,\) tensors/);
    assert.throws(() => dpoLoss(leaf([1]), leaf([2]), [0], [0], { beta: 0 }), /beta must be > 0/);
    assert.throws(() => dpoLoss(leaf([1]), leaf([2]), [0], [0], { lossType: 'ipo' }), /ipo needs the answer lengths/);
    assert.throws(() => maskedWhiten(Float32Array.from([1, 2]), Uint8Array.from([1, 0])), /at least 2/);
  });
});
