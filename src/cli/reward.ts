/**
 * llmts reward train|eval|score: reward models from preference pairs (InstructGPT's second stage).
 *
 *   llmts reward train -m out/sft --data hh.jsonl -o out/rm      # trunk + scalar head, Bradley-Terry loss
 *   llmts reward eval -m out/rm --data pairs.jsonl                # last line: accuracy 0.xxxx
 *   echo '{"prompt": "Hi", "completion": "Hello!"}' | llmts reward score -m out/rm
 */
import { rmSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { describeBackend } from '../backend/index.js';
import { evaluatePairs, RewardObjective, type RewardEval } from '../align/reward.js';
import { loadRewardModel, isRewardRun, scoreAnswers, type AnswerToScore, type RewardRunSettings } from '../align/reward-model.js';
import type { PairBatch } from '../align/pairs.js';
import { parsePreferenceFormat } from '../data/preference-examples.js';
import { parseOnBadRow } from '../data/rows.js';
import { parseEvalSplit } from '../data/split.js';
import { loadAnyModel } from '../formats/load-model.js';
import { buildRunModel, restoreRegistered } from '../finetune/lora-model.js';
import { addScalarHead } from '../model/heads.js';
import { mergeLora, trainableParameterCount } from '../model/lora.js';
import { exportHfSequenceClassifier } from '../formats/hf-checkpoint.js';
import { writeHfTokenizer } from './convert.js';
import { countParameters } from '../model/parameters.js';
import { TrainingLoop, type EvalRecord, type StepRecord, type TrainResult } from '../train/loop.js';
import type { TrainOptions } from '../train/trainer.js';
import type { ChatMessage } from '../chat/index.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import type { CommandGroup } from './commands.js';
import { helpText, type CommandSpec, type Flags } from './flags.js';
import { checkResumeFlags, checkRunDir, chooseTemplate, dataFile, loraFlagDefs, loraOptions, openRun, savedTemplate } from './finetune-setup.js';
import { runLoopInTerminal } from './loop-progress.js';
import { loadPairData, pairDataFlags, type PairDataOptions } from './pair-data.js';
import { modelPath, THREADS_FLAG } from './shared-flags.js';
import { checkResumeDtype, trainLoopFlags, trainLoopOptions } from './train-flags.js';

/** Everything a reward run saves to resume and to be used as a reward model. */
export interface RewardOptions extends TrainOptions, PairDataOptions, RewardRunSettings {
  model: string;
  centerRewards: number;
}

const D = 'Data and output';
const RUN_FILES = ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg'];
const RESUME_FLAGS = new Set(['resume', 'out', 'max-iters', 'threads', 'debug', 'dtype']);

const TRAIN_SPEC: CommandSpec = {
  name: 'reward train',
  usage: '-m MODEL --data PAIRS -o DIR [flags]',
  summary: `Train a reward model: MODEL's trunk plus a scalar head read at the last token of each
prompt + answer, with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected) on preference
pairs (TRL's RewardTrainer). Every weight trains, or LoRA adapters and the head (--lora). Logs the
held-out pairwise accuracy and margin; resumes exactly (--resume).`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the model to start from (or give it as the positional MODEL)', group: D },
    ...pairDataFlags(D, '0.1'),
    { name: 'center-rewards', kind: 'number', min: 0, default: 0, help: "adds C * mean((r_chosen + r_rejected)^2), keeping rewards near 0 (TRL's center_rewards_coefficient; 0.01 is usual)", group: D },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'run directory: checkpoint (the reward model), metrics.jsonl, loss.svg (required)', group: D },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint; raise --max-iters to train a finished run further', group: D },
    { name: 'overwrite', kind: 'boolean', help: 'replace the run already in --out', group: D },
    ...loraFlagDefs(' (the head trains either way)'),
    ...trainLoopFlags({ maxIters: 500, batchSize: 8, lr: 1e-4, weightDecay: 0, evalInterval: 100, evalIters: 20 }),
    THREADS_FLAG,
  ],
  notes: `--batch-size counts pairs (each is two sequences in the forward pass). A model trained from
scratch here is tiny and wants a larger --lr (1e-3).

  llmts reward train -m out/base --data ../shared/data/hh-rlhf/train.jsonl -o out/rm --max-iters 1000
  llmts reward eval -m out/rm --data pairs.jsonl`,
};

