/**
 * What the post-training commands (sft, reward, dpo) share when they set up a run: the LoRA
 * flags and the model they build, the chat template choice, the run directory checks, and
 * rebuilding a saved run's model from its checkpoint (resume, or using a trained reward model).
 *
 *   const lora = loraOptions(f, loaded.config.family);              // undefined without --lora
 *   const model = buildRunModel(loaded.config, loaded.params, lora, seed);   // finetune/lora-model.ts
 *   const t = chooseTemplate(f, tokenizer, loaded.chatTemplate);      // { template, name, source, note }
 *   const run = openRun('out/rm', 'reward', isRewardOptions);         // a saved run's checkpoint, options, tokenizer
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { chatTemplate, chooseModelChatTemplate, jinjaChatTemplate, type ChatTemplate, type ChatTemplateName } from '../chat/index.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointData } from '../formats/checkpoint.js';
import { saveLoraAdapter } from '../formats/peft.js';
import { LORA_MODULES, mergeLora, mergedParameters } from '../model/lora.js';
import { Transformer } from '../model/transformer.js';
import { loadAnyModel } from '../formats/load-model.js';
import { buildRunModel, frozenCopy, restoreRegistered } from '../finetune/lora-model.js';
import { modelPath } from './shared-flags.js';
import type { RunLoraOptions } from '../finetune/lora-model.js';
import type { Tensor } from '../tensor/index.js';
import { tokenizerFromJSON, type Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import type { FlagDef, Flags } from './flags.js';
import { checkResumeDtype } from './train-flags.js';

export type { RunLoraOptions };

const LORA_GROUP = 'LoRA';
const LORA_FLAGS = ['lora-r', 'lora-alpha', 'lora-dropout', 'lora-targets', 'rslora'];

/** --lora and its settings, with PEFT's defaults. */
export function loraFlagDefs(what: string): FlagDef[] {
  const L = LORA_GROUP;
  return [
    { name: 'lora', kind: 'boolean', help: `train a LoRA adapter on the frozen model instead of every weight${what}`, group: L },
    { name: 'lora-r', kind: 'integer', min: 1, default: 8, help: 'LoRA rank', group: L },
    { name: 'lora-alpha', kind: 'number', above: 0, default: 16, help: 'LoRA scaling numerator (scaling alpha/r)', group: L },
    { name: 'lora-dropout', kind: 'number', min: 0, default: 0.05, help: "dropout on the adapters' input, in [0, 1)", group: L },
    { name: 'lora-targets', kind: 'string', value: 'LIST', defaultText: 'every attention and MLP projection', help: 'comma list of modules to adapt: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (Llama); c_attn,c_proj,c_fc (GPT-2)', group: L },
    { name: 'rslora', kind: 'boolean', help: 'rank-stabilised LoRA scaling alpha/sqrt(r)', group: L },
  ];
}

/** The --lora flags as saved options (undefined without --lora; LoRA flags without it are refused). */
export function loraOptions(f: Flags, family: keyof typeof LORA_MODULES): RunLoraOptions | undefined {
  if (!f.bool('lora')) {
    const stray = LORA_FLAGS.find((name) => f.has(name));
    if (stray !== undefined) throw new LlmError(`${f.typed(stray)} sets up LoRA training: give --lora too`);
    return undefined;
  }
  const dropout = f.number('lora-dropout')!;
  if (!(dropout < 1)) throw new LlmError(`${f.typed('lora-dropout')} ${dropout}: give a dropout in [0, 1)`);
  const list = f.string('lora-targets');
  const targets = list === undefined ? [...LORA_MODULES[family]] : [...new Set(list.split(',').map((t) => t.trim()).filter((t) => t !== ''))];
  if (targets.length === 0) throw new LlmError(`${f.typed('lora-targets')}: give at least one module, e.g. ${LORA_MODULES[family].join(',')}`);
  const known = LORA_MODULES[family];
  const other = targets.find((t) => !known.includes(t));
  if (other !== undefined) throw new LlmError(`${f.typed('lora-targets')}: '${other}' is not a linear module of a ${family} model (its modules: ${known.join(', ')})`);
  return { r: f.number('lora-r')!, alpha: f.number('lora-alpha')!, dropout, targets, rslora: f.bool('rslora') };
}

export interface ChosenTemplate {
  template: ChatTemplate;
  /** a named template, or 'jinja' with source */
  name: string;
  source?: string;
  /** for the banner: which template and why */
  note: string;
}

