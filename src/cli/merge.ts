/**
 * llmts merge: fold a PEFT LoRA adapter into its base model's weights (W += scaling · B A) and
 * write the result as an llm.ts checkpoint, a Hugging Face directory or a GGUF file, with the
 * base's tokenizer and chat template. The merged model runs at the base's speed (no adapter
 * beside the weights) and loads anywhere the base would.
 *
 *   llmts merge out/base --adapter out/lora/adapter -o out/merged              # llm.ts checkpoint
 *   llmts merge hf-base-dir --adapter peft-adapter --to hf -o merged-hf
 *   llmts merge model.gguf --adapter out/lora/adapter --to gguf --quant q8_0 -o merged.gguf
 */
import { join } from 'node:path';
import { saveCheckpoint } from '../formats/checkpoint.js';
import { exportGgufModel, GGUF_QUANTS, type GgufQuant } from '../formats/gguf-model.js';
import { exportHfCheckpoint } from '../formats/hf-checkpoint.js';
import { loadAnyModel } from '../formats/load-model.js';
import { loadLoraAdapter } from '../formats/peft.js';
import { loraLinears, mergeLora } from '../model/lora.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import { countTypes, formatBytes, writeHfTokenizer } from './convert.js';
import type { CommandSpec, Flags } from './flags.js';
import { ADAPTER_FLAG, MODEL_FLAGS, modelPath } from './shared-flags.js';

export const MERGE_FORMATS = ['llmts', 'hf', 'gguf'] as const;

const MERGE_SPEC: CommandSpec = {
  name: 'merge',
  usage: 'MODEL --adapter DIR --out PATH [--to llmts|hf|gguf] [flags]',
  summary: `Merge a LoRA adapter into its base model and write the merged model. MODEL is anything
llmts run loads (GGUF Q8_0/Q4_0 weights are dequantized first); the adapter is a PEFT directory
(adapter_config.json + adapter_model.safetensors, as a LoRA run of llmts sft or PEFT saves it).`,
  flags: [
    { ...ADAPTER_FLAG, help: `${ADAPTER_FLAG.help} (required)` },
    { name: 'out', short: 'o', kind: 'string', value: 'PATH', help: 'where to write: a directory (llmts: DIR/ckpt.safetensors, or a .safetensors file; hf) or a file (gguf) (required)', group: 'Output' },
    { name: 'to', kind: 'string', choices: MERGE_FORMATS, default: 'llmts', help: 'output format: an llm.ts checkpoint, a Hugging Face directory or a GGUF file', group: 'Output' },
    { name: 'quant', kind: 'string', value: 'TYPE', defaultText: 'f32', help: `GGUF type of the weight matrices (--to gguf): ${GGUF_QUANTS.join(', ')}`, group: 'Output' },
    ...MODEL_FLAGS,
  ],
  notes: `The base's tokenizer and chat template go with the merged model (tokenizer_config.json's
chat_template for hf, tokenizer.chat_template for gguf). Unmerging (W -= scaling · B A) gives the
base weights back up to float32 rounding.

  llmts merge out/base --adapter out/lora/adapter -o out/merged
  llmts merge hf-base-dir --adapter peft-adapter --to gguf --quant q8_0 -o merged.gguf`,
};

async function mergeCommand(f: Flags): Promise<void> {
  const usage = 'llmts merge MODEL --adapter DIR --out PATH [--to llmts|hf|gguf]';
  const path = modelPath(f, usage);
  const adapter = f.string('adapter');
  if (adapter === undefined) throw new LlmError(`give the adapter: ${usage}`);
  const out = f.string('out');
  if (out === undefined) throw new LlmError(`give --out PATH: ${usage}`);
  const to = f.string('to') as (typeof MERGE_FORMATS)[number];
  const quant = (f.string('quant') ?? 'f32').toLowerCase();
  if (f.has('quant') && to !== 'gguf') throw new LlmError(`--quant applies to --to gguf only (${to === 'hf' ? 'Hugging Face' : 'llm.ts'} output is float32)`);
  if (!GGUF_QUANTS.includes(quant as GgufQuant)) throw new LlmError(`--quant ${quant}: choose one of ${GGUF_QUANTS.join(', ')}`);
  const tokSpec = f.string('tokenizer');
  const loaded = await loadAnyModel(path, { keepQuantized: false, tokenizer: !tokSpec });
  const tokenizer = tokSpec ? await loadTokenizer(tokSpec) : loaded.tokenizer;
  if (tokenizer && tokenizer.vocabSize > loaded.config.vocabSize) {
    throw new LlmError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${loaded.config.vocabSize}`);
  }
  const model = loadLoraAdapter(adapter, loaded.config, loaded.params);
  const layers = loraLinears(model);
  mergeLora(model); // into loaded.params, in place
  const o = layers[0].opts;
  const what = `LoRA r ${o.r}, alpha ${o.alpha}${o.rslora ? ' (rsLoRA)' : ''} on ${layers.length} layers`;
  const cfg = loaded.config;
  const chatTemplate = loaded.chatTemplate;
  const templateNote = chatTemplate !== undefined ? ', its chat template' : '';
  if (to === 'llmts') {
    if (!tokenizer) throw new LlmError(`${path} carries no tokenizer, which an llm.ts checkpoint holds: pass --tokenizer SPEC, or write --to hf|gguf`);
    const file = /\.safetensors$/i.test(out) ? out : join(out, 'ckpt.safetensors');
    saveCheckpoint(file, {
      config: cfg, params: loaded.params, tokenizer: tokenizer.toJSON(),
      trainer: { merged: { base: path, adapter } }, chatTemplate,
    });
    process.stdout.write(`merged ${adapter} (${what}) into ${path}: wrote ${file} (llm.ts checkpoint, with the tokenizer${templateNote})\n`);
    return;
  }
  if (to === 'hf') {
    exportHfCheckpoint(out, cfg, loaded.params, { bosTokenId: tokenizer?.bosId, eosTokenId: tokenizer?.eosId, chatTemplate });
    const note = tokenizer ? writeHfTokenizer(out, tokenizer) : '; no tokenizer.json: the model carries no tokenizer';
    process.stdout.write(`merged ${adapter} (${what}) into ${path}: wrote ${out} (${cfg.family} Hugging Face checkpoint: config.json, model.safetensors${chatTemplate !== undefined ? ', tokenizer_config.json' : ''}${note})\n`);
    return;
  }
  const res = exportGgufModel(out, cfg, loaded.params, { quant: quant as GgufQuant, tokenizer, chatTemplate });
  process.stdout.write(`merged ${adapter} (${what}) into ${path}: wrote ${out}: ${cfg.family} GGUF, ${res.tensors.length} tensors (${countTypes(res.tensors.map((t) => t.type))}), ${formatBytes(res.bytes)}${tokenizer ? '' : ', no vocabulary (the model carries no tokenizer)'}\n`);
}

export const MERGE: CommandModule = { spec: MERGE_SPEC, run: mergeCommand };
