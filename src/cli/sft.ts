/**
 * llmts sft: supervised fine-tuning of a whole model (every weight trained) on instruction,
 * chat, prompt-completion or text data, with the loss on the responses only. The model is any
 * file llmts run reads (GGUF weights are dequantized to float32, except for QLoRA below); the result is a training run
 * directory (ckpt.safetensors, metrics.jsonl, loss.svg) that llmts run and llmts chat load, and
 * that --resume continues exactly. With --lora the base is frozen and LoRA adapters are trained; the
 * run also writes the adapter in PEFT's layout (DIR/adapter) and the merged model (DIR/merged).
 * QLoRA: with --lora a Q8_0/Q4_0 GGUF base stays quantized, and --quantize-base q4_0|q8_0 quantizes
 * a float base's linear weights at load; the frozen blocks are saved in the run's checkpoint as they
 * are (exact resume), and DIR/merged is float32: the dequantized base plus the adapter.
 *
 *   llmts sft -m out/base --data alpaca.jsonl -o out/sft
 *   llmts chat out/sft
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describeBackend } from '../backend/index.js';
import { CHAT_TEMPLATE_NAMES, type ChatTemplate } from '../chat/index.js';
import { loadSftExamples, parseSftFormat, SFT_FORMATS, type SftFormat } from '../data/sft-examples.js';
import { badRowsReport, ON_BAD_ROW_CHOICES, parseOnBadRow, type OnBadRow } from '../data/rows.js';
import { parseEvalSplit, splitTrainEval } from '../data/split.js';
import { loadCheckpoint, type CheckpointData } from '../formats/checkpoint.js';
import { loadAnyModel } from '../formats/load-model.js';
import { SftObjective, renderSftExamples, stepsForEpochs, type LossOn, type SftBatch, type SftEval } from '../finetune/sft.js';
import { LORA_MODULES, trainableParameterCount } from '../model/lora.js';
import { quantizeBlockLinears, unquantizableLinear, type QuantizedWeight } from '../model/quantized.js';
import type { QuantType } from '../backend/index.js';
import { countParameters } from '../model/parameters.js';
import type { Tensor } from '../tensor/index.js';
import { Transformer } from '../model/transformer.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { TrainingLoop, type EvalRecord, type StepRecord, type TrainResult } from '../train/loop.js';
import type { TrainOptions } from '../train/trainer.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { runLoopInTerminal } from './loop-progress.js';
import { modelPath, THREADS_FLAG } from './shared-flags.js';
import { checkResumeDtype, trainLoopFlags, trainLoopOptions } from './train-flags.js';
import { checkResumeFlags, checkRunDir, chooseTemplate, dataFile, loraFlagDefs, loraOptions, savedTemplate, writeLoraOutputs } from './finetune-setup.js';
import { buildRunModel, restoreRegistered, type RunLoraOptions } from '../finetune/lora-model.js';

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
  /** --packing: examples packed into rows of maxLength tokens (absent in runs saved before it existed) */
  packing?: boolean;
  /** --lora: train a LoRA adapter on the frozen base (absent: every weight trained) */
  lora?: SftLoraOptions;
  /** --gradient-checkpointing (absent in runs saved before it: auto) */
  gradientCheckpointing?: CheckpointingMode;
  /** --epochs: passes over the training examples, which set maxIters (absent: --max-iters did) */
  epochs?: number;
}

/** Activation checkpointing: auto = on for a quantized base (QLoRA). */
export type CheckpointingMode = 'auto' | 'on' | 'off';

/** The LoRA settings of an sft run (saved with the run, so --resume rebuilds the same layers). */
export interface SftLoraOptions extends RunLoraOptions {
  /** --quantize-base: the base's linear weights quantized at load and kept so, frozen (QLoRA) */
  quantizeBase?: QuantType;
}

const D = 'Data and output';

