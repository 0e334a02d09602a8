/**
 * linearCrossEntropy (the LM head and its loss in chunks of rows) against the unfused
 * crossEntropy(linear(h, W)): float64 gradient checks, equal values and gradients on both
 * backends, ignored rows, several chunks with a short last one, and Backend.crossEntropyFused
 * native against reference.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, crossEntropy, linear, linearCrossEntropy, noGrad, withBufferScope, IGNORE_INDEX } from '../../src/tensor/index.js';
import { backend, nativeBackend, referenceBackend, setBackend } from '../../src/backend/index.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck, param } from '../helpers/gradcheck.js';

const ROWS = 13, C = 6, V = 37;

function targetsWithIgnored(rng: Rng, rows: number, vocab: number): Int32Array {
  return Int32Array.from({ length: rows }, (_, r) => (r % 5 === 2 ? IGNORE_INDEX : rng.int(vocab)));
}

describe('linearCrossEntropy', () => {
  const targets = targetsWithIgnored(new Rng(5), ROWS, V);

  for (const reduction of ['mean', 'sum'] as const) {
    it(`passes a float64 gradient check over several chunks (${reduction})`, () => {
      gradcheck(`linearCrossEntropy ${reduction}`, (r) => [param(r, [ROWS, C], 1.5), param(r, [V, C], 1.5)],
        ([h, w]) => linearCrossEntropy(h, w, targets, { reduction, chunkRows: 4 }));
    });
  }

  for (const [name, be] of [['reference', referenceBackend], ['native', nativeBackend()]] as const) {
    it(`equals crossEntropy(linear(h, W)) in value and gradients (${name} backend)`, (t) => {
      if (!be) return t.skip('native backend not built');
      const previous = backend();
      setBackend(be);
      try {
        withBufferScope(() => {
          const rng = new Rng(9);
          const data = { h: param(rng, [ROWS, C]).data, w: param(rng, [V, C]).data };
          const run = (fused: boolean): { loss: number; dh: Float32Array; dw: Float32Array } => {
            const h = new Tensor(data.h.slice(), [ROWS, C], true);
            const w = new Tensor(data.w.slice(), [V, C], true);
            const loss = fused ? linearCrossEntropy(h, w, targets, { chunkRows: 5 }) : crossEntropy(linear(h, w, null, 'out_in'), targets);
            loss.backward();
            return { loss: loss.item(), dh: h.grad!.slice(), dw: w.grad!.slice() };
          };
          const a = run(true), b = run(false);
          assert.ok(Math.abs(a.loss - b.loss) <= 1e-6 * Math.abs(b.loss), `loss ${a.loss} vs ${b.loss}`);
          for (const [k, x, y] of [['dh', a.dh, b.dh], ['dw', a.dw, b.dw]] as const) {
            let err = 0;
            for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(x[i] - y[i]));
            assert.ok(err < 1e-6, `${k} differs by ${err}`);
          }
          // the ignored rows get no gradient
          for (let r = 0; r < ROWS; r++) {
            if (targets[r] !== IGNORE_INDEX) continue;
            for (let c = 0; c < C; c++) assert.equal(a.dh[r * C + c], 0, `row ${r} is ignored`);
          }
        });
      } finally {
        setBackend(previous);
      }
    });
  }

  it('gives the loss without a graph under noGrad, and 0 when every row is ignored', () => {
    withBufferScope(() => {
      const rng = new Rng(2);
      const h = param(rng, [ROWS, C]), w = param(rng, [V, C]);
      const fused = noGrad(() => linearCrossEntropy(h, w, targets));
      assert.equal(fused.requiresGrad, false);
      const plain = noGrad(() => crossEntropy(linear(h, w, null, 'out_in'), targets));
      assert.ok(Math.abs(fused.item() - plain.item()) < 1e-6);
      const none = linearCrossEntropy(h, w, new Int32Array(ROWS).fill(IGNORE_INDEX));
      assert.equal(none.item(), 0);
    });
  });

  it('names a target outside the vocabulary', () => {
    const rng = new Rng(3);
    const bad = targets.slice();
    bad[4] = V;
    assert.throws(() => linearCrossEntropy(param(rng, [ROWS, C]), param(rng, [V, C]), bad), /target 37 at row 4 is outside \[0, 37\)/);
  });

  it('Backend.crossEntropyFused: native equals reference (losses, count, gradient over the logits)', (t) => {
    const native = nativeBackend();
    if (!native) return t.skip('native backend not built');
    const rng = new Rng(11);
    for (const vocab of [7, 33, 1000]) {
      const rows = 9;
      const logits = Float32Array.from({ length: rows * vocab }, () => 3 * rng.normal());
      const tg = targetsWithIgnored(rng, rows, vocab);
      const [a, b] = [logits.slice(), logits.slice()];
      const [la, lb] = [new Float32Array(rows), new Float32Array(rows)];
      const ca = referenceBackend.crossEntropyFused(a, tg, la, rows, vocab, IGNORE_INDEX, 0.25);
      const cb = native.crossEntropyFused(b, tg, lb, rows, vocab, IGNORE_INDEX, 0.25);
      assert.equal(ca, cb);
      for (let i = 0; i < rows; i++) assert.ok(Math.abs(la[i] - lb[i]) <= 1e-5 * Math.max(1, Math.abs(la[i])), `loss row ${i}`);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-6, `gradient ${i}: ${a[i]} vs ${b[i]}`);
      // the same gradient as crossEntropyBackward into zeros
      const zeros = new Float32Array(rows * vocab);
      native.crossEntropyBackward(logits, tg, zeros, rows, vocab, IGNORE_INDEX, 0.25);
      assert.deepEqual(b, zeros);
    }
  });
});
