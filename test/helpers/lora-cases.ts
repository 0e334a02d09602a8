/**
 * Small models, token batches and a difference measure shared by the LoRA and PEFT tests.
 *
 *   const ids = randomTokens(LORA_LLAMA, 12);   // Int32Array of 12 ids < vocabSize
 *   maxAbsDiff(a.logits.data, b.logits.data);   // largest |a[i] - b[i]|
 */
import assert from 'node:assert/strict';
import type { ModelConfig } from '../../src/model/config.js';
import { Rng } from '../../src/util/rng.js';
import { tinyGpt2, tinyLlama } from './tiny-model.js';

export const LORA_LLAMA = tinyLlama({ vocabSize: 41, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 48 });
export const LORA_GPT2 = tinyGpt2({ vocabSize: 37, blockSize: 24, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 64 });

export function randomTokens(cfg: ModelConfig, n: number, seed = 3): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => rng.int(cfg.vocabSize));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}