const SFT_SPEC: CommandSpec = {
  name: 'sft',
  usage: '-m MODEL --data FILE -o DIR [flags]',
  summary: `Supervised fine-tuning: train every weight of MODEL on instruction, chat, prompt-completion
or text data (JSONL or a JSON array), with the loss on the responses only. MODEL is anything
llmts run reads, with float weights (GGUF Q8_0/Q4_0 are dequantized, except with --lora). Writes a checkpoint,
metrics.jsonl and loss.svg to --out that llmts run and llmts chat load, and resumes exactly where
it stopped (Ctrl-C writes a checkpoint first). With --lora only LoRA adapters on the frozen model
train; the finished run also writes DIR/adapter (PEFT) and DIR/merged (what llmts chat should load).
QLoRA: with --lora a Q8_0/Q4_0 GGUF keeps its quantized weights (frozen), and --quantize-base
quantizes a float model's linear weights at load; DIR/merged is then the dequantized base plus the
adapter, in float32.`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the model to fine-tune (or give it as the positional MODEL)', group: D },
    { name: 'data', kind: 'string', value: 'PATH', help: 'SFT data file: one JSON object per line, or a JSON array (required)', group: D },
    { name: 'format', kind: 'string', choices: ['auto', ...SFT_FORMATS], default: 'auto', help: 'data format; auto: decided by the first row that fits one', group: D },
    { name: 'on-bad-row', kind: 'string', choices: ON_BAD_ROW_CHOICES, default: 'skip', help: 'a row that does not fit the format: skip it (reported with its line) or stop with an error', group: D },
    { name: 'template', kind: 'string', choices: CHAT_TEMPLATE_NAMES, defaultText: "the model's own, else chatml for a tokenizer with ChatML tokens, else qa", help: 'chat template that renders chat examples', group: D },
    { name: 'max-length', kind: 'integer', min: 2, defaultText: "the model's context", help: 'tokens per example at most: longer ones are cut, and dropped when no response token is left', group: D },
    { name: 'eval-split', kind: 'string', value: 'FRACTION', default: '0.05', help: 'share of the examples held out for the validation loss (chosen by content; 0 = none)', group: D },
    { name: 'loss-on', kind: 'string', choices: ['response', 'all'], default: 'response', help: 'train on the responses only, or on every token', group: D },
    { name: 'packing', kind: 'boolean', help: 'pack several examples into each row of --max-length tokens (best-fit decreasing; --batch-size then counts rows); examples never attend to each other', group: D },
    { name: 'gradient-checkpointing', kind: 'string', choices: ['auto', 'on', 'off'], default: 'auto', help: "recompute each block's activations in the backward pass instead of keeping them (same results, ~1/3 more compute, a fraction of the activation memory); auto: on for a quantized base (QLoRA)", group: D },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'run directory: checkpoint, metrics.jsonl, loss.svg (required)', group: D },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint (same losses as an uninterrupted run); raise --max-iters to train a finished run further', group: D },
    { name: 'overwrite', kind: 'boolean', help: 'replace the run already in --out', group: D },
    ...loraFlagDefs('; also writes DIR/adapter (PEFT) and DIR/merged'),
    { name: 'quantize-base', kind: 'string', choices: ['q4_0', 'q8_0'], help: "QLoRA: quantize the base's attention and MLP weights at load and keep them so, frozen (with --lora; their input features must be multiples of 32)", group: 'LoRA' },
    { name: 'epochs', kind: 'number', value: 'N', above: 0, defaultText: 'off: --max-iters steps', help: 'train N passes over the training examples: the step count becomes ceil(N x train examples / (batch size x grad accum)); give it or --max-iters, not both', group: 'Training loop' },
    ...trainLoopFlags({ maxIters: 200, batchSize: 8, lr: 2e-5, weightDecay: 0, beta2: 0.999, evalInterval: 50, evalIters: 10 }),
    THREADS_FLAG,
  ],
  notes: `Defaults are those of full fine-tuning of a small model (TRL's SFTTrainer: lr 2e-5, no weight
decay); a model trained from scratch here is tiny and wants a larger --lr (1e-3). Examples are
drawn in shuffled epochs, --batch-size a micro-batch, padded to the longest in it (--packing: rows
of several examples instead, far less padding); the step's loss is the mean over its response tokens.

  llmts sft -m out/base --data alpaca.jsonl -o out/sft --max-iters 500
  llmts sft -m model.gguf --data chats.jsonl --template chatml -o out/chat-sft
  llmts sft -o out/sft --resume --max-iters 1000       # train a finished run further
  llmts sft -m out/base --data alpaca.jsonl -o out/lora --lora --lr 2e-4   # then: llmts chat out/lora/merged
  llmts sft -m out/base --data alpaca.jsonl -o out/qlora --lora --quantize-base q4_0 --lr 2e-4
  llmts sft -m model.q4_0.gguf --data alpaca.jsonl -o out/qlora --lora      # the Q4_0 base stays Q4_0`,
};

