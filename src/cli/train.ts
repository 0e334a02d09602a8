/**
 * llmts train: text file -> tokens (char-level, or any tokenizer loadTokenizer accepts) -> shards ->
 * pretraining with a live progress line, checkpoints, a metrics log, a loss curve, and samples
 * at the end.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { resolveDataset, KNOWN_DATASETS } from '../data/fetch.js';
import { PRESETS, presetNames, resolveConfig, type ConfigOverrides } from '../model/config.js';
import { countParameters } from '../model/parameters.js';
import { Transformer } from '../model/transformer.js';
import { describeBackend } from '../backend/index.js';
import { CharTokenizer } from '../tokenizer/char.js';
import { BUILTIN_TOKENIZERS, loadTokenizer } from '../tokenizer/load.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { loadCheckpoint } from '../formats/checkpoint.js';
import { prepareTextDataset } from '../train/text-dataset.js';
import { readTextFile } from '../data/text-file.js';
import { isTokenShard, readTokenShard } from '../train/token-shards.js';
import { Trainer, type EvalRecord, type StepRecord, type TrainOptions, type TrainResult } from '../train/trainer.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { runLoopInTerminal } from './loop-progress.js';
import { printSample } from './sample.js';
import { THREADS_FLAG } from './shared-flags.js';
import { checkResumeDtype, trainLoopFlags, trainLoopOptions } from './train-flags.js';

const TRAIN_SPEC: CommandSpec = {
  name: 'train',
  usage: '[flags]',
  summary: `Pretrain a decoder-only Transformer on a text file (char-level tokens unless --tokenizer),
or on llm.c token shards. Writes a checkpoint, metrics.jsonl and loss.svg to --out, and resumes
exactly where it stopped (Ctrl-C writes a checkpoint first).`,
  flags: [
    { name: 'preset', kind: 'string', choices: presetNames(), default: 'shakespeare-char', help: 'model preset', group: 'Data and output' },
    { name: 'data', kind: 'string', value: 'PATH|URL|NAME', default: 'tinyshakespeare', help: `training data: a UTF-8 text file, a URL (downloaded once, cached), a known name (${Object.keys(KNOWN_DATASETS).join(', ')}), or an llm.c token shard (train.bin; needs --tokenizer, and val.bin beside it is the validation split)`, group: 'Data and output' },
    { name: 'tokenizer', kind: 'string', value: 'SPEC', default: 'char', help: `char (one token per character of the data) or a tokenizer, which also sets the model's vocab size: a tokenizer.json, tokenizer.model, .tiktoken, .gguf or checkpoint file, a directory holding one, or a name (${BUILTIN_TOKENIZERS.join(', ')})`, group: 'Data and output' },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', defaultText: 'out/<preset>', help: 'run directory: checkpoint, metrics.jsonl, loss.svg, token shards', group: 'Data and output' },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint (same losses as an uninterrupted run); raise --max-iters to train a finished run further', group: 'Data and output' },
    { name: 'overwrite', kind: 'boolean', help: 'replace the run already in --out (its checkpoint, metrics and curve)', group: 'Data and output' },
    ...trainLoopFlags(),
    { name: 'block-size', short: 'c', aliases: ['ctx-size'], kind: 'integer', min: 1, defaultText: "the preset's", help: 'tokens per sequence = the model\'s context', group: 'Model' },
    { name: 'n-layer', kind: 'integer', min: 1, defaultText: "the preset's", help: 'Transformer blocks', group: 'Model' },
    { name: 'n-head', kind: 'integer', min: 1, defaultText: "the preset's", help: 'attention heads', group: 'Model' },
    { name: 'n-kv-head', kind: 'integer', min: 1, defaultText: 'n-head', help: 'key/value heads (Llama grouped-query attention)', group: 'Model' },
    { name: 'n-embd', kind: 'integer', min: 1, defaultText: "the preset's", help: 'embedding dimension', group: 'Model' },
    { name: 'hidden-dim', kind: 'integer', min: 1, defaultText: "the preset's", help: 'MLP hidden dimension', group: 'Model' },
    { name: 'dropout', kind: 'number', min: 0, max: 0.99, defaultText: "the preset's", help: 'dropout probability while training', group: 'Model' },
    { name: 'final-eval-iters', kind: 'integer', min: 1, default: 200, help: 'batches for the final validation loss', group: 'After training' },
    { name: 'sample-tokens', kind: 'integer', min: 0, default: 500, help: 'tokens to sample at the end; 0 = none', group: 'After training' },
    THREADS_FLAG,
  ],
  notes: `Defaults are nanoGPT's shakespeare-char CPU run.

  llmts train                                           # tinyshakespeare, char-level, ~10 minutes on 2 cores
  llmts train --data notes.txt --max-iters 500 -o out/notes
  llmts train -o out/notes --resume --max-iters 1000    # train a finished run further`,
};

async function trainCommand(f: Flags): Promise<void> {
  if (f.positionals.length > 0) throw new LlmError(`unexpected argument '${f.positionals[0]}' (did you mean --data ${f.positionals[0]}?)`);
  const preset = f.string('preset')!;
  const outDir = f.string('out') ?? join('out', preset);
  const setup = f.bool('resume') ? await resumeRun(f, outDir) : await newRun(f, preset, outDir);
  const { model, tokenizer, data, options } = setup;
  const trainer = new Trainer(model, tokenizer, data, options, setup.checkpoint);

  const cfg = model.config;
  const log = (s: string): void => void process.stdout.write(s + '\n');
  if (trainer.step >= options.maxIters) {
    log(`nothing to do: the run in ${outDir} finished at step ${trainer.step} of ${options.maxIters}; raise --max-iters to train it further, e.g. --max-iters ${trainer.step * 2}`);
    return;
  }
  log(`model: ${cfg.family} ${cfg.nLayer} layers, ${cfg.nHead} heads (${cfg.nKvHead} kv), dim ${cfg.nEmbd}, ` +
    `context ${cfg.blockSize}, vocab ${cfg.vocabSize}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters`);
  log(`data: ${data.train.length.toLocaleString('en-US')} train / ${data.val.length.toLocaleString('en-US')} val tokens; ` +
    `backend: ${describeBackend()}; run dir: ${outDir}`);
  if (trainer.step > 0) log(`resuming from step ${trainer.step}`);

  const result = await runLoopInTerminal<StepRecord, EvalRecord, TrainResult>({
    command: 'train', outDir, maxIters: options.maxIters, initialStep: trainer.step, metricsPath: trainer.metricsPath,
    run: (hooks) => trainer.run(hooks),
    stepFields: (r) => ({ loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), 'tok/s': Math.round(r.tokensPerSec) }),
    evalLine: (e) => `step ${e.step}: train loss ${e.trainLoss.toFixed(4)}, val loss ${e.valLoss.toFixed(4)}`,
  });
  if (result.interrupted) return;
  const finalIters = f.number('final-eval-iters')!;
  const finalVal = trainer.validationLoss(finalIters);
  const sampleTokens = f.number('sample-tokens')!;
  if (sampleTokens > 0) {
    log('\n--- sample ---');
    printSample(model, tokenizer, '\n', { maxTokens: sampleTokens, temperature: 0.8, topK: 200, seed: options.seed });
    log('\n--------------');
  }
  log(`final: step ${trainer.step}, val loss ${finalVal.toFixed(4)} (mean over ${finalIters} batches of ${options.batchSize}x${options.blockSize} tokens)`);
}

export const TRAIN: CommandModule = { spec: TRAIN_SPEC, run: trainCommand };

interface RunSetup {
  model: Transformer;
  tokenizer: Tokenizer;
  data: { train: ArrayLike<number>; val: ArrayLike<number> };
  options: TrainOptions;
  checkpoint?: ReturnType<typeof loadCheckpoint>;
}

/** Tokens in one micro-batch at most: activations of a million tokens already take gigabytes. */
const MAX_BATCH_TOKENS = 1 << 20;

