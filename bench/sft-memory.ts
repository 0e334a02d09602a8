/**
 * Peak memory of SFT steps: full float32 fine-tuning against LoRA r=8 on a Q4_0 base (QLoRA), on
 * the llama-110m shape (12 layers, dim 768, MLP 2048, vocab 32000, untied head: 134M parameters).
 * Each setting runs in a fresh child process: it loads the base the way `llmts sft` does, builds
 * the model, and runs --steps steps of the SFT objective through the shared training loop (AdamW,
 * clipping) on random examples of --seq tokens (loss on the second half), micro-batch --batch.
 * The peak RSS (VmHWM) is read after the last step, before the loop's final evaluation and
 * checkpoint; the peak of the whole child, checkpoint write included, is shown too.
 *
 *   full-f32             the F32 checkpoint, every weight trained (AdamW moments for all): `llmts sft`
 *   full-f32-ckpt        the same with activation checkpointing (--gradient-checkpointing on)
 *   lora-f32             LoRA r=8 on every projection over the same F32 base, frozen: `llmts sft --lora`
 *   qlora-q4_0-gguf      a Q4_0 GGUF of the model kept quantized (its token embedding and lm_head
 *                        too), LoRA r=8 on every projection: `llmts sft -m X.q4_0.gguf --lora`
 *   qlora-quantize-base  the F32 checkpoint, attention and MLP weights quantized to Q4_0 at load,
 *                        embedding and lm_head float: `llmts sft -m X --lora --quantize-base q4_0`
 * Each as `llmts sft` runs it by default: activation checkpointing on for the quantized bases (auto)
 * only. LoRA dropout 0.05 (the default).
 *
 *   node dist/bench/sft-memory.js [--steps 3] [--batch 4] [--seq 256] [--modes a,b] [--dir DIR]
 *
 * The base files (random weights; F32 ~540 MB, Q4_0 GGUF ~75 MB) are written once to --dir (kept)
 * or a temporary directory (removed at the end).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backend, describeBackend } from '../src/backend/index.js';
import { saveCheckpoint } from '../src/formats/checkpoint.js';
import { exportGgufModel } from '../src/formats/gguf-model.js';
import { loadAnyModel } from '../src/formats/load-model.js';
import { SftObjective, type RenderedExample } from '../src/finetune/sft.js';
import { resolveConfig } from '../src/model/config.js';
import { LORA_MODULES, loraLayers, trainableParameterCount } from '../src/model/lora.js';
import { quantizeBlockLinears } from '../src/model/quantized.js';
import { Transformer } from '../src/model/transformer.js';
import { DEFAULT_TRAIN_OPTIONS, type TrainOptions } from '../src/train/trainer.js';
import { TrainingLoop } from '../src/train/loop.js';
import { Rng } from '../src/util/rng.js';

const MODES = ['full-f32', 'full-f32-ckpt', 'lora-f32', 'qlora-q4_0-gguf', 'qlora-quantize-base'] as const;
type Mode = (typeof MODES)[number];
const SHAPE = 'llama-110m';
const SELF = fileURLToPath(import.meta.url);

interface ChildResult {
  mode: Mode;
  backend: string;
  trainable: number;
  total: number;
  /** peak RSS after the last step, before the final evaluation and checkpoint (bytes) */
  stepsPeak: number;
  /** peak RSS of the whole child, checkpoint write included */
  processPeak: number;
  /** RSS when the model was built, before the first step */
  loadedRss: number;
  tokensPerSec: number;
  losses: number[];
}

function procStatusKb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/self/status (this bench reads Linux's peak RSS)`);
  return Number(m[1]) * 1024;
}

/** random examples of seq + 1 ids, the loss on the second half */
function examples(vocab: number, seq: number, n: number): RenderedExample[] {
  const rng = new Rng(5);
  return Array.from({ length: n }, (_, i) => {
    const ids = Int32Array.from({ length: seq + 1 }, () => rng.int(vocab));
    const lossMask = new Uint8Array(seq + 1).fill(0).fill(1, (seq + 1) >> 1);
    return { ids, lossMask, line: i + 1, key: String(i) };
  });
}

