/**
 * Supervised fine-tuning (SFT) as an Objective of the shared TrainingLoop: every example is
 * rendered once to token ids and a loss mask (1 on what the model should learn to write), cut
 * to a maximum length, and drawn in shuffled epochs; the loss is the mean cross-entropy over the
 * trained target tokens only (TRL's SFTTrainer with assistant-only / completion-only loss).
 *
 *   const { rendered, truncated, dropped } = renderSftExamples(examples, lines, tokenizer, template, { maxLength: 256 });
 *   const split = splitTrainEval(rendered, { fraction: 0.05, key: (r) => r.key });
 *   const objective = new SftObjective(split.train, split.eval, { batchSize: 8, seed: 1337, padId: 0 });
 *   const loop = new TrainingLoop(model, objective, options, { tokenizer });
 *   await loop.run();   // metrics.jsonl: { type: 'eval', step, trainLoss, valLoss }
 *
 * Rendering: chat examples through the chat template (renderConversation: mask 1 on the
 * assistant answers and their end-of-turn), completion examples as plain text
 * (renderPromptCompletion with no template: mask 1 on the completion and EOS), text examples
 * with every token trained (and EOS when the tokenizer has one). lossOn 'all' trains on every
 * token. An example longer than maxLength keeps its first maxLength tokens (counted as
 * truncated); one left with no trained token after the cut is dropped (counted as dropped).
 *
 * Batches: `batchSize` examples in the order of a per-epoch shuffle, right-padded to the longest
 * in the batch. Inputs are ids[0 .. L-2], targets ids[1 .. L-1] where the mask of the *target*
 * position is 1, IGNORE_INDEX elsewhere (padding included): position t learns ids[t+1] only when
 * ids[t+1] is a trained token. The permutation of an epoch comes from a seed drawn from the
 * loop's rng at the epoch's start; state() is { epoch, position, epochSeed }, so a resumed run
 * draws the very same batches. weight(batch) is its trained target tokens, so gradient
 * accumulation averages over tokens, not micro-batches.
 *
 * Packing (packLength): the training examples are packed once, best-fit decreasing (TRL's `bfd`,
 * data/packing.ts), into rows of packLength input tokens, and an epoch is a shuffle of those rows;
 * a micro-batch is then `batchSize` rows, padded to the longest. Each example keeps exactly the
 * inputs and targets it has in an unpacked row (ids[0 .. L-2] -> ids[1 .. L-1]), so no position's
 * target is another example's token (TRL masks the first label of each packed document to the same
 * end), and the packed rows' segment starts and positions (model/packing.ts) keep the examples
 * from attending to each other: a packed batch computes what its examples compute one by one.
 * Every batch reports the share of its (B, T) positions that are padding (metric `padding`).
 *
 * The loss runs the LM head and the cross-entropy on the positions that have a target only (the
 * trunk's hidden states of the others are never projected to the vocabulary): the same loss and
 * gradients as projecting every position and masking, for a fraction of the head's work when the
 * prompts are long (TRL's chunked_nll loss skips them too). See sftLoss.
 *
 * Evaluation is deterministic: valLoss is the token-weighted mean loss over the held-out
 * examples in file order (at most `iters` batches of them), trainLoss the same over `iters`
 * batches of training examples picked by a generator seeded by (seed, step).
 */
import { IGNORE_INDEX, isGradEnabled, noGrad, selectRows, withBufferScope, type CrossEntropyReduction, type Tensor } from '../tensor/index.js';
import type { Transformer } from '../model/transformer.js';
import { packedRows, type PackedRows } from '../model/packing.js';
import { packBestFitDecreasing } from '../data/packing.js';
import type { EvalContext, Objective, ObjectiveLoss } from '../train/loop.js';
import type { ChatTemplate } from '../chat/template.js';
import { renderConversation, renderPromptCompletion } from '../chat/render.js';
import type { ChatTokenizer } from '../chat/encode.js';
import type { SftExample } from '../data/sft-examples.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { permutation } from '../train/epoch-order.js';

export { permutation };

/** One example ready for training. */
export interface RenderedExample {
  ids: Int32Array;
  /** 1 where the token is trained (as a target), per position of ids */
  lossMask: Uint8Array;
  /** the line of the data file the example's row starts on (for messages) */
  line: number;
  /** what decides the example's side of the train/eval split (its content) */
  key: string;
}

