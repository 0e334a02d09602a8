/**
 * llmts run: generate text from a model on the KV cache, streaming it to stdout.
 *
 *   llmts run out/shakespeare -p 'ROMEO:' --max-tokens 200 --temperature 0.8 --stop '\n\n'
 *   llmts run path/to/hf-model-dir -p 'Once upon a time' --top-p 0.9 --seed 1
 */
import { emptyStats, generate, generateCached, type GenerationStats } from '../generate/generate.js';
import { Transformer } from '../model/transformer.js';
import { loadTokenizer } from '../tokenizer/load.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { loadAnyModel } from '../formats/load-model.js';
import { loadAdapterForInference } from '../formats/peft.js';
import { KvCache } from '../generate/kv-cache.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { samplingFlags, samplingOptions } from './sampling-flags.js';
import { ADAPTER_FLAG, contextSize, CTX_FLAG, MODEL_FLAGS, modelPath, THREADS_FLAG } from './shared-flags.js';

const RUN_SPEC: CommandSpec = {
  name: 'run',
  usage: 'MODEL -p PROMPT [flags]',
  summary: `Generate text on the KV cache and stream it to stdout (the prompt is not repeated).
MODEL is an llm.ts checkpoint (file, or a training run's directory), a Hugging Face
model directory (config.json + safetensors weights + tokenizer), a GGUF file or a llama2.c .bin
(which has no tokenizer: use --tokenizer, or --prompt-ids with --output ids).`,
  flags: [
    { name: 'prompt', short: 'p', kind: 'string', help: 'text to continue (this or --prompt-ids is required)', group: 'Prompt' },
    { name: 'prompt-ids', kind: 'string', value: 'IDS', help: 'token ids to continue instead, e.g. 1,345,22 or [1,345,22]; needs no tokenizer', group: 'Prompt' },
    { name: 'output', kind: 'string', choices: ['text', 'ids'], default: 'text', help: 'print the text, or the generated token ids as a JSON array', group: 'Prompt' },
    { name: 'verbose', kind: 'boolean', help: 'print token counts, speed and why generation stopped to stderr', group: 'Prompt' },
    ...MODEL_FLAGS, ADAPTER_FLAG, CTX_FLAG,
    ...samplingFlags(),
    THREADS_FLAG,
  ],
  notes: `Generation stops at --max-tokens, a stop string, the end-of-sequence token, or the end of the
context (said on stderr; a prompt longer than the context is an error).

  llmts run out/shakespeare-char -p 'ROMEO:' -n 200 --temperature 0.8 --stop '\\n\\n'
  llmts run model.gguf -p 'Once upon a time' --top-p 0.9 -s 1 -t 2
  llmts run hf-base-dir --adapter out/lora/adapter -p 'Question: 12+7=' --temperature 0`,
};

/**
 * Load any supported model file, with its tokenizer (or the one named by tokenizerSpec) and its
 * own chat template; with adapterDir, a PEFT LoRA adapter applied (loadAdapterForInference).
 */
export async function loadModelForInference(path: string, tokenizerSpec?: string, adapterDir?: string): Promise<{ model: Transformer; tokenizer: Tokenizer; chatTemplate?: string }> {
  const { model, tokenizer, chatTemplate } = await loadModelMaybeTokenizer(path, tokenizerSpec, adapterDir);
  if (!tokenizer) throw new LlmError(`${path} carries no tokenizer: pass --tokenizer PATH (e.g. a tokenizer.model, tokenizer.json or .gguf vocabulary)`);
  return { model, tokenizer, chatTemplate };
}

async function loadModelMaybeTokenizer(path: string, tokenizerSpec?: string, adapterDir?: string): Promise<{ model: Transformer; tokenizer: Tokenizer | null; chatTemplate?: string }> {
  const loaded = await loadAnyModel(path, { tokenizer: !tokenizerSpec }); // --tokenizer: the model's own is not read
  const model = adapterDir !== undefined
    ? loadAdapterForInference(adapterDir, loaded.config, loaded.params, loaded.quantized).model
    : new Transformer(loaded.config, loaded.params, { quantized: loaded.quantized });
  const tokenizer = tokenizerSpec ? await loadTokenizer(tokenizerSpec) : loaded.tokenizer;
  if (tokenizer && tokenizer.vocabSize > model.config.vocabSize) {
    throw new LlmError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  }
  model.eval();
  return { model, tokenizer, chatTemplate: tokenizerSpec ? undefined : loaded.chatTemplate };
}

