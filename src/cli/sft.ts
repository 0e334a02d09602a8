/**
 * llmts sft: supervised fine-tuning of a whole model (every weight trained) on instruction,
 * chat, prompt-completion or text data, with the loss on the responses only. The model is any
 * file llmts run reads (GGUF weights are dequantized to float32); the result is a training run
 * directory (ckpt.safetensors, metrics.jsonl, loss.svg) that llmts run and llmts chat load, and
 * that --resume continues exactly.
 *
 *   llmts sft -m out/base --data alpaca.jsonl -o out/sft
 *   llmts chat out/sft
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describeBackend } from '../backend/index.js';
import { CHAT_TEMPLATE_NAMES, chatTemplate, chooseModelChatTemplate, jinjaChatTemplate, type ChatTemplate, type ChatTemplateName } from '../chat/index.js';
import { loadSftExamples, parseSftFormat, SFT_FORMATS, type SftFormat } from '../data/sft-examples.js';
import { badRowsReport, ON_BAD_ROW_CHOICES, parseOnBadRow, type OnBadRow } from '../data/rows.js';
import { parseEvalSplit, splitTrainEval } from '../data/split.js';
import { loadCheckpoint, type CheckpointData } from '../formats/checkpoint.js';
import { loadAnyModel } from '../formats/load-model.js';
import { SftObjective, renderSftExamples, type LossOn, type SftBatch, type SftEval } from '../finetune/sft.js';
import { countParameters } from '../model/parameters.js';
import { Transformer } from '../model/transformer.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { TrainingLoop } from '../train/loop.js';
import type { TrainOptions } from '../train/trainer.js';
import { LlmError } from '../util/errors.js';
import { ProgressLine } from '../util/progress.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { modelPath, THREADS_FLAG } from './shared-flags.js';
import { trainLoopFlags, trainLoopOptions } from './train-flags.js';

/** The loop's options plus what a resumed run needs to rebuild the same data. */
export interface SftOptions extends TrainOptions {
  model: string;
  data: string;
  format: SftFormat | 'auto';
  onBadRow: OnBadRow;
  /** a named template, or 'jinja' with templateSource */
  template: string;
  templateSource?: string;
  maxLength: number;
  evalSplit: number;
  lossOn: LossOn;
}

const D = 'Data and output';

const SFT_SPEC: CommandSpec = {
  name: 'sft',
  usage: '-m MODEL --data FILE -o DIR [flags]',
  summary: `Supervised fine-tuning: train every weight of MODEL on instruction, chat, prompt-completion
or text data (JSONL or a JSON array), with the loss on the responses only. MODEL is anything
llmts run reads, with float weights (GGUF Q8_0/Q4_0 are dequantized). Writes a checkpoint,
metrics.jsonl and loss.svg to --out that llmts run and llmts chat load, and resumes exactly where
it stopped (Ctrl-C writes a checkpoint first).`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the model to fine-tune (or give it as the positional MODEL)', group: D },
    { name: 'data', kind: 'string', value: 'PATH', help: 'SFT data file: one JSON object per line, or a JSON array (required)', group: D },
    { name: 'format', kind: 'string', choices: ['auto', ...SFT_FORMATS], default: 'auto', help: 'data format; auto: decided by the first row that fits one', group: D },
    { name: 'on-bad-row', kind: 'string', choices: ON_BAD_ROW_CHOICES, default: 'skip', help: 'a row that does not fit the format: skip it (reported with its line) or stop with an error', group: D },
    { name: 'template', kind: 'string', choices: CHAT_TEMPLATE_NAMES, defaultText: "the model's own, else chatml for a tokenizer with ChatML tokens, else qa", help: 'chat template that renders chat examples', group: D },
    { name: 'max-length', kind: 'integer', min: 2, defaultText: "the model's context", help: 'tokens per example at most: longer ones are cut, and dropped when no response token is left', group: D },
    { name: 'eval-split', kind: 'string', value: 'FRACTION', default: '0.05', help: 'share of the examples held out for the validation loss (chosen by content; 0 = none)', group: D },
    { name: 'loss-on', kind: 'string', choices: ['response', 'all'], default: 'response', help: 'train on the responses only, or on every token', group: D },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'run directory: checkpoint, metrics.jsonl, loss.svg (required)', group: D },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint (same losses as an uninterrupted run); raise --max-iters to train a finished run further', group: D },
    { name: 'overwrite', kind: 'boolean', help: 'replace the run already in --out', group: D },
    ...trainLoopFlags({ maxIters: 200, batchSize: 8, lr: 2e-5, weightDecay: 0, beta2: 0.999, evalInterval: 50, evalIters: 10 }),
    THREADS_FLAG,
  ],
  notes: `Defaults are those of full fine-tuning of a small model (TRL's SFTTrainer: lr 2e-5, no weight
decay); a model trained from scratch here is tiny and wants a larger --lr (1e-3). Examples are
drawn in shuffled epochs, --batch-size a micro-batch, padded to the longest in it; the step's loss
is the mean over its response tokens.

  llmts sft -m out/base --data alpaca.jsonl -o out/sft --max-iters 500
  llmts sft -m model.gguf --data chats.jsonl --template chatml -o out/chat-sft
  llmts sft -o out/sft --resume --max-iters 1000       # train a finished run further`,
};

