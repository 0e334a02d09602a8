/**
 * Training throughput of this engine next to PyTorch's, same machine, same run.
 *
 *   node dist/bench/train.js [--configs shakespeare-char,llama-15m] [--rounds 3] [--python PATH]
 *
 * For each config both sides train the same model (same config, batch size, block size, AdamW
 * hyperparameters, global-norm clip 1.0) on random token batches; each run times `warmup` untimed
 * steps then `steps` timed ones. Both sides run in child processes (thread pools are sized at
 * start): ours at its default thread count and at 1 thread, PyTorch (bench/torch_train.py, the
 * newest torch found) at 1 and at all threads, its faster setting kept; then `rounds` rounds
 * alternate the sides so load on the machine hits both. Extra tables: bf16 mixed precision (on
 * CPUs with AVX512-BF16 or AMX, or with --bf16) and contention (a busy process pinned to one core,
 * ours at the default thread count against ours at 1 thread). See bench/README.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describeBackend, nativeBackendInfo, nativeFunction } from '../src/backend/index.js';
import { resolveConfig, type ModelConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { AdamW, clipScale, gradNorm } from '../src/train/adamw.js';
import { withBufferScope, withMatmulDtype } from '../src/tensor/index.js';
import { bf16Choice } from '../src/backend/bf16.js';
import { DEFAULT_TRAIN_OPTIONS } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';
import {
  cpuNote, findTorchPython, fmt, fmtParams, intOption, list, machineLine, median, roundsNote, runMatchups, runPython, runWorker,
  threadsLabel, type MatchupResult, type Timed, type WorkerTimes,
} from './compare.js';
import { timeKernels } from './kernel-timer.js';

interface BenchDefaults {
  batchSize: number;
  blockSize: number;
  steps: number;
}

/** shakespeare-char: nanoGPT's CPU run (batch 12, block 64). The others: full context, small batches. */
const DEFAULTS: Record<string, BenchDefaults> = {
  'shakespeare-char': { batchSize: 12, blockSize: 64, steps: 20 },
  'shakespeare-char-6l': { batchSize: 16, blockSize: 256, steps: 3 },
  'llama-15m': { batchSize: 4, blockSize: 256, steps: 3 },
};
const FALLBACK: BenchDefaults = { batchSize: 4, blockSize: 256, steps: 3 };

const HYPER = {
  lr: DEFAULT_TRAIN_OPTIONS.lr,
  beta1: DEFAULT_TRAIN_OPTIONS.beta1,
  beta2: DEFAULT_TRAIN_OPTIONS.beta2,
  eps: 1e-8,
  weightDecay: DEFAULT_TRAIN_OPTIONS.weightDecay,
  gradClip: 1.0,
};

/** Debian's OpenBLAS builds: put first on a Debian torch's library path when present. */
const OPENBLAS_DIRS = [
  '/usr/lib/x86_64-linux-gnu/openblas-pthread',
  '/usr/lib/aarch64-linux-gnu/openblas-pthread',
  '/usr/lib/x86_64-linux-gnu/openblas-openmp',
  '/usr/lib/aarch64-linux-gnu/openblas-openmp',
];

const USAGE = `usage: node dist/bench/train.js [options]

  --configs a,b        presets to run (default: shakespeare-char,shakespeare-char-6l,llama-15m)
  --rounds N           alternating rounds of both sides (default 3); medians over all timed steps
  --steps N            timed steps per run (default: 20 shakespeare-char, 3 for the others)
  --warmup N           untimed steps before timing, each run (default 2)
  --batch-size B       batch size for every config (default: 12 shakespeare-char, 16 shakespeare-char-6l, 4 llama-15m)
  --block-size T       sequence length for every config (default: 64 shakespeare-char, 256 the others)
  --python PATH        interpreter with torch (default: the newest torch among $VIRTUAL_ENV, /tmp/venv-peft,
                       /tmp/venv-torch, python3 on PATH and /usr/bin/python3)
  --torch-blas-dir D   a directory with libblas.so.3 to put first on a Debian torch's LD_LIBRARY_PATH
                       (default: Debian's OpenBLAS directory when installed; pip wheels bring MKL)
  --no-torch           skip the PyTorch peer
  --bf16 / --no-bf16   add the bf16 mixed-precision table (default: on when the CPU has AVX512-BF16 or AMX)
  --no-contention      skip the contention table (a busy process pinned to one core)
  -h, --help           this text
`;

