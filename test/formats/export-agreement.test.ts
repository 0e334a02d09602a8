/**
 * Acceptance: greedy decoding of a model exported by us and re-imported from each format
 * (Hugging Face safetensors directory, GGUF F32, llama2.c version 0 and version 1) gives the
 * same tokens as the original model, and the same logits (max abs difference < 1e-4).
 *
 * The model is a small Llama with grouped-query attention (4 query heads, 2 kv heads) and a
 * separate classifier, trained by our Trainer for 150 steps on Tiny Shakespeare (or the synthetic
 * text when the shared data is absent), so its greedy continuations are real text with margins
 * of a trained model rather than random-weight near-ties. Every re-import goes through
 * loadAnyModel (format detection included).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { exportGgufModel } from '../../src/formats/gguf-model.js';
import { exportHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { writeLlama2c } from '../../src/formats/llama2c-write.js';
import { loadAnyModel, type ModelFormat } from '../../src/formats/load-model.js';
import { generateCached } from '../../src/generate/generate.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { Trainer } from '../../src/train/trainer.js';
import { Rng } from '../../src/util/rng.js';
import { tinyData, tinyOptions, trainingText } from '../helpers/tiny-run.js';
import { tmpDir } from '../helpers/tmp.js';

const GREEDY_TOKENS = 40;
const PROMPTS = ['ROMEO:\n', 'First Citizen:\nWe are', 'the king '];
/** without ../shared the model trains on a synthetic text of a few lowercase words */
const SYNTHETIC_PROMPTS = ['the king ', 'and queen of rome', 'speak now;\n'];

function greedy(m: Transformer, prompt: number[]): number[] {
  return [...generateCached(m, prompt, { maxTokens: GREEDY_TOKENS, temperature: 0, topK: 0, seed: 1 })].map((t) => t.id);
}

function allLogits(m: Transformer, toks: number[]): Float32Array {
  return m.forwardCached(Int32Array.from(toks), new KvCache(m.config), { allLogits: true });
}

describe('export -> re-import agreement (safetensors, GGUF F32, llama2.c v0/v1)', () => {
  it('a trained Llama (GQA) gives identical greedy tokens and logits within 1e-4 from every format', async (t) => {
    const text = trainingText(60_000);
    const d = tinyData(text);
    const cfg: ModelConfig = {
      family: 'llama', vocabSize: d.tokenizer.vocabSize, blockSize: 128, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 64, hiddenDim: 160,
      bias: false, tiedEmbeddings: false, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
    };
    const trainer = new Trainer(new Transformer(cfg, new Rng(3)), d.tokenizer, d, tinyOptions(tmpDir('agree-train'), {
      maxIters: 150, warmupIters: 10, decayIters: 150, lr: 1e-2, minLr: 1e-3, evalInterval: 150, evalIters: 2, batchSize: 8, blockSize: 64,
    }));
    const result = await trainer.run();
    t.diagnostic(`trained 150 steps: val loss ${result.lastEval?.valLoss.toFixed(3)}`);
    const original = trainer.model;
    original.eval();

    const dir = tmpDir('agree-export');
    const exports: [ModelFormat, string][] = [];
    const hfDir = join(dir, 'hf');
    exportHfCheckpoint(hfDir, cfg, original.params, {});
    exports.push(['hf', hfDir]);
    const gguf = join(dir, 'model-f32.gguf');
    exportGgufModel(gguf, cfg, original.params, { quant: 'f32', tokenizer: null });
    exports.push(['gguf', gguf]);
    for (const version of [0, 1] as const) {
      const f = join(dir, `model-v${version}.bin`);
      writeLlama2c(f, cfg, original.params, { version });
      exports.push(['llama2c', f]);
    }

    const texts = PROMPTS.every((p) => [...p].every((c) => text.includes(c))) ? PROMPTS : SYNTHETIC_PROMPTS;
    const prompts = texts.map((p) => d.tokenizer.encode(p));
    const want = prompts.map((p) => greedy(original, p));
    for (const w of want) assert.equal(w.length, GREEDY_TOKENS);
    t.diagnostic(`original greedy: ${JSON.stringify(d.tokenizer.decode(want[0]))}`);
    // the trained model does not just repeat one token
    assert.ok(new Set(want.flat()).size > 5, 'greedy output is degenerate');
    const probe = [...prompts[1], ...want[1]];
    const wantLogits = allLogits(original, probe);

    for (const [format, path] of exports) {
      const loaded = await loadAnyModel(path);
      assert.equal(loaded.format, format, path);
      assert.deepEqual(loaded.config, cfg, `${path}: config`);
      const m = new Transformer(loaded.config, loaded.params);
      m.eval();
      for (let i = 0; i < prompts.length; i++) assert.deepEqual(greedy(m, prompts[i]), want[i], `${path}: greedy tokens for prompt ${JSON.stringify(texts[i])}`);
      const got = allLogits(m, probe);
      let maxDiff = 0;
      for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - wantLogits[i]));
      t.diagnostic(`${path.slice(dir.length + 1)}: ${prompts.length} x ${GREEDY_TOKENS} greedy tokens identical, logits max abs diff ${maxDiff.toExponential(2)}`);
      assert.ok(maxDiff < 1e-4, `${path}: logits differ by ${maxDiff}`);
    }
  });
});
