/**
 * Decode speed: tokens/s of greedy generation with the KV cache vs the full-recompute path,
 * random weights of a preset shape (default llama-15m).
 *
 *   node dist/bench/generate.js [preset] [promptTokens] [newTokens]
 */
import { backend } from '../src/backend/index.js';
import { resolveConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { generateTokens, generateTokensUncached } from '../src/generate/generate.js';
import { Rng } from '../src/util/rng.js';

const preset = process.argv[2] ?? 'llama-15m';
const promptLen = Number(process.argv[3] ?? 16);
const newTokens = Number(process.argv[4] ?? 128);
const cfg = resolveConfig(preset);
const model = new Transformer(cfg, new Rng(1));
model.eval();
const rng = new Rng(2);
const prompt = Array.from({ length: promptLen }, () => Math.floor(rng.uniform() * cfg.vocabSize));
const opts = { maxTokens: newTokens, temperature: 0, topK: 0, seed: 1 };

function time(label: string, gen: () => Iterable<number>): number {
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  for (const _ of gen()) if (n++ === 0) first = performance.now();
  const t1 = performance.now();
  const rate = (n - 1) / ((t1 - first) / 1000);
  console.log(`${label.padEnd(10)} ${n} tokens: first token ${(first - t0).toFixed(1)} ms, then ${rate.toFixed(1)} tok/s`);
  return rate;
}

console.log(`${preset} (random weights, vocab ${cfg.vocabSize}), prompt ${promptLen}, ${newTokens} new tokens, backend ${backend().name}`);
time('cached', () => generateTokens(model, prompt, opts)); // warm-up
const cached = time('cached', () => generateTokens(model, prompt, opts));
const uncached = time('uncached', () => generateTokensUncached(model, prompt, opts));
console.log(`speed-up ${(cached / uncached).toFixed(1)}x`);
