/**
 * SFT packing: best-fit decreasing rows (against a plain quadratic best-fit), packed batches that
 * hold exactly the inputs and targets of the unpacked ones (no target crosses an example), the
 * loss and every gradient of a packed SFT batch equal to the unpacked batch of the same examples
 * (Llama and GPT-2), the padding report on a small case, and exact resume of the packed epochs.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chatTemplate } from '../../src/chat/index.js';
import type { SftExample } from '../../src/data/sft-examples.js';
import { packBestFitDecreasing } from '../../src/data/packing.js';
import { makePackedSftBatch, makeSftBatch, renderSftExamples, SftObjective, type RenderedExample } from '../../src/finetune/sft.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { Rng } from '../../src/util/rng.js';
import { tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const tok = CharTokenizer.fromText('QA: \nabcdefghreverse');
const qa = chatTemplate('qa');
const chat = (user: string, assistant: string): SftExample => ({ kind: 'chat', messages: [{ role: 'user', content: user }, { role: 'assistant', content: assistant }] });

/** Rendered "reverse w" -> reversed w examples for these words. */
function rendered(words: string[]): RenderedExample[] {
  const rows = words.map((w) => chat(`reverse ${w}`, [...w].reverse().join('')));
  return renderSftExamples(rows, rows.map((_, i) => i + 1), tok, qa, { maxLength: 64 }).rendered;
}

/** An example whose ids have n + 1 tokens (n inputs), every target trained. */
function sized(n: number, line: number): RenderedExample {
  return { ids: Int32Array.from({ length: n + 1 }, (_, i) => (i * 3 + line) % 7), lossMask: new Uint8Array(n + 1).fill(1), line, key: `${line}` };
}

/** The textbook best fit: each length (longest first, ties in order) into the fullest bin it fits, the first such bin on ties. */
function naiveBestFit(lengths: number[], capacity: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const bins: number[][] = [];
  const free: number[] = [];
  for (const i of order) {
    let best = -1;
    for (let b = 0; b < bins.length; b++) if (free[b] >= lengths[i] && (best < 0 || free[b] < free[best])) best = b;
    if (best < 0) {
      best = bins.length;
      bins.push([]);
      free.push(capacity);
    }
    bins[best].push(i);
    free[best] -= lengths[i];
  }
  return bins;
}

