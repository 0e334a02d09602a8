/**
 * llama.cpp agrees with us: a model exported by llm.ts to GGUF, loaded by llama.cpp through
 * node-llama-cpp, gives the same greedy tokens as our engine. node-llama-cpp is NOT a project
 * dependency (about 1 GB of prebuilt binaries); install it for this test and the peer benches
 * with `npm --prefix bench install`. Without it the test is skipped.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { exportGgufModel, importGgufModel } from '../../src/formats/gguf-model.js';
import { generateCached } from '../../src/generate/generate.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { trainBpe, bpeTokenizerFromTrained } from '../../src/tokenizer/bpe-train.js';
import { tmpDir } from '../helpers/tmp.js';
import { scaledModel } from '../helpers/tiny-model.js';

/** The part of node-llama-cpp's API this test uses (it is not a dependency, so no types). */
interface NodeLlamaCpp {
  getLlama(opts: { gpu: false; build: 'never' }): Promise<{
    loadModel(opts: { modelPath: string }): Promise<{
      createContext(opts: { contextSize: number; threads: number }): Promise<{
        getSequence(): { evaluate(tokens: number[], opts: { temperature: number }): AsyncIterable<number> };
        dispose(): Promise<void>;
      }>;
      dispose(): Promise<void>;
    }>;
  }>;
}

const benchDir = fileURLToPath(new URL('../../../bench/', import.meta.url));

function nodeLlamaCpp(): string | null {
  if (!existsSync(join(benchDir, 'node_modules', 'node-llama-cpp'))) return null;
  try {
    return createRequire(join(benchDir, 'package.json')).resolve('node-llama-cpp');
  } catch {
    return null;
  }
}

describe('llama.cpp agreement (node-llama-cpp, optional)', () => {
  const entry = nodeLlamaCpp();
  for (const family of ['llama', 'gpt2'] as const) {
    it(`${family}: greedy tokens from our GGUF export equal llama.cpp's`, { skip: entry ? false : 'node-llama-cpp not installed (npm --prefix bench install)' }, async () => {
      const text = 'the cat sat on the mat. the dog ate the hat; cats and dogs! '.repeat(20);
      const tok = bpeTokenizerFromTrained(trainBpe(text, { vocabSize: 300, pattern: 'gpt2', specialTokens: ['<|endoftext|>'] }));
      const cfg: ModelConfig = {
        family, vocabSize: tok.vocabSize, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: family === 'llama' ? 2 : 4, nEmbd: 64,
        hiddenDim: family === 'llama' ? 96 : 256, bias: family === 'gpt2', tiedEmbeddings: family === 'gpt2',
        normEps: 1e-5, ropeTheta: 10000, dropout: 0,
      };
      const model = scaledModel(cfg, { seed: 11, gain: 5 });
      const file = join(tmpDir('llama-cpp'), `${family}.gguf`);
      exportGgufModel(file, cfg, model.params, { tokenizer: tok });
      const prompt = tok.encode('the cat sat');
      const n = 24;
      const back = importGgufModel(file);
      const ours: number[] = [];
      for (const t of generateCached(new Transformer(back.config, back.params), prompt, { maxTokens: n, temperature: 0, topK: 0, seed: 1 })) ours.push(t.id);

      const { getLlama } = (await import(pathToFileURL(entry!).href)) as NodeLlamaCpp;
      const llama = await getLlama({ gpu: false, build: 'never' });
      const lm = await llama.loadModel({ modelPath: file });
      const context = await lm.createContext({ contextSize: 64, threads: 1 });
      const theirs: number[] = [];
      for await (const t of context.getSequence().evaluate(prompt, { temperature: 0 })) {
        theirs.push(t);
        if (theirs.length >= n) break;
      }
      await context.dispose();
      await lm.dispose();
      assert.deepEqual(ours, theirs);
    });
  }
});
