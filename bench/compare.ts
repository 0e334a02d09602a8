/**
 * What the benches against a Python peer share (bench/sft.ts, bench/align.ts): our side and the
 * peer each run in child processes, each side is probed in each of its settings and its fastest
 * kept, then rounds alternate the two sides (ours first in even rounds, the peer first in odd
 * ones) so load on the machine hits both.
 *
 *   const results = runMatchups([{ label, ours: (threads, steps) => runWorker(...), peer: (v, steps) => runPython(...), ... }], o);
 *   results[0].ours;       // every timed step (ms) of every round; .peer the same; .roundRatios peer/ours per round
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg } from 'node:os';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const fmt = (x: number, digits = 0): string => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
export const fmtParams = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}K`);
export const threadsLabel = (n: number): string => `${n} thread${n === 1 ? '' : 's'}`;

/** A comma-separated option as its trimmed, non-empty items. */
export const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);

/** --our-threads: thread counts (default: the CPU count, then 1). */
export function threadCounts(raw: string | undefined): number[] {
  return list(raw ?? [...new Set([availableParallelism(), 1])].join(',')).map((t) => {
    if (!/^\d+$/.test(t) || Number(t) < 1) throw new Error(`--our-threads: '${t}' is not a thread count`);
    return Number(t);
  });
}