/** --template when given, else the model's own / chatml / qa (chooseModelChatTemplate). */
export function chooseTemplate(f: Flags, tokenizer: Tokenizer, modelTemplate: string | undefined): ChosenTemplate {
  const named = f.string('template') as ChatTemplateName | undefined;
  if (named !== undefined) return { template: chatTemplate(named), name: named, note: `${named} (--template)` };
  const chosen = chooseModelChatTemplate(tokenizer, modelTemplate);
  return {
    template: chosen.template, name: chosen.name, source: chosen.name === 'jinja' ? modelTemplate : undefined,
    note: `${chosen.name}: ${chosen.reason}; --template chooses another`,
  };
}

/** The template a run saved (name, and the Jinja source for 'jinja'). */
export function savedTemplate(name: string, source: string | undefined, tokenizer: Tokenizer): ChatTemplate {
  return name === 'jinja' ? jinjaChatTemplate(source ?? '', tokenizer) : chatTemplate(name as ChatTemplateName);
}

/** An existing data file from a --data value. */
export function dataFile(value: string | undefined, what: string): string {
  if (value === undefined) throw new LlmError(`give the ${what}: --data FILE (JSONL or a JSON array)`);
  const data = resolve(value);
  if (!existsSync(data)) throw new LlmError(`data file not found: ${value} (pass --data with a local JSONL file)`);
  if (!statSync(data).isFile()) throw new LlmError(`--data ${value} is not a file`);
  return data;
}

/** The files of an earlier run in outDir; refused unless --overwrite (then returned, to remove once the new run is ready). */
export function checkRunDir(f: Flags, outDir: string, runFiles: readonly string[]): string[] {
  const existing = runFiles.filter((name) => existsSync(join(outDir, name)));
  if (existing.length > 0 && !f.bool('overwrite')) {
    throw new LlmError(`${outDir} already holds a run (${existing.join(', ')}): continue it with --resume, replace it with --overwrite, or choose another --out`);
  }
  return existing;
}

/** --resume may change only these flags; anything else given is refused. */
export function checkResumeFlags(f: Flags, allowed: ReadonlySet<string>): void {
  if (f.bool('overwrite')) throw new LlmError('--resume continues the run in --out and --overwrite replaces it; give one of the two');
  for (const flag of f.given()) {
    if (allowed.has(flag)) continue;
    const changeable = [...allowed].filter((name) => !['resume', 'out', 'threads', 'debug', 'dtype'].includes(name)).map((name) => `--${name}`);
    const only = changeable.length <= 1 ? `only ${changeable[0] ?? '--max-iters'} can` : `only ${changeable.slice(0, -1).join(', ')} and ${changeable[changeable.length - 1]} can`;
    throw new LlmError(`--resume continues the saved run with its saved settings; ${f.typed(flag)} cannot change (${only}; start a new run in another --out)`);
  }
}

/** A saved run: its checkpoint, options, tokenizer, and (with buildModel) its model. */
export interface SavedRun<O> {
  path: string;
  checkpoint: CheckpointData & { extras: Map<string, Tensor> };
  options: O;
  tokenizer: Tokenizer;
}

/**
 * The checkpoint of a run directory (or file) written by `command`, whose saved options pass
 * `valid`. Errors name the path and what to give instead.
 */
export function openRun<O>(dirOrFile: string, command: string, valid: (o: Partial<O> | undefined) => boolean): SavedRun<O> {
  const path = existsSync(dirOrFile) && statSync(dirOrFile).isDirectory() ? join(dirOrFile, 'ckpt.safetensors') : dirOrFile;
  if (!existsSync(path)) throw new LlmError(`no checkpoint at ${path}; give the run directory of an llmts ${command} run`);
  const checkpoint = loadCheckpoint(path);
  const options = (checkpoint.trainer as { options?: O }).options;
  if (!valid(options)) throw new LlmError(`${path} holds no llmts ${command} run settings (it is not a checkpoint of llmts ${command})`);
  return { path, checkpoint, options: options as O, tokenizer: tokenizerFromJSON(checkpoint.tokenizer) };
}

/**
 * What a finished LoRA run leaves besides its checkpoint: DIR/adapter (PEFT's layout) and
 * DIR/merged/ckpt.safetensors (the adapters folded into the base; no optimizer state; the model's
 * own chat template kept), so llmts run/chat can load the result directly. A quantized base
 * (QLoRA) is widened to float32 first (the adapter added to Q4_0/Q8_0 blocks would mostly round
 * away). Merging changes the model's base weights: call it last.
 */
