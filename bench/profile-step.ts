/**
 * Where a training step's time goes: wraps every Backend kernel with a timer, runs a few
 * training steps of a preset and prints time per kernel per step, plus the time spent
 * outside kernels (JavaScript: autograd, allocation, glue).
 *
 *   node dist/bench/profile-step.js [--preset shakespeare-char] [--batch-size 12] [--block-size 64] [--steps 20]
 */
import { parseArgs } from 'node:util';
import { backend, describeBackend, setBackend, type Backend } from '../src/backend/index.js';
import { resolveConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { withBufferScope } from '../src/tensor/index.js';
import { AdamW, clipGradNorm } from '../src/train/adamw.js';
import { Rng } from '../src/util/rng.js';

const { values } = parseArgs({
  options: { preset: { type: 'string' }, 'batch-size': { type: 'string' }, 'block-size': { type: 'string' }, steps: { type: 'string' } },
});
const preset = values.preset ?? 'shakespeare-char';
const cfg = resolveConfig(preset, { dropout: 0 });
const B = Number(values['batch-size'] ?? 12);
const T = Number(values['block-size'] ?? Math.min(64, cfg.blockSize));
const steps = Number(values.steps ?? 20);

const totals = new Map<string, { ms: number; calls: number }>();
const inner = backend();
const timed = Object.fromEntries(
  Object.entries(inner).map(([name, fn]) => {
    if (typeof fn !== 'function') return [name, fn];
    return [name, (...args: unknown[]) => {
      const t0 = performance.now();
      const r = (fn as (...a: unknown[]) => unknown)(...args);
      const entry = totals.get(name) ?? { ms: 0, calls: 0 };
      entry.ms += performance.now() - t0;
      entry.calls++;
      totals.set(name, entry);
      return r;
    }];
  }),
) as unknown as Backend;
setBackend(timed);

const model = new Transformer(cfg, new Rng(1));
const params = model.parameters();
const opt = new AdamW(params.map((tensor, i) => ({ tensor, decay: model.specs[i].decay })), { weightDecay: 0.1, beta2: 0.99 });
const rng = new Rng(2);
const batch = (): Int32Array => Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
const step = (): void => withBufferScope(() => {
  opt.zeroGrad();
  const loss = model.forward(batch(), B, T, batch()).loss!;
  loss.item();
  loss.backward();
  clipGradNorm(params, 1);
  opt.step(1e-3);
});
for (let i = 0; i < 3; i++) step();
totals.clear();
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
const wall = (performance.now() - t0) / steps;
let kernels = 0;
console.log(`${preset} B=${B} T=${T}, backend ${describeBackend()}: ${wall.toFixed(2)} ms/step, ${Math.round((B * T * 1000) / wall)} tokens/s\n`);
console.log('| kernel | calls/step | ms/step | % |\n| --- | ---: | ---: | ---: |');
for (const [name, { ms, calls }] of [...totals].sort((a, b) => b[1].ms - a[1].ms)) {
  kernels += ms / steps;
  console.log(`| ${name} | ${(calls / steps).toFixed(0)} | ${(ms / steps).toFixed(2)} | ${((100 * ms) / steps / wall).toFixed(1)} |`);
}
console.log(`| (outside kernels) | | ${(wall - kernels).toFixed(2)} | ${((100 * (wall - kernels)) / wall).toFixed(1)} |`);