const EVAL_SPEC: CommandSpec = {
  name: 'reward eval',
  usage: '-m RM --data PAIRS [flags]',
  summary: `Pairwise accuracy of a reward model on preference pairs: the share of pairs whose chosen
answer scores higher than the rejected one (every pair of the file; none held out). The last line
is 'accuracy 0.xxxx'.`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the reward model: a llmts reward train run directory (or give it as the positional RM)', group: D },
    ...pairDataFlags(D, '0').filter((d) => d.name !== 'eval-split' && d.name !== 'template'),
    { name: 'batch-size', short: 'b', kind: 'integer', min: 1, default: 8, help: 'pairs per forward pass', group: D },
    THREADS_FLAG,
  ],
};

const SCORE_SPEC: CommandSpec = {
  name: 'reward score',
  usage: '-m RM [--data FILE]',
  summary: `Score answers with a reward model: JSONL rows {"prompt": ..., "completion": ...} or
{"messages": [..., {"role": "assistant", ...}]} from --data or stdin; prints one JSON line
{"score": r} per row, in order.`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the reward model: a llmts reward train run directory (or give it as the positional RM)', group: D },
    { name: 'data', kind: 'string', value: 'PATH', defaultText: 'stdin', help: 'the rows to score', group: D },
    { name: 'batch-size', short: 'b', kind: 'integer', min: 1, default: 8, help: 'answers per forward pass', group: D },
    THREADS_FLAG,
  ],
};

const EXPORT_SPEC: CommandSpec = {
  name: 'reward export',
  usage: '-m RM -o DIR',
  summary: `Write a reward model as a Hugging Face directory that transformers loads with
AutoModelForSequenceClassification (LlamaForSequenceClassification / GPT2ForSequenceClassification,
one label; LoRA adapters merged): config.json, model.safetensors, tokenizer.json. Scores equal ours.`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the reward model: a llmts reward train run directory (or give it as the positional RM)', group: D },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'output directory (required)', group: D },
  ],
};

const SPECS = [TRAIN_SPEC, EVAL_SPEC, SCORE_SPEC, EXPORT_SPEC];
for (const spec of SPECS) (spec as { siblings?: CommandSpec[] }).siblings = SPECS.filter((s) => s !== spec);

export const REWARD: CommandGroup = {
  name: 'reward',
  subcommands: {
    train: { spec: TRAIN_SPEC, run: trainReward },
    eval: { spec: EVAL_SPEC, run: evalReward },
    score: { spec: SCORE_SPEC, run: scoreReward },
    export: { spec: EXPORT_SPEC, run: exportReward },
  },
  help: `Usage: llmts reward <train|eval|score|export> [flags]

Reward models from human preferences: train one on chosen/rejected pairs, measure its pairwise
accuracy, score answers, export it for transformers. 'llmts reward <subcommand> --help' shows one;
all four follow.

${SPECS.map((s) => helpText(s)).join('\n')}`,
};

const log = (s: string): void => void process.stdout.write(s + '\n');

