/**
 * Alignment training throughput of this engine next to Hugging Face TRL, same machine, same run:
 * reward models (RewardTrainer), DPO (DPOTrainer), and RL iterations (GRPOTrainer, RLOOTrainer;
 * TRL 1.13 has no PPO trainer, so our PPO iteration is reported beside them without a peer).
 *
 *   node dist/bench/align.js [--configs llama-15m,llama-110m] [--tasks reward,dpo,grpo,rloo,ppo] [--rounds 2] [--steps 3]
 *
 * Both sides train the same Llama shape (src/model/config.ts), float32, AdamW, clip 1.0, on the
 * same synthetic token ids written to a file both read:
 *   reward, dpo  P pairs a step of prompt (Lp) + answer (La) + EOS, chosen and rejected: one
 *                (2P, T) batch, T = Lp + La + 1. Ours: RewardObjective / DpoObjective (a frozen
 *                reference, its log-probabilities computed when a pair is first drawn: every timed
 *                step draws new pairs) through TrainingLoop's own step; TRL: RewardTrainer on a
 *                LlamaForSequenceClassification (num_labels 1), DPOTrainer with a frozen ref_model
 *                (or precompute_ref_log_probs, its precompute time shared out over the steps).
 *   grpo, rloo   an iteration = one rollout of R completions (R/K prompts of Lp ids, K samples
 *                each, N new tokens at most, temperature 0.7, EOS stops) scored by a trivial
 *                programmatic reward (the share of completion words with an even token id), then
 *                one pass over it in minibatches of M (R/M optimizer steps). Ours: RlObjective's
 *                prepare (batched rollout through generateBatch, old log-probabilities, reference,
 *                advantages) and TrainingLoop steps; TRL: the trainer's generate (KV cache) with
 *                steps_per_generation R/M, num_iterations 1, beta as ours (default 0).
 *   ppo          ours only: the same R completions (one per prompt), value head, GAE, KL 0.05.
 * Each side is probed in each of its settings (ours: thread counts; TRL: threads, torch.compile,
 * precompute_ref_log_probs for DPO) and its fastest kept; then rounds alternate the sides (see
 * bench/compare.ts). The table shows the median step (or iteration) over every timed one of every
 * round; CPU time per step is noted too. See bench/README.md.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { describeBackend } from '../src/backend/index.js';
import { resolveConfig, type ModelConfig } from '../src/model/config.js';
import { addScalarHead } from '../src/model/heads.js';
import { trainableParameterCount } from '../src/model/lora.js';
import { Transformer } from '../src/model/transformer.js';
import { DpoObjective } from '../src/align/dpo.js';
import type { RenderedPair } from '../src/align/pairs.js';
import { RewardObjective } from '../src/align/reward.js';
import type { RewardSource } from '../src/align/rewards.js';
import { RlObjective, type RlAlgorithm, type RlPrompt } from '../src/align/rl.js';
import { withBufferScope } from '../src/tensor/index.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { TrainingLoop, type LoopOptions, type Objective } from '../src/train/loop.js';
import { Rng } from '../src/util/rng.js';
import { timeKernels } from './kernel-timer.js';
import {
  cpuNote, fmt, intOption, list, machineLine, median, roundsNote, runMatchups, runPython, runWorker, threadCounts, threadsLabel, trlVersions,
  type Matchup, type Timed,
} from './compare.js';

type Task = 'reward' | 'dpo' | 'grpo' | 'rloo' | 'ppo';
const TASKS: readonly Task[] = ['reward', 'dpo', 'grpo', 'rloo', 'ppo'];
const EOS_ID = 2;

/** TRL's defaults for these trainers where they agree with ours: AdamW betas 0.9/0.999, no weight decay, clip 1.0. */
const HYPER = { lr: 1e-5, beta1: 0.9, beta2: 0.999, weightDecay: 0, gradClip: 1.0, dpoBeta: 0.1, temperature: 0.7, ppoKl: 0.05 };

/** A TRL setting: torch threads, TrainingArguments.torch_compile, DPOConfig.precompute_ref_log_probs. */
interface TrlVariant {
  threads: number;
  compile: 'off' | 'on';
  precompute: boolean;
}

