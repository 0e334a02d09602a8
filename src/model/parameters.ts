/**
 * The parameter table of a model: Hugging Face names, shapes, how each is initialised and
 * whether weight decay applies. Names follow the HF checkpoints so export needs no renaming:
 *
 *   gpt2:  transformer.wte.weight, transformer.h.0.attn.c_attn.weight (in, out: Conv1D layout), ...
 *   llama: model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight (out, in), ...
 */
import type { Tensor } from '../tensor/index.js';
import { headDim, type ModelConfig } from './config.js';

export type InitKind = 'normal' | 'residual' | 'zeros' | 'ones';

export interface ParamSpec {
  name: string;
  shape: number[];
  init: InitKind;
  /** AdamW weight decay applies (matrix weights of linear layers only) */
  decay: boolean;
}

export function parameterSpecs(cfg: ModelConfig): ParamSpec[] {
  return cfg.family === 'gpt2' ? gpt2Specs(cfg) : llamaSpecs(cfg);
}

function gpt2Specs(cfg: ModelConfig): ParamSpec[] {
  const C = cfg.nEmbd;
  const kv = cfg.nKvHead * headDim(cfg);
  const specs: ParamSpec[] = [
    { name: 'transformer.wte.weight', shape: [cfg.vocabSize, C], init: 'normal', decay: false },
    { name: 'transformer.wpe.weight', shape: [cfg.blockSize, C], init: 'normal', decay: false },
  ];
  const linear = (name: string, inDim: number, outDim: number, init: InitKind): void => {
    specs.push({ name: `${name}.weight`, shape: [inDim, outDim], init, decay: true });
    if (cfg.bias) specs.push({ name: `${name}.bias`, shape: [outDim], init: 'zeros', decay: false });
  };
  const norm = (name: string): void => {
    specs.push({ name: `${name}.weight`, shape: [C], init: 'ones', decay: false });
    if (cfg.bias) specs.push({ name: `${name}.bias`, shape: [C], init: 'zeros', decay: false });
  };
  for (let l = 0; l < cfg.nLayer; l++) {
    const p = `transformer.h.${l}`;
    norm(`${p}.ln_1`);
    linear(`${p}.attn.c_attn`, C, C + 2 * kv, 'normal');
    linear(`${p}.attn.c_proj`, C, C, 'residual');
    norm(`${p}.ln_2`);
    linear(`${p}.mlp.c_fc`, C, cfg.hiddenDim, 'normal');
    linear(`${p}.mlp.c_proj`, cfg.hiddenDim, C, 'residual');
  }
  norm('transformer.ln_f');
  if (!cfg.tiedEmbeddings) specs.push({ name: 'lm_head.weight', shape: [cfg.vocabSize, C], init: 'normal', decay: true });
  return specs;
}

function llamaSpecs(cfg: ModelConfig): ParamSpec[] {
  const C = cfg.nEmbd;
  const kv = cfg.nKvHead * headDim(cfg);
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [cfg.vocabSize, C], init: 'normal', decay: false }];
  const linear = (name: string, inDim: number, outDim: number, init: InitKind): void => {
    specs.push({ name: `${name}.weight`, shape: [outDim, inDim], init, decay: true });
  };
  for (let l = 0; l < cfg.nLayer; l++) {
    const p = `model.layers.${l}`;
    specs.push({ name: `${p}.input_layernorm.weight`, shape: [C], init: 'ones', decay: false });
    linear(`${p}.self_attn.q_proj`, C, C, 'normal');
    linear(`${p}.self_attn.k_proj`, C, kv, 'normal');
    linear(`${p}.self_attn.v_proj`, C, kv, 'normal');
    linear(`${p}.self_attn.o_proj`, C, C, 'residual');
    specs.push({ name: `${p}.post_attention_layernorm.weight`, shape: [C], init: 'ones', decay: false });
    linear(`${p}.mlp.gate_proj`, C, cfg.hiddenDim, 'normal');
    linear(`${p}.mlp.up_proj`, C, cfg.hiddenDim, 'normal');
    linear(`${p}.mlp.down_proj`, cfg.hiddenDim, C, 'residual');
  }
  specs.push({ name: 'model.norm.weight', shape: [C], init: 'ones', decay: false });
  if (!cfg.tiedEmbeddings) specs.push({ name: 'lm_head.weight', shape: [cfg.vocabSize, C], init: 'normal', decay: true });
  return specs;
}

export function countParameters(cfg: ModelConfig): number {
  return parameterSpecs(cfg).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}

/** How a tensor registered with a model (a head's, an adapter's) is optimised. */
export interface ParameterOptions {
  /** AdamW weight decay applies (matrix weights; not biases, norm gains or embeddings) */
  decay: boolean;
  /** optimised (requiresGrad); default true */
  trainable?: boolean;
}

/**
 * One tensor a model holds, as Transformer.namedParameters() reports it: what an optimizer keys
 * its moments by (trainable ones only) and what a checkpoint writes (all of them).
 */
export interface NamedParameter {
  /** Hugging Face name ('model.layers.0.self_attn.q_proj.weight', 'score.weight', ...) */
  name: string;
  tensor: Tensor;
  /** receives gradients (tensor.requiresGrad; always false on a reference model) */
  trainable: boolean;
  /** AdamW weight decay applies */
  decay: boolean;
}