describe('best-fit decreasing packing', () => {
  it('packs the documented example', () => {
    assert.deepEqual(packBestFitDecreasing([5, 9, 3, 7, 2], 12), [[1, 2], [3, 0], [4]]);
  });
  it('equals the quadratic best fit on random lengths; every sequence once, no bin over capacity', () => {
    const rng = new Rng(3);
    for (const [n, capacity] of [[50, 16], [400, 64], [300, 1024]]) {
      const lengths = Array.from({ length: n }, () => 1 + rng.int(Math.min(capacity, 1 + rng.int(capacity))));
      const bins = packBestFitDecreasing(lengths, capacity);
      assert.deepEqual(bins, naiveBestFit(lengths, capacity), `n=${n} capacity=${capacity}`);
      assert.deepEqual(bins.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
      for (const bin of bins) assert.ok(bin.reduce((s, i) => s + lengths[i], 0) <= capacity);
    }
  });
  it('refuses a sequence longer than a row', () => {
    assert.throws(() => packBestFitDecreasing([3, 9], 8), /sequence 1 has 9 tokens; every sequence must hold 1 to 8/);
  });
});

describe('packed SFT batches', () => {
  it('hold the unpacked inputs and targets, example after example; no target is another example\'s token', () => {
    const ex = rendered(['abc', 'hgfedcba', 'ab']);
    const packed = makePackedSftBatch([ex], 0);
    assert.equal(packed.B, 1);
    assert.equal(packed.T, ex.reduce((s, e) => s + e.ids.length - 1, 0));
    assert.equal(packed.paddingTokens, 0);
    let at = 0;
    for (const e of ex) {
      const one = makeSftBatch([e], 0);
      assert.deepEqual([...packed.x.subarray(at, at + one.T)], [...one.x]);
      assert.deepEqual([...packed.y.subarray(at, at + one.T)], [...one.y]);
      // the example's last input predicts its own last token (its end of turn), never the next example's first
      assert.equal(packed.y[at + one.T - 1], e.ids[e.ids.length - 1]);
      assert.deepEqual([...packed.packing!.positions.subarray(at, at + one.T)], Array.from({ length: one.T }, (_, t) => t));
      assert.ok(packed.packing!.segmentStart.subarray(at, at + one.T).every((s) => s === at));
      at += one.T;
    }
    assert.equal(packed.targetTokens, ex.reduce((s, e) => s + makeSftBatch([e], 0).targetTokens, 0));
    assert.deepEqual(packed.lines, [1, 2, 3]);
  });

  for (const [family, cfg] of [
    ['llama', tinyLlama({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 })],
    ['gpt2', tinyGpt2({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 64 })],
  ] as [string, ModelConfig][]) {
    it(`${family}: a packed batch's loss and every gradient equal the unpacked batch of the same examples`, () => {
      const ex = rendered(['abc', 'hgfedcba', 'ab', 'cdefg', 'h', 'gfe']);
      const model = new Transformer(cfg, new Rng(5));
      const obj = new SftObjective(ex, [], { batchSize: 6, seed: 1, padId: 0 });
      const run = (batch: ReturnType<typeof makeSftBatch>) => {
        for (const p of model.parameters()) p.grad?.fill(0);
        const out = obj.loss(model, batch);
        out.loss.backward();
        return { loss: out.loss.item(), grads: model.parameters().map((p) => Float32Array.from(p.grad!)), padding: out.metrics!.padding };
      };
      const unpacked = run(makeSftBatch(ex, 0));
      const rows = packBestFitDecreasing(ex.map((e) => e.ids.length - 1), 48).map((r) => r.map((i) => ex[i]));
      assert.ok(rows.length < ex.length && rows.length >= 2, `${rows.length} rows`);
      const packed = run(makePackedSftBatch(rows, 0));
      assert.ok(Math.abs(packed.loss - unpacked.loss) <= 1e-5 * unpacked.loss, `loss ${packed.loss} vs ${unpacked.loss}`);
      model.parameters().forEach((p, k) => {
        let d = 0;
        let m = 0;
        for (let i = 0; i < p.size; i++) {
          d = Math.max(d, Math.abs(packed.grads[k][i] - unpacked.grads[k][i]));
          m = Math.max(m, Math.abs(unpacked.grads[k][i]));
        }
        assert.ok(d <= 1e-5 * m, `${p.name}: gradient differs by ${d} (max ${m})`);
      });
      assert.ok(packed.padding < unpacked.padding, `padding ${packed.padding} packed vs ${unpacked.padding}`);
    });
  }
});

describe('padding report and packed epochs', () => {
  it('counts padding over an epoch, packed and unpacked (by hand)', () => {
    // inputs of 3, 5, 2, 7 tokens; rows of 8: 7 | 5 + 3 | 2
    const ex = [sized(3, 1), sized(5, 2), sized(2, 3), sized(7, 4)];
    const unpacked = new SftObjective(ex, [], { batchSize: 4, seed: 1, padId: 0 });
    // one batch of 4, padded to 7: 28 positions, 11 of them padding
    assert.deepEqual(unpacked.epochPadding(9), { paddingTokens: 11, batchTokens: 28, fraction: 11 / 28 });
    const packed = new SftObjective(ex, [], { batchSize: 3, seed: 1, padId: 0, packLength: 8 });
    assert.deepEqual(packed.rows, [[3], [1, 0], [2]]);
    assert.equal(packed.epochSize, 3);
    // one batch of the 3 rows, padded to 8: 24 positions, 1 + 0 + 6 padding
    assert.deepEqual(packed.epochPadding(9), { paddingTokens: 7, batchTokens: 24, fraction: 7 / 24 });
    // the batches drawn agree (an epoch is a single batch here)
    const b = packed.nextBatch(new Rng(2));
    assert.equal(b.B, 3);
    assert.equal(b.T, 8);
    assert.equal(b.paddingTokens, 7);
    assert.deepEqual(packed.paddingDrawn(), { paddingTokens: 7, batchTokens: 24, fraction: 7 / 24 });
    assert.equal(packed.examplesDrawn, 4);
    // batches of 2 rows: the report follows the shuffle's pairing
    const two = new SftObjective(ex, [], { batchSize: 2, seed: 1, padId: 0, packLength: 8 });
    const r = two.epochPadding(4);
    assert.ok(r.batchTokens === 16 + 8 || r.batchTokens === 16 + 7 || r.batchTokens === 16 + 2, `${r.batchTokens}`);
    assert.equal(r.batchTokens - r.paddingTokens, 17, 'the real tokens are every input once');
  });

  it('draws every packed row once an epoch, and resumes the very same batches', () => {
    const words = Array.from({ length: 23 }, (_, i) => 'abcdefgh'.slice(i % 5, (i % 5) + 1 + (i % 4)));
    const ex = rendered(words);
    const opts = { batchSize: 2, seed: 1, padId: 0, packLength: 40 };
    const a = new SftObjective(ex, [], opts);
    const rows = a.epochSize;
    assert.ok(rows < ex.length, `${rows} rows for ${ex.length} examples`);
    const rng = new Rng(5);
    const batches = Array.from({ length: rows }, () => a.nextBatch(rng)); // 2 epochs
    const epoch1 = batches.slice(0, rows / 2 | 0).flatMap((b) => b.lines);
    if (rows % 2 === 0) assert.deepEqual([...epoch1].sort((x, y) => x - y), ex.map((e) => e.line), 'the first epoch holds every example once');
    assert.ok(Math.abs(a.epochs - 2) < 1e-9, `epochs ${a.epochs}`);
    for (const b of batches) {
      assert.ok(b.T <= 40);
      assert.ok(b.packing, 'packed');
    }
    // stop after 3 batches and resume in a fresh objective
    const first = new SftObjective(ex, [], opts);
    const r1 = new Rng(5);
    for (let i = 0; i < 3; i++) first.nextBatch(r1);
    const second = new SftObjective(ex, [], opts);
    second.restore(JSON.parse(JSON.stringify(first.state())));
    const r2 = new Rng(0);
    r2.setState(r1.getState());
    for (let i = 3; i < rows; i++) {
      const got = second.nextBatch(r2);
      assert.deepEqual(got.x, batches[i].x);
      assert.deepEqual(got.y, batches[i].y);
      assert.deepEqual(got.packing, batches[i].packing);
    }
    // a state from more rows than this data packs into is refused
    const other = new SftObjective(ex.slice(0, 3), [], opts);
    assert.throws(() => other.restore({ epoch: 0, position: rows, epochSeed: 7 }), /packed rows; resume with the same data/);
  });
});
