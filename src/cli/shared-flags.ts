/**
 * Flags that most commands share: threads, and the model and context of inference commands.
 * Sampling flags are in sampling-flags.ts, training-loop flags in train-flags.ts.
 *
 *   const SPEC: CommandSpec = { ..., flags: [...MODEL_FLAGS, CTX_FLAG, THREADS_FLAG] };
 *   modelPath(parseCommandLine(SPEC, ['-m', 'model.gguf']), 'llmts run MODEL');   // 'model.gguf'
 */
import { LlmError } from '../util/errors.js';
import type { FlagDef, Flags } from './flags.js';

/** -t N: compute threads of the native backend (LLMTS_THREADS does the same). */
export const THREADS_FLAG: FlagDef = {
  name: 'threads', short: 't', kind: 'integer', min: 1, max: 256,
  help: 'compute threads of the native backend', defaultText: '$LLMTS_THREADS, else every core', group: 'Common',
};

/** The model of an inference command: the positional MODEL or -m MODEL, and --tokenizer. */
export const MODEL_FLAGS: readonly FlagDef[] = [
  { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the model (instead of the positional MODEL)', group: 'Model' },
  { name: 'tokenizer', kind: 'string', value: 'SPEC', help: "use this tokenizer instead of the model's (a tokenizer.json, tokenizer.model, .tiktoken, .gguf or checkpoint file, or a built-in name)", group: 'Model' },
];

/** --adapter DIR: a PEFT LoRA adapter applied to the model at load (run, chat, merge). */
export const ADAPTER_FLAG: FlagDef = {
  name: 'adapter', kind: 'string', value: 'DIR',
  help: "a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors: DIR/adapter of an llmts sft LoRA run, or saved by PEFT) to apply to the model", group: 'Model',
};

/** -c N: the context an inference command uses (at most the model's). */
export const CTX_FLAG: FlagDef = {
  name: 'ctx-size', short: 'c', kind: 'integer', min: 1, value: 'N',
  help: "context in tokens, at most the model's: the KV cache holds this many", defaultText: "the model's", group: 'Model',
};

/** The model path from -m or the one positional, with a usage hint when neither or both are given. */
export function modelPath(f: Flags, usage: string): string {
  const [first, ...extra] = f.positionals;
  const flag = f.string('model');
  if (flag !== undefined && first !== undefined) throw new LlmError(`give the model once: as ${f.typed('model')} ${flag} or as '${first}', not both`);
  const path = flag ?? first;
  if (path === undefined) throw new LlmError(`give the model: ${usage}`);
  if (extra.length > 0) throw new LlmError(`unexpected argument '${extra[0]}' (${usage})`);
  return path;
}

/** The context an inference command should use: -c, checked against the model's. */
export function contextSize(f: Flags, modelContext: number): number {
  const c = f.number('ctx-size');
  if (c === undefined) return modelContext;
  if (c > modelContext) throw new LlmError(`${f.typed('ctx-size')} ${c}: the model's context holds ${modelContext} tokens; give at most that`);
  return c;
}

