/**
 * Fine-tuning throughput of this engine next to Hugging Face TRL's SFTTrainer (plus PEFT for
 * LoRA), same machine, same run.
 *
 *   node dist/bench/sft.js [--configs llama-15m,llama-110m] [--modes full,lora] [--rounds 3] [--steps 4]
 *
 * For each config (a Llama shape of src/model/config.ts) and mode (full SFT, or LoRA r=8 on every
 * projection) both sides train the same model shape, float32, on the same examples: `rows`
 * synthetic token rows of T+1 ids with a response mask (a prompt of 30-70% of the row untrained,
 * the rest trained), B rows a step. Ours runs SftObjective's batches and loss through the steps of
 * TrainingLoop (zero grads, loss, backward, clip 1.0, AdamW) in a child process of its own
 * (this script with --worker); TRL runs SFTTrainer.train() in a child process (bench/trl_sft.py).
 * Each side is first probed in each of its settings (ours: thread counts; TRL: threads, loss type,
 * torch.compile) and its fastest is kept; then `rounds` rounds alternate the two sides (ours first
 * in even rounds, TRL first in odd ones), so load on the machine hits both. The table shows the
 * median step time over every timed step of every round; CPU time per step is noted too (on a
 * loaded machine, CPU time at one thread is the steadier comparison). See bench/README.md.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describeBackend } from '../src/backend/index.js';
import { resolveConfig, type ModelConfig } from '../src/model/config.js';
import { LORA_MODULES, loraLayers, trainableParameterCount } from '../src/model/lora.js';
import { Transformer } from '../src/model/transformer.js';
import { SftObjective, type RenderedExample } from '../src/finetune/sft.js';
import { withBufferScope } from '../src/tensor/index.js';
import { AdamW, clipScale, gradNorm } from '../src/train/adamw.js';
import { Rng } from '../src/util/rng.js';
import {
  cpuNote, fmt, fmtParams, intOption, list, machineLine, median, roundsNote, runMatchups, runPython, runWorker, threadCounts, threadsLabel, trlVersions,
  type Timed, type WorkerTimes,
} from './compare.js';

type Mode = 'full' | 'lora';

/** The CLI's `llmts sft` defaults (TRL's SFTTrainer defaults): lr 2e-5, no weight decay, betas 0.9/0.999. */
const HYPER = { lr: 2e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1.0 };
const LORA = { r: 8, alpha: 16 };

/** A TRL setting: torch threads, SFTConfig.loss_type, TrainingArguments.torch_compile. */
interface TrlVariant {
  threads: number;
  lossType: string;
  compile: 'off' | 'on';
}

const USAGE = `usage: node dist/bench/sft.js [options]

  --configs a,b         Llama presets (default: llama-15m,llama-110m)
  --modes a,b           full, lora (default: both)
  --batch-size B        rows per step (default 4)
  --seq-len T           positions per row: rows hold T+1 token ids (default 256)
  --rounds N            alternating rounds of ours and TRL (default 3)
  --steps N             timed steps per side per round (default 4)
  --warmup N            untimed steps before timing, each run (default 2)
  --probe-steps N       timed steps of each setting in the probes (default 2; 0 skips the probes and uses the first)
  --our-threads LIST    our thread counts to probe (LLMTS_THREADS), comma-separated (default: the CPU count, then 1)
  --trl-variants LIST   TRL settings to probe, THREADS:LOSS_TYPE:COMPILE each, comma-separated
                        (default: 2:chunked_nll:off,2:nll:off,1:chunked_nll:off)
  --lora-dropout P      LoRA dropout on both sides (default 0.05, llmts sft's and PEFT's usual)
  --trl-bf16            also time TRL's best setting in bfloat16 (informational; for CPUs with AMX / AVX512-BF16)
  --python PATH         interpreter with torch, transformers, peft and trl (default /tmp/venv-peft/bin/python)
  --no-trl              our side only
  -h, --help            this text
`;