interface Options {
  configs: string[];
  rounds: number;
  steps?: number;
  warmup: number;
  batchSize?: number;
  blockSize?: number;
  python?: string;
  blasDir: string | null;
  torch: boolean;
  bf16: boolean;
  contention: boolean;
}

/** The CPU's bf16 instructions, from /proc/cpuinfo (Linux); empty elsewhere. */
function cpuBf16Features(): string[] {
  try {
    const flags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.split(/\s+/) ?? [];
    return ['avx512_bf16', 'amx_bf16'].filter((f) => flags.includes(f));
  } catch {
    return [];
  }
}

function parseOptions(argv: string[]): Options & { worker?: string } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      configs: { type: 'string' }, rounds: { type: 'string' }, steps: { type: 'string' }, warmup: { type: 'string' },
      'batch-size': { type: 'string' }, 'block-size': { type: 'string' }, python: { type: 'string' },
      'torch-blas-dir': { type: 'string' }, 'no-torch': { type: 'boolean' }, bf16: { type: 'boolean' }, 'no-bf16': { type: 'boolean' },
      'no-contention': { type: 'boolean' }, worker: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const v = values as Record<string, unknown>;
  const optional = (name: string, min: number): number | undefined => (v[name] === undefined ? undefined : intOption(v, name, min, 0));
  return {
    worker: values.worker,
    configs: list(values.configs ?? 'shakespeare-char,shakespeare-char-6l,llama-15m'),
    rounds: intOption(v, 'rounds', 1, 3),
    steps: optional('steps', 1),
    warmup: intOption(v, 'warmup', 0, 2),
    batchSize: optional('batch-size', 1),
    blockSize: optional('block-size', 1),
    python: values.python,
    blasDir: values['torch-blas-dir'] ?? OPENBLAS_DIRS.find((d) => existsSync(join(d, 'libblas.so.3'))) ?? null,
    torch: !values['no-torch'],
    bf16: values['no-bf16'] ? false : (values.bf16 ?? cpuBf16Features().length > 0),
    contention: !values['no-contention'],
  };
}

type Dtype = 'float32' | 'bf16';

/** What an our-side child process is asked to run (this script with --worker JSON). */
interface WorkerJob {
  cfg: ModelConfig;
  B: number;
  T: number;
  warmup: number;
  steps: number;
  dtype: Dtype;
  /** after the timed steps, time the GEMMs of two more steps against the FMA peak */
  gemmShare: boolean;
}

/** What it prints (one JSON line). */
interface OursJson extends WorkerTimes {
  backend: string;
  /** how the bf16 run computed (bf16Choice's reason), for dtype bf16 */
  bf16?: string;
  /** GEMM GFLOP/s over the profiled steps, the FMA peak at this thread count, and the GEMMs' share of a step */
  gemm?: { gflops: number; peak: number; stepShare: number };
}