const USAGE = `usage: node dist/bench/align.js [options]

  --configs a,b         Llama presets (default: llama-15m,llama-110m)
  --tasks a,b           reward, dpo, grpo, rloo, ppo (default: all; ppo has no TRL peer)
  --pairs P             preference pairs per step (default 4: a (2P, T) batch)
  --prompt-len N        prompt tokens of a pair (default 64)
  --answer-len N        answer tokens of a pair before its EOS (default 63: T = 128)
  --rl-prompt-len N     prompt tokens of an RL prompt (default 32)
  --new-tokens N        completion tokens at most (default 32)
  --group K             completions per prompt, GRPO/RLOO (default 4)
  --rollout R           completions per iteration (default 16)
  --minibatch M         completions per optimizer step (default 8: R/M steps an iteration)
  --kl-coef B           GRPO/RLOO KL coefficient on both sides (default 0, both sides' default)
  --rounds N            alternating rounds of ours and TRL (default 2)
  --steps N             timed steps (reward, dpo) or iterations (RL) per side per round (default 3)
  --warmup N            untimed steps or iterations before timing, each run (default 1)
  --probe-steps N       timed steps of each setting in the probes (default 1; 0 skips the probes)
  --our-threads LIST    our thread counts to probe (LLMTS_THREADS), comma-separated (default: the CPU count, then 1)
  --trl-variants LIST   TRL settings to probe, THREADS:COMPILE[:precompute] each, comma-separated
                        (default: 2:off,1:off,2:off:precompute; :precompute only applies to DPO)
  --profile             ours only, one run per config and task at the first of --our-threads: time per kernel
                        (matrix products by shape)
                        (bench/kernel-timer.ts) of the timed steps, to stderr; no table
  --python PATH         interpreter with torch, transformers and trl (default /tmp/venv-peft/bin/python)
  --no-trl              our side only
  -h, --help            this text
`;

interface Options {
  configs: string[];
  tasks: Task[];
  pairs: number;
  promptLen: number;
  answerLen: number;
  rlPromptLen: number;
  newTokens: number;
  group: number;
  rollout: number;
  minibatch: number;
  klCoef: number;
  rounds: number;
  steps: number;
  warmup: number;
  probeSteps: number;
  variants: TrlVariant[];
  ourThreads: number[];
  python: string;
  trl: boolean;
  profile: boolean;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      configs: { type: 'string' }, tasks: { type: 'string' }, pairs: { type: 'string' }, 'prompt-len': { type: 'string' }, 'answer-len': { type: 'string' },
      'rl-prompt-len': { type: 'string' }, 'new-tokens': { type: 'string' }, group: { type: 'string' }, rollout: { type: 'string' }, minibatch: { type: 'string' },
      'kl-coef': { type: 'string' }, rounds: { type: 'string' }, steps: { type: 'string' }, warmup: { type: 'string' }, 'probe-steps': { type: 'string' },
      'trl-variants': { type: 'string' }, 'our-threads': { type: 'string' }, worker: { type: 'string' },
      python: { type: 'string' }, 'no-trl': { type: 'boolean' }, profile: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return null;
  }
  if (values.worker !== undefined) {
    void worker(JSON.parse(values.worker) as WorkerJob);
    return null;
  }
  const int = (name: string, min: number, dflt: number): number => intOption(values, name, min, dflt);
  const tasks = list(values.tasks ?? TASKS.join(','));
  for (const t of tasks) if (!TASKS.includes(t as Task)) throw new Error(`--tasks: '${t}' is not one of ${TASKS.join(', ')}`);
  const variants = list(values['trl-variants'] ?? '2:off,1:off,2:off:precompute').map((v) => {
    const [threads, compile, extra] = v.split(':');
    if (!/^\d+$/.test(threads ?? '') || (compile !== 'off' && compile !== 'on') || (extra !== undefined && extra !== 'precompute')) {
      throw new Error(`--trl-variants: '${v}' is not THREADS:off|on[:precompute] (e.g. 2:off)`);
    }
    return { threads: Number(threads), compile, precompute: extra === 'precompute' } as TrlVariant;
  });
  const klCoef = Number(values['kl-coef'] ?? 0);
  if (!(klCoef >= 0)) throw new Error('--kl-coef: give a number >= 0');
  const o: Options = {
    configs: list(values.configs ?? 'llama-15m,llama-110m'),
    tasks: tasks as Task[],
    pairs: int('pairs', 1, 4),
    promptLen: int('prompt-len', 1, 64),
    answerLen: int('answer-len', 1, 63),
    rlPromptLen: int('rl-prompt-len', 1, 32),
    newTokens: int('new-tokens', 1, 32),
    group: int('group', 2, 4),
    rollout: int('rollout', 2, 16),
    minibatch: int('minibatch', 1, 8),
    klCoef,
    rounds: int('rounds', 1, 2),
    steps: int('steps', 1, 3),
    warmup: int('warmup', 0, 1),
    probeSteps: int('probe-steps', 0, 1),
    variants,
    ourThreads: threadCounts(values['our-threads']),
    python: values.python ?? '/tmp/venv-peft/bin/python',
    trl: !values['no-trl'],
    profile: values.profile ?? false,
  };
  if (o.rollout % o.group !== 0 || o.rollout % o.minibatch !== 0) throw new Error(`--rollout ${o.rollout} must be a multiple of --group ${o.group} and --minibatch ${o.minibatch}`);
  return o;
}