export function writeLoraOutputs(
  model: Transformer, tokenizer: Tokenizer, outDir: string, basePath: string, command: string, chatTemplate?: string,
): { adapterDir: string; mergedPath: string } {
  const adapterDir = join(outDir, 'adapter');
  saveLoraAdapter(adapterDir, model, { baseModelNameOrPath: basePath });
  const mergedPath = join(outDir, 'merged', 'ckpt.safetensors');
  let params: Map<string, Tensor>;
  if (model.quantized.size > 0) params = new Map(mergedParameters(model));
  else {
    mergeLora(model);
    params = new Map<string, Tensor>(model.params); // the base only: no adapters, no value head
  }
  mkdirSync(dirname(mergedPath), { recursive: true });
  saveCheckpoint(mergedPath, { config: model.config, params, tokenizer: tokenizer.toJSON(), trainer: { merged: `llmts ${command} --lora` }, chatTemplate });
  return { adapterDir, mergedPath };
}

/** The saved options every policy-training run (dpo, ppo) has. */
export interface PolicyRunOptions {
  model: string;
  seed: number;
  maxIters: number;
  outDir: string;
  template: string;
  templateSource?: string;
  lora?: RunLoraOptions;
}

/** What a policy run (dpo, ppo) trains and compares with: the policy, its frozen reference, tokenizer and template. */
export interface PolicySetup {
  model: Transformer;
  /** the model as the run started: a frozen copy, or (LoRA) the same base without adapters */
  reference: Transformer;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** the banner's template note */
  note: string;
  /** the model's own chat template (Jinja), kept in the run's checkpoints and merged model */
  chatTemplate?: string;
}

/**
 * A new policy run: the model at -m/MODEL (with its tokenizer), LoRA layers when --lora, the frozen
 * reference, the chat template; the earlier run in outDir checked (--overwrite). `addHeads` registers
 * heads (a value head) before anything else uses the model.
 */
export async function startPolicyRun(
  f: Flags, outDir: string, usage: string, runFiles: readonly string[], addHeads?: (model: Transformer) => void,
): Promise<PolicySetup & { path: string; lora: RunLoraOptions | undefined; chosen: ChosenTemplate; replace: string[] }> {
  const path = modelPath(f, usage);
  const replace = checkRunDir(f, outDir, runFiles);
  const loaded = await loadAnyModel(path, { keepQuantized: false });
  if (!loaded.tokenizer) throw new LlmError(`${path} carries no tokenizer; training it needs the model's tokenizer (give a checkpoint, GGUF or Hugging Face directory with one)`);
  const lora = loraOptions(f, loaded.config.family);
  const reference = lora ? new Transformer(loaded.config, loaded.params, { reference: true }) : frozenCopy(loaded.config, loaded.params);
  const model = buildRunModel(loaded.config, loaded.params, lora, f.number('seed')!);
  addHeads?.(model);
  const chosen = chooseTemplate(f, loaded.tokenizer, loaded.chatTemplate);
  return {
    path, lora, model, reference, tokenizer: loaded.tokenizer, template: chosen.template, note: chosen.note, chosen, replace, chatTemplate: loaded.chatTemplate,
  };
}

/**
 * A policy run continued from its checkpoint (--resume): the saved options (only --max-iters may
 * change), the model rebuilt as it was (LoRA layers, `addHeads`' heads, every registered tensor
 * restored bit for bit), and the reference as the run started (the start model read again, or the
 * base without adapters).
 */
export async function resumePolicyRun<O extends PolicyRunOptions>(
  f: Flags, outDir: string, command: string, allowed: ReadonlySet<string>, valid: (o: Partial<O> | undefined) => boolean,
  addHeads?: (model: Transformer, options: O) => void,
): Promise<PolicySetup & { options: O; checkpoint: SavedRun<O>['checkpoint'] }> {
  checkResumeFlags(f, allowed);
  const run = openRun<O>(outDir, command, valid);
  checkResumeDtype(f, run.options as { dtype?: 'float32' | 'bf16' });
  const options: O = { ...run.options, outDir, ...(f.has('max-iters') ? { maxIters: f.number('max-iters')! } : {}) };
  const model = buildRunModel(run.checkpoint.config, run.checkpoint.params, options.lora, options.seed);
  addHeads?.(model, options);
  restoreRegistered(model, run.checkpoint.params, run.checkpoint.extras, run.path);
  let reference: Transformer;
  if (options.lora) reference = model.shareBase();
  else {
    const start = await loadAnyModel(options.model, { keepQuantized: false, tokenizer: false });
    reference = new Transformer(start.config, start.params, { reference: true });
  }
  return {
    options, model, reference, tokenizer: run.tokenizer, checkpoint: run.checkpoint, chatTemplate: run.checkpoint.chatTemplate,
    template: savedTemplate(options.template, options.templateSource, run.tokenizer), note: `${options.template} (saved with the run)`,
  };
}