/** "1,345,22" or "[1, 345, 22]" -> ids, each a non-negative integer. */
function parseIds(text: string): number[] {
  const parts = text.trim().replace(/^\[|\]$/g, '').split(/[\s,]+/).filter(Boolean);
  const ids = parts.map(Number);
  const bad = parts.findIndex((s, i) => !Number.isInteger(ids[i]) || ids[i] < 0);
  if (parts.length === 0 || bad >= 0) {
    throw new LlmError(`--prompt-ids ${JSON.stringify(text)}: give token ids as non-negative integers, e.g. 1,345,22`);
  }
  return ids;
}

/** The --verbose line: token counts, prefill and decode speed, and why generation stopped. */
export function runStatsLine(promptTokens: number, s: Readonly<GenerationStats>, finishReason: string | null, totalMs: number): string {
  const rate = (n: number, ms: number): string => (ms > 0 ? ((1000 * n) / ms).toFixed(1) : '-');
  return `llmts run: ${promptTokens} prompt + ${s.generatedTokens} generated tokens in ${(totalMs / 1000).toFixed(2)} s; `
    + `prefill ${s.prefillMs.toFixed(1)} ms (${rate(s.promptTokens - s.reusedTokens, s.prefillMs)} tok/s), `
    + `decode ${rate(s.generatedTokens, s.decodeMs)} tok/s; stopped: ${finishReason ?? 'unknown'}\n`;
}

async function runCommand(f: Flags): Promise<void> {
  const path = modelPath(f, 'llmts run MODEL -p PROMPT');
  const prompt = f.string('prompt');
  const promptIds = f.string('prompt-ids');
  if ((prompt === undefined) === (promptIds === undefined)) throw new LlmError('give the prompt as text (-p PROMPT) or as token ids (--prompt-ids 1,2,3), one of the two');
  const output = f.string('output')!;
  const opts = samplingOptions(f);
  const { model, tokenizer } = await loadModelMaybeTokenizer(path, f.string('tokenizer'), f.string('adapter'));
  if (!tokenizer && (prompt !== undefined || output === 'text')) {
    throw new LlmError(`${path} carries no tokenizer: pass --tokenizer PATH, or use --prompt-ids with --output ids`);
  }
  const ids = promptIds !== undefined ? parseIds(promptIds) : tokenizer!.encode(prompt!, { addBos: true });
  if (ids.length === 0) throw new LlmError('the prompt is empty and the tokenizer has no beginning-of-sequence token');
  const V = model.config.vocabSize;
  const outside = ids.find((id) => id >= V);
  if (outside !== undefined) throw new LlmError(`--prompt-ids: token id ${outside} is outside the model's vocabulary of ${V}`);
  const context = contextSize(f, model.config.blockSize);
  if (context < model.config.blockSize) opts.cache = new KvCache(model.config, context);
  const t0 = performance.now();
  let stats: Readonly<GenerationStats>;
  let finishReason: string | null;
  if (output === 'ids') {
    const out: number[] = [];
    const counted = emptyStats();
    const it = generateCached(model, ids, { ...opts, stopTokens: tokenizer?.eosId !== undefined ? [tokenizer.eosId] : [], stats: counted });
    let r = it.next();
    for (; !r.done; r = it.next()) out.push(r.value.id);
    process.stdout.write(JSON.stringify(out) + '\n');
    stats = counted;
    finishReason = r.value;
  } else {
    const gen = generate(model, tokenizer!, ids, opts);
    for await (const piece of gen) process.stdout.write(piece);
    process.stdout.write('\n');
    stats = gen.stats;
    finishReason = gen.finishReason;
  }
  if (finishReason === 'context') {
    process.stderr.write(`llmts run: stopped at the end of the ${context}-token context after ${stats.generatedTokens} of ${f.typed('max-tokens')} ${opts.maxTokens} tokens\n`);
  }
  if (f.bool('verbose')) process.stderr.write(runStatsLine(ids.length, stats, finishReason, performance.now() - t0));
}

export const RUN: CommandModule = { spec: RUN_SPEC, run: runCommand };