export type LossOn = 'response' | 'all';

export interface RenderSftOptions {
  /** tokens per example at most (the model's context or less) */
  maxLength: number;
  /** 'response' (default): the mask of the rendering; 'all': every token */
  lossOn?: LossOn;
}

export interface RenderSftResult {
  rendered: RenderedExample[];
  /** examples cut to maxLength (kept) */
  truncated: number;
  /** examples left out because the cut removed every trained token; their lines */
  dropped: number[];
}

/** The trained target tokens of ids/mask: mask 1 on positions 1.. (position 0 is never a target). */
export function trainedTargets(lossMask: ArrayLike<number>): number {
  let n = 0;
  for (let i = 1; i < lossMask.length; i++) if (lossMask[i] === 1) n++;
  return n;
}

/** One example as ids and loss mask (before truncation). */
export function renderSftExample(tokenizer: ChatTokenizer, template: ChatTemplate, example: SftExample): { ids: number[]; lossMask: Uint8Array } {
  switch (example.kind) {
    case 'chat':
      return renderConversation(tokenizer, template, example.messages);
    case 'completion':
      return renderPromptCompletion(tokenizer, null, example.prompt, example.completion);
    case 'text': {
      const ids = tokenizer.encode(example.text, { allowedSpecial: 'none' });
      if (tokenizer.eosId !== undefined) ids.push(tokenizer.eosId);
      return { ids, lossMask: new Uint8Array(ids.length).fill(1) };
    }
  }
}

/** Every example rendered, cut to maxLength; see the file comment. */
export function renderSftExamples(
  examples: readonly SftExample[], lines: readonly number[], tokenizer: ChatTokenizer, template: ChatTemplate, opts: RenderSftOptions,
): RenderSftResult {
  if (!(Number.isInteger(opts.maxLength) && opts.maxLength >= 2)) throw new LlmError(`the maximum length must be an integer >= 2 tokens, not ${opts.maxLength}`);
  const rendered: RenderedExample[] = [];
  const dropped: number[] = [];
  let truncated = 0;
  examples.forEach((example, i) => {
    const line = lines[i] ?? i + 1;
    let out;
    try {
      out = renderSftExample(tokenizer, template, example);
    } catch (err) {
      if (err instanceof LlmError) throw new LlmError(`line ${line}: ${err.message}`);
      throw err;
    }
    let ids = out.ids;
    let mask = opts.lossOn === 'all' ? new Uint8Array(ids.length).fill(1) : out.lossMask;
    if (ids.length > opts.maxLength) {
      truncated++;
      ids = ids.slice(0, opts.maxLength);
      mask = mask.slice(0, opts.maxLength);
    }
    if (trainedTargets(mask) === 0) {
      dropped.push(line);
      return;
    }
    rendered.push({ ids: Int32Array.from(ids), lossMask: mask, line, key: JSON.stringify(example) });
  });
  return { rendered, truncated, dropped };
}

/** One micro-batch: (B, T) inputs and targets, row-major; targets IGNORE_INDEX where not trained. */
export interface SftBatch {
  x: Int32Array;
  y: Int32Array;
  B: number;
  T: number;
  /** targets that are not IGNORE_INDEX */
  targetTokens: number;
  /** the data-file lines of the batch's examples */
  lines: number[];
  /** positions of x that hold no example's token (padding) */
  paddingTokens: number;
  /** packed rows: several examples a row, each attending to itself only (absent: one example a row) */
  packing?: PackedRows;
}

/** Inputs and shifted, masked targets of these examples, right-padded with padId to the longest. */
export function makeSftBatch(examples: readonly RenderedExample[], padId: number): SftBatch {
  if (examples.length === 0) throw new LlmError('an SFT batch needs at least one example');
  const B = examples.length;
  let T = 1;
  for (const e of examples) T = Math.max(T, e.ids.length - 1);
  const x = new Int32Array(B * T).fill(padId);
  const y = new Int32Array(B * T).fill(IGNORE_INDEX);
  let targetTokens = 0;
  examples.forEach((e, b) => {
    const n = e.ids.length - 1;
    for (let t = 0; t < n; t++) {
      x[b * T + t] = e.ids[t];
      if (e.lossMask[t + 1] === 1) {
        y[b * T + t] = e.ids[t + 1];
        targetTokens++;
      }
    }
    if (n === 0) x[b * T] = e.ids[0];
  });
  const real = examples.reduce((sum, e) => sum + Math.max(1, e.ids.length - 1), 0);
  return { x, y, B, T, targetTokens, lines: examples.map((e) => e.line), paddingTokens: B * T - real };
}

