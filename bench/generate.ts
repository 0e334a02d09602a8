/**
 * Decode speed: tokens/s of greedy generation with the KV cache vs the full-recompute path,
 * random weights of a preset shape (default llama-15m).
 *
 *   node dist/bench/generate.js [preset] [promptTokens] [newTokens] [--quant q8_0|q4_0] [--gguf FILE] [--no-uncached]
 *
 * --quant exports the random model to a temporary GGUF of that type and re-imports it with the
 * Q8_0/Q4_0 Linear weights (and lm_head) kept as blocks (Backend.matmulQuantized); --gguf FILE
 * benchmarks a GGUF file (quantized weights kept as blocks).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportGgufModel, importGgufModel, type GgufQuant } from '../src/formats/gguf-model.js';
import { backend } from '../src/backend/index.js';
import { resolveConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { generateTokens, generateTokensUncached } from '../src/generate/generate.js';
import { Rng } from '../src/util/rng.js';

const argv = process.argv.slice(2);
function flag(name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
}
const quant = flag('--quant') as GgufQuant | undefined;
const ggufFile = flag('--gguf');
const noUncached = argv.includes('--no-uncached');
if (noUncached) argv.splice(argv.indexOf('--no-uncached'), 1);
const preset = argv[0] ?? 'llama-15m';
const promptLen = Number(argv[1] ?? 16);
const newTokens = Number(argv[2] ?? 128);

function load(): Transformer {
  if (ggufFile) {
    const g = importGgufModel(ggufFile, { keepQuantized: true, tokenizer: false });
    return new Transformer(g.config, g.params, { quantized: g.quantized });
  }
  const m = new Transformer(resolveConfig(preset), new Rng(1));
  if (!quant) return m;
  const dir = mkdtempSync(join(tmpdir(), 'llmts-bench-'));
  try {
    const file = join(dir, `model.${quant}.gguf`);
    exportGgufModel(file, m.config, m.params, { quant });
    const g = importGgufModel(file, { keepQuantized: true, tokenizer: false });
    return new Transformer(g.config, g.params, { quantized: g.quantized });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const model = load();
const cfg = model.config;
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

const weights = ggufFile ?? `${preset} (random weights)`;
console.log(`${weights}, vocab ${cfg.vocabSize}, weights ${quant ?? (model.quantized.size > 0 ? 'quantized' : 'f32')} (${model.quantized.size} quantized matrices), prompt ${promptLen}, ${newTokens} new tokens, backend ${backend().name}`);
time('cached', () => generateTokens(model, prompt, opts)); // warm-up
const cached = time('cached', () => generateTokens(model, prompt, opts));
if (noUncached) process.exit(0);
const uncached = time('uncached', () => generateTokensUncached(model, prompt, opts));
console.log(`speed-up ${(cached / uncached).toFixed(1)}x`);