const RUN_FILES = ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg', 'adapter', 'merged'];

/** What a resumed run may be given: everything else is the saved run's. */
const RESUME_FLAGS = new Set(['resume', 'out', 'max-iters', 'epochs', 'threads', 'debug', 'gradient-checkpointing', 'dtype']);

interface Setup {
  model: Transformer;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  templateNote: string;
  options: SftOptions;
  checkpoint?: CheckpointData;
  /** the model's own chat template (Jinja), kept in the run's checkpoints and merged model */
  chatTemplate?: string;
  /** files of an earlier run in --out to remove (--overwrite) once the new run is ready */
  replace?: string[];
}

async function sftCommand(f: Flags): Promise<void> {
  const outDir = f.string('out');
  if (outDir === undefined) {
    // a new user's first try names nothing: ask for the whole command, model and data first
    const missing = [f.bool('resume') ? null : !f.has('model') && f.positionals.length === 0 ? '-m MODEL' : null, f.bool('resume') || f.has('data') ? null : '--data FILE', '-o DIR'].filter(Boolean);
    throw new LlmError(`give ${missing.join(', ')}: llmts sft -m MODEL --data FILE -o DIR (see 'llmts sft --help')`);
  }
  const setup = f.bool('resume') ? await resumeRun(f, outDir) : await newRun(f, outDir);
  const { model, tokenizer, template, options } = setup;
  const checkpointing = options.gradientCheckpointing ?? 'auto';
  model.gradientCheckpointing = checkpointing === 'on' || (checkpointing === 'auto' && model.quantized.size > 0);
  const log = (s: string): void => void process.stdout.write(s + '\n');

  const loaded = loadSftExamples(options.data, { format: options.format, onBadRow: options.onBadRow });
  const report = badRowsReport(options.data, loaded);
  const { rendered, truncated, dropped } = renderSftExamples(loaded.examples, loaded.lines, tokenizer, template, { maxLength: options.maxLength, lossOn: options.lossOn });
  const split = splitTrainEval(rendered, { fraction: options.evalSplit, key: (r) => r.key });
  const objective = new SftObjective(split.train, split.eval, {
    batchSize: options.batchSize, seed: options.seed, padId: tokenizer.eosId ?? 0, ...(options.packing ? { packLength: options.maxLength } : {}),
  });
  const epochsNote = applyEpochs(f, options, objective.epochSize, options.packing ? 'rows' : 'examples');
  const loop = new TrainingLoop<SftBatch, SftOptions, SftEval>(model, objective, options, { tokenizer, resume: setup.checkpoint, curveTitle: `${model.config.family} SFT loss`, chatTemplate: setup.chatTemplate });

  for (const name of setup.replace ?? []) rmSync(join(outDir, name), { force: true, recursive: true }); // --overwrite, now that the new run is ready
  const cfg = model.config;
  if (loop.step >= options.maxIters) {
    log(`nothing to do: the run in ${outDir} finished at step ${loop.step} of ${options.maxIters}; raise --max-iters to train it further, e.g. --max-iters ${loop.step * 2}`);
    return;
  }
  const counts = trainableParameterCount(model);
  const trained = options.lora
    ? `LoRA r ${options.lora.r}, alpha ${options.lora.alpha}${options.lora.rslora ? ' (rsLoRA)' : ''}, dropout ${options.lora.dropout} on ${options.lora.targets.join(',')}: ` +
      `${counts.trainable} of ${counts.total} parameters trained (${(100 * counts.fraction).toFixed(3)}%)` + quantizedNote(model)
    : 'all trained';
  log(`model: ${options.model}: ${cfg.family} ${cfg.nLayer} layers, ${cfg.nHead} heads (${cfg.nKvHead} kv), dim ${cfg.nEmbd}, ` +
    `context ${cfg.blockSize}, vocab ${cfg.vocabSize}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters, ${trained}`);
  log(`data: ${options.data}: ${loaded.format}, ${loaded.rows} rows, ${loaded.bad.length} bad; ${rendered.length} examples: ${split.train.length} train / ${split.eval.length} eval; ` +
    `${truncated} truncated to ${options.maxLength} tokens, ${dropped.length} dropped (no response token left)`);
  if (report) process.stderr.write(`llmts sft: ${report}\n`);
  if (dropped.length > 0) process.stderr.write(`llmts sft: warning: ${dropped.length} example${dropped.length === 1 ? '' : 's'} left out because --max-length ${options.maxLength} cuts their whole response (lines ${dropped.slice(0, 5).join(', ')}${dropped.length > 5 ? ', ...' : ''}); raise --max-length\n`);
  log(batchesLine(objective, options));
  log(`template: ${setup.templateNote}; loss on: ${options.lossOn}; ${model.gradientCheckpointing ? 'activations recomputed in the backward pass (--gradient-checkpointing); ' : ''}backend: ${describeBackend()}; run dir: ${outDir}`);
  if (epochsNote) log(epochsNote);
  if (loop.step > 0) log(`resuming from step ${loop.step}`);

  const t0 = performance.now();
  const step0 = loop.step;
  const result = await runLoopInTerminal<StepRecord, EvalRecord<SftEval>, TrainResult<EvalRecord<SftEval>>>({
    command: 'sft', outDir, maxIters: options.maxIters, initialStep: loop.step, metricsPath: loop.metricsPath,
    run: (hooks) => loop.run(hooks),
    stepFields: (r) => {
      const seconds = (performance.now() - t0) / 1000;
      return {
        loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), epoch: objective.epochs.toFixed(2),
        'ex/s': seconds > 0 ? (objective.examplesDrawn / seconds).toFixed(1) : 0, 'tok/s': Math.round(r.tokensPerSec),
      };
    },
    evalLine: (e) => `step ${e.step}: train loss ${e.trainLoss.toFixed(4)}, val loss ${e.valLoss === undefined ? 'n/a (no eval split)' : e.valLoss.toFixed(4)}`,
  });
  if (result.interrupted) return;
  const val = split.eval.length > 0 ? objective.validationLoss(model) : NaN;
  log(`final: step ${loop.step}, epoch ${objective.epochs.toFixed(2)}, response val loss ${Number.isNaN(val) ? 'n/a (no eval split)' : val.toFixed(4)}` +
    (split.eval.length > 0 ? ` (over all ${split.eval.length} held-out examples)` : ''));
  const drawn = objective.paddingDrawn();
  log(`padding: ${percent(drawn.fraction)} of the ${drawn.batchTokens} batch tokens of this run's ${loop.step - step0} steps`);
  if (options.lora) {
    const { adapterDir, mergedPath } = writeLoraOutputs(model, tokenizer, outDir, options.model, 'sft', setup.chatTemplate);
    log(`adapter (PEFT): ${adapterDir}; merged model: ${mergedPath}${model.quantized.size > 0 ? ' (float32: the dequantized base plus the adapter)' : ''}`);
    log(`try it: llmts chat ${join(outDir, 'merged')}   (${outDir} itself holds the base weights and the adapter; llmts run ${outDir} runs the base only)`);
    return;
  }
  log(`try it: llmts chat ${outDir}`);
}