async function trainReward(f: Flags): Promise<void> {
  const outDir = f.string('out');
  if (outDir === undefined) throw new LlmError(`give ${f.bool('resume') ? '' : '-m MODEL, --data PAIRS, '}-o DIR: llmts reward train -m MODEL --data PAIRS -o DIR (see 'llmts reward train --help')`);
  let options: RewardOptions;
  let replace: string[] = [];
  let resume;
  let built;
  if (f.bool('resume')) {
    checkResumeFlags(f, RESUME_FLAGS);
    const run = openRun<RewardOptions>(outDir, 'reward train', isRewardRun);
    checkResumeDtype(f, run.options);
    options = { ...run.options, outDir, ...(f.has('max-iters') ? { maxIters: f.number('max-iters')! } : {}) };
    const model = buildRunModel(run.checkpoint.config, run.checkpoint.params, options.lora, options.seed);
    const head = addScalarHead(model, { init: 'zeros' });
    restoreRegistered(model, run.checkpoint.params, run.checkpoint.extras, run.path);
    built = { model, head, tokenizer: run.tokenizer, template: savedTemplate(options.template, options.templateSource, run.tokenizer), note: `${options.template} (saved with the run)` };
    resume = run.checkpoint;
  } else {
    const path = modelPath(f, 'llmts reward train -m MODEL --data PAIRS -o DIR');
    const data = dataFile(f.string('data'), 'preference pairs');
    replace = checkRunDir(f, outDir, RUN_FILES);
    const loaded = await loadAnyModel(path, { keepQuantized: false });
    if (!loaded.tokenizer) throw new LlmError(`${path} carries no tokenizer; a reward model needs the model's tokenizer (give a checkpoint, GGUF or Hugging Face directory with one)`);
    const lora = loraOptions(f, loaded.config.family);
    const seed = f.number('seed')!;
    const model = buildRunModel(loaded.config, loaded.params, lora, seed);
    const head = addScalarHead(model, { rng: new Rng(seed + 7) });
    const context = model.config.blockSize;
    const maxLength = f.number('max-length') ?? context;
    if (maxLength > context) throw new LlmError(`${f.typed('max-length')} ${maxLength}: the model's context holds ${context} tokens; give at most that`);
    const t = chooseTemplate(f, loaded.tokenizer, loaded.chatTemplate);
    options = {
      ...trainLoopOptions(f, maxLength, outDir), objective: 'reward', model: path, data,
      format: parsePreferenceFormat(f.string('format')!), onBadRow: parseOnBadRow(f.string('on-bad-row')!), maxLength,
      evalSplit: parseEvalSplit(f.string('eval-split')!), template: t.name, templateSource: t.source, centerRewards: f.number('center-rewards')!,
    };
    if (f.bool('truncate-prompt')) options.truncatePrompt = true;
    if (lora) options.lora = lora;
    built = { model, head, tokenizer: loaded.tokenizer, template: t.template, note: t.note };
  }
  const { model, head, tokenizer, template } = built;
  const data = loadPairData(options, tokenizer, template);
  const objective = new RewardObjective(head, data.train, data.held, {
    pairsPerBatch: options.batchSize, seed: options.seed, padId: tokenizer.eosId ?? 0, centerCoefficient: options.centerRewards,
  });
  const loop = new TrainingLoop<PairBatch, RewardOptions, RewardEval>(model, objective, options, { tokenizer, resume, curveTitle: `${model.config.family} reward model loss` });
  for (const name of replace) rmSync(`${outDir}/${name}`, { force: true, recursive: true }); // --overwrite, now that the new run is ready
  if (loop.step >= options.maxIters) {
    log(`nothing to do: the run in ${outDir} finished at step ${loop.step} of ${options.maxIters}; raise --max-iters to train it further, e.g. --max-iters ${loop.step * 2}`);
    return;
  }
  const cfg = model.config;
  const counts = trainableParameterCount(model);
  log(`model: ${options.model}: ${cfg.family} ${cfg.nLayer} layers, dim ${cfg.nEmbd}, context ${cfg.blockSize}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters + scalar head; ` +
    `${options.lora ? `LoRA r ${options.lora.r} on ${options.lora.targets.join(',')}, ` : ''}${counts.trainable} trained (${(100 * counts.fraction).toFixed(2)}%)`);
  log(`data: ${data.summary}`);
  for (const w of data.warnings) process.stderr.write(`llmts reward: ${w}\n`);
  log(`template: ${built.note}; backend: ${describeBackend()}; run dir: ${outDir}`);
  if (loop.step > 0) log(`resuming from step ${loop.step}`);
  const result = await runLoopInTerminal<StepRecord, EvalRecord<RewardEval>, TrainResult<EvalRecord<RewardEval>>>({
    command: 'reward train', outDir, maxIters: options.maxIters, initialStep: loop.step, metricsPath: loop.metricsPath,
    run: (hooks) => loop.run(hooks),
    stepFields: (r) => ({ loss: r.loss.toFixed(4), acc: (r.metrics?.accuracy ?? 0).toFixed(2), lr: r.lr.toExponential(2), epoch: objective.epochs.toFixed(2), 'tok/s': Math.round(r.tokensPerSec) }),
    evalLine: (e) => `step ${e.step}: train loss ${e.trainLoss.toFixed(4)} (accuracy ${e.trainAccuracy.toFixed(3)})` +
      (e.valLoss === undefined ? '' : `, val loss ${e.valLoss.toFixed(4)}, held-out accuracy ${e.accuracy.toFixed(4)}, margin ${e.margin.toFixed(3)}`),
  });
  if (result.interrupted) return;
  if (data.held.length > 0) {
    const h = evaluatePairs(model, head, data.held, options.batchSize, tokenizer.eosId ?? 0);
    log(`held-out: ${data.held.length} pairs, loss ${h.loss.toFixed(4)}, margin ${h.margin.toFixed(3)}`);
    log(`accuracy ${h.accuracy.toFixed(4)}`);
  }
  log(`reward model: ${outDir} (llmts reward eval -m ${outDir} --data PAIRS; llmts reward score -m ${outDir})`);
}

