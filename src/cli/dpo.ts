/**
 * llmts dpo: direct preference optimisation of a (usually supervised fine-tuned) model on
 * preference pairs, against a frozen reference: the model as it was loaded (a second copy), or
 * with --lora the same base with the adapters off. Writes a checkpoint llmts run/chat load; with
 * --lora also DIR/adapter (PEFT) and DIR/merged.
 *
 *   llmts dpo -m out/sft --data pairs.jsonl -o out/dpo --beta 0.1
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describeBackend } from '../backend/index.js';
import { DpoObjective, type DpoBatch, type DpoEval } from '../align/dpo.js';
import { DPO_LOSS_TYPES, type DpoLossType } from '../align/losses.js';
import { parsePreferenceFormat } from '../data/preference-examples.js';
import { parseOnBadRow } from '../data/rows.js';
import { parseEvalSplit } from '../data/split.js';
import type { RunLoraOptions } from '../finetune/lora-model.js';
import { trainableParameterCount } from '../model/lora.js';
import { countParameters } from '../model/parameters.js';
import { TrainingLoop, type EvalRecord, type StepRecord, type TrainResult } from '../train/loop.js';
import type { TrainOptions } from '../train/trainer.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { dataFile, loraFlagDefs, resumePolicyRun, startPolicyRun, writeLoraOutputs, type PolicySetup } from './finetune-setup.js';
import { runLoopInTerminal } from './loop-progress.js';
import { loadPairData, pairDataFlags, type PairDataOptions } from './pair-data.js';
import { THREADS_FLAG } from './shared-flags.js';
import { trainLoopFlags, trainLoopOptions } from './train-flags.js';

export interface DpoOptions extends TrainOptions, PairDataOptions {
  objective: 'dpo';
  model: string;
  template: string;
  templateSource?: string;
  beta: number;
  loss: DpoLossType;
  lora?: RunLoraOptions;
}

const D = 'Data and output';
const P = 'Preference optimisation';
const RUN_FILES = ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg', 'adapter', 'merged'];
const RESUME_FLAGS = new Set(['resume', 'out', 'max-iters', 'threads', 'debug', 'dtype']);

const DPO_SPEC: CommandSpec = {
  name: 'dpo',
  usage: '-m MODEL --data PAIRS -o DIR [flags]',
  summary: `Direct preference optimisation (Rafailov et al. 2023; TRL's DPOTrainer): raise the
log-probability of each chosen answer over the rejected one, relative to a frozen reference (the
model as loaded; with --lora, the base without adapters): loss -log sigmoid(beta * delta). Logs
rewards/chosen, rewards/rejected, rewards/accuracies and rewards/margins as TRL names them;
resumes exactly. The result loads in llmts run/chat (with --lora: DIR/merged).`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the model to optimise, usually an SFT model (or give it as the positional MODEL)', group: D },
    ...pairDataFlags(D, '0.05'),
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'run directory: checkpoint, metrics.jsonl, loss.svg (required)', group: D },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint; raise --max-iters to train a finished run further', group: D },
    { name: 'overwrite', kind: 'boolean', help: 'replace the run already in --out', group: D },
    { name: 'beta', kind: 'number', above: 0, default: 0.1, help: 'strength of the pull towards the reference (higher: stay closer)', group: P },
    { name: 'loss', kind: 'string', choices: DPO_LOSS_TYPES, default: 'sigmoid', help: 'sigmoid (DPO), hinge (SLiC) or ipo (per-token log-ratios, squared)', group: P },
    ...loraFlagDefs('; also writes DIR/adapter (PEFT) and DIR/merged'),
    ...trainLoopFlags({ maxIters: 200, batchSize: 4, lr: 5e-6, weightDecay: 0, evalInterval: 50, evalIters: 10 }),
    THREADS_FLAG,
  ],
  notes: `--batch-size counts pairs. Defaults suit a model already fine-tuned; a tiny model trained here
wants a larger --lr (1e-4).

  llmts dpo -m out/sft --data pairs.jsonl -o out/dpo --max-iters 300
  llmts dpo -m out/sft --data pairs.jsonl -o out/dpo-lora --lora --lr 5e-5   # then: llmts chat out/dpo-lora/merged`,
};

export const DPO: CommandModule = { spec: DPO_SPEC, run: dpoCommand };

const log = (s: string): void => void process.stdout.write(s + '\n');


async function dpoCommand(f: Flags): Promise<void> {
  const outDir = f.string('out');
  if (outDir === undefined) throw new LlmError(`give ${f.bool('resume') ? '' : '-m MODEL, --data PAIRS, '}-o DIR: llmts dpo -m MODEL --data PAIRS -o DIR (see 'llmts dpo --help')`);
  let options: DpoOptions;
  let setup: PolicySetup;
  let replace: string[] = [];
  let resume;
  if (f.bool('resume')) {
    const r = await resumePolicyRun<DpoOptions>(f, outDir, 'dpo', RESUME_FLAGS, (o) => o?.objective === 'dpo' && typeof o.model === 'string');
    ({ options } = r);
    setup = r;
    resume = r.checkpoint;
  } else {
    const data = dataFile(f.string('data'), 'preference pairs');
    const s = await startPolicyRun(f, outDir, 'llmts dpo -m MODEL --data PAIRS -o DIR', RUN_FILES);
    setup = s;
    replace = s.replace;
    const context = s.model.config.blockSize;
    const maxLength = f.number('max-length') ?? context;
    if (maxLength > context) throw new LlmError(`${f.typed('max-length')} ${maxLength}: the model's context holds ${context} tokens; give at most that`);
    options = {
      ...trainLoopOptions(f, maxLength, outDir), objective: 'dpo', model: s.path, data,
      format: parsePreferenceFormat(f.string('format')!), onBadRow: parseOnBadRow(f.string('on-bad-row')!), maxLength,
      evalSplit: parseEvalSplit(f.string('eval-split')!), template: s.chosen.name, templateSource: s.chosen.source,
      beta: f.number('beta')!, loss: f.string('loss') as DpoLossType,
    };
    if (s.lora) options.lora = s.lora;
    if (f.bool('truncate-prompt')) options.truncatePrompt = true;
  }
  const { model, reference, tokenizer, template, note } = setup;
  const data = loadPairData(options, tokenizer, template);
  const objective = new DpoObjective(reference, data.train, data.held, {
    pairsPerBatch: options.batchSize, seed: options.seed, padId: tokenizer.eosId ?? 0, beta: options.beta, lossType: options.loss,
  });
  const loop = new TrainingLoop<DpoBatch, DpoOptions, DpoEval>(model, objective, options, { tokenizer, resume, curveTitle: `${model.config.family} DPO loss`, chatTemplate: setup.chatTemplate });
  for (const name of replace) rmSync(join(outDir, name), { force: true, recursive: true });
  if (loop.step >= options.maxIters) {
    log(`nothing to do: the run in ${outDir} finished at step ${loop.step} of ${options.maxIters}; raise --max-iters to train it further, e.g. --max-iters ${loop.step * 2}`);
    return;
  }
  const cfg = model.config;
  const counts = trainableParameterCount(model);
  log(`model: ${options.model}: ${cfg.family} ${cfg.nLayer} layers, dim ${cfg.nEmbd}, context ${cfg.blockSize}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters; ` +
    `${options.lora ? `LoRA r ${options.lora.r} on ${options.lora.targets.join(',')}, ` : ''}${counts.trainable} trained (${(100 * counts.fraction).toFixed(2)}%); ` +
    `reference: ${options.lora ? 'the base without adapters' : 'a frozen copy of the model'}`);
  log(`data: ${data.summary}`);
  for (const w of data.warnings) process.stderr.write(`llmts dpo: ${w}\n`);
  log(`loss: ${options.loss}, beta ${options.beta}; template: ${note}; backend: ${describeBackend()}; run dir: ${outDir}`);
  if (loop.step > 0) log(`resuming from step ${loop.step}`);
  const result = await runLoopInTerminal<StepRecord, EvalRecord<DpoEval>, TrainResult<EvalRecord<DpoEval>>>({
    command: 'dpo', outDir, maxIters: options.maxIters, initialStep: loop.step, metricsPath: loop.metricsPath,
    run: (hooks) => loop.run(hooks),
    stepFields: (r) => ({
      loss: r.loss.toFixed(4), acc: (r.metrics?.['rewards/accuracies'] ?? 0).toFixed(2), margin: (r.metrics?.['rewards/margins'] ?? 0).toFixed(3),
      lr: r.lr.toExponential(2), epoch: objective.epochs.toFixed(2), 'tok/s': Math.round(r.tokensPerSec),
    }),
    evalLine: (e) => `step ${e.step}: train loss ${e.trainLoss.toFixed(4)}` + (e.valLoss === undefined ? '' :
      `, val loss ${e.valLoss.toFixed(4)}, held-out rewards/accuracies ${e['eval_rewards/accuracies'].toFixed(3)}, margins ${e['eval_rewards/margins'].toFixed(3)}`),
  });
  if (result.interrupted) return;
  if (options.lora) {
    const { adapterDir, mergedPath } = writeLoraOutputs(model, tokenizer, outDir, options.model, 'dpo', setup.chatTemplate);
    log(`adapter (PEFT): ${adapterDir}; merged model: ${mergedPath}`);
    log(`try it: llmts chat ${join(outDir, 'merged')}`);
    return;
  }
  log(`try it: llmts chat ${outDir}`);
}