interface Options {
  configs: string[];
  modes: Mode[];
  batchSize: number;
  seqLen: number;
  rounds: number;
  steps: number;
  warmup: number;
  probeSteps: number;
  variants: TrlVariant[];
  ourThreads: number[];
  loraDropout: number;
  bf16: boolean;
  python: string;
  trl: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      configs: { type: 'string' }, modes: { type: 'string' }, 'batch-size': { type: 'string' }, 'seq-len': { type: 'string' },
      rounds: { type: 'string' }, steps: { type: 'string' }, warmup: { type: 'string' }, 'probe-steps': { type: 'string' },
      'trl-variants': { type: 'string' }, 'our-threads': { type: 'string' }, worker: { type: 'string' }, 'lora-dropout': { type: 'string' }, 'trl-bf16': { type: 'boolean' },
      python: { type: 'string' }, 'no-trl': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (values.worker !== undefined) {
    worker(JSON.parse(values.worker) as WorkerJob);
    process.exit(0);
  }
  const int = (name: string, min: number, dflt: number): number => intOption(values, name, min, dflt);
  const modes = list(values.modes ?? 'full,lora');
  for (const m of modes) if (m !== 'full' && m !== 'lora') throw new Error(`--modes: '${m}' is neither full nor lora`);
  const variants = list(values['trl-variants'] ?? '2:chunked_nll:off,2:nll:off,1:chunked_nll:off').map((v) => {
    const [threads, lossType, compile] = v.split(':');
    if (!/^\d+$/.test(threads ?? '') || !lossType || (compile !== 'off' && compile !== 'on')) {
      throw new Error(`--trl-variants: '${v}' is not THREADS:LOSS_TYPE:off|on (e.g. 2:nll:off)`);
    }
    return { threads: Number(threads), lossType, compile } as TrlVariant;
  });
  const ourThreads = threadCounts(values['our-threads']);
  const loraDropout = Number(values['lora-dropout'] ?? 0.05);
  if (!(loraDropout >= 0 && loraDropout < 1)) throw new Error('--lora-dropout: give a number in [0, 1)');
  return {
    configs: list(values.configs ?? 'llama-15m,llama-110m'),
    modes: modes as Mode[],
    batchSize: int('batch-size', 1, 4),
    seqLen: int('seq-len', 1, 256),
    rounds: int('rounds', 1, 3),
    steps: int('steps', 1, 4),
    warmup: int('warmup', 0, 2),
    probeSteps: int('probe-steps', 0, 2),
    variants,
    ourThreads,
    loraDropout,
    bf16: values['trl-bf16'] ?? false,
    python: values.python ?? '/tmp/venv-peft/bin/python',
    trl: !values['no-trl'],
  };
}

/**
 * `n` examples of `length` token ids (ids 3.. so none is a special id), each with a prompt of
 * 30-70% of the row untrained and the rest trained: the same rows go to both sides.
 */
function syntheticExamples(n: number, length: number, vocab: number, seed: number): RenderedExample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const ids = Int32Array.from({ length }, () => 3 + rng.int(vocab - 3));
    const prompt = Math.round(length * (0.3 + 0.4 * rng.uniform()));
    const lossMask = new Uint8Array(length);
    lossMask.fill(1, prompt);
    return { ids, lossMask, line: i + 1, key: String(i) };
  });
}

/** The examples as bench/trl_sft.py reads them: int32 ids (rows x length), then the mask bytes. */
function writeExamples(path: string, examples: RenderedExample[]): void {
  const L = examples[0].ids.length;
  const ids = new Int32Array(examples.length * L);
  const mask = new Uint8Array(examples.length * L);
  examples.forEach((e, r) => {
    ids.set(e.ids, r * L);
    mask.set(e.lossMask, r * L);
  });
  writeFileSync(path, Buffer.concat([Buffer.from(ids.buffer), Buffer.from(mask.buffer)]));
}

/** What an our-side child process is asked to run (this script with --worker JSON). */
interface WorkerJob {
  cfg: ModelConfig;
  mode: Mode;
  data: { path: string; rows: number; length: number };
  batchSize: number;
  warmup: number;
  steps: number;
  loraDropout: number;
}

/** What it prints (one JSON line). */
interface OursJson extends WorkerTimes {
  trainable: number;
  threads: string;
}

