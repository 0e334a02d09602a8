/**
 * llmts train: text file -> tokens (char-level, or any tokenizer loadTokenizer accepts) -> shards ->
 * pretraining with a live progress line, checkpoints, a metrics log, a loss curve, and samples
 * at the end.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { resolveDataset, KNOWN_DATASETS } from '../data/fetch.js';
import { PRESETS, presetNames, resolveConfig, type ConfigOverrides } from '../model/config.js';
import { countParameters } from '../model/parameters.js';
import { Transformer } from '../model/transformer.js';
import { describeBackend } from '../backend/index.js';
import { CharTokenizer } from '../tokenizer/char.js';
import { BUILTIN_TOKENIZERS, loadTokenizer } from '../tokenizer/load.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { prepareTextDataset } from '../train/text-dataset.js';
import { readTokenShard } from '../train/token-shards.js';
import { DEFAULT_TRAIN_OPTIONS, Trainer, type TrainOptions } from '../train/trainer.js';
import { LlmError } from '../util/errors.js';
import { ProgressLine } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { numberFlag, parseFlags, stringFlag, type FlagSpec, type Parsed } from './args.js';
import { printSample } from './sample.js';

const D = DEFAULT_TRAIN_OPTIONS;

export const TRAIN_USAGE = `Usage: llmts train [flags]

Pretrain a decoder-only Transformer on a text file (char-level tokens unless --tokenizer).

Data and output:
  --preset NAME          model preset (default shakespeare-char): ${presetNames().join(', ')}
  --data PATH|URL|NAME   training text; a local file, a URL (downloaded once, cached) or a
                         known name (${Object.keys(KNOWN_DATASETS).join(', ')}); default tinyshakespeare
  --tokenizer SPEC       char (default; one token per character of the data) or a tokenizer, which
                         also sets the model's vocab size: a tokenizer.json, tokenizer.model,
                         .tiktoken, .gguf or checkpoint file, a directory holding one, or a name
                         (${BUILTIN_TOKENIZERS.join(', ')})
  --out DIR              run directory: checkpoint, metrics.jsonl, loss.svg, token shards (default out/<preset>)
  --resume               continue the run in --out from its checkpoint (same losses as an uninterrupted run)
Training (defaults: nanoGPT's shakespeare-char CPU run):
  --max-iters N          optimizer steps (default ${D.maxIters})
  --batch-size N         sequences per micro-batch (default ${D.batchSize})
  --block-size N         tokens per sequence = model context (default: the preset's, ${D.blockSize} for shakespeare-char)
  --grad-accum N         micro-batches per step (default ${D.gradAccum})
  --lr X                 peak learning rate (default ${D.lr})
  --min-lr X             final learning rate of the cosine decay (default lr/10)
  --warmup-iters N       linear warmup steps (default ${D.warmupIters})
  --decay-iters N        steps of cosine decay (default: max-iters; 0 = constant lr)
  --weight-decay X       AdamW decoupled weight decay on matrix weights (default ${D.weightDecay})
  --beta2 X              AdamW beta2 (default ${D.beta2})
  --grad-clip X          clip the global gradient norm (default ${D.gradClip}; 0 = off)
  --eval-interval N      evaluate and checkpoint every N steps (default ${D.evalInterval})
  --eval-iters N         batches per evaluation (default ${D.evalIters})
  --final-eval-iters N   batches for the final validation loss (default 200)
  --seed N               seed for init, batches and dropout (default ${D.seed})
Model overrides:
  --n-layer N  --n-head N  --n-kv-head N  --n-embd N  --hidden-dim N  --dropout X
After training:
  --sample-tokens N      tokens to sample at the end (default 500; 0 = none)
  --debug                show stack traces on errors
`;

const FLAGS: FlagSpec = {
  preset: { type: 'string' }, data: { type: 'string' }, tokenizer: { type: 'string' }, out: { type: 'string' }, resume: { type: 'boolean' },
  'max-iters': { type: 'string' }, 'batch-size': { type: 'string' }, 'block-size': { type: 'string' },
  'grad-accum': { type: 'string' }, lr: { type: 'string' }, 'min-lr': { type: 'string' },
  'warmup-iters': { type: 'string' }, 'decay-iters': { type: 'string' }, 'weight-decay': { type: 'string' },
  beta2: { type: 'string' }, 'grad-clip': { type: 'string' }, 'eval-interval': { type: 'string' },
  'eval-iters': { type: 'string' }, 'final-eval-iters': { type: 'string' }, seed: { type: 'string' },
  'n-layer': { type: 'string' }, 'n-head': { type: 'string' }, 'n-kv-head': { type: 'string' },
  'n-embd': { type: 'string' }, 'hidden-dim': { type: 'string' }, dropout: { type: 'string' },
  'sample-tokens': { type: 'string' },
};

export async function trainCommand(argv: string[]): Promise<void> {
  const p = parseFlags(argv, FLAGS, 'train');
  if (p.positionals.length > 0) throw new LlmError(`unexpected argument '${p.positionals[0]}' (did you mean --data ${p.positionals[0]}?)`);
  const preset = stringFlag(p, 'preset') ?? 'shakespeare-char';
  if (!PRESETS[preset]) throw new LlmError(`unknown preset '${preset}' (choose one of: ${presetNames().join(', ')})`);
  const outDir = stringFlag(p, 'out') ?? join('out', preset);
  const setup = p.values.resume ? await resumeRun(p, outDir) : await newRun(p, preset, outDir);
  const { model, tokenizer, data, options } = setup;
  const trainer = new Trainer(model, tokenizer, data, options, setup.checkpoint);

  const cfg = model.config;
  const log = (s: string): void => void process.stdout.write(s + '\n');
  log(`model: ${cfg.family} ${cfg.nLayer} layers, ${cfg.nHead} heads (${cfg.nKvHead} kv), dim ${cfg.nEmbd}, ` +
    `context ${cfg.blockSize}, vocab ${cfg.vocabSize}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters`);
  log(`data: ${data.train.length.toLocaleString('en-US')} train / ${data.val.length.toLocaleString('en-US')} val tokens; ` +
    `backend: ${describeBackend()}; run dir: ${outDir}`);
  if (trainer.step > 0) log(`resuming from step ${trainer.step}`);

  let stopRequested = false;
  const onSigint = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write('\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  const progress = new ProgressLine(options.maxIters, { label: 'train', initial: trainer.step });
  let result;
  try {
    result = await trainer.run({
      onStep: (r) => progress.update(r.step, { loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), 'tok/s': Math.round(r.tokensPerSec) }),
      onEval: (e) => progress.log(`step ${e.step}: train loss ${e.trainLoss.toFixed(4)}, val loss ${e.valLoss.toFixed(4)}`, process.stdout),
      shouldStop: () => stopRequested,
    });
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
  log(`metrics: ${trainer.metricsPath}; loss curve: ${join(outDir, 'loss.svg')}; checkpoint: ${result.checkpointPath}`);
  log(`speed: ${Math.round(result.tokensPerSec)} tokens/s`);
  if (result.interrupted) {
    log(`stopped at step ${result.step}; continue with: llmts train --out ${outDir} --resume`);
    return;
  }
  const finalIters = numberFlag(p, 'final-eval-iters', { integer: true, min: 1 }) ?? 200;
  const finalVal = trainer.validationLoss(finalIters);
  const sampleTokens = numberFlag(p, 'sample-tokens', { integer: true, min: 0 }) ?? 500;
  if (sampleTokens > 0) {
    log('\n--- sample ---');
    printSample(model, tokenizer, '\n', { maxTokens: sampleTokens, temperature: 0.8, topK: 200, seed: options.seed });
    log('\n--------------');
  }
  log(`final: step ${trainer.step}, val loss ${finalVal.toFixed(4)} (mean over ${finalIters} batches of ${options.batchSize}x${options.blockSize} tokens)`);
}

interface RunSetup {
  model: Transformer;
  tokenizer: Tokenizer;
  data: { train: ArrayLike<number>; val: ArrayLike<number> };
  options: TrainOptions;
  checkpoint?: ReturnType<typeof loadCheckpoint>;
}

async function newRun(p: Parsed, preset: string, outDir: string): Promise<RunSetup> {
  // every flag is checked before any download or file is touched
  const blockSize = numberFlag(p, 'block-size', { integer: true, min: 1 }) ?? PRESETS[preset].blockSize;
  const overrides: ConfigOverrides = {
    blockSize,
    nLayer: numberFlag(p, 'n-layer', { integer: true, min: 1 }),
    nHead: numberFlag(p, 'n-head', { integer: true, min: 1 }),
    nKvHead: numberFlag(p, 'n-kv-head', { integer: true, min: 1 }),
    nEmbd: numberFlag(p, 'n-embd', { integer: true, min: 1 }),
    hiddenDim: numberFlag(p, 'hidden-dim', { integer: true, min: 1 }),
    dropout: numberFlag(p, 'dropout', { min: 0, max: 0.99 }),
  };
  resolveConfig(preset, overrides);
  const options = trainOptions(p, outDir, blockSize);
  numberFlag(p, 'final-eval-iters', { integer: true, min: 1 });
  numberFlag(p, 'sample-tokens', { integer: true, min: 0 });
  const tokenizerSpec = stringFlag(p, 'tokenizer') ?? 'char';
  const loaded = tokenizerSpec === 'char' ? null : await loadTokenizer(tokenizerSpec);

  const dataPath = await resolveDataset(stringFlag(p, 'data') ?? 'tinyshakespeare');
  if (statSync(dataPath).size === 0) throw new LlmError(`data file ${dataPath} is empty; give a text file with some content`);
  const text = readFileSync(dataPath, 'utf8');
  const tokenizer = loaded ?? CharTokenizer.fromText(text);
  const data = prepareTextDataset({ text, tokenizer, outDir: join(outDir, 'data') });
  const config = resolveConfig(preset, { ...overrides, vocabSize: tokenizer.vocabSize });
  const model = new Transformer(config, new Rng(options.seed));
  return { model, tokenizer, data, options };
}

async function resumeRun(p: Parsed, outDir: string): Promise<RunSetup> {
  const path = join(outDir, 'ckpt.safetensors');
  if (!existsSync(path)) throw new LlmError(`--resume: no checkpoint at ${path}; start the run without --resume first`);
  const checkpoint = loadCheckpoint(path);
  const saved = (checkpoint.trainer as { options?: TrainOptions }).options;
  if (!saved) throw new LlmError(`--resume: ${path} holds no training options (it is not a training checkpoint)`);
  for (const flag of ['data', 'tokenizer', 'preset', 'block-size', 'batch-size', 'n-layer', 'n-head', 'n-embd']) {
    if (p.values[flag] !== undefined) throw new LlmError(`--resume continues the saved run; --${flag} cannot change (start a new run in another --out)`);
  }
  const maxIters = numberFlag(p, 'max-iters', { integer: true, min: 1 });
  const options: TrainOptions = { ...saved, outDir, ...(maxIters !== undefined ? { maxIters } : {}) };
  const data = { train: readTokenShard(join(outDir, 'data', 'train.bin')), val: readTokenShard(join(outDir, 'data', 'val.bin')) };
  const model = new Transformer(checkpoint.config, checkpoint.params);
  return { model, tokenizer: tokenizerFromJSON(checkpoint.tokenizer), data, options, checkpoint };
}

function trainOptions(p: Parsed, outDir: string, blockSize: number): TrainOptions {
  const int = (name: string, min = 1): number | undefined => numberFlag(p, name, { integer: true, min });
  const maxIters = int('max-iters') ?? D.maxIters;
  const lr = numberFlag(p, 'lr', { min: 0 }) ?? D.lr;
  return {
    maxIters,
    batchSize: int('batch-size') ?? D.batchSize,
    blockSize,
    gradAccum: int('grad-accum') ?? D.gradAccum,
    lr,
    minLr: numberFlag(p, 'min-lr', { min: 0 }) ?? lr / 10,
    warmupIters: int('warmup-iters', 0) ?? Math.min(D.warmupIters, Math.floor(maxIters / 10)),
    decayIters: int('decay-iters', 0) ?? maxIters,
    weightDecay: numberFlag(p, 'weight-decay', { min: 0 }) ?? D.weightDecay,
    beta1: D.beta1,
    beta2: numberFlag(p, 'beta2', { min: 0, max: 0.999999 }) ?? D.beta2,
    gradClip: numberFlag(p, 'grad-clip', { min: 0 }) ?? D.gradClip,
    evalInterval: int('eval-interval') ?? D.evalInterval,
    evalIters: int('eval-iters') ?? D.evalIters,
    seed: int('seed', 0) ?? D.seed,
    outDir,
  };
}