/** Our training step, exactly as TrainingLoop does it (gradient accumulation 1), in the child. */
function worker(job: WorkerJob): void {
  const { cfg, B, T } = job;
  if (job.dtype === 'bf16') process.env.LLMTS_BF16 ??= 'auto';
  const model = new Transformer(cfg, new Rng(1337));
  const params = model.parameters();
  const opt = new AdamW(params.map((tensor, i) => ({ tensor, decay: model.specs[i].decay })), {
    beta1: HYPER.beta1, beta2: HYPER.beta2, eps: HYPER.eps, weightDecay: HYPER.weightDecay,
  });
  model.train(new Rng(1338));
  const rng = new Rng(42);
  const batch = (): Int32Array => Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const total = job.warmup + job.steps;
  const batches = Array.from({ length: total + 2 }, () => ({ x: batch(), y: batch() }));
  const step = (i: number): number => withBufferScope(() => {
    opt.zeroGrad();
    const loss = withMatmulDtype(job.dtype, () => model.loss(batches[i].x, B, T, batches[i].y));
    const v = loss.item();
    loss.backward();
    opt.step(HYPER.lr, clipScale(gradNorm(params), HYPER.gradClip));
    return v;
  });
  const stepMs: number[] = [];
  const cpuMs: number[] = [];
  let firstLoss = NaN;
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const value = step(i);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    if (i === 0) firstLoss = value;
    if (i >= job.warmup) {
      stepMs.push(ms);
      cpuMs.push((cpu.user + cpu.system) / 1000);
    }
    process.stderr.write(`    ours ${i < job.warmup ? 'warmup' : 'step'} ${i + 1}/${total}: ${ms.toFixed(0)} ms, loss ${value.toFixed(4)}\n`);
  }
  const out: OursJson = {
    ms_per_step: median(stepMs), step_ms: stepMs.map((t) => Math.round(t * 10) / 10), cpu_ms_per_step: median(cpuMs),
    first_loss: firstLoss, params: params.reduce((n, p) => n + p.size, 0), backend: describeBackend(),
    ...(job.dtype === 'bf16' ? { bf16: bf16Choice().reason } : {}),
  };
  const fmaPeak = nativeFunction<(ms: number) => number>('fmaPeak');
  if (job.gemmShare && fmaPeak) {
    const timer = timeKernels();
    const t0 = performance.now();
    step(total);
    step(total + 1);
    const wall = performance.now() - t0;
    const g = timer.gemm();
    out.gemm = { gflops: g.flops / g.ms / 1e6, peak: fmaPeak(300), stepShare: g.ms / wall };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

interface PeerJson {
  ms_per_step: number;
  cpu_ms_per_step: number;
  tokens_per_sec: number;
  threads: number;
  step_ms: number[];
  params: number;
  first_loss: number;
  torch_version: string;
  blas: string;
  blas_libraries: string[];
  sdpa: boolean;
  optimizer: string;
  dtype: string;
}

/** PyTorch's thread settings: torch.set_num_threads(n); the fastest is kept. */
interface PeerVariant {
  threads: number;
}
const peerLabel = (v: PeerVariant): string => threadsLabel(v.threads);

function peerEnv(o: Options): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE; // let a Debian torch's OpenBLAS pick its kernels for this CPU
  delete env.OPENBLAS_NUM_THREADS;
  if (o.blasDir) env.LD_LIBRARY_PATH = [o.blasDir, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return env;
}

interface Case {
  name: string;
  cfg: ModelConfig;
  B: number;
  T: number;
  steps: number;
}

function runOurs(o: Options, c: Case, threads: number, steps: number, dtype: Dtype, gemmShare = false): Timed<OursJson> | string {
  const job: WorkerJob = { cfg: c.cfg, B: c.B, T: c.T, warmup: o.warmup, steps, dtype, gemmShare };
  const r = runWorker<OursJson>(fileURLToPath(import.meta.url), job, threads);
  return typeof r === 'string' ? r : { run: r, ms: r.ms_per_step, timed: r.step_ms, cpuMs: r.cpu_ms_per_step };
}

function runTorch(o: Options, python: string, c: Case, v: PeerVariant, steps: number, dtype: Dtype): Timed<PeerJson> | string {
  const script = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'torch_train.py');
  const args = [
    script, '--config', JSON.stringify(c.cfg), '--batch-size', String(c.B), '--block-size', String(c.T),
    '--warmup', String(o.warmup), '--steps', String(steps), '--threads', String(v.threads),
    '--lr', String(HYPER.lr), '--beta1', String(HYPER.beta1), '--beta2', String(HYPER.beta2),
    '--eps', String(HYPER.eps), '--weight-decay', String(HYPER.weightDecay), '--grad-clip', String(HYPER.gradClip),
  ];
  if (dtype === 'bf16') args.push('--bf16');
  const r = runPython<PeerJson>(python, args, peerEnv(o));
  return typeof r === 'string' ? r : { run: r, ms: r.ms_per_step, timed: r.step_ms, cpuMs: r.cpu_ms_per_step };
}

