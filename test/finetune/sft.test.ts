/**
 * The SFT objective: rendering to ids + loss mask, truncation, labels shifted by one and masked
 * to the responses, padding that changes nothing, the loss against a hand computation, epoch
 * order and exact resume of the batch sequence.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chatTemplate } from '../../src/chat/index.js';
import type { SftExample } from '../../src/data/sft-examples.js';
import { makeSftBatch, meanLoss, renderSftExamples, SftObjective, sftLoss, stepsForEpochs, type RenderedExample } from '../../src/finetune/sft.js';
import { Transformer } from '../../src/model/transformer.js';
import { crossEntropy, IGNORE_INDEX, noGrad } from '../../src/tensor/index.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { LORA_MODULES, loraLayers } from '../../src/model/lora.js';

const tok = CharTokenizer.fromText('QA: \nabcdefghreverse');
const qa = chatTemplate('qa');
const chat = (user: string, assistant: string): SftExample => ({ kind: 'chat', messages: [{ role: 'user', content: user }, { role: 'assistant', content: assistant }] });

function model(seed = 1): Transformer {
  const m = new Transformer(tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 32 }), new Rng(seed));
  m.eval();
  return m;
}

describe('SFT rendering and labels', () => {
  it('targets are exactly the assistant tokens and the end of turn, shifted by one', () => {
    const { rendered } = renderSftExamples([chat('reverse abc', 'cba')], [7], tok, qa, { maxLength: 32 });
    const [e] = rendered;
    assert.equal(tok.decode([...e.ids]), 'Q: reverse abc\nA: cba\n');
    assert.equal(e.line, 7);
    const b = makeSftBatch([e], 0);
    assert.equal(b.T, e.ids.length - 1);
    assert.deepEqual([...b.x], [...e.ids.subarray(0, -1)]);
    // the trained targets, in order, spell the answer and the qa end of turn ('\n')
    const trained = [...b.y].filter((id) => id !== IGNORE_INDEX);
    assert.equal(tok.decode(trained), ' cba\n'); // qa: the answer is ' {assistant}', its end of turn '\n'
    // position t predicts ids[t+1], and only where ids[t+1] is a response token
    const answerStart = 'Q: reverse abc\nA:'.length;
    for (let t = 0; t < b.T; t++) {
      if (e.lossMask[t + 1] === 1) assert.equal(b.y[t], e.ids[t + 1]);
      else assert.equal(b.y[t], IGNORE_INDEX);
      if (t + 1 < answerStart) assert.equal(b.y[t], IGNORE_INDEX, `prompt position ${t} is not trained`);
    }
    assert.equal(b.targetTokens, trained.length);
  });

  it('--loss-on all trains every target; completion and text examples', () => {
    const [all] = renderSftExamples([chat('reverse abc', 'cba')], [1], tok, qa, { maxLength: 32, lossOn: 'all' }).rendered;
    assert.equal(makeSftBatch([all], 0).targetTokens, all.ids.length - 1);
    const [c] = renderSftExamples([{ kind: 'completion', prompt: 'reverse ab ', completion: 'ba' }], [1], tok, qa, { maxLength: 32 }).rendered;
    assert.equal(tok.decode([...c.ids].filter((_, i) => c.lossMask[i] === 1)), 'ba');
    const [t] = renderSftExamples([{ kind: 'text', text: 'abc' }], [1], tok, qa, { maxLength: 32 }).rendered;
    assert.deepEqual([...t.lossMask], [1, 1, 1]); // a char tokenizer has no EOS
  });

  it('truncates to max-length and drops an example whose whole response is cut', () => {
    const long = chat('reverse abcdefgh', 'hgfedcba');
    const r = renderSftExamples([long, chat('reverse ab', 'ba'), long], [1, 2, 3], tok, qa, { maxLength: 22 });
    // 'Q: reverse abcdefgh\nA:' is 22 characters: nothing of the answer is left
    assert.equal(r.truncated, 2);
    assert.deepEqual(r.dropped, [1, 3]);
    assert.equal(r.rendered.length, 1);
    const kept = renderSftExamples([long], [1], tok, qa, { maxLength: 24 });
    assert.equal(kept.truncated, 1);
    assert.equal(kept.rendered[0].ids.length, 24);
    assert.deepEqual(kept.dropped, []);
  });

  it('padding is ignored: a padded batch gives the token-weighted mean of its examples', () => {
    const m = model();
    const ex = renderSftExamples([chat('reverse abcdef', 'fedcba'), chat('reverse ab', 'ba')], [1, 2], tok, qa, { maxLength: 32 }).rendered;
    const b = makeSftBatch(ex, 3);
    const short = ex[1].ids.length - 1;
    for (let t = short; t < b.T; t++) {
      assert.equal(b.x[b.T + t], 3, 'padded with padId');
      assert.equal(b.y[b.T + t], IGNORE_INDEX, 'padding is never a target');
    }
    const obj = new SftObjective(ex, [], { batchSize: 2, seed: 1, padId: 3 });
    const both = noGrad(() => obj.loss(m, b).loss.item());
    const alone = ex.map((e) => ({ loss: noGrad(() => obj.loss(m, makeSftBatch([e], 3)).loss.item()), n: makeSftBatch([e], 3).targetTokens }));
    const expected = (alone[0].loss * alone[0].n + alone[1].loss * alone[1].n) / (alone[0].n + alone[1].n);
    assert.ok(Math.abs(both - expected) < 1e-5, `${both} vs ${expected}`);
    // another pad id changes nothing either
    const other = noGrad(() => obj.loss(m, makeSftBatch(ex, 0)).loss.item());
    assert.ok(Math.abs(both - other) < 1e-6);
  });

  it('the loss is the mean cross-entropy over the trained targets (by hand)', () => {
    const m = model(2);
    const ex = renderSftExamples([chat('reverse abc', 'cba'), chat('reverse hg', 'gh')], [1, 2], tok, qa, { maxLength: 32 }).rendered;
    const b = makeSftBatch(ex, 0);
    const obj = new SftObjective(ex, [], { batchSize: 2, seed: 1, padId: 0 });
    const loss = noGrad(() => obj.loss(m, b).loss.item());
    const logits = noGrad(() => m.forward(b.x, b.B, b.T).logits.data);
    const V = m.config.vocabSize;
    let sum = 0;
    let n = 0;
    for (let r = 0; r < b.B * b.T; r++) {
      if (b.y[r] === IGNORE_INDEX) continue;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[r * V + v]);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[r * V + v] - max);
      sum += Math.log(z) + max - logits[r * V + b.y[r]];
      n++;
    }
    assert.equal(n, obj.weight(b));
    assert.ok(Math.abs(loss - sum / n) < 1e-5, `${loss} vs ${sum / n}`);
    assert.ok(Math.abs(noGrad(() => meanLoss(m, ex, 1, 0)) - sum / n) < 1e-5, 'meanLoss weights by tokens');
  });

  it('the head runs on the trained positions only, with the loss and gradients of the full logits', () => {
    const ex = renderSftExamples([chat('reverse abcdef', 'fedcba'), chat('reverse ab', 'ba'), chat('reverse hgfe', 'efgh')], [1, 2, 3], tok, qa, { maxLength: 32 }).rendered;
    const b = makeSftBatch(ex, 0);
    assert.ok(b.targetTokens < b.B * b.T / 2, 'most positions are prompt or padding');
    const sizes = { vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 };
    const cases: [string, () => Transformer][] = [
      ['llama (untied head)', () => new Transformer(tinyLlama(sizes), new Rng(4))],
      ['gpt2 (head tied to the embedding)', () => new Transformer(tinyGpt2({ ...sizes, nKvHead: 2 }), new Rng(4))],
      ['llama + LoRA on every projection, base frozen', () => {
        const m = new Transformer(tinyLlama(sizes), new Rng(4), { layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: [...LORA_MODULES.llama], rng: new Rng(5) }) });
        for (const p of m.namedParameters()) if (p.name.includes('lora_B')) for (let i = 0; i < p.tensor.size; i++) p.tensor.data[i] = 0.1 * Math.sin(i + 1);
        m.freeze((n) => !n.includes('.lora_'));
        return m;
      }],
    ];
    for (const [label, make] of cases) {
      const grads = (fn: (m: Transformer) => { loss: number; backward: () => void }) => {
        const m = make();
        m.train(new Rng(6));
        const r = fn(m);
        r.backward();
        return { loss: r.loss, grads: m.namedParameters().filter((p) => p.trainable).map((p) => ({ name: p.name, g: Float64Array.from(p.tensor.grad!) })) };
      };
      const picked = grads((m) => {
        const l = sftLoss(m, b, 'mean');
        return { loss: l.item(), backward: () => l.backward() };
      });
      const full = grads((m) => {
        const l = crossEntropy(m.forward(b.x, b.B, b.T).logits, b.y);
        return { loss: l.item(), backward: () => l.backward() };
      });
      assert.ok(Math.abs(picked.loss - full.loss) <= 1e-6 * Math.abs(full.loss), `${label}: loss ${picked.loss} vs ${full.loss}`);
      assert.equal(picked.grads.length, full.grads.length);
      for (let i = 0; i < full.grads.length; i++) {
        const a = picked.grads[i].g, e = full.grads[i].g;
        let diff = 0, scale = 0;
        for (let j = 0; j < e.length; j++) {
          diff = Math.max(diff, Math.abs(a[j] - e[j]));
          scale = Math.max(scale, Math.abs(e[j]));
        }
        assert.ok(scale > 0, `${label}: ${full.grads[i].name} has a gradient`);
        assert.ok(diff <= 1e-5 * scale, `${label}: ${full.grads[i].name} differs by ${diff} (max |g| ${scale})`);
      }
      // 'sum' is the mean times the trained targets
      const m = make();
      const sumLoss = noGrad(() => sftLoss(m, b, 'sum').item());
      assert.ok(Math.abs(sumLoss - picked.loss * b.targetTokens) <= 1e-5 * sumLoss, `${label}: sum ${sumLoss} vs ${picked.loss * b.targetTokens}`);
    }
  });

  it('a batch with no trained target is an error naming its lines', () => {
    const e: RenderedExample = { ids: Int32Array.from([1, 2, 3]), lossMask: new Uint8Array(3), line: 41, key: 'x' };
    const obj = new SftObjective([e], [], { batchSize: 1, seed: 1, padId: 0 });
    assert.throws(() => obj.weight(obj.nextBatch(new Rng(1))), (err: unknown) => err instanceof LlmError && /lines 41/.test(err.message));
  });

  it('draws shuffled epochs, and state() + the rng resume the very same batches', () => {
    const rows = Array.from({ length: 7 }, (_, i) => chat(`reverse ${'abcdefg'[i]}b`, `b${'abcdefg'[i]}`));
    const ex = renderSftExamples(rows, rows.map((_, i) => i + 1), tok, qa, { maxLength: 32 }).rendered;
    const a = new SftObjective(ex, [], { batchSize: 3, seed: 1, padId: 0 });
    const rng = new Rng(5);
    const lines: number[] = [];
    for (let i = 0; i < 7; i++) lines.push(...a.nextBatch(rng).lines); // 21 examples = 3 epochs
    for (let e = 0; e < 3; e++) assert.deepEqual([...lines.slice(e * 7, e * 7 + 7)].sort(), [1, 2, 3, 4, 5, 6, 7], `epoch ${e} holds every example once`);
    assert.notDeepEqual(lines.slice(0, 7), lines.slice(7, 14), 'each epoch is shuffled anew');
    // stop after 2 batches, resume in a fresh objective
    const first = new SftObjective(ex, [], { batchSize: 3, seed: 1, padId: 0 });
    const r1 = new Rng(5);
    const got: number[] = [];
    for (let i = 0; i < 2; i++) got.push(...first.nextBatch(r1).lines);
    const state = JSON.parse(JSON.stringify(first.state()));
    const second = new SftObjective(ex, [], { batchSize: 3, seed: 1, padId: 0 });
    second.restore(state);
    const r2 = new Rng(0);
    r2.setState(r1.getState());
    for (let i = 2; i < 7; i++) got.push(...second.nextBatch(r2).lines);
    assert.deepEqual(got, lines);
  });

  it('stepsForEpochs: the fewest steps whose batches complete the passes (llmts sft --epochs)', () => {
    const rows = Array.from({ length: 7 }, (_, i) => chat(`reverse ${'abcdefg'[i]}b`, `b${'abcdefg'[i]}`));
    const ex = renderSftExamples(rows, rows.map((_, i) => i + 1), tok, qa, { maxLength: 32 }).rendered;
    for (const [epochs, batchSize, accum] of [[1, 3, 1], [2, 7, 1], [3, 2, 2], [0.5, 1, 1], [2.5, 4, 3]]) {
      const steps = stepsForEpochs(epochs, ex.length, batchSize * accum);
      const obj = new SftObjective(ex, [], { batchSize, seed: 1, padId: 0 });
      const rng = new Rng(3);
      const drawn: number[] = [];
      for (let s = 0; s < steps; s++) {
        drawn.push(obj.epochs);
        for (let a = 0; a < accum; a++) obj.nextBatch(rng);
      }
      assert.ok(obj.epochs >= epochs - 1e-12, `${epochs} epochs of ${batchSize}x${accum}: ${steps} steps reach only ${obj.epochs}`);
      assert.ok(drawn.at(-1)! < epochs, `${epochs} epochs of ${batchSize}x${accum}: ${steps - 1} steps already reach ${drawn.at(-1)}`);
    }
    assert.equal(stepsForEpochs(3, 100, 10), 30);
    assert.throws(() => stepsForEpochs(0, 100, 10), LlmError);
  });
});
