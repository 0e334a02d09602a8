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
import { parseFlags, stringFlag, type FlagSpec } from './args.js';
import { loadAnyModel } from '../formats/load-model.js';
import { SAMPLING_FLAGS, samplingOptions } from './sampling-flags.js';

export const RUN_USAGE = `Usage: llmts run MODEL -p PROMPT [flags]

Generate text on the KV cache and stream it to stdout (the prompt is not repeated).
MODEL is an llm.ts checkpoint (file, or a training run's --out directory), a Hugging Face
model directory (config.json + safetensors weights + tokenizer), a GGUF file or a llama2.c .bin
(which has no tokenizer: use --tokenizer, or --prompt-ids with --output ids).

  -p, --prompt TEXT    text to continue (this or --prompt-ids is required)
  --prompt-ids IDS     token ids to continue instead, e.g. 1,345,22 or [1,345,22]; needs no tokenizer
  --output text|ids    print text (default) or the generated token ids as a JSON array
  --max-tokens N       tokens to generate at most (default 256)
  --temperature X      0 = greedy; higher = more random (default 0.8)
  --top-k N            sample among the k most likely tokens; 0 = all (default 40)
  --top-p X            nucleus sampling: smallest set with probability >= X; 1 = off (default 0.95)
  --min-p X            drop tokens below X x the top probability; 0 = off (default 0.05)
  --repeat-penalty X   > 1 discourages the last 64 tokens (default 1 = off)
  --seed N             random seed; same seed, same text (default 1337)
  --stop TEXT          stop when the text contains TEXT (not printed); repeatable
  --tokenizer SPEC     use this tokenizer instead of the model's
  --verbose            print token count, speed and why generation stopped to stderr

Generation stops at --max-tokens, a stop string, the end-of-sequence token, or the end of the
model's context (a prompt longer than the context is an error).
`;

const FLAGS: FlagSpec = {
  prompt: { type: 'string', short: 'p' }, 'prompt-ids': { type: 'string' }, output: { type: 'string' },
  verbose: { type: 'boolean' }, ...SAMPLING_FLAGS,
};

/** Load any supported model file, with its tokenizer (or the one named by tokenizerSpec). */
export async function loadModelForInference(path: string, tokenizerSpec?: string): Promise<{ model: Transformer; tokenizer: Tokenizer }> {
  const { model, tokenizer } = await loadModelMaybeTokenizer(path, tokenizerSpec);
  if (!tokenizer) throw new LlmError(`${path} carries no tokenizer: pass --tokenizer PATH (e.g. a tokenizer.model, tokenizer.json or .gguf vocabulary)`);
  return { model, tokenizer };
}

async function loadModelMaybeTokenizer(path: string, tokenizerSpec?: string): Promise<{ model: Transformer; tokenizer: Tokenizer | null }> {
  const loaded = await loadAnyModel(path);
  const model = new Transformer(loaded.config, loaded.params, { quantized: loaded.quantized });
  const tokenizer = tokenizerSpec ? await loadTokenizer(tokenizerSpec) : loaded.tokenizer;
  if (tokenizer && tokenizer.vocabSize > model.config.vocabSize) {
    throw new LlmError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  }
  model.eval();
  return { model, tokenizer };
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

export async function runCommand(argv: string[]): Promise<void> {
  const p = parseFlags(argv, FLAGS, 'run');
  const [path, ...extra] = p.positionals;
  if (!path) throw new LlmError('give the model: llmts run MODEL -p PROMPT');
  if (extra.length > 0) throw new LlmError(`unexpected argument '${extra[0]}' (quote the prompt and pass it with -p)`);
  const prompt = stringFlag(p, 'prompt');
  const promptIds = stringFlag(p, 'prompt-ids');
  if ((prompt === undefined) === (promptIds === undefined)) throw new LlmError('give the prompt as text (-p PROMPT) or as token ids (--prompt-ids 1,2,3), one of the two');
  const output = stringFlag(p, 'output') ?? 'text';
  if (output !== 'text' && output !== 'ids') throw new LlmError(`--output ${output}: must be text or ids`);
  const opts = samplingOptions(p);
  const { model, tokenizer } = await loadModelMaybeTokenizer(path, stringFlag(p, 'tokenizer'));
  if (!tokenizer && (prompt !== undefined || output === 'text')) {
    throw new LlmError(`${path} carries no tokenizer: pass --tokenizer PATH, or use --prompt-ids with --output ids`);
  }
  const ids = promptIds !== undefined ? parseIds(promptIds) : tokenizer!.encode(prompt!, { addBos: true });
  if (ids.length === 0) throw new LlmError('the prompt is empty and the tokenizer has no beginning-of-sequence token');
  const V = model.config.vocabSize;
  const outside = ids.find((id) => id >= V);
  if (outside !== undefined) throw new LlmError(`--prompt-ids: token id ${outside} is outside the model's vocabulary of ${V}`);
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
  if (p.values.verbose) process.stderr.write(runStatsLine(ids.length, stats, finishReason, performance.now() - t0));
}