/** How examples form micro-batches, and the share of batch tokens that is padding over an epoch. */
function batchesLine(objective: SftObjective, options: SftOptions): string {
  const padding = `padding: ${percent(objective.epochPadding(options.seed).fraction)} of batch tokens over an epoch`;
  if (objective.rows) {
    return `packing: ${objective.train.length} examples in ${objective.rows.length} rows of up to ${options.maxLength} tokens (best-fit decreasing), ` +
      `${options.batchSize} rows a micro-batch; ${padding}`;
  }
  return `batches: ${options.batchSize} examples a micro-batch, padded to the longest; ${padding} (--packing fills rows with several examples)`;
}

function percent(fraction: number): string {
  return `${(100 * fraction).toFixed(1)}%`;
}

/**
 * --epochs N: set options.maxIters to N passes over the training examples (packed: their rows) (a new run also takes
 * the warmup and decay defaults that follow from it; a resumed run keeps its schedule, as with
 * --max-iters). Returns the line that tells the user, or undefined without --epochs.
 */
function applyEpochs(f: Flags, options: SftOptions, epochItems: number, unit: string): string | undefined {
  if (!f.has('epochs')) return undefined;
  const epochs = f.number('epochs')!;
  const perStep = options.batchSize * options.gradAccum;
  const maxIters = stepsForEpochs(epochs, epochItems, perStep);
  if (f.bool('resume')) options.maxIters = maxIters;
  else Object.assign(options, trainLoopOptions(f, options.maxLength, options.outDir, maxIters));
  options.epochs = epochs;
  return `--epochs ${epochs}: ${maxIters} steps of ${perStep} ${unit} (${options.batchSize} x ${options.gradAccum} grad accum) over ${epochItems} training ${unit}`;
}