async function evalReward(f: Flags): Promise<void> {
  const rm = loadRewardModel(modelPath(f, 'llmts reward eval -m RM --data PAIRS'));
  const data = dataFile(f.string('data'), 'preference pairs');
  const context = rm.model.config.blockSize;
  const maxLength = f.number('max-length') ?? context;
  if (maxLength > context) throw new LlmError(`${f.typed('max-length')} ${maxLength}: the reward model's context holds ${context} tokens; give at most that`);
  const pairData = loadPairData({
    data, format: parsePreferenceFormat(f.string('format')!), onBadRow: parseOnBadRow(f.string('on-bad-row')!),
    maxLength, evalSplit: 0, truncatePrompt: f.bool('truncate-prompt'),
  }, rm.tokenizer, rm.template, 'evaluate');
  for (const w of pairData.warnings) process.stderr.write(`llmts reward eval: ${w}\n`);
  if (pairData.train.length === 0) throw new LlmError(`${data}: no pairs to evaluate`);
  const r = evaluatePairs(rm.model, rm.head, pairData.train, f.number('batch-size')!, rm.tokenizer.eosId ?? 0);
  log(`data: ${pairData.summary}`);
  log(`pairs ${pairData.train.length}, loss ${r.loss.toFixed(4)}, margin ${r.margin.toFixed(4)}`);
  log(`accuracy ${r.accuracy.toFixed(4)}`);
}

async function scoreReward(f: Flags): Promise<void> {
  const rm = loadRewardModel(modelPath(f, 'llmts reward score -m RM [--data FILE]'));
  const file = f.string('data');
  const text = file === undefined ? readFileSync(0, 'utf8') : readFileSync(dataFile(file, 'rows to score'), 'utf8');
  const where = file ?? 'stdin';
  const items: AnswerToScore[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    items.push(answerRow(line, `${where}:${i + 1}`));
  });
  if (items.length === 0) throw new LlmError(`${where}: no rows to score (give JSONL rows {"prompt": ..., "completion": ...})`);
  const scores = scoreAnswers(rm, items, f.number('batch-size')!);
  for (const s of scores) process.stdout.write(JSON.stringify({ score: Number(s.toPrecision(6)) }) + '\n');
}

/** One row to score: {prompt, completion|response} or {messages} ending with the assistant. */
function answerRow(line: string, at: string): AnswerToScore {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch {
    throw new LlmError(`${at}: not a JSON object; give {"prompt": ..., "completion": ...}`);
  }
  const r = row as { prompt?: unknown; completion?: unknown; response?: unknown; messages?: unknown };
  const answer = r.completion ?? r.response;
  if (typeof r.prompt === 'string' && typeof answer === 'string') return { prompt: [{ role: 'user', content: r.prompt }], answer };
  if (Array.isArray(r.messages) && r.messages.length >= 2) {
    const messages = r.messages as ChatMessage[];
    const last = messages[messages.length - 1];
    if (last?.role === 'assistant' && typeof last.content === 'string') return { prompt: messages.slice(0, -1), answer: last.content };
  }
  throw new LlmError(`${at}: expected {"prompt": string, "completion": string} or {"messages": [..., {"role": "assistant", "content": ...}]}`);
}

async function exportReward(f: Flags): Promise<void> {
  const rm = loadRewardModel(modelPath(f, 'llmts reward export -m RM -o DIR'));
  const out = f.string('out');
  if (out === undefined) throw new LlmError('give the output directory: -o DIR');
  if (rm.model.namedParameters().some((p) => p.name.includes('.lora_'))) mergeLora(rm.model);
  const eos = rm.tokenizer.eosId;
  exportHfSequenceClassifier(out, rm.model.config, rm.model.params, rm.head.weight, { padTokenId: eos ?? 0, eosTokenId: eos, bosTokenId: rm.tokenizer.bosId });
  const note = writeHfTokenizer(out, rm.tokenizer);
  log(`wrote ${out}: ${rm.model.config.family === 'gpt2' ? 'GPT2' : 'Llama'}ForSequenceClassification (config.json, model.safetensors${note}); pad_token_id ${eos ?? 0}`);
}