/** The files of a run in outDir that a new run would replace. */
const RUN_FILES = ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg'];

async function newRun(f: Flags, preset: string, outDir: string): Promise<RunSetup> {
  // every flag is checked before any download or file is touched
  const blockSize = f.number('block-size') ?? PRESETS[preset].blockSize;
  const overrides: ConfigOverrides = {
    blockSize,
    nLayer: f.number('n-layer'),
    nHead: f.number('n-head'),
    nKvHead: f.number('n-kv-head'),
    nEmbd: f.number('n-embd'),
    hiddenDim: f.number('hidden-dim'),
    dropout: f.number('dropout'),
  };
  resolveConfig(preset, overrides);
  const options = trainLoopOptions(f, blockSize, outDir);
  if (options.batchSize * blockSize > MAX_BATCH_TOKENS) {
    throw new LlmError(`${f.typed('batch-size')} ${options.batchSize} x ${f.typed('block-size')} ${blockSize} = ${(options.batchSize * blockSize).toLocaleString('en-US')} tokens a micro-batch is more than this CPU trainer holds (${MAX_BATCH_TOKENS.toLocaleString('en-US')}); lower --batch-size and raise --grad-accum instead`);
  }
  const existing = RUN_FILES.filter((name) => existsSync(join(outDir, name)));
  if (existing.length > 0 && !f.bool('overwrite')) {
    throw new LlmError(`${outDir} already holds a run (${existing.join(', ')}): continue it with --resume, replace it with --overwrite, or choose another --out`);
  }
  const tokenizerSpec = f.string('tokenizer')!;
  const loaded = tokenizerSpec === 'char' ? null : await loadTokenizer(tokenizerSpec);

  const dataPath = await resolveDataset(f.string('data')!);
  if (statSync(dataPath).size === 0) throw new LlmError(`data file ${dataPath} is empty; give a text file with some content`);
  let tokenizer: Tokenizer;
  let data: RunSetup['data'];
  if (isTokenShard(dataPath)) {
    if (!loaded) throw new LlmError(`${dataPath} is a token shard: name the tokenizer its ids belong to with --tokenizer (it sets the vocabulary size and decodes the samples)`);
    tokenizer = loaded;
    data = shardDataset(dataPath, tokenizer.vocabSize);
  } else {
    const text = readTextFile(dataPath, 'give a UTF-8 text file, or an llm.c token shard with --tokenizer');
    tokenizer = loaded ?? CharTokenizer.fromText(text);
    data = prepareTextDataset({ text, tokenizer, outDir: join(outDir, 'data') });
  }
  const config = resolveConfig(preset, { ...overrides, vocabSize: tokenizer.vocabSize });
  const model = new Transformer(config, new Rng(options.seed));
  for (const name of existing) rmSync(join(outDir, name), { force: true }); // --overwrite, now that the new run is ready
  return { model, tokenizer, data, options };
}