/**
 * One row per group of examples, each example's inputs and shifted, masked targets one after the
 * other (exactly those of makeSftBatch), right-padded with padId to the fullest row; `packing`
 * keeps the examples of a row apart (segment starts, positions from 0 per example).
 */
export function makePackedSftBatch(rows: readonly (readonly RenderedExample[])[], padId: number): SftBatch {
  if (rows.length === 0 || rows.some((r) => r.length === 0)) throw new LlmError('a packed SFT batch needs at least one row, and every row an example');
  const B = rows.length;
  const lengths = rows.map((r) => r.map((e) => {
    if (e.ids.length < 2) throw new LlmError(`line ${e.line}: an example of ${e.ids.length} token cannot be packed (nothing to predict)`);
    return e.ids.length - 1;
  }));
  let T = 1;
  for (const row of lengths) T = Math.max(T, row.reduce((a, n) => a + n, 0));
  const x = new Int32Array(B * T).fill(padId);
  const y = new Int32Array(B * T).fill(IGNORE_INDEX);
  let targetTokens = 0;
  let real = 0;
  rows.forEach((row, b) => {
    let at = b * T;
    for (const e of row) {
      const n = e.ids.length - 1;
      for (let t = 0; t < n; t++) {
        x[at + t] = e.ids[t];
        if (e.lossMask[t + 1] === 1) {
          y[at + t] = e.ids[t + 1];
          targetTokens++;
        }
      }
      at += n;
      real += n;
    }
  });
  return {
    x, y, B, T, targetTokens, lines: rows.flatMap((r) => r.map((e) => e.line)), paddingTokens: B * T - real,
    packing: packedRows(lengths, T),
  };
}

export interface SftObjectiveOptions {
  /** examples per micro-batch */
  batchSize: number;
  /** seeds the evaluation's choice of training batches (with the step) */
  seed: number;
  /** the input id of padding positions (never a target) */
  padId: number;
  /**
   * Pack the training examples into rows of this many input tokens (best-fit decreasing, once); an
   * epoch then shuffles the rows and batchSize counts rows. Absent: one example a row.
   */
  packLength?: number;
}

/** Padding over a set of micro-batches: positions that hold no token, of all (B, T) positions. */
export interface PaddingStats {
  paddingTokens: number;
  batchTokens: number;
  /** paddingTokens / batchTokens (0 when there are none) */
  fraction: number;
}

/** Where the epoch order stands: state() / restore(). */
export interface SftState {
  epoch: number;
  /** items (examples, or packed rows) of this epoch's order already drawn */
  position: number;
  /** seeds this epoch's permutation (drawn from the loop's rng when the epoch started) */
  epochSeed: number;
}

/** valLoss is absent when nothing is held out. */
export type SftEval = { trainLoss: number; valLoss: number };

export class SftObjective implements Objective<SftBatch, SftEval> {
  readonly name = 'sft';
  private epoch = 0;
  private position = 0;
  private epochSeed = 0;
  private order: Uint32Array | null = null;
  /** packLength: the training examples (indices) of each packed row, fixed for the run; null unpacked */
  readonly rows: readonly (readonly number[])[] | null;
  /** examples, and padding and all positions, of the batches nextBatch built in this process */
  examplesDrawn = 0;
  private readonly drawn = { paddingTokens: 0, batchTokens: 0 };

  constructor(readonly train: readonly RenderedExample[], readonly held: readonly RenderedExample[], readonly opts: SftObjectiveOptions) {
    if (train.length === 0) throw new LlmError('no training examples are left (after the eval split, and dropping examples with nothing to learn)');
    if (!(Number.isInteger(opts.batchSize) && opts.batchSize >= 1)) throw new LlmError(`the batch size must be a positive integer, not ${opts.batchSize}`);
    this.rows = opts.packLength === undefined ? null : packBestFitDecreasing(train.map((e) => e.ids.length - 1), opts.packLength);
  }

