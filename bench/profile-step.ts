/**
 * Where a training step's time goes: wraps every Backend kernel with a timer, runs a few
 * training steps of a preset and prints time per kernel per step, plus the time spent
 * outside kernels (JavaScript: autograd, allocation, glue).
 *
 *   node dist/bench/profile-step.js [--preset shakespeare-char] [--batch-size 12] [--block-size 64] [--steps 20]
 *   node dist/bench/profile-step.js --preset llama-15m --batch-size 4 --block-size 256 --sft [--lora]
 *
 * --sft runs SftObjective's step instead (rows of T+1 random ids with a prompt of 30-70% of the
 * row untrained, as bench/sft.ts); --lora adds LoRA r=8 adapters on every projection and trains
 * only them (dropout 0.05). --gemm-shapes lists matrix products by shape (M x N x K, transposes).
 */
import { parseArgs } from 'node:util';
import { describeBackend } from '../src/backend/index.js';
import { resolveConfig } from '../src/model/config.js';
import { LORA_MODULES, loraLayers } from '../src/model/lora.js';
import { Transformer } from '../src/model/transformer.js';
import { SftObjective, type RenderedExample } from '../src/finetune/sft.js';
import { withBufferScope } from '../src/tensor/index.js';
import { AdamW, clipGradNorm } from '../src/train/adamw.js';
import { Rng } from '../src/util/rng.js';
import { timeKernels } from './kernel-timer.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string' }, 'batch-size': { type: 'string' }, 'block-size': { type: 'string' }, steps: { type: 'string' },
    sft: { type: 'boolean' }, lora: { type: 'boolean' }, 'gemm-shapes': { type: 'boolean' },
  },
});
const preset = values.preset ?? 'shakespeare-char';
const cfg = resolveConfig(preset, { dropout: 0 });
const B = Number(values['batch-size'] ?? 12);
const T = Number(values['block-size'] ?? Math.min(64, cfg.blockSize));
const steps = Number(values.steps ?? 20);

const timer = timeKernels({ byShape: values['gemm-shapes'] ?? false }); // --gemm-shapes: gemm calls by M x N x K and transposes

const lora = values.lora ?? false;
const sft = values.sft ?? false;
const model = lora
  ? new Transformer(cfg, new Rng(1), { layers: loraLayers({ r: 8, alpha: 16, dropout: 0.05, targets: [...LORA_MODULES[cfg.family]], rng: new Rng(3) }) })
  : new Transformer(cfg, new Rng(1));
if (lora) model.freeze((n) => !n.includes('.lora_'));
const named = model.namedParameters().filter((p) => p.trainable);
const params = named.map((p) => p.tensor);
const opt = new AdamW(named.map((p) => ({ name: p.name, tensor: p.tensor, decay: p.decay })), { weightDecay: 0.1, beta2: 0.99 });
model.train(new Rng(4));
const rng = new Rng(2);
const batch = (): Int32Array => Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
const examples: RenderedExample[] = Array.from({ length: 64 }, (_, i) => {
  const ids = Int32Array.from({ length: T + 1 }, () => rng.int(cfg.vocabSize));
  const lossMask = new Uint8Array(T + 1).fill(1, Math.round((T + 1) * (0.3 + 0.4 * rng.uniform())));
  return { ids, lossMask, line: i + 1, key: String(i) };
});
const objective = new SftObjective(examples, [], { batchSize: B, seed: 1, padId: 0 });
const lossOf = () => (sft
  ? objective.loss(model, objective.nextBatch(rng)).loss
  : model.loss(batch(), B, T, batch()));
const step = (): void => withBufferScope(() => {
  opt.zeroGrad();
  const loss = lossOf();
  loss.item();
  loss.backward();
  clipGradNorm(params, 1);
  opt.step(1e-3);
});
for (let i = 0; i < 3; i++) step();
timer.clear();
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
const wall = (performance.now() - t0) / steps;
console.log(`${preset}${sft ? ' SFT' : ''}${lora ? ' LoRA r=8' : ''} B=${B} T=${T}, backend ${describeBackend()}: ${wall.toFixed(2)} ms/step, ${Math.round((B * T * 1000) / wall)} tokens/s\n`);
console.log(timer.table(wall, steps));
