/**
 * llmts run: generate text from a model on the KV cache, streaming it to stdout.
 *
 *   llmts run out/shakespeare -p 'ROMEO:' --max-tokens 200 --temperature 0.8 --stop '\n\n'
 *   llmts run path/to/hf-model-dir -p 'Once upon a time' --top-p 0.9 --seed 1
 */
import { generate } from '../generate/generate.js';
import { Transformer } from '../model/transformer.js';
import { loadTokenizer } from '../tokenizer/load.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { parseFlags, stringFlag, type FlagSpec } from './args.js';
import { loadAnyModel } from '../formats/load-model.js';
import { SAMPLING_FLAGS, samplingOptions } from './sampling-flags.js';

export const RUN_USAGE = `Usage: llmts run MODEL -p PROMPT [flags]

Generate text on the KV cache and stream it to stdout (the prompt is not repeated).
MODEL is an llm.ts checkpoint (file, or a training run's --out directory) or a Hugging Face
model directory (config.json + safetensors weights + tokenizer).

  -p, --prompt TEXT    text to continue (required)
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

const FLAGS: FlagSpec = { prompt: { type: 'string', short: 'p' }, verbose: { type: 'boolean' }, ...SAMPLING_FLAGS };

/** Load an llm.ts checkpoint or a Hugging Face directory, with its tokenizer. */
export async function loadModelForInference(path: string, tokenizerSpec?: string): Promise<{ model: Transformer; tokenizer: Tokenizer }> {
  const loaded = await loadAnyModel(path);
  const model = new Transformer(loaded.config, loaded.params, { quantized: loaded.quantized });
  const tokenizer = tokenizerSpec ? await loadTokenizer(tokenizerSpec) : loaded.tokenizer;
  if (!tokenizer) throw new LlmError(`${path} carries no tokenizer: pass --tokenizer PATH (e.g. a tokenizer.model, tokenizer.json or .gguf vocabulary)`);
  if (tokenizer.vocabSize > model.config.vocabSize) {
    throw new LlmError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  }
  model.eval();
  return { model, tokenizer };
}

export async function runCommand(argv: string[]): Promise<void> {
  const p = parseFlags(argv, FLAGS, 'run');
  const [path, ...extra] = p.positionals;
  if (!path) throw new LlmError('give the model: llmts run MODEL -p PROMPT');
  if (extra.length > 0) throw new LlmError(`unexpected argument '${extra[0]}' (quote the prompt and pass it with -p)`);
  const prompt = stringFlag(p, 'prompt');
  if (prompt === undefined) throw new LlmError('-p PROMPT is required');
  const opts = samplingOptions(p);
  const { model, tokenizer } = await loadModelForInference(path, stringFlag(p, 'tokenizer'));
  const ids = tokenizer.encode(prompt, { addBos: true });
  if (ids.length === 0) throw new LlmError('the prompt is empty and the tokenizer has no beginning-of-sequence token');
  const t0 = performance.now();
  const gen = generate(model, tokenizer, ids, opts);
  for await (const piece of gen) process.stdout.write(piece);
  process.stdout.write('\n');
  if (p.values.verbose) {
    const s = (performance.now() - t0) / 1000;
    process.stderr.write(`llmts run: ${ids.length} prompt + ${gen.tokens.length} generated tokens in ${s.toFixed(2)} s `
      + `(${(gen.tokens.length / s).toFixed(1)} tok/s), stopped: ${gen.finishReason}\n`);
  }
}
