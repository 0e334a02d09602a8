/**
 * Heads: what is computed from the trunk's hidden states (Transformer.hidden, (B, T, C) after the
 * final norm).
 *
 *   LmHead      hidden (B, T, C) -> logits (B, T, V)   the language model's, part of the base model
 *   ScalarHead  hidden (B, T, C) -> scores (B, T)      reward and value models
 *
 *   const h = model.hidden(tokens, B, T);                // (B, T, C)
 *   const logits = model.lmHead.forward(h);              // = model.forward(tokens, B, T).logits
 *   const value = addScalarHead(model, { init: 'zeros' }); // registers 'score.weight'
 *   const v = value.forward(h);                          // (B, T)
 */
import { Tensor, crossEntropy, linear, linearCrossEntropy, matmulDtype, quantizedLinear, reshape } from '../tensor/index.js';
import type { CrossEntropyReduction } from '../tensor/index.js';
import { allocPersistentFloats } from '../tensor/storage.js';
import { WeightType, weightTypeOf, type DecodeWeight } from '../backend/decode-program.js';
import { LlmError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import type { ModelConfig } from './config.js';
import { getParameter, type Params, type QuantMap } from './layers.js';
import type { QuantizedWeight } from './quantized.js';
import type { Transformer } from './transformer.js';

/**
 * logits = hidden · Wᵀ with W (V, C): 'lm_head.weight', or the token embedding when the config ties
 * them (GPT-2: 'transformer.wte.weight', the same tensor). Float, or GGUF blocks (frozen; the
 * input gradient still flows, for QLoRA).
 */
export class LmHead {
  /** the parameter it reads: 'lm_head.weight' or the token embedding's name when tied */
  readonly name: string;
  readonly tied: boolean;
  readonly weight: Tensor | null;
  readonly quantized: QuantizedWeight | null;

  constructor(cfg: ModelConfig, params: Params, quantized: QuantMap) {
    this.tied = cfg.tiedEmbeddings;
    this.name = !this.tied ? 'lm_head.weight' : cfg.family === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
    this.quantized = quantized.get(this.name) ?? null;
    this.weight = this.quantized ? null : getParameter(params, this.name);
  }

  /** hidden (..., C) -> logits (..., V) */
  forward(hidden: Tensor): Tensor {
    return this.quantized ? quantizedLinear(hidden, this.quantized, null) : linear(hidden, this.weight!, null, 'out_in');
  }

  /**
   * Mean (or summed) cross-entropy of the logits against targets (IGNORE_INDEX rows masked),
   * hidden (..., C) -> scalar. A float head over a vocabulary of LmHead.FUSED_MIN_VOCAB or more
   * takes the chunked linearCrossEntropy and never holds the whole logits matrix; small
   * vocabularies, quantized heads and bf16 regions (whose products linear() rounds) compute the
   * logits and then the loss.
   */
  loss(hidden: Tensor, targets: Int32Array, reduction: Exclude<CrossEntropyReduction, 'none'> = 'mean'): Tensor {
    if (this.weight && this.weight.shape[0] >= LmHead.FUSED_MIN_VOCAB && matmulDtype() === 'float32') {
      return linearCrossEntropy(hidden, this.weight, targets, { reduction });
    }
    return crossEntropy(this.forward(hidden), targets, { reduction });
  }

  /** vocabulary size from which loss() runs chunked (below it the logits are small anyway) */
  static readonly FUSED_MIN_VOCAB = 1024;

  /** The weight as a decode-program operand. */
  decodeWeight(): DecodeWeight {
    const q = this.quantized;
    if (q) return { data: q.blocks, type: weightTypeOf(q.type), N: q.rows, K: q.cols, bias: null };
    const [V, C] = this.weight!.shape;
    return { data: this.weight!.data, type: WeightType.F32, N: V, K: C, bias: null };
  }
}

export const SCALAR_HEAD_NAME = 'score.weight';

export interface ScalarHeadOptions {
  /**
   * 'normal' (default): N(0, 1/sqrt(C + 1)), the reward head of OpenAI's lm-human-preferences
   * (Ziegler et al. 2019, kept by Stiennon et al. 2020); 'zeros': every score starts at 0 (a value
   * head whose first estimates should not be noise).
   */
  init?: 'normal' | 'zeros';
  /** draws the 'normal' init (required for it) */
  rng?: Rng;
  /** parameter name (default 'score.weight', as transformers' *ForSequenceClassification) */
  name?: string;
}

/**
 * score = hidden · wᵀ, one number per position: w is (1, C), no bias, as the `score` Linear of
 * transformers' GPT2/LlamaForSequenceClassification (num_labels = 1), so its weight exports as is.
 * A reward model reads the score at each sequence's last token; a value model reads every position.
 */
export class ScalarHead {
  constructor(readonly weight: Tensor, readonly name = SCALAR_HEAD_NAME) {
    if (weight.ndim !== 2 || weight.shape[0] !== 1) {
      throw new LlmError(`scalar head '${name}': weight has shape [${weight.shape.join(', ')}], expected [1, C]`);
    }
  }

  /** A fresh (1, nEmbd) head (allocated outside any buffer scope, requires grad). */
  static create(nEmbd: number, opts: ScalarHeadOptions = {}): ScalarHead {
    const init = opts.init ?? 'normal';
    const w = new Tensor(allocPersistentFloats(nEmbd), [1, nEmbd], true);
    if (init === 'normal') {
      if (!opts.rng) throw new LlmError('ScalarHead.create: a normal init needs opts.rng');
      const std = 1 / Math.sqrt(nEmbd + 1);
      for (let i = 0; i < nEmbd; i++) w.data[i] = opts.rng.normal() * std;
    }
    return new ScalarHead(w, opts.name ?? SCALAR_HEAD_NAME);
  }

  /** hidden (..., C) -> scores (...) */
  forward(hidden: Tensor): Tensor {
    const y = linear(hidden, this.weight, null, 'out_in'); // (..., 1)
    return reshape(y, hidden.shape.slice(0, -1) as number[]);
  }
}

/**
 * A new scalar head registered with the model (trainable, weight decay on, as a Linear weight), so
 * namedParameters(), optimizers and checkpoints see it. With an existing weight (a reward model
 * loaded from disk) pass it as `weight`.
 */
export function addScalarHead(model: Transformer, opts: ScalarHeadOptions & { weight?: Tensor } = {}): ScalarHead {
  const head = opts.weight ? new ScalarHead(opts.weight, opts.name) : ScalarHead.create(model.config.nEmbd, opts);
  if (head.weight.shape[1] !== model.config.nEmbd) {
    throw new LlmError(`scalar head '${head.name}' is [1, ${head.weight.shape[1]}], the model's width is ${model.config.nEmbd}`);
  }
  model.registerParameter(head.name, head.weight, { decay: true });
  return head;
}