async function child(mode: Mode, dir: string, steps: number, batch: number, seq: number): Promise<void> {
  backend();
  const f32 = join(dir, 'base-f32.safetensors');
  const q4 = join(dir, 'base-q4_0.gguf');
  const lora = { r: 8, alpha: 16, dropout: 0.05, targets: [...LORA_MODULES.llama], rng: new Rng(1) };
  let model: Transformer;
  if (mode === 'full-f32' || mode === 'full-f32-ckpt') {
    const l = await loadAnyModel(f32, { tokenizer: false });
    model = new Transformer(l.config, l.params);
    model.gradientCheckpointing = mode === 'full-f32-ckpt';
  } else {
    const l = await loadAnyModel(mode === 'qlora-q4_0-gguf' ? q4 : f32, { tokenizer: false, keepQuantized: true });
    const base = mode === 'qlora-quantize-base' ? quantizeBlockLinears(l.config, l.params, 'q4_0') : { params: l.params, quantized: l.quantized };
    model = new Transformer(l.config, base.params, { quantized: base.quantized, layers: loraLayers(lora) });
    model.freeze((n) => !n.includes('.lora_'));
    model.gradientCheckpointing = model.quantized.size > 0; // llmts sft's auto
  }
  const counts = trainableParameterCount(model);
  const out = join(dir, `run-${mode}`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const opts: TrainOptions = {
    ...DEFAULT_TRAIN_OPTIONS, outDir: out, maxIters: steps, batchSize: batch, blockSize: seq, lr: mode.startsWith('full') ? 2e-5 : 2e-4,
    warmupIters: 0, decayIters: 0, weightDecay: 0, evalInterval: 1_000_000, evalIters: 1,
  };
  const objective = new SftObjective(examples(model.config.vocabSize, seq, 64), [], { batchSize: batch, seed: 1, padId: 0 });
  const loop = new TrainingLoop(model, objective, opts, { tokenizer: { toJSON: () => null } });
  const loadedRss = process.memoryUsage.rss();
  let stepsPeak = 0;
  const losses: number[] = [];
  const result = await loop.run({
    onStep: (r) => {
      losses.push(r.loss);
      process.stderr.write(`  ${mode}: step ${r.step}, loss ${r.loss.toFixed(4)}, peak RSS ${(procStatusKb('VmHWM') / 2 ** 20).toFixed(0)} MiB\n`);
      if (r.step === steps) stepsPeak = procStatusKb('VmHWM');
    },
  });
  const res: ChildResult = {
    mode, backend: describeBackend(), trainable: counts.trainable, total: counts.total, stepsPeak, processPeak: procStatusKb('VmHWM'),
    loadedRss, tokensPerSec: result.tokensPerSec, losses,
  };
  process.stdout.write(JSON.stringify(res) + '\n');
}

function writeBases(dir: string): void {
  const f32 = join(dir, 'base-f32.safetensors');
  const q4 = join(dir, 'base-q4_0.gguf');
  if (existsSync(f32) && existsSync(q4)) return;
  process.stderr.write(`writing the ${SHAPE} base (random weights) to ${dir}\n`);
  const cfg = resolveConfig(SHAPE);
  const model = new Transformer(cfg, new Rng(1));
  saveCheckpoint(f32, { config: cfg, params: model.params, tokenizer: null, trainer: {} });
  exportGgufModel(q4, cfg, model.params, { quant: 'q4_0' });
}

function main(): void {
  const { values } = parseArgs({
    options: { steps: { type: 'string' }, batch: { type: 'string' }, seq: { type: 'string' }, modes: { type: 'string' }, dir: { type: 'string' } },
  });
  const steps = Number(values.steps ?? 3), batch = Number(values.batch ?? 4), seq = Number(values.seq ?? 256);
  const modes = (values.modes ?? MODES.join(',')).split(',') as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode '${m}' (${MODES.join(', ')})`);
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'llmts-sft-memory-'));
  mkdirSync(dir, { recursive: true });
  try {
    writeBases(dir);
    const results: ChildResult[] = [];
    for (const mode of modes) {
      process.stderr.write(`measuring ${mode}\n`);
      const r = spawnSync(process.execPath, [SELF, '--child', mode, dir, String(steps), String(batch), String(seq)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
      const line = r.stdout.trim().split('\n').pop() ?? '';
      if (r.status !== 0 || !line.startsWith('{')) throw new Error(`the ${mode} child failed (exit ${r.status})`);
      results.push(JSON.parse(line) as ChildResult);
    }
    const MiB = (b: number): string => (b / 2 ** 20).toFixed(0);
    const full = results.find((r) => r.mode === 'full-f32');
    console.log(`${SHAPE} SFT, ${steps} steps of micro-batch ${batch} x ${seq} tokens (AdamW), each setting in its own process; peak RSS (VmHWM)\n`);
    console.log('| setting | trainable parameters | trainable % | RSS after load (MiB) | peak RSS over the steps (MiB) | vs full f32 | peak incl. checkpoint (MiB) | tokens/s |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of results) {
      const ratio = full ? `${((100 * r.stepsPeak) / full.stepsPeak).toFixed(0)}%` : '';
      console.log(`| ${r.mode} | ${r.trainable.toLocaleString('en-US')} of ${r.total.toLocaleString('en-US')} | ${((100 * r.trainable) / r.total).toFixed(2)} | ${MiB(r.loadedRss)} | ${MiB(r.stepsPeak)} | ${ratio} | ${MiB(r.processPeak)} | ${r.tokensPerSec.toFixed(0)} |`);
    }
    console.log(`\n${new Date().toISOString().slice(0, 10)}, ${results[0]?.backend}, Node ${process.version}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`);
    writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 1));
  } finally {
    if (!values.dir) rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [mode, dir, steps, batch, seq] = process.argv.slice(3);
  await child(mode as Mode, dir, Number(steps), Number(batch), Number(seq));
} else {
  main();
}