  /** Items an epoch draws: packed rows with packLength, else examples. */
  get epochSize(): number {
    return this.rows ? this.rows.length : this.train.length;
  }

  /** Completed passes over the training examples (fractional). */
  get epochs(): number {
    return this.epoch + this.position / this.epochSize;
  }

  nextBatch(rng: Rng): SftBatch {
    const picked: number[] = [];
    while (picked.length < this.opts.batchSize) {
      if (this.order === null || this.position >= this.epochSize) {
        if (this.order !== null) {
          this.epoch++;
          this.position = 0;
        }
        this.epochSeed = rng.nextU32();
        this.order = permutation(this.epochSize, this.epochSeed);
      }
      picked.push(this.order[this.position++]);
    }
    const batch = this.batchOf(picked);
    this.examplesDrawn += batch.lines.length;
    this.drawn.paddingTokens += batch.paddingTokens;
    this.drawn.batchTokens += batch.B * batch.T;
    return batch;
  }

  /** The micro-batch of these items (example indices, or row indices with packing). */
  private batchOf(items: readonly number[]): SftBatch {
    if (!this.rows) return makeSftBatch(items.map((i) => this.train[i]), this.opts.padId);
    return makePackedSftBatch(items.map((r) => this.rows![r].map((i) => this.train[i])), this.opts.padId);
  }

  /** Padding of the batches drawn so far in this process. */
  paddingDrawn(): PaddingStats {
    return paddingStats(this.drawn.paddingTokens, this.drawn.batchTokens);
  }

  /**
   * Padding over one epoch's micro-batches, in the order of a shuffle seeded by `seed` (each
   * epoch's own shuffle differs; the share barely does): what --packing saves, before training.
   */
  epochPadding(seed: number): PaddingStats {
    const order = permutation(this.epochSize, seed);
    const size = (item: number): number => this.rows
      ? this.rows[item].reduce((sum, i) => sum + this.train[i].ids.length - 1, 0)
      : Math.max(1, this.train[item].ids.length - 1);
    let padding = 0;
    let total = 0;
    for (let i = 0; i < order.length; i += this.opts.batchSize) {
      const sizes = Array.from(order.subarray(i, i + this.opts.batchSize), size);
      const T = Math.max(1, ...sizes);
      total += sizes.length * T;
      padding += sizes.reduce((sum, n) => sum + T - n, 0);
    }
    return paddingStats(padding, total);
  }

  weight(batch: SftBatch): number {
    if (batch.targetTokens === 0) {
      throw new LlmError(`an SFT batch has no trained tokens (the examples of lines ${batch.lines.join(', ')}); every example needs at least one response token after truncation`);
    }
    return batch.targetTokens;
  }

  loss(model: Transformer, batch: SftBatch): ObjectiveLoss {
    if (batch.targetTokens === 0) this.weight(batch);
    const positions = batch.B * batch.T;
    // tokens: the examples' own (tokens/s of data, padding excluded)
    return { loss: sftLoss(model, batch, 'mean'), tokens: positions - batch.paddingTokens, metrics: { padding: batch.paddingTokens / positions } };
  }

  evaluate(model: Transformer, { step, iters }: EvalContext): SftEval {
    const B = this.opts.batchSize;
    const rng = new Rng(this.opts.seed * 1000003 + step);
    const trainPick: RenderedExample[] = [];
    const n = Math.min(iters * B, this.train.length);
    for (let i = 0; i < n; i++) trainPick.push(this.train[rng.int(this.train.length)]);
    const trainLoss = meanLoss(model, trainPick, B, this.opts.padId);
    const out = { trainLoss } as SftEval;
    if (this.held.length > 0) out.valLoss = meanLoss(model, this.held.slice(0, iters * B), B, this.opts.padId);
    return out; // no held-out split: no valLoss
  }

  /** Token-weighted mean response loss over all held-out examples (deterministic). */
  validationLoss(model: Transformer): number {
    return meanLoss(model, this.held, this.opts.batchSize, this.opts.padId);
  }