/** The --lora flags as saved options, with --quantize-base (undefined without --lora). */
function sftLoraOptions(f: Flags, family: keyof typeof LORA_MODULES): SftLoraOptions | undefined {
  if (!f.bool('lora') && f.has('quantize-base')) {
    throw new LlmError(`${f.typed('quantize-base')} ${f.string('quantize-base')} keeps the base quantized and frozen, so only adapters can train: give --lora too (full fine-tuning needs float weights)`);
  }
  const options: SftLoraOptions | undefined = loraOptions(f, family);
  const quantizeBase = f.string('quantize-base') as QuantType | undefined;
  if (options && quantizeBase !== undefined) options.quantizeBase = quantizeBase;
  return options;
}

/**
 * The float base with its linear weights quantized for --quantize-base (one-line errors: a base
 * that is already quantized, a layer whose input features are no multiple of 32).
 */
function quantizedBase(
  path: string, config: CheckpointData['config'], params: Map<string, Tensor>, quantized: Map<string, QuantizedWeight>, type: QuantType,
): { params: Map<string, Tensor>; quantized: Map<string, QuantizedWeight> } {
  if (quantized.size > 0) {
    const kind = [...new Set([...quantized.values()].map((w) => w.type))].join('/');
    throw new LlmError(`--quantize-base ${type}: ${path} is already quantized (${kind}) and --lora trains on its blocks as they are; drop --quantize-base`);
  }
  const bad = unquantizableLinear(config);
  if (bad) {
    throw new LlmError(`--quantize-base ${type}: ${path}'s '${bad.name}' has ${bad.inDim} input features, not a multiple of 32, so it has no quantized kernel path; drop --quantize-base to train LoRA on the float base`);
  }
  return quantizeBlockLinears(config, params, type);
}

/** ', base: N weights in q4_0 (frozen)' for a quantized base, else ''. */
function quantizedNote(model: Transformer): string {
  if (model.quantized.size === 0) return '';
  const types = [...new Set([...model.quantized.values()].map((w) => w.type))].join('/');
  return `; base: ${model.quantized.size} weights kept in ${types} (frozen)`;
}

export const SFT: CommandModule = { spec: SFT_SPEC, run: sftCommand };