/** A CPU-bound process on the last CPU (pinned with taskset when it exists), until stop(). */
function startBusyNeighbour(): { stop: () => void; how: string } {
  const cpu = availableParallelism() - 1;
  const loop = ['-e', 'for (;;) {}'];
  const pinned = spawnSync('taskset', ['-c', String(cpu), 'true']).status === 0;
  const child: ChildProcess = pinned
    ? spawn('taskset', ['-c', String(cpu), process.execPath, ...loop], { stdio: 'ignore' })
    : spawn(process.execPath, loop, { stdio: 'ignore' });
  const stop = (): void => void child.kill('SIGKILL');
  process.on('exit', stop);
  return { stop, how: pinned ? `a busy loop pinned to CPU ${cpu} (taskset)` : 'a busy loop, not pinned (taskset not found)' };
}

const tokPerSec = (c: Case, ms: number): number => (c.B * c.T * 1000) / ms;

function main(): void {
  const loadAtStart = loadavg();
  const o = parseOptions(process.argv.slice(2));
  if (o.worker !== undefined) {
    worker(JSON.parse(o.worker) as WorkerJob);
    return;
  }
  const found = o.torch ? findTorchPython(o.python) : null;
  const notes: string[] = [];
  if (!o.torch) notes.push('PyTorch peer skipped (--no-torch).');
  else if (!found) notes.push(`PyTorch peer skipped: no interpreter imports torch (${o.python ? `\`${o.python}\`` : 'looked in $VIRTUAL_ENV, /tmp/venv-peft, /tmp/venv-torch, python3, /usr/bin/python3'}; pip install torch, or pass --python).`);
  const ourDefault = nativeBackendInfo()?.threads ?? 1;
  const cores = availableParallelism();
  const variants: PeerVariant[] = [...new Set([1, cores])].map((threads) => ({ threads }));

  const cases: Case[] = o.configs.map((name) => {
    const d = DEFAULTS[name] ?? FALLBACK;
    const base = resolveConfig(name);
    // dropout off on both sides: the peer has none, and it is a training-only extra
    return { name, cfg: resolveConfig(name, { dropout: 0 }), B: o.batchSize ?? d.batchSize, T: Math.min(o.blockSize ?? d.blockSize, base.blockSize), steps: o.steps ?? d.steps };
  });
  const compare = { rounds: o.rounds, probeSteps: 0, ourThreads: [ourDefault], variants, variantLabel: peerLabel, peerName: 'PyTorch' };
  const python = found?.python;

  // float32: ours at the default thread count against PyTorch (probed at 1 and all threads), then ours at 1 thread
  const fp32 = cases.map((c) => runMatchups([{
    label: `${c.name} float32`,
    ours: (threads: number, steps: number) => runOurs(o, c, threads, steps, 'float32', true),
    peer: python ? (v: PeerVariant, steps: number) => runTorch(o, python, c, v, steps, 'float32') : null,
  }], { ...compare, steps: c.steps, probeSteps: python && variants.length > 1 ? c.steps : 0 })[0]);
  const single = ourDefault > 1
    ? cases.map((c) => runMatchups([{ label: `${c.name} ours 1 thread`, ours: (_t: number, steps: number) => runOurs(o, c, 1, steps, 'float32'), peer: null }],
      { ...compare, steps: c.steps })[0])
    : null;

  // bf16 mixed precision: PyTorch under autocast at the thread setting float32 chose
  let bf16: MatchupResult<OursJson, PeerJson, PeerVariant>[] | null = null;
  if (o.bf16) {
    bf16 = cases.map((c, i) => runMatchups([{
      label: `${c.name} bf16`,
      ours: (threads: number, steps: number) => runOurs(o, c, threads, steps, 'bf16'),
      peer: python ? (v: PeerVariant, steps: number) => runTorch(o, python, c, v, steps, 'bf16') : null,
      variants: [fp32[i].variant ?? variants[variants.length - 1]],
    }], { ...compare, steps: c.steps })[0]);
  }

  // contention: a busy neighbour on one core; ours at the default thread count against ours at 1 thread
  let contention: MatchupResult<OursJson, OursJson, number>[] | null = null;
  let neighbour = '';
  if (o.contention && cores > 1) {
    const busy = startBusyNeighbour();
    neighbour = busy.how;
    try {
      contention = cases.map((c) => runMatchups([{
        label: `${c.name} busy neighbour`,
        ours: (threads: number, steps: number) => runOurs(o, c, threads, steps, 'float32'),
        peer: (threads: number, steps: number) => runOurs(o, c, threads, steps, 'float32'),
      }], { ...compare, steps: c.steps, variants: [1], variantLabel: (t: number) => `ours ${threadsLabel(t)}`, peerName: '' })[0]);
    } finally {
      busy.stop();
    }
  }

  const out: string[] = [];
  const peerRun = fp32.find((r) => r.peerRun)?.peerRun ?? null;
  out.push('## Training throughput: llm.ts vs PyTorch (float32, CPU)');
  out.push('');
  out.push(`| config | params | B×T | ours ms/step | ours tok/s | PyTorch ms/step | PyTorch tok/s | ratio (ours/PyTorch) | ours 1 thread ms/step | ours ${threadsLabel(ourDefault)} / 1 | GEMM GFLOP/s (% of FMA peak) |`);
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  cases.forEach((c, i) => {
    const r = fp32[i];
    const ours = median(r.ours);
    const m = r.oursRun!;
    const peer = r.peer.length
      ? [fmt(median(r.peer), 1), fmt(tokPerSec(c, median(r.peer))), `**${(median(r.peer) / ours).toFixed(2)}x**${roundsNote(r.roundRatios)}`]
      : ['-', '-', '-'];
    const one = single ? median(single[i].ours) : NaN;
    const g = m.gemm;
    out.push(`| ${c.name} | ${fmtParams(m.params)} | ${c.B}×${c.T} | ${fmt(ours, 1)} | ${fmt(tokPerSec(c, ours))} | ${peer.join(' | ')} | ` +
      `${single ? fmt(one, 1) : '-'} | ${single ? `${(one / ours).toFixed(2)}x` : '-'} | ` +
      `${g ? `${fmt(g.gflops)} (${((100 * g.gflops) / g.peak).toFixed(0)}% of ${fmt(g.peak)}; ${(100 * g.stepShare).toFixed(0)}% of the step)` : '-'} |`);
    notes.push(...r.notes);
    if (r.peerRun && r.peerRun.params !== m.params) notes.push(`WARNING ${c.name}: PyTorch's model has ${r.peerRun.params} parameters, ours ${m.params}.`);
    notes.push(`${c.name}: ${r.variant ? `PyTorch ${peerLabel(r.variant)}` : 'no PyTorch run'}${r.probe.length ? ` (probe: ${r.probe.join('; ')})` : ''}; ` +
      `${cpuNote(r, 'PyTorch')}; first-step loss ours ${m.first_loss.toFixed(4)}, PyTorch ${r.peerRun ? r.peerRun.first_loss.toFixed(4) : '-'} (ln V = ${Math.log(c.cfg.vocabSize).toFixed(4)}).`);
  });
  if (bf16) {
    out.push('');
    out.push('### bf16 mixed precision');
    out.push('');
    out.push('| config | ours bf16 ms/step | ours bf16 / float32 | PyTorch autocast bf16 ms/step | ratio (ours/PyTorch) |');
    out.push('| --- | ---: | ---: | ---: | ---: |');
    cases.forEach((c, i) => {
      const r = bf16![i];
      const ours = r.ours.length ? median(r.ours) : NaN;
      const peer = r.peer.length ? median(r.peer) : NaN;
      const cell = (x: number, s: string): string => (Number.isFinite(x) ? s : '-');
      out.push(`| ${c.name} | ${cell(ours, fmt(ours, 1))} | ${cell(ours, `${(median(fp32[i].ours) / ours).toFixed(2)}x`)} | ${cell(peer, fmt(peer, 1))} | ${cell(ours + peer, `**${(peer / ours).toFixed(2)}x**`)} |`);
      notes.push(...r.notes);
    });
    const features = cpuBf16Features();
    notes.push(`bf16: this CPU has ${features.length ? features.join(', ') : 'neither AVX512-BF16 nor AMX (PyTorch emulates bf16 products; the rows are not a speed claim)'}; ` +
      `ours: ${bf16.find((r) => r.oursRun)?.oursRun?.bf16 ?? '-'}.`);
  }
  if (contention) {
    out.push('');
    out.push(`### Contention: ${neighbour}`);
    out.push('');
    out.push(`| config | ours ${threadsLabel(ourDefault)} ms/step | ours 1 thread ms/step | ${threadsLabel(ourDefault)} / 1 thread |`);
    out.push('| --- | ---: | ---: | ---: |');
    cases.forEach((c, i) => {
      const r = contention![i];
      out.push(`| ${c.name} | ${fmt(median(r.ours), 1)} | ${fmt(median(r.peer), 1)} | **${(median(r.peer) / median(r.ours)).toFixed(2)}x**${roundsNote(r.roundRatios)} |`);
    });
  }
  out.push('');
  out.push(`- date: ${new Date().toISOString()}`);
  out.push(`- ours: backend ${fp32[0]?.oursRun?.backend ?? describeBackend()} by default, node ${process.version}`);
  out.push(`- PyTorch: ${found ? `torch ${found.version} via ${found.python}` : 'not run'}`);
  if (peerRun) {
    out.push(`- PyTorch BLAS: ${peerRun.blas}${peerRun.blas_libraries.length && !peerRun.blas.startsWith('MKL') ? ` (${peerRun.blas_libraries.join(', ')})` : ''}; ` +
      `${peerRun.optimizer}; scaled_dot_product_attention ${peerRun.sdpa ? 'yes' : 'no'}; thread settings tried: ${variants.map(peerLabel).join(', ')}, fastest kept`);
    if (/reference|netlib/.test(peerRun.blas)) {
      out.push('- WARNING: this PyTorch runs its matrix products on the unoptimised reference (netlib) BLAS, so the PyTorch column ' +
        'is far below what PyTorch does with a real BLAS: pip install torch (MKL), install OpenBLAS (`apt-get install libopenblas0-pthread`), ' +
        'or pass --torch-blas-dir DIR for a fair peer.');
    }
  }
  out.push(`- both sides: same config, B×T, random tokens, AdamW (lr ${HYPER.lr}, betas ${HYPER.beta1}/${HYPER.beta2}, eps ${HYPER.eps}, ` +
    `weight decay ${HYPER.weightDecay} on matrices), grad clip ${HYPER.gradClip}, dropout 0; ${o.warmup} warmup steps per run excluded; ` +
    `${o.rounds} alternating rounds, median over all timed steps (per-round PyTorch/ours ratios in brackets)`);
  out.push('- GEMM column: every matrix product of two further steps of our run, timed one by one, against the FMA peak ' +
    'measured in the same process (independent fused multiply-adds on every thread)');
  out.push(`- ${machineLine(loadAtStart)}`);
  for (const n of notes) out.push(`- ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

main();