  state(): SftState {
    return { epoch: this.epoch, position: this.position, epochSeed: this.epochSeed };
  }

  restore(state: unknown): void {
    if (state === undefined) return;
    const s = state as Partial<SftState>;
    if (typeof s.epoch !== 'number' || typeof s.position !== 'number' || typeof s.epochSeed !== 'number') {
      throw new LlmError('the checkpoint\'s SFT state is not { epoch, position, epochSeed }');
    }
    if (s.position > this.epochSize) {
      const what = this.rows ? 'packed rows' : 'training examples';
      throw new LlmError(`the checkpoint stopped at item ${s.position} of an epoch, but the data now has ${this.epochSize} ${what}; resume with the same data`);
    }
    this.epoch = s.epoch;
    this.position = s.position;
    this.epochSeed = s.epochSeed;
    this.order = s.position === 0 && s.epoch === 0 && s.epochSeed === 0 ? null : permutation(this.epochSize, s.epochSeed);
  }
}

/**
 * The cross-entropy of a batch over its trained targets ('mean' or 'sum' over them): equal to
 * crossEntropy(model.forward(x).logits, y), but the LM head and the cross-entropy run on the rows
 * of the hidden states whose target is not IGNORE_INDEX only, (n, C) -> (n, V) instead of
 * (B·T, V). Every position still runs through the trunk (attention needs them all).
 */
export function sftLoss(model: Transformer, batch: SftBatch, reduction: Exclude<CrossEntropyReduction, 'none'>): Tensor {
  if (model.reference && isGradEnabled()) return noGrad(() => sftLoss(model, batch, reduction)); // as model.forward
  const h = model.hidden(batch.x, batch.B, batch.T, { packing: batch.packing ?? null }); // (B, T, C)
  const y = batch.y;
  let n = 0;
  for (let i = 0; i < y.length; i++) if (y[i] !== IGNORE_INDEX) n++;
  if (n === y.length) return model.lmHead.loss(h, y, reduction); // every position trained
  const rows = new Int32Array(n);
  const targets = new Int32Array(n);
  for (let i = 0, j = 0; i < y.length; i++) {
    if (y[i] === IGNORE_INDEX) continue;
    rows[j] = i;
    targets[j++] = y[i];
  }
  const picked = selectRows(h, rows); // (n, C)
  return model.lmHead.loss(picked, targets, reduction); // (n, C) -> scalar
}

/** Token-weighted mean loss over the trained targets of `examples`, in batches of B (no autograd expected). */
export function meanLoss(model: Transformer, examples: readonly RenderedExample[], B: number, padId: number): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < examples.length; i += B) {
    const batch = makeSftBatch(examples.slice(i, i + B), padId);
    if (batch.targetTokens === 0) continue;
    // no graph kept, and each batch's buffers go back to the pool for the next
    sum += noGrad(() => withBufferScope(() => sftLoss(model, batch, 'sum').item()));
    count += batch.targetTokens;
  }
  return count > 0 ? sum / count : NaN;
}

function paddingStats(paddingTokens: number, batchTokens: number): PaddingStats {
  return { paddingTokens, batchTokens, fraction: batchTokens > 0 ? paddingTokens / batchTokens : 0 };
}

/**
 * Optimizer steps for `epochs` passes over `trainExamples` examples when each step draws
 * `examplesPerStep` of them (batch size x gradient accumulation), rounded up so the last pass is
 * complete: stepsForEpochs(3, 950, 32) = 90 (89 steps would stop at 2.998 epochs).
 */
export function stepsForEpochs(epochs: number, trainExamples: number, examplesPerStep: number): number {
  if (!(epochs > 0 && Number.isFinite(epochs))) throw new LlmError(`the number of epochs must be a positive number, not ${epochs}`);
  if (!(Number.isInteger(trainExamples) && trainExamples >= 1)) throw new LlmError(`epochs need at least one training example, not ${trainExamples}`);
  if (!(Number.isInteger(examplesPerStep) && examplesPerStep >= 1)) throw new LlmError(`the examples per step must be a positive integer, not ${examplesPerStep}`);
  // the small tolerance keeps 3 x 100 / 10 from rounding up to 31 through float error
  return Math.max(1, Math.ceil((epochs * trainExamples) / examplesPerStep - 1e-9));
}