async function newRun(f: Flags, outDir: string): Promise<Setup> {
  const path = modelPath(f, 'llmts sft -m MODEL --data FILE -o DIR');
  const data = dataFile(f.string('data'), 'training data');
  if (f.has('epochs') && f.has('max-iters')) throw new LlmError(`${f.typed('epochs')} sets the step count from the data and ${f.typed('max-iters')} sets it directly: give one of the two`);
  const format = parseSftFormat(f.string('format')!);
  const onBadRow = parseOnBadRow(f.string('on-bad-row')!);
  const evalSplit = parseEvalSplit(f.string('eval-split')!);
  const replace = checkRunDir(f, outDir, RUN_FILES);
  // LoRA trains on a quantized GGUF's blocks as they are (QLoRA); full fine-tuning needs float weights
  const loaded = await loadAnyModel(path, { keepQuantized: f.bool('lora') });
  if (!loaded.tokenizer) throw new LlmError(`${path} carries no tokenizer; fine-tuning needs the model's tokenizer (give a checkpoint, GGUF or Hugging Face directory with one)`);
  const tokenizer = loaded.tokenizer;
  const lora = sftLoraOptions(f, loaded.config.family);
  let base = { params: loaded.params, quantized: loaded.quantized ?? new Map<string, QuantizedWeight>() };
  if (lora?.quantizeBase) base = quantizedBase(path, loaded.config, base.params, base.quantized, lora.quantizeBase);
  const model = buildRunModel(loaded.config, base.params, lora, f.number('seed')!, base.quantized);
  const context = model.config.blockSize;
  const maxLength = f.number('max-length') ?? context;
  if (maxLength > context) throw new LlmError(`${f.typed('max-length')} ${maxLength}: the model's context holds ${context} tokens; give at most that`);
  const chosen = chooseTemplate(f, tokenizer, loaded.chatTemplate);
  const options: SftOptions = {
    ...trainLoopOptions(f, maxLength, outDir),
    model: path, data, format, onBadRow, template: chosen.name, templateSource: chosen.source, maxLength, evalSplit,
    lossOn: f.string('loss-on') as LossOn, gradientCheckpointing: f.string('gradient-checkpointing') as CheckpointingMode,
  };
  if (f.bool('packing')) options.packing = true;
  if (lora) options.lora = lora;
  return { model, tokenizer, template: chosen.template, templateNote: chosen.note, options, replace, chatTemplate: loaded.chatTemplate };
}

async function resumeRun(f: Flags, outDir: string): Promise<Setup> {
  const path = join(outDir, 'ckpt.safetensors');
  if (!existsSync(path)) throw new LlmError(`--resume: no checkpoint at ${path}; start the run without --resume first`);
  checkResumeFlags(f, RESUME_FLAGS);
  if (f.has('epochs') && f.has('max-iters')) throw new LlmError(`${f.typed('epochs')} sets the step count from the data and ${f.typed('max-iters')} sets it directly: give one of the two`);
  const checkpoint = loadCheckpoint(path);
  const saved = (checkpoint.trainer as { options?: SftOptions }).options;
  if (!saved || typeof saved.data !== 'string' || typeof saved.template !== 'string') {
    throw new LlmError(`--resume: ${path} holds no SFT run settings (it is not a checkpoint of llmts sft)`);
  }
  checkResumeDtype(f, saved);
  const options: SftOptions = {
    ...saved, outDir, ...(f.has('max-iters') ? { maxIters: f.number('max-iters')!, epochs: undefined } : {}),
    ...(f.has('gradient-checkpointing') ? { gradientCheckpointing: f.string('gradient-checkpointing') as CheckpointingMode } : {}),
  };
  const tokenizer = tokenizerFromJSON(checkpoint.tokenizer);
  const template = savedTemplate(options.template, options.templateSource, tokenizer);
  const model = buildRunModel(checkpoint.config, checkpoint.params, options.lora, options.seed, checkpoint.quantized); // a QLoRA base: its very blocks
  restoreRegistered(model, checkpoint.params, checkpoint.extras, `--resume: ${path}`); // the adapters, bit for bit
  return { model, tokenizer, template, templateNote: `${options.template} (saved with the run)`, options, checkpoint, chatTemplate: checkpoint.chatTemplate };
}