/** An integer option of parseArgs' values, at least `min`. */
export function intOption(values: Record<string, unknown>, name: string, min: number, dflt: number): number {
  const raw = values[name];
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} ${String(raw)}: must be an integer >= ${min}`);
  return v;
}

/**
 * Our side in a child process: `script --worker JOB` with LLMTS_THREADS=threads (the native thread
 * pool is sized at start); the last stdout line is its JSON. Progress goes to our stderr.
 */
export function runWorker<R>(script: string, job: unknown, threads: number): R | string {
  const r = spawnSync(process.execPath, [script, '--worker', JSON.stringify(job)], {
    encoding: 'utf8', env: { ...process.env, LLMTS_THREADS: String(threads) }, stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 << 20, timeout: 3_600_000,
  });
  if (r.status !== 0) return `exit ${r.status ?? r.signal}: ${(r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`;
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as R;
  } catch {
    return `unreadable output: ${r.stdout.slice(0, 200)}`;
  }
}

/** The peer: `python args...` (its thread count set by the script itself); the last stdout line is its JSON. */
export function runPython<R>(python: string, args: string[], baseEnv: NodeJS.ProcessEnv = process.env): R | string {
  const env = { ...baseEnv };
  delete env.OMP_NUM_THREADS; // torch.set_num_threads decides
  delete env.MKL_NUM_THREADS;
  const r = spawnSync(python, args, { encoding: 'utf8', env, maxBuffer: 64 << 20, timeout: 3_600_000 });
  if (r.status !== 0) return `exit ${r.status ?? r.signal}: ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`;
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as R;
  } catch {
    return `unreadable output: ${line.slice(0, 200)}`;
  }
}

/**
 * The interpreter with the newest PyTorch among `candidates` (an explicit --python first, then
 * $VIRTUAL_ENV, the usual virtualenvs of this project's benches, python3 on PATH, Debian's), or
 * null when none imports torch. PyTorch 2.x wheels bring MKL/oneDNN, Debian's 1.x the system BLAS.
 */
export function findTorchPython(explicit?: string): { python: string; version: string } | null {
  const candidates = explicit ? [explicit] : [
    process.env.VIRTUAL_ENV ? `${process.env.VIRTUAL_ENV}/bin/python` : '', '/tmp/venv-peft/bin/python', '/tmp/venv-torch/bin/python',
    'python3', '/usr/bin/python3',
  ].filter(Boolean);
  let best: { python: string; version: string } | null = null;
  const key = (v: string): number[] => v.split(/[.+]/).slice(0, 3).map((x) => Number.parseInt(x, 10) || 0);
  const newer = (a: string, b: string): boolean => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i];
    return false;
  };
  for (const python of [...new Set(candidates)]) {
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) continue;
    const version = r.stdout.trim();
    if (!best || newer(version, best.version)) best = { python, version };
  }
  return best;
}

/** TRL's and its dependencies' versions, or null when the interpreter cannot import them. */
export function trlVersions(python: string): string | null {
  const r = spawnSync(python, ['-c', 'import torch, transformers, trl, peft; print(f"TRL {trl.__version__}, PEFT {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")'],
    { encoding: 'utf8', timeout: 300_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** What every our-side worker prints (one JSON line), benches adding their own fields. */
export interface WorkerTimes {
  /** median of the timed steps */
  ms_per_step: number;
  step_ms: number[];
  cpu_ms_per_step: number;
  first_loss: number;
  params: number;
}

/** One run of a side: its raw output, the median and every timed step (warm-up excluded), CPU ms per step. */
export interface Timed<R> {
  run: R;
  ms: number;
  timed: number[];
  cpuMs: number;
}

/** One comparison: our side at a thread count, the peer in a setting V. */
export interface Matchup<O, P, V> {
  label: string;
  ours: (threads: number, steps: number) => Timed<O> | string;
  /** null: ours only */
  peer: ((v: V, steps: number) => Timed<P> | string) | null;
  /** the peer's settings to probe, when not CompareOptions.variants */
  variants?: V[];
}

export interface MatchupResult<O, P, V> {
  label: string;
  /** timed step times (ms) of every round, and each round's median CPU ms per step */
  ours: number[];
  oursCpu: number[];
  peer: number[];
  peerCpu: number[];
  /** peer ms / our ms, per round */
  roundRatios: number[];
  ourThreads: number;
  variant: V | null;
  /** what the probes measured */
  probe: string[];
  /** the first round's runs */
  oursRun: O | null;
  peerRun: P | null;
  /** peer failures in the rounds */
  notes: string[];
}

export interface CompareOptions<V> {
  rounds: number;
  steps: number;
  /** timed steps of each setting in the probes (0: no probes, the first setting of each side) */
  probeSteps: number;
  ourThreads: number[];
  variants: V[];
  variantLabel: (v: V) => string;
  /** what the peer is called in progress lines and notes (default 'TRL') */
  peerName?: string;
}

const say = (s: string): void => void process.stderr.write(s + '\n');

/** Probe each side's settings, then alternate the sides for `rounds` rounds; see the file comment. */
export function runMatchups<O, P, V>(matchups: Matchup<O, P, V>[], o: CompareOptions<V>): MatchupResult<O, P, V>[] {
  const peerName = o.peerName ?? 'TRL';
  const results: MatchupResult<O, P, V>[] = matchups.map((m) => ({
    label: m.label, ours: [], oursCpu: [], peer: [], peerCpu: [], roundRatios: [], ourThreads: o.ourThreads[0],
    variant: m.peer ? (m.variants ?? o.variants)[0] ?? null : null, probe: [], oursRun: null, peerRun: null, notes: [],
  }));
  const probing = o.probeSteps > 0;
  matchups.forEach((m, i) => {
    const c = results[i];
    if (probing && o.ourThreads.length > 1) {
      let best = Infinity;
      for (const threads of o.ourThreads) {
        say(`${m.label}: probing ours, ${threadsLabel(threads)}`);
        const r = m.ours(threads, o.probeSteps);
        if (typeof r === 'string') throw new Error(`our side failed: ${r}`);
        c.probe.push(`ours ${threadsLabel(threads)}: ${fmt(r.ms)} ms`);
        if (r.ms < best) [best, c.ourThreads] = [r.ms, threads];
      }
    }
    const variants = m.variants ?? o.variants;
    if (m.peer && probing && variants.length > 1) {
      let best = Infinity;
      c.variant = null;
      for (const v of variants) {
        say(`${m.label}: probing ${peerName} ${o.variantLabel(v)}`);
        const r = m.peer(v, o.probeSteps);
        if (typeof r === 'string') {
          c.probe.push(`${peerName} ${o.variantLabel(v)}: failed (${r})`);
          say(`  failed: ${r}`);
          continue;
        }
        c.probe.push(`${peerName} ${o.variantLabel(v)}: ${fmt(r.ms)} ms`);
        say(`  ${fmt(r.ms)} ms/step (steps ${r.timed.map((t) => t.toFixed(0)).join(', ')})`);
        if (r.ms < best) [best, c.variant] = [r.ms, v];
      }
    }
  });

  for (let round = 0; round < o.rounds; round++) {
    matchups.forEach((m, i) => {
      const c = results[i];
      const sides: ('ours' | 'peer')[] = round % 2 === 0 ? ['ours', 'peer'] : ['peer', 'ours'];
      let oursMs = NaN, peerMs = NaN;
      for (const side of sides) {
        if (side === 'ours') {
          say(`${m.label} round ${round + 1}/${o.rounds}: ours, ${threadsLabel(c.ourThreads)}`);
          const r = m.ours(c.ourThreads, o.steps);
          if (typeof r === 'string') throw new Error(`our side failed: ${r}`);
          c.ours.push(...r.timed);
          c.oursCpu.push(r.cpuMs);
          c.oursRun ??= r.run;
          oursMs = r.ms;
        } else if (m.peer && c.variant !== null) {
          say(`${m.label} round ${round + 1}/${o.rounds}: ${peerName} ${o.variantLabel(c.variant)}`);
          const r = m.peer(c.variant, o.steps);
          if (typeof r === 'string') {
            c.notes.push(`${m.label} round ${round + 1}: ${peerName} failed (${r})`);
            say(`  failed: ${r}`);
            continue;
          }
          say(`  ${peerName} ${fmt(r.ms)} ms/step (steps ${r.timed.map((t) => t.toFixed(0)).join(', ')})`);
          c.peer.push(...r.timed);
          c.peerCpu.push(r.cpuMs);
          c.peerRun ??= r.run;
          peerMs = r.ms;
        }
      }
      if (Number.isFinite(oursMs) && Number.isFinite(peerMs)) c.roundRatios.push(peerMs / oursMs);
    });
  }
  return results;
}

/** "(rounds 1.52, 1.61)" when there are several rounds. */
export function roundsNote(ratios: readonly number[]): string {
  return ratios.length > 1 ? ` (rounds ${ratios.map((r) => r.toFixed(2)).join(', ')})` : '';
}

/** CPU time per step of both sides (medians of the rounds) and their ratio. */
export function cpuNote(c: { oursCpu: number[]; peerCpu: number[] }, peerName = 'TRL'): string {
  if (c.peerCpu.length === 0) return `CPU ms/step ours ${fmt(median(c.oursCpu))}`;
  const ours = median(c.oursCpu), peer = median(c.peerCpu);
  return `CPU ms/step (median of rounds) ours ${fmt(ours)}, ${peerName} ${fmt(peer)}: ${(peer / ours).toFixed(2)}x`;
}

/** The machine and its load: the last line of a bench's notes. */
export function machineLine(loadAtStart: number[]): string {
  return `machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} logical CPUs; load average at start ` +
    `${loadAtStart.map((x) => x.toFixed(2)).join(' / ')}, at end ${loadavg().map((x) => x.toFixed(2)).join(' / ')} (1/5/15 min): other load on the machine is not controlled`;
}
