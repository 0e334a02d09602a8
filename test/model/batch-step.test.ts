/**
 * The batched decode step (BatchStep over a BatchKvCache, the batch decode program) against
 * forwardCached on each sequence alone: the same logits, bit for bit, for GPT-2 and Llama, F32
 * and GGUF Q8_0/Q4_0 blocks, with prompts of different lengths, rows in any slot order, subsets
 * of the slots, and slots that grow past 256 positions (the cache re-laid out and rebound). Also
 * the models without a batch program (useDecodeProgram off, an unmerged LoRA adapter), and the
 * errors of bad rows.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { backend } from '../../src/backend/index.js';
import { exportGgufModel, importGgufModel, type GgufQuant } from '../../src/formats/gguf-model.js';
import { BatchKvCache } from '../../src/model/batch-kv-cache.js';
import { BatchStep } from '../../src/model/batch-step.js';
import type { ModelConfig } from '../../src/model/config.js';
import { KvCache } from '../../src/model/kv-cache.js';
import { loraLayers } from '../../src/model/lora.js';
import { Transformer } from '../../src/model/transformer.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const LLAMA = tinyLlama({ vocabSize: 83, blockSize: 300, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 64, hiddenDim: 96 });
const GPT2 = tinyGpt2({ vocabSize: 71, blockSize: 300, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 64, hiddenDim: 128 });
// nEmbd 36: rows that are not a multiple of 8 floats (the SIMD tiles' fallback)
const ODD = tinyLlama({ vocabSize: 50, blockSize: 64, nLayer: 1, nHead: 3, nKvHead: 1, nEmbd: 36, hiddenDim: 52 });
// 40 and 72 floats: 16-float steps and one 8-float step after them
const TAIL = tinyLlama({ vocabSize: 61, blockSize: 64, nLayer: 2, nHead: 5, nKvHead: 5, nEmbd: 40, hiddenDim: 72 });

const makeModel = (cfg: ModelConfig, seed = 1): Transformer => scaledModel(cfg, { seed, gain: 3, jitter: 0.2 });

function promptOf(n: number, salt: number, V: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (7 * i + 3 * salt + 1) % V);
}

/** Greedy decoding of one prompt alone: the logits of each of `steps` single-token forwards. */
function alone(m: Transformer, prompt: Int32Array, steps: number): Float32Array[] {
  const V = m.config.vocabSize;
  const cache = new KvCache(m.config);
  let logits = m.forwardCached(prompt, cache);
  const out: Float32Array[] = [];
  for (let t = 0; t < steps; t++) {
    logits = m.forwardCached(Int32Array.of(backend().argmax(logits, V)), cache);
    out.push(logits);
  }
  return out;
}

/**
 * The same prompts decoded together: prompt i in slot slotOf[i]; at step t the rows are the
 * sequences with t < steps[i], in the order `order(t)` gives. Each sequence's logits per step.
 */
function together(m: Transformer, prompts: Int32Array[], steps: number[], slots: number, slotOf: number[], reverse = false): Float32Array[][] {
  const V = m.config.vocabSize;
  const cache = new BatchKvCache(m.config, slots);
  const step = new BatchStep(m, cache);
  const current = prompts.map((p, i) => m.forwardCached(p, cache.slotCache(slotOf[i])));
  const got: Float32Array[][] = prompts.map(() => []);
  const longest = Math.max(...steps);
  for (let t = 0; t < longest; t++) {
    let rows = prompts.map((_, i) => i).filter((i) => t < steps[i]);
    if (reverse && t % 2 === 1) rows = rows.reverse();
    const tokens = Int32Array.from(rows, (i) => backend().argmax(current[i], V));
    const logits = step.run(tokens, Int32Array.from(rows, (i) => slotOf[i]), rows.length);
    rows.forEach((i, r) => {
      current[i] = logits.slice(r * V, (r + 1) * V);
      got[i].push(current[i]);
    });
  }
  for (let i = 0; i < prompts.length; i++) assert.equal(cache.lengths[slotOf[i]], prompts[i].length + steps[i]);
  return got;
}

function assertSame(want: Float32Array[], got: Float32Array[], what: string): void {
  assert.equal(got.length, want.length, `${what}: steps`);
  for (let t = 0; t < want.length; t++) {
    for (let j = 0; j < want[t].length; j++) {
      if (want[t][j] !== got[t][j]) assert.fail(`${what}: step ${t}, logit ${j}: alone ${want[t][j]} vs batched ${got[t][j]}`);
    }
  }
}

function checkModel(m: Transformer, what: string, lengths: number[], steps: number[], slots: number, slotOf: number[]): void {
  const V = m.config.vocabSize;
  const prompts = lengths.map((n, i) => promptOf(n, i, V));
  const got = together(m, prompts, steps, slots, slotOf, true);
  prompts.forEach((p, i) => assertSame(alone(m, p, steps[i]), got[i], `${what}, sequence ${i} (prompt ${p.length})`));
}

