/**
 * llama.cpp agrees with us: a model exported by llm.ts to GGUF, loaded by llama.cpp through
 * node-llama-cpp, gives the same greedy tokens as our engine. node-llama-cpp is NOT a project
 * dependency (about 1 GB of prebuilt binaries); install it for this test and the peer benches
 * with `npm --prefix bench install`. Without it the test is skipped.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { exportGgufModel, importGgufModel } from '../../src/formats/gguf-model.js';
import { generateCached } from '../../src/generate/generate.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { trainBpe, bpeTokenizerFromTrained } from '../../src/tokenizer/bpe-train.js';
import { tmpDir } from '../helpers/tmp.js';
import { importNodeLlamaCpp, llamaCppGreedy, NODE_LLAMA_CPP_SKIP, nodeLlamaCppEntry } from '../helpers/node-llama-cpp.js';
import { scaledModel } from '../helpers/tiny-model.js';


describe('llama.cpp agreement (node-llama-cpp, optional)', () => {
  const entry = nodeLlamaCppEntry();
  for (const family of ['llama', 'gpt2'] as const) {
    it(`${family}: greedy tokens from our GGUF export equal llama.cpp's`, { skip: entry ? false : NODE_LLAMA_CPP_SKIP }, async () => {
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

      const { getLlama } = await importNodeLlamaCpp(entry!);
      const llama = await getLlama({ gpu: false, build: 'never' });
      const lm = await llama.loadModel({ modelPath: file });
      const theirs = await llamaCppGreedy(lm, prompt, n);
      await lm.dispose();
      assert.deepEqual(ours, theirs);
    });
  }
});