const RUN_FILES = ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg'];

/** What a resumed run may be given: everything else is the saved run's. */
const RESUME_FLAGS = new Set(['resume', 'out', 'max-iters', 'threads', 'debug']);

interface Setup {
  model: Transformer;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  templateNote: string;
  options: SftOptions;
  checkpoint?: CheckpointData;
  /** files of an earlier run in --out to remove (--overwrite) once the new run is ready */
  replace?: string[];
}

async function sftCommand(f: Flags): Promise<void> {
  const outDir = f.string('out');
  if (outDir === undefined) throw new LlmError('give the run directory: -o/--out DIR');
  const setup = f.bool('resume') ? await resumeRun(f, outDir) : await newRun(f, outDir);
  const { model, tokenizer, template, options } = setup;
  const log = (s: string): void => void process.stdout.write(s + '\n');

  const loaded = loadSftExamples(options.data, { format: options.format, onBadRow: options.onBadRow });
  const report = badRowsReport(options.data, loaded);
  const { rendered, truncated, dropped } = renderSftExamples(loaded.examples, loaded.lines, tokenizer, template, { maxLength: options.maxLength, lossOn: options.lossOn });
  const split = splitTrainEval(rendered, { fraction: options.evalSplit, key: (r) => r.key });
  const objective = new SftObjective(split.train, split.eval, { batchSize: options.batchSize, seed: options.seed, padId: tokenizer.eosId ?? 0 });
  const loop = new TrainingLoop<SftBatch, SftOptions, SftEval>(model, objective, options, { tokenizer, resume: setup.checkpoint, curveTitle: `${model.config.family} SFT loss` });

  for (const name of setup.replace ?? []) rmSync(join(outDir, name), { force: true }); // --overwrite, now that the new run is ready
  const cfg = model.config;
  if (loop.step >= options.maxIters) {
    log(`nothing to do: the run in ${outDir} finished at step ${loop.step} of ${options.maxIters}; raise --max-iters to train it further, e.g. --max-iters ${loop.step * 2}`);
    return;
  }
  log(`model: ${options.model}: ${cfg.family} ${cfg.nLayer} layers, ${cfg.nHead} heads (${cfg.nKvHead} kv), dim ${cfg.nEmbd}, ` +
    `context ${cfg.blockSize}, vocab ${cfg.vocabSize}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters, all trained`);
  log(`data: ${options.data}: ${loaded.format}, ${loaded.rows} rows, ${loaded.bad.length} bad; ${rendered.length} examples: ${split.train.length} train / ${split.eval.length} eval; ` +
    `${truncated} truncated to ${options.maxLength} tokens, ${dropped.length} dropped (no response token left)`);
  if (report) process.stderr.write(`llmts sft: ${report}\n`);
  if (dropped.length > 0) process.stderr.write(`llmts sft: warning: ${dropped.length} example${dropped.length === 1 ? '' : 's'} left out because --max-length ${options.maxLength} cuts their whole response (lines ${dropped.slice(0, 5).join(', ')}${dropped.length > 5 ? ', ...' : ''}); raise --max-length\n`);
  log(`template: ${setup.templateNote}; loss on: ${options.lossOn}; backend: ${describeBackend()}; run dir: ${outDir}`);
  if (loop.step > 0) log(`resuming from step ${loop.step}`);

  let stopRequested = false;
  const onSigint = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write('\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  const progress = new ProgressLine(options.maxIters, { label: 'sft', initial: loop.step });
  const examplesPerStep = options.batchSize * options.gradAccum;
  const t0 = performance.now();
  const step0 = loop.step;
  let result;
  try {
    result = await loop.run({
      onStep: (r) => {
        const seconds = (performance.now() - t0) / 1000;
        progress.update(r.step, {
          loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), epoch: objective.epochs.toFixed(2),
          'ex/s': seconds > 0 ? ((r.step - step0) * examplesPerStep / seconds).toFixed(1) : 0, 'tok/s': Math.round(r.tokensPerSec),
        });
      },
      onEval: (e) => progress.log(`step ${e.step}: train loss ${e.trainLoss.toFixed(4)}, val loss ${e.valLoss === undefined ? 'n/a (no eval split)' : e.valLoss.toFixed(4)}`, process.stdout),
      shouldStop: () => stopRequested,
    });
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
  log(`metrics: ${loop.metricsPath}; loss curve: ${join(outDir, 'loss.svg')}; checkpoint: ${result.checkpointPath}`);
  log(`speed: ${Math.round(result.tokensPerSec)} tokens/s`);
  if (result.interrupted) {
    log(`stopped at step ${result.step}; continue with: llmts sft --out ${outDir} --resume`);
    return;
  }
  const val = split.eval.length > 0 ? objective.validationLoss(model) : NaN;
  log(`final: step ${loop.step}, epoch ${objective.epochs.toFixed(2)}, response val loss ${Number.isNaN(val) ? 'n/a (no eval split)' : val.toFixed(4)}` +
    (split.eval.length > 0 ? ` (over all ${split.eval.length} held-out examples)` : ''));
  log(`try it: llmts chat ${outDir}`);
}

export const SFT: CommandModule = { spec: SFT_SPEC, run: sftCommand };

async function newRun(f: Flags, outDir: string): Promise<Setup> {
  const path = modelPath(f, 'llmts sft -m MODEL --data FILE -o DIR');
  const dataFlag = f.string('data');
  if (dataFlag === undefined) throw new LlmError('give the training data: --data FILE (JSONL or a JSON array of examples)');
  const data = resolve(dataFlag);
  if (!existsSync(data)) throw new LlmError(`data file not found: ${dataFlag} (pass --data with a local JSONL file)`);
  if (!statSync(data).isFile()) throw new LlmError(`--data ${dataFlag} is not a file`);
  const format = parseSftFormat(f.string('format')!);
  const onBadRow = parseOnBadRow(f.string('on-bad-row')!);
  const evalSplit = parseEvalSplit(f.string('eval-split')!);
  const existing = RUN_FILES.filter((name) => existsSync(join(outDir, name)));
  if (existing.length > 0 && !f.bool('overwrite')) {
    throw new LlmError(`${outDir} already holds a run (${existing.join(', ')}): continue it with --resume, replace it with --overwrite, or choose another --out`);
  }
  const loaded = await loadAnyModel(path, { keepQuantized: false });
  if (!loaded.tokenizer) throw new LlmError(`${path} carries no tokenizer; fine-tuning needs the model's tokenizer (give a checkpoint, GGUF or Hugging Face directory with one)`);
  const tokenizer = loaded.tokenizer;
  const model = new Transformer(loaded.config, loaded.params);
  const context = model.config.blockSize;
  const maxLength = f.number('max-length') ?? context;
  if (maxLength > context) throw new LlmError(`${f.typed('max-length')} ${maxLength}: the model's context holds ${context} tokens; give at most that`);
  const named = f.string('template') as ChatTemplateName | undefined;
  let template: ChatTemplate;
  let templateName: string;
  let templateSource: string | undefined;
  let note: string;
  if (named !== undefined) {
    template = chatTemplate(named);
    templateName = named;
    note = `${named} (--template)`;
  } else {
    const chosen = chooseModelChatTemplate(tokenizer, loaded.chatTemplate);
    template = chosen.template;
    templateName = chosen.name;
    if (chosen.name === 'jinja') templateSource = loaded.chatTemplate;
    note = `${chosen.name}: ${chosen.reason}; --template chooses another`;
  }
  const options: SftOptions = {
    ...trainLoopOptions(f, maxLength, outDir),
    model: path, data, format, onBadRow, template: templateName, templateSource, maxLength, evalSplit,
    lossOn: f.string('loss-on') as LossOn,
  };
  return { model, tokenizer, template, templateNote: note, options, replace: existing };
}

async function resumeRun(f: Flags, outDir: string): Promise<Setup> {
  const path = join(outDir, 'ckpt.safetensors');
  if (!existsSync(path)) throw new LlmError(`--resume: no checkpoint at ${path}; start the run without --resume first`);
  if (f.bool('overwrite')) throw new LlmError('--resume continues the run in --out and --overwrite replaces it; give one of the two');
  for (const flag of f.given()) {
    if (RESUME_FLAGS.has(flag)) continue;
    throw new LlmError(`--resume continues the saved run with its saved settings; ${f.typed(flag)} cannot change (only --max-iters can; start a new run in another --out)`);
  }
  const checkpoint = loadCheckpoint(path);
  const saved = (checkpoint.trainer as { options?: SftOptions }).options;
  if (!saved || typeof saved.data !== 'string' || typeof saved.template !== 'string') {
    throw new LlmError(`--resume: ${path} holds no SFT run settings (it is not a checkpoint of llmts sft)`);
  }
  const options: SftOptions = { ...saved, outDir, ...(f.has('max-iters') ? { maxIters: f.number('max-iters')! } : {}) };
  const tokenizer = tokenizerFromJSON(checkpoint.tokenizer);
  const template = options.template === 'jinja'
    ? jinjaChatTemplate(options.templateSource ?? '', tokenizer)
    : chatTemplate(options.template as ChatTemplateName);
  const model = new Transformer(checkpoint.config, checkpoint.params);
  return { model, tokenizer, template, templateNote: `${options.template} (saved with the run)`, options, checkpoint };
}