describe(`batch decode step (${backend().name} backend)`, () => {
  const dir = tmpDir('batch-step');

  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family} F32: each row's logits equal decoding it alone, bit for bit (7 prompts of 1-40 tokens, 8 slots, rows in shuffled slots)`, () => {
      checkModel(makeModel(cfg), cfg.family, [1, 3, 7, 12, 40, 2, 19], [12, 9, 15, 4, 11, 14, 1], 8, [5, 0, 7, 2, 1, 6, 3]);
    });
  }

  it('llama F32: slots that grow past 256 positions (the cache grows and is rebound while others run)', () => {
    checkModel(makeModel(LLAMA, 4), 'growth', [250, 5, 30], [20, 24, 3], 3, [2, 0, 1]);
  });

  it('rows of 36 floats (not a multiple of the SIMD width) and grouped-query heads 3:1; rows of 40 and 72 floats', () => {
    checkModel(makeModel(ODD, 5), 'odd widths', [4, 9, 1, 6, 2], [10, 8, 12, 3, 7], 5, [0, 1, 2, 3, 4]);
    checkModel(makeModel(TAIL, 6), 'widths 40/72', [2, 5, 1, 8, 3, 4, 6], [9, 3, 7, 11, 5, 13, 2], 7, [6, 5, 4, 3, 2, 1, 0]);
  });

  for (const quant of ['q8_0', 'q4_0'] as const) {
    for (const cfg of [LLAMA, GPT2]) {
      it(`${cfg.family} ${quant} blocks: each row's logits equal decoding it alone`, () => {
        checkModel(quantized(dir, makeModel(cfg, 2), quant), `${cfg.family} ${quant}`, [6, 1, 11], [8, 10, 5], 4, [3, 1, 0]);
      });
    }
  }

  it('without a batch program (useDecodeProgram off, or an unmerged LoRA adapter) rows run one by one with the same results', () => {
    const m = makeModel(LLAMA, 6);
    m.useDecodeProgram = false;
    checkModel(m, 'op by op', [3, 8], [6, 6], 2, [1, 0]);
    m.useDecodeProgram = true;
    const lora = new Transformer(LLAMA, m.params, { layers: loraLayers({ r: 2, alpha: 4, dropout: 0, targets: ['q_proj', 'down_proj'], rng: new Rng(3) }) });
    for (const p of lora.namedParameters()) if (p.name.includes('lora_B')) p.tensor.data.fill(0.05);
    lora.eval();
    checkModel(lora, 'lora', [5, 2, 9], [5, 7, 3], 3, [0, 1, 2]);
  });

  it('bad rows are clean errors that change nothing: token, slot, repeated slot, full slot', () => {
    const m = makeModel(LLAMA);
    const V = LLAMA.vocabSize;
    const cache = new BatchKvCache(LLAMA, 2, 6);
    const step = new BatchStep(m, cache);
    m.forwardCached(Int32Array.of(1, 2, 3), cache.slotCache(0));
    m.forwardCached(Int32Array.of(4), cache.slotCache(1));
    const bad: [Int32Array, Int32Array, number, RegExp][] = [
      [Int32Array.of(V), Int32Array.of(0), 1, /outside the vocabulary/],
      [Int32Array.of(1), Int32Array.of(2), 1, /not one of the cache's 2 slots/],
      [Int32Array.of(1, 2), Int32Array.of(1, 1), 2, /both feed slot 1/],
      [Int32Array.of(1, 2, 3), Int32Array.of(0, 1, 0), 3, /1 to 2 rows/],
    ];
    for (const [tokens, slots, n, message] of bad) {
      assert.throws(() => step.run(tokens, slots, n), (e: unknown) => e instanceof LlmError && message.test(e.message), String(message));
    }
    assert.deepEqual(Array.from(cache.lengths), [3, 1]);
    for (let i = 0; i < 3; i++) step.run(Int32Array.of(5), Int32Array.of(0), 1);
    assert.throws(() => step.run(Int32Array.of(5, 6), Int32Array.of(1, 0), 2), (e: unknown) => e instanceof LlmError && /slot 0 is full/.test(e.message));
    assert.deepEqual(Array.from(cache.lengths), [6, 1]);
  });
});

function quantized(dir: string, m: Transformer, quant: GgufQuant): Transformer {
  const file = join(dir, `m.${m.config.family}.${quant}.gguf`);
  exportGgufModel(file, m.config, m.params, { quant });
  const g = importGgufModel(file, { keepQuantized: true });
  assert.ok(g.quantized.size > 0);
  const q = new Transformer(g.config, g.params, { quantized: g.quantized });
  q.eval();
  return q;
}