/**
 * Train and validation tokens from llm.c shards: val.bin beside train.bin when there is one
 * (llm.c's layout), else the last 10% of the shard.
 */
function shardDataset(path: string, vocabSize: number): RunSetup['data'] {
  const tokens = readTokenShard(path);
  const valPath = join(dirname(path), 'val.bin');
  const hasVal = basename(path) !== 'val.bin' && existsSync(valPath) && isTokenShard(valPath);
  const n = Math.floor(tokens.length * 0.9);
  const data = hasVal ? { train: tokens, val: readTokenShard(valPath) } : { train: tokens.subarray(0, n), val: tokens.subarray(n) };
  for (const [what, arr] of [['train', data.train], ['val', data.val]] as const) {
    let max = 0;
    for (let i = 0; i < arr.length; i++) if (arr[i] > max) max = arr[i];
    if (max >= vocabSize) throw new LlmError(`${path}: the ${what} tokens reach id ${max}, but the tokenizer has ${vocabSize} tokens; give the tokenizer the shard was made with`);
  }
  return data;
}

/** What a resumed run may be given: everything else is the saved run's. */
const RESUME_FLAGS = new Set(['resume', 'out', 'max-iters', 'final-eval-iters', 'sample-tokens', 'threads', 'debug', 'dtype']);

async function resumeRun(f: Flags, outDir: string): Promise<RunSetup> {
  const path = join(outDir, 'ckpt.safetensors');
  if (!existsSync(path)) throw new LlmError(`--resume: no checkpoint at ${path}; start the run without --resume first`);
  if (f.bool('overwrite')) throw new LlmError('--resume continues the run in --out and --overwrite replaces it; give one of the two');
  const checkpoint = loadCheckpoint(path);
  const saved = (checkpoint.trainer as { options?: TrainOptions }).options;
  if (!saved) throw new LlmError(`--resume: ${path} holds no training options (it is not a training checkpoint)`);
  checkResumeDtype(f, saved);
  for (const flag of f.given()) {
    if (RESUME_FLAGS.has(flag)) continue;
    throw new LlmError(`--resume continues the saved run with its saved settings; ${f.typed(flag)} cannot change (only --max-iters can; start a new run in another --out)`);
  }
  const options: TrainOptions = { ...saved, outDir, ...(f.has('max-iters') ? { maxIters: f.number('max-iters')! } : {}) };
  const data = { train: readTokenShard(join(outDir, 'data', 'train.bin')), val: readTokenShard(join(outDir, 'data', 'val.bin')) };
  const model = new Transformer(checkpoint.config, checkpoint.params);
  return { model, tokenizer: tokenizerFromJSON(checkpoint.tokenizer), data, options, checkpoint };
}
