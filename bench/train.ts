/**
 * Training throughput of this engine next to PyTorch's, same machine, same run.
 *
 *   node dist/bench/train.js [--configs shakespeare-char,llama-15m] [--steps N] [--batch-size B]
 *
 * For each config both sides train the same model (same config, batch size, block size,
 * AdamW hyperparameters, global-norm clip 1.0) on random token batches; each times
 * `warmup` untimed steps then `steps` timed ones and reports the median. PyTorch runs as a
 * child process (bench/torch_train.py under Debian's /usr/bin/python3) in two thread
 * settings, the faster one is kept. See bench/README.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describeBackend } from '../src/backend/index.js';
import { resolveConfig, type ModelConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { AdamW, clipGradNorm } from '../src/train/adamw.js';
import { withBufferScope } from '../src/tensor/index.js';
import { DEFAULT_TRAIN_OPTIONS } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';

interface BenchDefaults {
  batchSize: number;
  blockSize: number;
  steps: number;
}

/** shakespeare-char: nanoGPT's CPU run (batch 12, block 64). llama-15m: a small batch at full context. */
const DEFAULTS: Record<string, BenchDefaults> = {
  'shakespeare-char': { batchSize: 12, blockSize: 64, steps: 30 },
  'shakespeare-char-6l': { batchSize: 16, blockSize: 256, steps: 5 },
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

/** Debian's OpenBLAS builds; put first on the peer's library path when present. */
const OPENBLAS_DIRS = [
  '/usr/lib/x86_64-linux-gnu/openblas-pthread',
  '/usr/lib/aarch64-linux-gnu/openblas-pthread',
  '/usr/lib/x86_64-linux-gnu/openblas-openmp',
  '/usr/lib/aarch64-linux-gnu/openblas-openmp',
];

const USAGE = `usage: node dist/bench/train.js [options]

  --configs a,b        presets to run (default: shakespeare-char,shakespeare-char-6l,llama-15m)
  --steps N            timed steps per side (default: 10 for shakespeare-char, 3 for llama-15m)
  --warmup N           untimed steps before timing (default 2)
  --batch-size B       batch size for every config (default: 12 shakespeare-char, 4 llama-15m)
  --block-size T       sequence length for every config (default: 64 shakespeare-char, 256 llama-15m)
  --peer-steps N       timed PyTorch steps (default: same as --steps)
  --python PATH        interpreter with torch (default /usr/bin/python3)
  --torch-blas-dir D   directory with a libblas.so.3 to put first on PyTorch's LD_LIBRARY_PATH
                       (default: Debian's OpenBLAS directory when installed)
  --no-torch           skip the PyTorch peer
  -h, --help           this text
`;

interface Options {
  configs: string[];
  steps?: number;
  warmup: number;
  batchSize?: number;
  blockSize?: number;
  peerSteps?: number;
  python: string;
  blasDir: string | null;
  torch: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      configs: { type: 'string' }, steps: { type: 'string' }, warmup: { type: 'string' },
      'batch-size': { type: 'string' }, 'block-size': { type: 'string' }, 'peer-steps': { type: 'string' },
      python: { type: 'string' }, 'torch-blas-dir': { type: 'string' }, 'no-torch': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const int = (name: string, min: number): number | undefined => {
    const raw = (values as Record<string, unknown>)[name];
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${name} ${String(raw)}: must be an integer >= ${min}`);
    return v;
  };
  const blasDir = values['torch-blas-dir'] ?? OPENBLAS_DIRS.find((d) => existsSync(join(d, 'libblas.so.3'))) ?? null;
  return {
    configs: (values.configs ?? 'shakespeare-char,shakespeare-char-6l,llama-15m').split(',').map((s) => s.trim()).filter(Boolean),
    steps: int('steps', 1),
    warmup: int('warmup', 0) ?? 2,
    batchSize: int('batch-size', 1),
    blockSize: int('block-size', 1),
    peerSteps: int('peer-steps', 1),
    python: values.python ?? '/usr/bin/python3',
    blasDir,
    torch: !values['no-torch'],
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface SideResult {
  msPerStep: number;
  tokensPerSec: number;
  stepMs: number[];
  firstLoss: number;
}

/** Our training step, exactly as Trainer.run does it (gradAccum 1). */
function benchOurs(cfg: ModelConfig, B: number, T: number, warmup: number, steps: number): SideResult & { params: number } {
  const model = new Transformer(cfg, new Rng(1337));
  const params = model.parameters();
  const opt = new AdamW(params.map((tensor, i) => ({ tensor, decay: model.specs[i].decay })), {
    beta1: HYPER.beta1, beta2: HYPER.beta2, eps: HYPER.eps, weightDecay: HYPER.weightDecay,
  });
  model.train(new Rng(1338));
  const rng = new Rng(42);
  const batch = (): Int32Array => Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const batches = Array.from({ length: warmup + steps }, () => ({ x: batch(), y: batch() }));
  const times: number[] = [];
  let firstLoss = NaN;
  batches.forEach(({ x, y }, i) => {
    const t0 = performance.now();
    const value = withBufferScope(() => {
      opt.zeroGrad();
      const loss = model.forward(x, B, T, y).loss!;
      const v = loss.item();
      loss.backward();
      clipGradNorm(params, HYPER.gradClip);
      opt.step(HYPER.lr);
      return v;
    });
    const ms = performance.now() - t0;
    if (i === 0) firstLoss = value;
    if (i >= warmup) times.push(ms);
    process.stderr.write(`  ours ${i < warmup ? 'warmup' : 'step'} ${i + 1}/${batches.length}: ${ms.toFixed(0)} ms, loss ${value.toFixed(4)}\n`);
  });
  const ms = median(times);
  return { msPerStep: ms, tokensPerSec: (B * T * 1000) / ms, stepMs: times, firstLoss, params: params.reduce((n, p) => n + p.size, 0) };
}

interface PeerJson {
  ms_per_step: number;
  tokens_per_sec: number;
  threads: number;
  step_ms: number[];
  params: number;
  first_loss: number;
  torch_version: string;
  blas: string;
  blas_libraries: string[];
  sdpa: boolean;
}

interface PeerVariant {
  label: string;
  threads: number;
  openblasThreads: string;
}

/** The two thread settings tried for PyTorch; the faster one is reported. */
const VARIANTS: PeerVariant[] = [
  { label: 'torch 1 thread, OPENBLAS_NUM_THREADS=2', threads: 1, openblasThreads: '2' },
  { label: 'torch 2 threads, OPENBLAS_NUM_THREADS=2', threads: 2, openblasThreads: '2' },
];

function peerEnv(o: Options, v: PeerVariant): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE; // let OpenBLAS pick its kernels for this CPU
  env.OPENBLAS_NUM_THREADS = v.openblasThreads;
  delete env.OMP_NUM_THREADS; // torch.set_num_threads decides
  delete env.MKL_NUM_THREADS;
  if (o.blasDir) env.LD_LIBRARY_PATH = [o.blasDir, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  return env;
}

function torchVersion(python: string): string | null {
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

function runPeer(o: Options, cfg: ModelConfig, B: number, T: number, steps: number, v: PeerVariant): PeerJson | string {
  const script = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'torch_train.py');
  const args = [
    script, '--config', JSON.stringify(cfg), '--batch-size', String(B), '--block-size', String(T),
    '--warmup', String(o.warmup), '--steps', String(steps), '--threads', String(v.threads),
    '--lr', String(HYPER.lr), '--beta1', String(HYPER.beta1), '--beta2', String(HYPER.beta2),
    '--eps', String(HYPER.eps), '--weight-decay', String(HYPER.weightDecay), '--grad-clip', String(HYPER.gradClip),
  ];
  const r = spawnSync(o.python, args, { encoding: 'utf8', env: peerEnv(o, v), maxBuffer: 16 << 20, timeout: 1_800_000 });
  if (r.status !== 0) return `exit ${r.status ?? r.signal}: ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`;
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as PeerJson;
  } catch {
    return `unreadable output: ${line.slice(0, 200)}`;
  }
}

const fmt = (x: number, digits = 0): string => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const fmtParams = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}K`);

function main(): void {
  const loadAtStart = loadavg();
  const o = parseOptions(process.argv.slice(2));
  const torch = o.torch ? torchVersion(o.python) : null;
  const notes: string[] = [];
  if (!o.torch) notes.push('PyTorch peer skipped (--no-torch).');
  else if (!torch) notes.push(`PyTorch peer skipped: \`${o.python} -c "import torch"\` failed (install Debian's python3-torch).`);

  const rows: string[] = [];
  let blas: string | null = null;
  for (const name of o.configs) {
    const d = DEFAULTS[name] ?? FALLBACK;
    const base = resolveConfig(name);
    const B = o.batchSize ?? d.batchSize;
    const T = Math.min(o.blockSize ?? d.blockSize, base.blockSize);
    const steps = o.steps ?? d.steps;
    // dropout off on both sides: the peer has none, and it is a training-only extra
    const cfg = resolveConfig(name, { dropout: 0 });
    process.stderr.write(`${name}: B=${B} T=${T}, ${o.warmup} warmup + ${steps} timed steps\n`);
    const ours = benchOurs(cfg, B, T, o.warmup, steps);
    let peer: PeerJson | null = null;
    let winner = '';
    if (torch) {
      const tried: string[] = [];
      for (const v of VARIANTS) {
        const r = runPeer(o, cfg, B, T, o.peerSteps ?? steps, v);
        if (typeof r === 'string') {
          tried.push(`${v.label}: failed (${r})`);
          process.stderr.write(`  PyTorch ${v.label}: failed: ${r}\n`);
          continue;
        }
        process.stderr.write(`  PyTorch ${v.label}: ${fmt(r.ms_per_step, 1)} ms/step (steps: ${r.step_ms.map((t) => t.toFixed(0)).join(', ')})\n`);
        tried.push(`${v.label}: ${fmt(r.ms_per_step, 1)} ms`);
        blas = `${r.blas}${r.blas_libraries.length ? ` (${r.blas_libraries.join(', ')})` : ''}`;
        if (r.params !== ours.params) notes.push(`WARNING ${name}: PyTorch model has ${r.params} parameters, ours ${ours.params}.`);
        if (!peer || r.ms_per_step < peer.ms_per_step) {
          peer = r;
          winner = v.label;
        }
      }
      notes.push(`${name}: PyTorch best of [${tried.join('; ')}] -> ${peer ? winner : 'none'}; ` +
        `first-step loss ours ${ours.firstLoss.toFixed(4)}, PyTorch ${peer ? peer.first_loss.toFixed(4) : '-'} (ln V = ${Math.log(cfg.vocabSize).toFixed(4)}).`);
    }
    const cells = peer
      ? [fmt(peer.ms_per_step, 1), fmt(peer.tokens_per_sec), `${(ours.tokensPerSec / peer.tokens_per_sec).toFixed(2)}x`]
      : ['-', '-', '-'];
    rows.push(`| ${name} | ${fmtParams(ours.params)} | ${B}×${T} | ${fmt(ours.msPerStep, 1)} | ${fmt(ours.tokensPerSec)} | ${cells.join(' | ')} |`);
  }

  const out: string[] = [];
  out.push('## Training throughput: llm.ts vs PyTorch (float32, CPU)');
  out.push('');
  out.push('| config | params | B×T | ours ms/step | ours tok/s | PyTorch ms/step | PyTorch tok/s | ratio (ours/PyTorch) |');
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  out.push(...rows);
  out.push('');
  out.push(`- date: ${new Date().toISOString()}`);
  out.push(`- ours: backend ${describeBackend()}, node ${process.version}`);
  out.push(`- PyTorch: ${torch ? `torch ${torch} via ${o.python}` : 'not run'}`);
  if (torch) {
    out.push(`- PyTorch BLAS: ${blas ?? 'unknown'}`);
    out.push(`- PyTorch env: OPENBLAS_CORETYPE unset (was ${process.env.OPENBLAS_CORETYPE ? `'${process.env.OPENBLAS_CORETYPE}'` : 'not set'}), ` +
      `OMP_NUM_THREADS/MKL_NUM_THREADS unset, LD_LIBRARY_PATH first ${o.blasDir ?? '(unchanged: no OpenBLAS directory found)'}; ` +
      `tried ${VARIANTS.map((v) => `[${v.label}]`).join(' and ')}, fastest kept`);
    if (blas && /reference|netlib/.test(blas)) {
      out.push('- WARNING: this PyTorch runs its matrix products on the unoptimised reference (netlib) BLAS, so the PyTorch column ' +
        'is far below what PyTorch does with a real BLAS: install OpenBLAS (`apt-get install libopenblas0-pthread`) ' +
        'or pass --torch-blas-dir DIR for a fair peer.');
    }
  }
  out.push(`- both sides: same config, B×T, random tokens, AdamW (lr ${HYPER.lr}, betas ${HYPER.beta1}/${HYPER.beta2}, eps ${HYPER.eps}, ` +
    `weight decay ${HYPER.weightDecay} on matrices), grad clip ${HYPER.gradClip}, dropout 0; ${o.warmup} warmup steps excluded, median of the timed steps`);
  out.push(`- machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} logical CPUs; load average at start ` +
    `${loadAtStart.map((x) => x.toFixed(2)).join(' / ')} (1/5/15 min): other load on the machine is not controlled`);
  for (const n of notes) out.push(`- ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

main();
