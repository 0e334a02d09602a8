/**
 * Small models and data for training tests: a few KB of Tiny Shakespeare (or a synthetic
 * text when the shared data is absent) and configs that train in milliseconds per step.
 */
import { readFileSync } from 'node:fs';
import { validateConfig, type ModelConfig } from '../../src/model/config.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { DEFAULT_TRAIN_OPTIONS, type TrainOptions } from '../../src/train/trainer.js';
import { sharedDataPath } from './shared-data.js';

export function shakespeare(): string | null {
  const p = sharedDataPath('tinyshakespeare/input.txt');
  return p ? readFileSync(p, 'utf8') : null;
}

/** Text to train on: Tiny Shakespeare when available, else a repetitive synthetic text. */
export function trainingText(chars = 200_000): string {
  const text = shakespeare();
  if (text) return text.slice(0, chars);
  const words = ['the ', 'king ', 'and ', 'queen ', 'of ', 'rome ', 'speak ', 'now;\n'];
  let s = '';
  for (let i = 0; s.length < chars; i++) s += words[(i * 7 + (i >> 3)) % words.length];
  return s;
}

export function tinyData(text: string): { tokenizer: CharTokenizer; train: Uint16Array; val: Uint16Array } {
  const tokenizer = CharTokenizer.fromText(text);
  const ids = Uint16Array.from(tokenizer.encode(text));
  const n = Math.floor(ids.length * 0.9);
  return { tokenizer, train: ids.slice(0, n), val: ids.slice(n) };
}

export function tinyConfig(family: 'gpt2' | 'llama', vocabSize: number, extra: Partial<ModelConfig> = {}): ModelConfig {
  return validateConfig({
    family, vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: family === 'llama' ? 2 : 4, nEmbd: 48,
    hiddenDim: family === 'llama' ? 128 : 192, bias: family === 'gpt2', tiedEmbeddings: family === 'gpt2',
    normEps: 1e-5, ropeTheta: 10000, dropout: 0, ...extra,
  });
}

export function tinyOptions(outDir: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    ...DEFAULT_TRAIN_OPTIONS, batchSize: 8, blockSize: 32, maxIters: 8, warmupIters: 2, decayIters: 8,
    lr: 3e-3, minLr: 3e-4, evalInterval: 4, evalIters: 2, outDir, ...extra,
  };
}
