/**
 * Issue 7: "a 1 GB model does not need 2 GB of RAM". A ~140 MB F32 Llama (GGUF and a Hugging Face
 * directory) is loaded in fresh child processes (test/helpers/model-memory.ts) that build the
 * model and generate one token; their peak RSS growth over the baseline must stay below 1.3x the
 * file size, both memory-mapped (native addon) and with lazy per-tensor reads
 * (LLMTS_BACKEND=reference). Mapped, loading itself must cost almost nothing (pages are read when
 * the forward pass touches them).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { nativeBackend } from '../../src/backend/index.js';
import { validateConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { Rng } from '../../src/util/rng.js';
import { measureLoad, writeModelFiles, type LoadMeasurement } from '../helpers/model-memory.js';
import { tmpDir } from '../helpers/tmp.js';

const MAX_RATIO = 1.3;
const dir = tmpDir('load-memory');
// 35.5M parameters: 142 MB in F32
const cfg = validateConfig({
  family: 'llama', vocabSize: 8000, blockSize: 64, nLayer: 8, nHead: 8, nKvHead: 8, nEmbd: 512, hiddenDim: 1536,
  bias: false, tiedEmbeddings: false, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
});
const files = writeModelFiles(dir, cfg, new Transformer(cfg, new Rng(1)).params, ['gguf-f32', 'hf']);
const canMap = nativeBackend() !== null && process.env.LLMTS_MMAP !== '0';

const MB = (b: number): string => (b / 2 ** 20).toFixed(1);
function report(t: { diagnostic(s: string): void }, m: LoadMeasurement): void {
  t.diagnostic(
    `${m.backend}, ${m.source}: file ${MB(m.fileBytes)} MiB; peak RSS growth after load ${MB(m.loadGrowthBytes)} MiB, ` +
      `after load + 1 token ${MB(m.peakGrowthBytes)} MiB (${(m.peakGrowthBytes / m.fileBytes).toFixed(2)}x the file); load ${m.loadMs.toFixed(0)} ms`,
  );
}

describe('peak memory of loading a model', () => {
  for (const kind of ['gguf-f32', 'hf'] as const) {
    it(`${kind}, memory-mapped: load costs < 0.25x the file, load + 1 token < ${MAX_RATIO}x`, { skip: canMap ? false : 'no native addon' }, (t) => {
      const m = measureLoad(files[kind], { LLMTS_BACKEND: 'native' });
      report(t, m);
      assert.equal(m.source, 'mmap');
      assert.ok(m.loadGrowthBytes < 0.25 * m.fileBytes, `loading grew RSS by ${MB(m.loadGrowthBytes)} MiB for a ${MB(m.fileBytes)} MiB file`);
      assert.ok(m.peakGrowthBytes < MAX_RATIO * m.fileBytes, `peak growth ${MB(m.peakGrowthBytes)} MiB for a ${MB(m.fileBytes)} MiB file`);
      assert.ok(m.token >= 0 && m.token < cfg.vocabSize);
    });
  }

  it(`gguf-f32, lazy per-tensor reads (LLMTS_BACKEND=reference): load + 1 token < ${MAX_RATIO}x the file`, (t) => {
    const m = measureLoad(files['gguf-f32'], { LLMTS_BACKEND: 'reference' });
    report(t, m);
    assert.equal(m.source, 'read');
    assert.ok(m.peakGrowthBytes < MAX_RATIO * m.fileBytes, `peak growth ${MB(m.peakGrowthBytes)} MiB for a ${MB(m.fileBytes)} MiB file`);
    assert.ok(m.token >= 0 && m.token < cfg.vocabSize);
  });
});