// ---- data ---------------------------------------------------------------------------------------

/** Uniform token ids 3..V-1 (none a special id). */
function randomIds(rng: Rng, n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => 3 + rng.int(vocab - 3));
}

/** The data file's layout: pairs: prompts (n×Lp), chosen answers (n×La), rejected answers (n×La); RL: prompts (n×Lp). */
interface DataFile {
  path: string;
  rows: number;
  promptLen: number;
  answerLen: number;
}

function readInts(path: string): Int32Array {
  const buf = readFileSync(path);
  return new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** The pairs of a data file as our objectives take them: prompt + answer + EOS, the answer and EOS trained. */
function readPairs(d: DataFile): RenderedPair[] {
  const all = readInts(d.path);
  const { rows: n, promptLen: lp, answerLen: la } = d;
  const side = (r: number, offset: number): { ids: Int32Array; answerMask: Uint8Array } => {
    const ids = new Int32Array(lp + la + 1);
    ids.set(all.subarray(r * lp, (r + 1) * lp));
    ids.set(all.subarray(offset + r * la, offset + (r + 1) * la), lp);
    ids[lp + la] = EOS_ID;
    const answerMask = new Uint8Array(lp + la + 1);
    answerMask.fill(1, lp);
    return { ids, answerMask };
  };
  return Array.from({ length: n }, (_, r) => ({ chosen: side(r, n * lp), rejected: side(r, n * (lp + la)), line: r + 1, key: String(r) }));
}

/** Word-level stand-in for the synthetic ids, as bench/trl_align.py's tokenizer: token id i is the word `w<i>`. */
function standInTokenizer(vocabSize: number): Tokenizer {
  const words = (ids: ArrayLike<number>): string => Array.from(ids, (i) => `w${i}`).join(' ');
  return {
    kind: 'bench-words', vocabSize, eosId: EOS_ID,
    encode: (text: string) => text.split(/\s+/).filter(Boolean).map((w) => Number(w.slice(1))),
    decode: words,
    tokenBytes: (id: number) => new TextEncoder().encode(`w${id}`),
    toJSON: () => ({ kind: 'bench-words' }),
  };
}

/** The trivial programmatic reward of both sides: the share of the completion's words whose token id is even. */
export function evenShare(text: string): number {
  const ws = text.split(/\s+/).filter((w) => /^w\d+$/.test(w));
  let even = 0;
  for (const w of ws) if (Number(w.slice(1)) % 2 === 0) even++;
  return even / Math.max(ws.length, 1);
}

// ---- our side (a child process) -----------------------------------------------------------------

interface WorkerJob {
  task: Task;
  cfg: ModelConfig;
  data: DataFile;
  o: Pick<Options, 'pairs' | 'newTokens' | 'group' | 'rollout' | 'minibatch' | 'klCoef' | 'warmup' | 'profile'>;
  steps: number;
}

interface OursJson {
  ms_per_step: number;
  /** timed steps (reward, dpo) or iterations (RL) */
  step_ms: number[];
  cpu_ms_per_step: number;
  /** RL: the rollout phase (Objective.prepare) of each timed iteration */
  rollout_ms: number[];
  first_loss: number;
  params: number;
  trainable: number;
  threads: string;
}

function loopOptions(maxIters: number): LoopOptions {
  return {
    maxIters, gradAccum: 1, lr: HYPER.lr, minLr: HYPER.lr, warmupIters: 0, decayIters: 0, weightDecay: HYPER.weightDecay,
    beta1: HYPER.beta1, beta2: HYPER.beta2, gradClip: HYPER.gradClip, evalInterval: 1e9, evalIters: 1, seed: 1,
    outDir: join(tmpdir(), 'llmts-bench-align-unused'), // the loop writes only in run(), which the bench does not call
  };
}

/**
 * Our side: `warmup + steps` steps (reward, dpo) or iterations (RL: prepare, then rollout/minibatch
 * steps) of the objective through TrainingLoop's own step (zero grads, batch, loss, backward, clip,
 * AdamW), as TrainingLoop.run does them, timed one by one.
 */
async function worker(job: WorkerJob): Promise<void> {
  const { task, cfg, o } = job;
  const timer = o.profile ? timeKernels({ byShape: true }) : null;
  const model = new Transformer(cfg, new Rng(1337));
  const reference = (): Transformer => new Transformer(cfg, new Rng(1337), { reference: true });
  const tokenizer = standInTokenizer(cfg.vocabSize);
  let objective: Objective<unknown, Record<string, number>>;
  let stepsPerIter = 1;
  if (task === 'reward' || task === 'dpo') {
    const pairs = readPairs(job.data);
    objective = (task === 'reward'
      ? new RewardObjective(addScalarHead(model, { rng: new Rng(1344) }), pairs, [], { pairsPerBatch: o.pairs, seed: 1, padId: 0 })
      : new DpoObjective(reference(), pairs, [], { pairsPerBatch: o.pairs, seed: 1, padId: 0, beta: HYPER.dpoBeta })) as Objective<unknown, Record<string, number>>;
  } else {
    const ids = readInts(job.data.path);
    const Lp = job.data.promptLen;
    const prompts: RlPrompt[] = Array.from({ length: job.data.rows }, (_, r) => {
      const p = ids.slice(r * Lp, (r + 1) * Lp);
      return { ids: p, messages: [{ role: 'user', content: tokenizer.decode(p) }], meta: {} };
    });
    const reward: RewardSource = { name: 'even', score: (items) => Float32Array.from(items.map((it) => evenShare(it.completion))) };
    const group = task === 'ppo' ? 1 : o.group;
    const valueHead = task === 'ppo' ? addScalarHead(model, { init: 'zeros', name: 'value_head.weight' }) : null;
    objective = new RlObjective(reference(), valueHead, prompts, [], reward, tokenizer, {
      algo: task as RlAlgorithm, promptsPerRollout: o.rollout / group, samplesPerPrompt: group, ppoEpochs: 1, minibatchSize: o.minibatch,
      klCoef: task === 'ppo' ? HYPER.ppoKl : o.klCoef, clipRange: 0.2, clipRangeValue: 0.2, vfCoef: 0.1, gamma: 1, lam: 0.95,
      missingEosPenalty: 0, padId: 0, seed: 1, maxNewTokens: o.newTokens, temperature: HYPER.temperature, stopTokens: [EOS_ID],
    }) as unknown as Objective<unknown, Record<string, number>>;
    stepsPerIter = o.rollout / o.minibatch;
  }
  const total = o.warmup + job.steps;
  const loop = new TrainingLoop(model, objective, loopOptions(total * stepsPerIter), { tokenizer });
  // TrainingLoop.run's step without its files: the private trainStep is the loop's own code
  const trainStep = (lr: number): { loss: number } => (loop as unknown as { trainStep(lr: number): { loss: number } }).trainStep(lr);
  model.train(loop.dropoutRng);
  const iterMs: number[] = [], cpuMs: number[] = [], rolloutMs: number[] = [];
  let firstLoss = NaN;
  let step = 0;
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    let prepMs = 0;
    let loss = NaN;
    for (let s = 0; s < stepsPerIter; s++, step++) {
      if (objective.prepare) {
        const p0 = performance.now();
        model.eval();
        await objective.prepare(model, loop.dataRng, step);
        model.train(loop.dropoutRng);
        prepMs += performance.now() - p0;
      }
      loss = withBufferScope(() => trainStep(HYPER.lr)).loss;
      if (step === 0) firstLoss = loss;
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    if (i + 1 === o.warmup) timer?.clear();
    if (i >= o.warmup) {
      iterMs.push(ms);
      cpuMs.push((cpu.user + cpu.system) / 1000);
      rolloutMs.push(prepMs);
    }
    const what = stepsPerIter > 1 ? 'iteration' : 'step';
    process.stderr.write(`    ours ${i < o.warmup ? 'warmup' : what} ${i + 1}/${total}: ${ms.toFixed(0)} ms${prepMs ? ` (rollout ${prepMs.toFixed(0)})` : ''}, loss ${loss.toFixed(4)}\n`);
  }
  if (timer) {
    const mean = iterMs.reduce((a, b) => a + b, 0) / iterMs.length;
    const roll = rolloutMs.reduce((a, b) => a + b, 0) / rolloutMs.length;
    process.stderr.write(`\n${cfg.nLayer} layers, dim ${cfg.nEmbd}, ${task}: ${fmt(mean)} ms per ${stepsPerIter > 1 ? `iteration (rollout phase ${fmt(roll)} ms)` : 'step'}, ${describeBackend()}\n${timer.table(mean, iterMs.length)}\n\n`);
  }
  const counts = trainableParameterCount(model);
  const out: OursJson = {
    ms_per_step: median(iterMs), step_ms: iterMs.map((t) => Math.round(t)), cpu_ms_per_step: median(cpuMs), rollout_ms: rolloutMs.map((t) => Math.round(t)),
    first_loss: firstLoss, params: counts.total, trainable: counts.trainable, threads: describeBackend(),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

function runOurs(o: Options, task: Task, cfg: ModelConfig, data: DataFile, threads: number, steps: number): Timed<OursJson> | string {
  const job: WorkerJob = {
    task, cfg, data, steps,
    o: { pairs: o.pairs, newTokens: o.newTokens, group: o.group, rollout: o.rollout, minibatch: o.minibatch, klCoef: o.klCoef, warmup: o.warmup, profile: o.profile },
  };
  const r = runWorker<OursJson>(fileURLToPath(import.meta.url), job, threads);
  return typeof r === 'string' ? r : { run: r, ms: r.ms_per_step, timed: r.step_ms, cpuMs: r.cpu_ms_per_step };
}

// ---- TRL ----------------------------------------------------------------------------------------

interface TrlJson {
  ms_per_step: number;
  step_ms: number[];
  cpu_ms_per_step: number;
  precompute_ms: number;
  threads: number;
  optim: string;
  params: number;
  trainable: number;
  train_loss: number;
  trl_version: string;
  attn: string | null;
}

const variantLabel = (v: TrlVariant): string => `${threadsLabel(v.threads)}, torch.compile ${v.compile}${v.precompute ? ', precompute_ref_log_probs' : ''}`;

function runTrl(o: Options, task: Task, cfg: ModelConfig, data: DataFile, v: TrlVariant, steps: number): Timed<TrlJson> | string {
  const script = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'trl_align.py');
  const rl = task === 'grpo' || task === 'rloo';
  const args = [
    script, '--task', task, '--config', JSON.stringify(cfg), '--data', data.path, '--rows', String(data.rows),
    '--prompt-len', String(data.promptLen), '--answer-len', String(data.answerLen),
    '--batch-size', String(rl ? o.minibatch : o.pairs), '--group', String(o.group), '--rollout', String(o.rollout),
    '--new-tokens', String(o.newTokens), '--temperature', String(HYPER.temperature),
    '--beta', String(rl ? o.klCoef : HYPER.dpoBeta), '--warmup', String(o.warmup), '--steps', String(steps),
    '--threads', String(v.threads), '--compile', v.compile, '--precompute-ref', v.precompute ? 'on' : 'off',
    '--lr', String(HYPER.lr), '--beta1', String(HYPER.beta1), '--beta2', String(HYPER.beta2),
    '--weight-decay', String(HYPER.weightDecay), '--grad-clip', String(HYPER.gradClip),
  ];
  const r = runPython<TrlJson>(o.python, args);
  if (typeof r === 'string') return r;
  // the reference log-probabilities precomputed over the data set: each step's share added
  const share = r.precompute_ms / r.step_ms.length;
  const timed = r.step_ms.slice(o.warmup).map((t) => t + share);
  return { run: r, ms: median(timed), timed, cpuMs: r.cpu_ms_per_step + share };
}

// ---- the table ----------------------------------------------------------------------------------

interface Case {
  task: Task;
  name: string;
  cfg: ModelConfig;
  data: DataFile;
  /** token positions a step (reward, dpo) or an iteration (RL) processes */
  tokens: number;
}

const TASK_LABEL: Record<Task, string> = {
  reward: 'reward model (RewardTrainer)', dpo: 'DPO (DPOTrainer)', grpo: 'GRPO iteration (GRPOTrainer)', rloo: 'RLOO iteration (RLOOTrainer)',
  ppo: 'PPO iteration (TRL 1.13: no PPO trainer)',
};

async function main(): Promise<void> {
  const loadAtStart = loadavg();
  const o = parseOptions(process.argv.slice(2));
  if (!o) return;
  const versions = o.trl ? trlVersions(o.python) : null;
  const notes: string[] = [];
  if (!o.trl) notes.push('TRL peer skipped (--no-trl).');
  else if (!versions) notes.push(`TRL peer skipped: \`${o.python} -c "import trl"\` failed (pip install trl into that interpreter, or pass --python).`);
  const dir = mkdtempSync(join(tmpdir(), 'llmts-bench-align-'));
  const cases: Case[] = [];
  const runs = o.warmup + Math.max(o.steps, o.probeSteps);
  const T = o.promptLen + o.answerLen + 1;
  let results;
  try {
    for (const name of o.configs) {
      const cfg = resolveConfig(name, { dropout: 0 });
      if (cfg.family !== 'llama') throw new Error(`--configs: ${name} is not a Llama shape (the TRL peer builds Llama models)`);
      if (T > cfg.blockSize || o.rlPromptLen + o.newTokens > cfg.blockSize) throw new Error(`${name}: the sequences do not fit its context of ${cfg.blockSize}`);
      const rng = new Rng(2024);
      const pairRows = o.pairs * runs;
      const pairs: DataFile = { path: join(dir, `${name}-pairs.bin`), rows: pairRows, promptLen: o.promptLen, answerLen: o.answerLen };
      writeFileSync(pairs.path, Buffer.from(randomIds(rng, pairRows * (o.promptLen + 2 * o.answerLen), cfg.vocabSize).buffer));
      const promptRows = o.rollout * runs; // enough for PPO's one completion per prompt
      const prompts: DataFile = { path: join(dir, `${name}-prompts.bin`), rows: promptRows, promptLen: o.rlPromptLen, answerLen: 0 };
      writeFileSync(prompts.path, Buffer.from(randomIds(rng, promptRows * o.rlPromptLen, cfg.vocabSize).buffer));
      for (const task of o.tasks) {
        const rl = task !== 'reward' && task !== 'dpo';
        cases.push({ task, name, cfg, data: rl ? prompts : pairs, tokens: rl ? o.rollout * (o.rlPromptLen + o.newTokens) : 2 * o.pairs * T });
      }
    }
    if (o.profile) {
      for (const c of cases) {
        const r = runOurs(o, c.task, c.cfg, c.data, o.ourThreads[0], o.steps);
        if (typeof r === 'string') throw new Error(`our side failed: ${r}`);
      }
      return;
    }
    const matchups: Matchup<OursJson, TrlJson, TrlVariant>[] = cases.map((c) => ({
      label: `${c.name} ${c.task}`,
      ours: (threads, steps) => runOurs(o, c.task, c.cfg, c.data, threads, steps),
      peer: versions && c.task !== 'ppo' ? (v, steps) => runTrl(o, c.task, c.cfg, c.data, v, steps) : null,
      variants: c.task === 'dpo' ? o.variants : o.variants.filter((v) => !v.precompute),
    }));
    results = runMatchups(matchups, { rounds: o.rounds, steps: o.steps, probeSteps: o.probeSteps, ourThreads: o.ourThreads, variants: o.variants, variantLabel });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const rowsOut: string[] = [];
  results.forEach((res, i) => {
    const c = cases[i];
    notes.push(...res.notes);
    const ours = median(res.ours);
    const m = res.oursRun!;
    const shape = c.task === 'reward' || c.task === 'dpo'
      ? `${2 * o.pairs}×${T}`
      : `${o.rollout} × (${o.rlPromptLen}+${o.newTokens}), ${o.rollout / o.minibatch} steps`;
    let peer = ['-', '-', c.task === 'ppo' ? 'no TRL PPO' : '-'];
    if (res.peer.length > 0) {
      const trl = median(res.peer);
      peer = [fmt(trl), fmt((c.tokens * 1000) / trl), `**${(trl / ours).toFixed(2)}x**${roundsNote(res.roundRatios)}`];
    }
    rowsOut.push(`| ${c.name} | ${TASK_LABEL[c.task]} | ${shape} | ${fmt(ours)} | ${fmt((c.tokens * 1000) / ours)} | ${peer.join(' | ')} |`);
    const rollout = m.rollout_ms.length > 0 && m.rollout_ms.some((t) => t > 0) ? `; our rollout phase ${fmt(median(m.rollout_ms))} ms of the first round's iterations` : '';
    notes.push(`${c.name} ${c.task}: ours ${threadsLabel(res.ourThreads)}` +
      (res.variant ? `, TRL ${variantLabel(res.variant)}` : '') + (res.probe.length ? ` (probe: ${res.probe.join('; ')})` : '') +
      (res.peerRun ? `; TRL optimizer ${res.peerRun.optim.replace('OptimizerNames.', '').toLowerCase()}, attention ${res.peerRun.attn}` +
        (res.peerRun.precompute_ms > 0 ? `, reference precompute ${fmt(res.peerRun.precompute_ms)} ms shared out over the run's steps` : '') : '') +
      `; ${cpuNote(res)}${rollout}; trainable parameters ours ${m.trainable}${res.peerRun ? `, TRL ${res.peerRun.trainable}` : ''}` +
      `; first loss ours ${m.first_loss.toFixed(4)}${res.peerRun ? `, TRL mean train loss ${res.peerRun.train_loss.toFixed(4)}` : ''}.`);
  });

  const out: string[] = [];
  out.push('## Alignment training: llm.ts vs TRL (RewardTrainer, DPOTrainer, GRPOTrainer, RLOOTrainer), float32, CPU');
  out.push('');
  out.push('| config | what | rows × tokens | ours ms/step | ours tok/s | TRL ms/step | TRL tok/s | ratio (ours/TRL) |');
  out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  out.push(...rowsOut);
  out.push('');
  out.push(`- date: ${new Date().toISOString()}`);
  out.push(`- ours: ${results[0]?.oursRun?.threads ?? describeBackend()}, node ${process.version}`);
  out.push(`- TRL: ${versions ?? 'not run'}${versions ? ` via ${o.python}` : ''}`);
  out.push(`- reward, DPO: ${o.pairs} pairs a step, each side prompt ${o.promptLen} + answer ${o.answerLen} + EOS = ${T} tokens, chosen and rejected in one batch; tok/s counts 2P·T positions a step; ` +
    `DPO beta ${HYPER.dpoBeta}, a frozen reference of the same initial weights, its log-probabilities of each pair computed once (every timed step draws new pairs)`);
  out.push(`- RL iteration (rollout + update): ${o.rollout} completions of ${o.rlPromptLen}-token prompts (GRPO/RLOO: ${o.rollout / o.group} prompts × ${o.group}; PPO: ${o.rollout} prompts × 1), ` +
    `at most ${o.newTokens} new tokens at temperature ${HYPER.temperature}, EOS stops; reward: share of even token ids; one pass in minibatches of ${o.minibatch} (${o.rollout / o.minibatch} optimizer steps); ` +
    `GRPO/RLOO KL coefficient ${o.klCoef}, PPO ${HYPER.ppoKl} (value head, GAE); tok/s counts R·(prompt + new tokens) an iteration; "ms/step" is ms per iteration`);
  out.push(`- TRL 1.13 has no PPO trainer (PPOTrainer was removed; trl.experimental has none either), so PPO has no peer; its iteration does what GRPO's does plus the value head and GAE`);
  out.push(`- both sides: float32, AdamW (lr ${HYPER.lr}, betas ${HYPER.beta1}/${HYPER.beta2}, weight decay ${HYPER.weightDecay}), grad clip ${HYPER.gradClip}, no gradient checkpointing; ` +
    `${o.warmup} warmup step(s)/iteration(s) per run excluded; ${o.rounds} alternating rounds of ${o.steps} timed a side, median over all timed (per-round TRL/ours ratios in brackets)`);
  out.push(`- ${machineLine(loadAtStart)}`);
  for (const n of notes) out.push(`- ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

await main();