/** The examples of writeExamples back. */
function readExamples(path: string, rows: number, length: number): RenderedExample[] {
  const buf = readFileSync(path);
  const ids = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + rows * length * 4));
  const mask = new Uint8Array(buf.buffer.slice(buf.byteOffset + rows * length * 4, buf.byteOffset + rows * length * 5));
  return Array.from({ length: rows }, (_, r) => ({
    ids: ids.slice(r * length, (r + 1) * length), lossMask: mask.slice(r * length, (r + 1) * length), line: r + 1, key: String(r),
  }));
}

/** Our side, in the child: `warmup + steps` steps of SftObjective through TrainingLoop's step (gradAccum 1). */
function worker(job: WorkerJob): void {
  const { cfg, mode } = job;
  const examples = readExamples(job.data.path, job.data.rows, job.data.length);
  const model = mode === 'lora'
    ? new Transformer(cfg, new Rng(1337), {
      layers: loraLayers({ r: LORA.r, alpha: LORA.alpha, dropout: job.loraDropout, targets: [...LORA_MODULES.llama], rng: new Rng(7) }),
    })
    : new Transformer(cfg, new Rng(1337));
  if (mode === 'lora') model.freeze((n) => !n.includes('.lora_'));
  const named = model.namedParameters().filter((p) => p.trainable);
  const tensors = named.map((p) => p.tensor);
  const opt = new AdamW(named.map((p) => ({ name: p.name, tensor: p.tensor, decay: p.decay })), {
    beta1: HYPER.beta1, beta2: HYPER.beta2, eps: HYPER.eps, weightDecay: HYPER.weightDecay,
  });
  const objective = new SftObjective(examples, [], { batchSize: job.batchSize, seed: 1, padId: 0 });
  const dataRng = new Rng(42);
  model.train(new Rng(43));
  const stepMs: number[] = [];
  const cpuMs: number[] = [];
  let firstLoss = NaN;
  const total = job.warmup + job.steps;
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const value = withBufferScope(() => {
      opt.zeroGrad();
      const batch = objective.nextBatch(dataRng);
      objective.weight(batch);
      const { loss } = objective.loss(model, batch);
      const v = loss.item();
      loss.backward();
      opt.step(HYPER.lr, clipScale(gradNorm(tensors), HYPER.gradClip));
      return v;
    });
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    if (i === 0) firstLoss = value;
    if (i >= job.warmup) {
      stepMs.push(ms);
      cpuMs.push((cpu.user + cpu.system) / 1000);
    }
    process.stderr.write(`    ours ${i < job.warmup ? 'warmup' : 'step'} ${i + 1}/${total}: ${ms.toFixed(0)} ms, loss ${value.toFixed(4)}\n`);
  }
  const counts = trainableParameterCount(model);
  const out: OursJson = {
    ms_per_step: median(stepMs), step_ms: stepMs.map((t) => Math.round(t)), cpu_ms_per_step: median(cpuMs), first_loss: firstLoss,
    params: counts.total, trainable: counts.trainable, threads: describeBackend(),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

/** Our side in a child process with LLMTS_THREADS=threads (its thread pool is sized at start). */
/** Our side in a child process with LLMTS_THREADS=threads (its thread pool is sized at start). */
function runOurs(o: Options, cfg: ModelConfig, mode: Mode, data: { path: string; rows: number; length: number }, threads: number, steps: number): Timed<OursJson> | string {
  const job: WorkerJob = { cfg, mode, data, batchSize: o.batchSize, warmup: o.warmup, steps, loraDropout: o.loraDropout };
  const r = runWorker<OursJson>(fileURLToPath(import.meta.url), job, threads);
  return typeof r === 'string' ? r : { run: r, ms: r.ms_per_step, timed: r.step_ms, cpuMs: r.cpu_ms_per_step };
}

interface TrlJson {
  ms_per_step: number;
  cpu_ms_per_step: number;
  tokens_per_sec: number;
  step_ms: number[];
  threads: number;
  loss_type: string;
  compile: string;
  optim: string;
  params: number;
  trainable: number;
  train_loss: number;
  torch_version: string;
  transformers_version: string;
  trl_version: string;
  peft_version: string | null;
  attn: string | null;
}

const variantLabel = (v: TrlVariant): string => `${threadsLabel(v.threads)}, loss_type ${v.lossType}, torch.compile ${v.compile}`;

function runTrl(
  o: Options, cfg: ModelConfig, mode: Mode, data: { path: string; rows: number; length: number },
  v: TrlVariant, steps: number, bf16 = false,
): Timed<TrlJson> | string {
  const script = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'trl_sft.py');
  const args = [
    script, '--config', JSON.stringify(cfg), '--data', data.path, '--rows', String(data.rows), '--length', String(data.length),
    '--batch-size', String(o.batchSize), '--mode', mode, '--warmup', String(o.warmup), '--steps', String(steps),
    '--threads', String(v.threads), '--loss-type', v.lossType, '--compile', v.compile,
    '--lr', String(HYPER.lr), '--beta1', String(HYPER.beta1), '--beta2', String(HYPER.beta2),
    '--weight-decay', String(HYPER.weightDecay), '--grad-clip', String(HYPER.gradClip),
    '--lora-r', String(LORA.r), '--lora-alpha', String(LORA.alpha), '--lora-dropout', String(o.loraDropout),
  ];
  if (bf16) args.push('--bf16');
  const r = runPython<TrlJson>(o.python, args);
  return typeof r === 'string' ? r : { run: r, ms: r.ms_per_step, timed: r.step_ms.slice(o.warmup), cpuMs: r.cpu_ms_per_step };
}

