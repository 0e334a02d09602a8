/**
 * The trainable model of a fine-tuning run: every weight trained, or LoRA adapters on the frozen
 * base. The settings are saved with a run, so a resumed run (or a command using the trained
 * model) rebuilds the very same layers and fills the adapters from the checkpoint.
 *
 *   const model = buildRunModel(config, params, { r: 8, alpha: 16, dropout: 0.05, targets: ['q_proj', 'v_proj'], rslora: false }, 1337);
 *   model.namedParameters().filter((p) => p.trainable);   // the lora_A / lora_B tensors only
 */
import type { ModelConfig } from '../model/config.js';
import { loraLayers } from '../model/lora.js';
import type { QuantizedWeight } from '../model/quantized.js';
import { Transformer } from '../model/transformer.js';
import { Tensor as TensorClass, type Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import { Rng } from '../util/rng.js';

/** The LoRA settings of a run (saved with it). */
export interface RunLoraOptions {
  r: number;
  alpha: number;
  dropout: number;
  targets: string[];
  rslora: boolean;
}

/**
 * The model over these base weights, with LoRA layers when the run has them (base frozen, adapters
 * seeded by the run's seed). `quantized`: frozen GGUF blocks of a QLoRA base, kept as they are.
 */
export function buildRunModel(
  config: ModelConfig, params: Map<string, Tensor>, lora: RunLoraOptions | undefined, seed: number, quantized?: Map<string, QuantizedWeight>,
): Transformer {
  if (!lora) return new Transformer(config, params);
  const { r, alpha, dropout, targets, rslora } = lora;
  const model = new Transformer(config, params, { quantized, layers: loraLayers({ r, alpha, dropout, targets, rslora, rng: new Rng(seed) }) });
  model.freeze((n) => !n.includes('.lora_'));
  return model;
}

/**
 * Every registered tensor of the model that is not a base parameter (adapters, heads), filled
 * bit for bit from a checkpoint's extras. `path` names the checkpoint in errors.
 */
export function restoreRegistered(model: Transformer, base: ReadonlyMap<string, Tensor>, extras: ReadonlyMap<string, Tensor>, path: string): void {
  for (const p of model.namedParameters()) {
    if (base.has(p.name)) continue;
    const saved = extras.get(p.name);
    if (!saved || saved.size !== p.tensor.size) throw new LlmError(`${path} lacks the tensor '${p.name}' of its run (or holds it in another shape)`);
    p.tensor.data.set(saved.data);
  }
}

/** A frozen copy of base weights (the reference of full-model DPO and PPO: the model as training started). */
export function frozenCopy(config: ModelConfig, params: ReadonlyMap<string, Tensor>): Transformer {
  const copy = new Map<string, Tensor>();
  for (const [name, t] of params) copy.set(name, new TensorClass(Float32Array.from(t.data), t.shape));
  return new Transformer(config, copy, { reference: true });
}
