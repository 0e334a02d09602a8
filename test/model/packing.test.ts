/**
 * Packed rows (model/packing.ts): a batch whose rows hold several examples gives the same loss
 * and the same gradient for every parameter as the same examples run one by one (token-weighted
 * mean), for Llama (RoPE at per-example positions) and GPT-2 (position embeddings at per-example
 * positions), on the reference and the native backend. Also: packedRows' layout and its checks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backend, nativeBackend, referenceBackend, setBackend, type Backend } from '../../src/backend/index.js';
import type { ModelConfig } from '../../src/model/config.js';
import { checkPackedRows, packedRows } from '../../src/model/packing.js';
import { Transformer } from '../../src/model/transformer.js';
import { IGNORE_INDEX, crossEntropy, scale } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const LLAMA = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });
const GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 64 });

interface Example {
  x: Int32Array;
  /** targets, IGNORE_INDEX where not trained */
  y: Int32Array;
}

/** Examples of these lengths with random ids and targets, about a third of the targets masked. */
function examples(cfg: ModelConfig, lengths: number[], seed: number): Example[] {
  const rng = new Rng(seed);
  return lengths.map((n) => ({
    x: Int32Array.from({ length: n }, () => rng.int(cfg.vocabSize)),
    y: Int32Array.from({ length: n }, () => (rng.uniform() < 0.33 ? IGNORE_INDEX : rng.int(cfg.vocabSize))),
  }));
}

/** Loss and a copy of every trainable parameter's gradient after backward of `run`. */
function lossAndGrads(model: Transformer, run: () => number): { loss: number; grads: Map<string, Float32Array> } {
  for (const p of model.namedParameters()) p.tensor.grad?.fill(0);
  const loss = run();
  const grads = new Map<string, Float32Array>();
  for (const p of model.namedParameters()) if (p.trainable) grads.set(p.name, Float32Array.from(p.tensor.grad ?? new Float32Array(p.tensor.size)));
  return { loss, grads };
}

/** max |a - b| / max |b| */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return m === 0 ? d : d / m;
}

/** The packed batch: rows of T tokens holding the examples grouped as `rows` (indices), padding after. */
function packedLoss(model: Transformer, ex: Example[], rows: number[][], T: number): number {
  const B = rows.length;
  const x = new Int32Array(B * T);
  const y = new Int32Array(B * T).fill(IGNORE_INDEX);
  rows.forEach((row, b) => {
    let t = b * T;
    for (const i of row) {
      x.set(ex[i].x, t);
      y.set(ex[i].y, t);
      t += ex[i].x.length;
    }
  });
  const packing = packedRows(rows.map((r) => r.map((i) => ex[i].x.length)), T);
  const { logits } = model.forward(x, B, T, undefined, { packing });
  const loss = crossEntropy(logits, y);
  loss.backward();
  return loss.item();
}

/** Every example alone (B = 1, T = its length), the token-weighted mean of their losses. */
function oneByOneLoss(model: Transformer, ex: Example[]): number {
  let count = 0;
  for (const e of ex) for (const t of e.y) if (t !== IGNORE_INDEX) count++;
  let total = 0;
  for (const e of ex) {
    const { logits } = model.forward(e.x, 1, e.x.length);
    const sum = crossEntropy(logits, e.y, { reduction: 'sum' });
    total += sum.item();
    if (e.y.some((t) => t !== IGNORE_INDEX)) scale(sum, 1 / count).backward();
  }
  return total / count;
}

function backends(): [string, Backend][] {
  const list: [string, Backend][] = [['reference', referenceBackend]];
  const native = nativeBackend();
  if (native) list.push(['native', native]);
  return list;
}

describe('packed rows equal the examples one by one', () => {
  for (const [family, cfg] of [['llama', LLAMA], ['gpt2', GPT2]] as const) {
    for (const [name, be] of backends()) {
      it(`${family}, ${name} backend: loss and every parameter gradient`, () => {
        const previous = backend();
        setBackend(be);
        try {
          const model = new Transformer(cfg, new Rng(7));
          const ex = examples(cfg, [5, 9, 3, 7, 11, 2, 1, 6], 11);
          // rows of 20: 5+9+3+2+1 (full), 11+7 (2 pad), 6 (14 pad)
          const rows = [[0, 1, 2, 5, 6], [4, 3], [7]];
          const packed = lossAndGrads(model, () => packedLoss(model, ex, rows, 20));
          const alone = lossAndGrads(model, () => oneByOneLoss(model, ex));
          assert.ok(Math.abs(packed.loss - alone.loss) <= 1e-5 * Math.abs(alone.loss), `loss ${packed.loss} vs ${alone.loss}`);
          let worst = 0;
          for (const [p, g] of alone.grads) {
            const e = relDiff(packed.grads.get(p)!, g);
            worst = Math.max(worst, e);
            assert.ok(e < 1e-5, `${p}: gradient relative difference ${e}`);
          }
          // the check can fail: a plain causal batch (examples seeing each other) differs
          const x = new Int32Array(20);
          x.set(ex[0].x, 0);
          x.set(ex[1].x, 5);
          const mixed = model.forward(x, 1, 20).logits.data.slice(5 * cfg.vocabSize, 14 * cfg.vocabSize);
          const own = model.forward(ex[1].x, 1, 9).logits.data;
          assert.ok(relDiff(mixed, own) > 1e-3, 'without packing the second example sees the first');
          assert.ok(worst < 1e-5);
        } finally {
          setBackend(previous);
        }
      });
    }
  }
});

describe('packedRows', () => {
  it('lays out segment starts and positions, the rest of a row one more segment', () => {
    const p = packedRows([[3, 2], [6], []], 6);
    assert.deepEqual([...p.segmentStart], [0, 0, 0, 3, 3, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual([...p.positions], [0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
    checkPackedRows(p, 3, 6);
  });
  it('refuses examples that do not fit, and inconsistent layouts', () => {
    assert.throws(() => packedRows([[4, 3]], 6), /do not fit a row of 6/);
    assert.throws(() => packedRows([[0]], 6), /example of 0 tokens/);
    const p = packedRows([[2, 2]], 4);
    p.positions[3] = 0;
    assert.throws(() => checkPackedRows(p, 1, 4), /token 3 of row 0/);
    assert.throws(() => checkPackedRows(packedRows([[2]], 3), 2, 2), /one entry per token/);
    const model = new Transformer(LLAMA, new Rng(1));
    assert.throws(() => model.forward(new Int32Array(8), 2, 4, undefined, { packing: packedRows([[2]], 4) }), /one entry per token/);
  });
});