interface Case {
  name: string;
  cfg: ModelConfig;
  mode: Mode;
  data: { path: string; rows: number; length: number };
  trained: number;
}

function main(): void {
  const loadAtStart = loadavg();
  const o = parseOptions(process.argv.slice(2));
  const versions = o.trl ? trlVersions(o.python) : null;
  const notes: string[] = [];
  if (!o.trl) notes.push('TRL peer skipped (--no-trl).');
  else if (!versions) notes.push(`TRL peer skipped: \`${o.python} -c "import trl, peft"\` failed (pip install trl peft into that interpreter, or pass --python).`);
  const dir = mkdtempSync(join(tmpdir(), 'llmts-bench-sft-'));
  const B = o.batchSize;
  const T = o.seqLen;
  const cases: Case[] = [];
  const bf16 = new Map<Case, string>();
  let results;
  try {
    for (const name of o.configs) {
      const cfg = resolveConfig(name, { dropout: 0 });
      if (cfg.family !== 'llama') throw new Error(`--configs: ${name} is not a Llama shape (the TRL peer builds LlamaForCausalLM)`);
      if (T > cfg.blockSize) throw new Error(`--seq-len ${T} exceeds ${name}'s context of ${cfg.blockSize}`);
      const rows = B * (o.warmup + Math.max(o.steps, o.probeSteps));
      const examples = syntheticExamples(rows, T + 1, cfg.vocabSize, 2024);
      const path = join(dir, `${name}.bin`);
      writeExamples(path, examples);
      let trained = 0;
      for (const e of examples) for (let t = 1; t < e.lossMask.length; t++) trained += e.lossMask[t];
      for (const mode of o.modes) cases.push({ name, cfg, mode, data: { path, rows, length: T + 1 }, trained });
    }
    results = runMatchups(cases.map((c) => ({
      label: `${c.name} ${c.mode}`,
      ours: (threads: number, steps: number) => runOurs(o, c.cfg, c.mode, c.data, threads, steps),
      peer: versions ? (v: TrlVariant, steps: number) => runTrl(o, c.cfg, c.mode, c.data, v, steps) : null,
    })), { rounds: o.rounds, steps: o.steps, probeSteps: o.probeSteps, ourThreads: o.ourThreads, variants: o.variants, variantLabel });
    if (o.bf16 && versions) {
      results.forEach((res, i) => {
        if (!res.variant) return;
        const r = runTrl(o, cases[i].cfg, cases[i].mode, cases[i].data, res.variant, o.steps, true);
        bf16.set(cases[i], typeof r === 'string' ? `failed (${r})` : `${fmt(r.ms)} ms/step, ${fmt(r.run.tokens_per_sec)} tok/s`);
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const rowsOut: string[] = [];
  results.forEach((res, i) => {
    const c = cases[i];
    notes.push(...res.notes);
    const ours = median(res.ours);
    const oursTok = (B * T * 1000) / ours;
    const m = res.oursRun!;
    const trainedCell = c.mode === 'lora' ? `${fmtParams(m.trainable)} (${((100 * m.trainable) / m.params).toFixed(2)}%)` : fmtParams(m.trainable);
    let peer = ['-', '-', '-'];
    if (res.peer.length > 0) {
      const trl = median(res.peer);
      const trlTok = (B * T * 1000) / trl;
      peer = [fmt(trl), fmt(trlTok), `**${(oursTok / trlTok).toFixed(2)}x**${roundsNote(res.roundRatios)}`];
      if (res.peerRun && res.peerRun.trainable !== m.trainable) notes.push(`WARNING ${c.name} ${c.mode}: TRL trains ${res.peerRun.trainable} parameters, ours ${m.trainable}.`);
      if (res.peerRun && res.peerRun.params !== m.params) notes.push(`WARNING ${c.name} ${c.mode}: TRL's model holds ${res.peerRun.params} parameters, ours ${m.params}.`);
    }
    rowsOut.push(`| ${c.name} | ${c.mode === 'full' ? 'full SFT' : `LoRA r=${LORA.r}`} | ${trainedCell} | ${B}×${T} | ${fmt(ours)} | ${fmt(oursTok)} | ${peer.join(' | ')} |`);
    const half = bf16.get(c);
    notes.push(`${c.name} ${c.mode}: ours ${threadsLabel(res.ourThreads)}` +
      (res.variant ? `, TRL ${variantLabel(res.variant)}` : '') + (res.probe.length ? ` (probe: ${res.probe.join('; ')})` : '') +
      (res.peerRun ? `; TRL optimizer ${res.peerRun.optim.replace('OptimizerNames.', '').toLowerCase()}, attention ${res.peerRun.attn}` : '') +
      `; ${cpuNote(res)}; first-step loss ours ${m.first_loss.toFixed(4)}, TRL mean train loss ${res.peerRun ? res.peerRun.train_loss.toFixed(4) : '-'} (ln V = ${Math.log(c.cfg.vocabSize).toFixed(4)})` +
      `${half ? `; TRL bfloat16 (informational): ${half}` : ''}.`);
  });

  const out: string[] = [];
  out.push('## Fine-tuning throughput: llm.ts vs TRL SFTTrainer (+ PEFT), float32, CPU');
  out.push('');
  out.push('| config | mode | trained params | B×T | ours ms/step | ours tok/s | TRL ms/step | TRL tok/s | ratio (ours/TRL) |');
  out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  out.push(...rowsOut);
  out.push('');
  const c0 = cases[0];
  out.push(`- date: ${new Date().toISOString()}`);
  out.push(`- ours: ${results[0]?.oursRun?.threads ?? describeBackend()}, node ${process.version}`);
  out.push(`- TRL: ${versions ?? 'not run'}${versions ? ` via ${o.python}` : ''}`);
  out.push(`- data: ${c0 ? c0.data.rows : 0} synthetic rows of T+1 = ${T + 1} token ids per config, prompt 30-70% of each row untrained, ` +
    `${c0 ? ((100 * c0.trained) / (c0.data.rows * T)).toFixed(0) : '-'}% of the target positions trained; tok/s counts B·T positions per step`);
  out.push(`- both sides: float32, AdamW (lr ${HYPER.lr}, betas ${HYPER.beta1}/${HYPER.beta2}, weight decay ${HYPER.weightDecay}), grad clip ${HYPER.gradClip}, ` +
    `LoRA r ${LORA.r}, alpha ${LORA.alpha}, dropout ${o.loraDropout} on q,k,v,o,gate,up,down; ${o.warmup} warmup steps per run excluded; ` +
    `${o.rounds} alternating rounds of ${o.steps} timed steps a side, median over all timed steps (per-round TRL/ours ratios in brackets)`);
  out.push(`- ${machineLine(loadAtStart)}`);
  for (const n of notes) out.push(`- ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

main();
