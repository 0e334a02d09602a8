/**
 * Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or sharded
 * `model.safetensors.index.json` + shards), as `transformers` writes for GPT2LMHeadModel and
 * LlamaForCausalLM. Our parameter names and layouts already are Hugging Face's
 * (model/parameters.ts), so export and import are copies plus a config translation.
 *
 *   exportHfCheckpoint('out/hf', model.config, model.params);  // opens with transformers' from_pretrained
 *   const { config, params } = importHfCheckpoint('path/to/llama-dir');
 */
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { validateConfig, type ModelConfig } from '../model/config.js';
import { parameterSpecs } from '../model/parameters.js';
import { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { FileSourceMode } from './file-source.js';
import { isJsonObject, preview, readJsonFile } from '../util/regular-file.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, type SafetensorsEntry, type TensorToWrite } from './safetensors.js';

export interface HfExportOptions {
  bosTokenId?: number;
  eosTokenId?: number;
  /** the model's chat template (Jinja source), written as tokenizer_config.json's chat_template */
  chatTemplate?: string;
}

/** The config.json transformers expects for this model. */
export function hfConfig(cfg: ModelConfig, opts: HfExportOptions = {}): Record<string, unknown> {
  const common = {
    vocab_size: cfg.vocabSize,
    tie_word_embeddings: cfg.tiedEmbeddings,
    torch_dtype: 'float32',
    bos_token_id: opts.bosTokenId ?? null,
    eos_token_id: opts.eosTokenId ?? null,
  };
  if (cfg.family === 'gpt2') {
    if (cfg.nKvHead !== cfg.nHead) throw new LlmError('a GPT-2 model with grouped-query attention has no Hugging Face equivalent (GPT2LMHeadModel needs n_kv_head = n_head)');
    return {
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', ...common,
      n_positions: cfg.blockSize, n_ctx: cfg.blockSize, n_embd: cfg.nEmbd, n_layer: cfg.nLayer, n_head: cfg.nHead,
      n_inner: cfg.hiddenDim === 4 * cfg.nEmbd ? null : cfg.hiddenDim, activation_function: 'gelu_new',
      layer_norm_epsilon: cfg.normEps, resid_pdrop: cfg.dropout, embd_pdrop: cfg.dropout, attn_pdrop: 0,
    };
  }
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common,
    hidden_size: cfg.nEmbd, intermediate_size: cfg.hiddenDim, num_hidden_layers: cfg.nLayer,
    num_attention_heads: cfg.nHead, num_key_value_heads: cfg.nKvHead, max_position_embeddings: cfg.blockSize,
    rms_norm_eps: cfg.normEps, rope_theta: cfg.ropeTheta, hidden_act: 'silu', attention_bias: false, mlp_bias: false,
  };
}

/** A value from config.json for a message: short, one line. */
function quoted(v: unknown): string {
  return typeof v === 'string' ? `'${v.length > 40 ? `${v.slice(0, 40)}...` : v}'` : preview(v);
}

/**
 * Our config from a transformers config.json (GPT2LMHeadModel or LlamaForCausalLM). `json` is
 * checked as it comes from the file: every field's type and range, in config.json's own key
 * names (validateConfig with HF names), before anything is sized by it.
 */
export function configFromHf(json: unknown, source: string): ModelConfig {
  if (!isJsonObject(json)) throw new LlmError(`${source}: config.json must be a JSON object, got ${preview(json)}`);
  // null is Python's None: the default, as transformers reads it
  const given = (key: string): unknown => (json[key] === null ? undefined : json[key]);
  const num = (key: string, fallback?: number): number => {
    const v = given(key) ?? fallback;
    if (v === undefined) throw new LlmError(`${source}: config.json has no numeric '${key}'`);
    if (typeof v !== 'number') throw new LlmError(`${source}: config.json '${key}' is ${quoted(v)}, not a number`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = given(key) ?? fallback;
    if (typeof v !== 'boolean') throw new LlmError(`${source}: config.json '${key}' is ${quoted(v)}, not true or false`);
    return v;
  };
  const type = json.model_type;
  if (type === 'gpt2') {
    const nEmbd = num('n_embd');
    const inner = given('n_inner');
    if (inner !== undefined && typeof inner !== 'number') throw new LlmError(`${source}: config.json 'n_inner' is ${quoted(inner)}, not a number or null`);
    const act = given('activation_function') ?? 'gelu_new';
    if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
      throw new LlmError(`${source}: activation ${quoted(act)} is not supported (llm.ts GPT-2 uses the tanh GELU, 'gelu_new')`);
    }
    const positions = given('n_positions') !== undefined ? 'n_positions' : 'n_ctx';
    return validateConfig({
      family: 'gpt2', vocabSize: num('vocab_size'), blockSize: num(positions, 1024), nLayer: num('n_layer'),
      nHead: num('n_head'), nKvHead: num('n_head'), nEmbd, hiddenDim: inner ?? 4 * nEmbd,
      bias: true, tiedEmbeddings: bool('tie_word_embeddings', true), normEps: num('layer_norm_epsilon', 1e-5),
      ropeTheta: 10000, dropout: 0,
    }, {
      source,
      names: {
        vocabSize: 'vocab_size', blockSize: positions, nLayer: 'n_layer', nHead: 'n_head', nKvHead: 'n_head', nEmbd: 'n_embd',
        hiddenDim: inner === undefined ? '4 * n_embd' : 'n_inner', tiedEmbeddings: 'tie_word_embeddings', normEps: 'layer_norm_epsilon',
      },
    });
  }
  if (type === 'llama') {
    if (json.attention_bias === true || json.mlp_bias === true) throw new LlmError(`${source}: Llama with biases is not supported`);
    if (json.rope_scaling) throw new LlmError(`${source}: rope_scaling is not supported yet`);
    const act = given('hidden_act');
    if (act !== undefined && act !== 'silu') throw new LlmError(`${source}: hidden_act ${quoted(act)} is not supported (silu)`);
    const nHead = num('num_attention_heads');
    return validateConfig({
      family: 'llama', vocabSize: num('vocab_size'), blockSize: num('max_position_embeddings', 2048), nLayer: num('num_hidden_layers'),
      nHead, nKvHead: num('num_key_value_heads', nHead), nEmbd: num('hidden_size'), hiddenDim: num('intermediate_size'),
      bias: false, tiedEmbeddings: bool('tie_word_embeddings', false), normEps: num('rms_norm_eps', 1e-6),
      ropeTheta: num('rope_theta', 10000), dropout: 0,
    }, {
      source,
      names: {
        vocabSize: 'vocab_size', blockSize: 'max_position_embeddings', nLayer: 'num_hidden_layers', nHead: 'num_attention_heads',
        nKvHead: 'num_key_value_heads', nEmbd: 'hidden_size', hiddenDim: 'intermediate_size', tiedEmbeddings: 'tie_word_embeddings',
        normEps: 'rms_norm_eps', ropeTheta: 'rope_theta',
      },
    });
  }
  throw new LlmError(`${source}: model_type ${quoted(type)} is not supported (gpt2 or llama)`);
}

/** Write config.json and model.safetensors (float32), and tokenizer_config.json with a chat template, into dir, each atomically. */
export function exportHfCheckpoint(dir: string, cfg: ModelConfig, params: Map<string, Tensor>, opts: HfExportOptions = {}): void {
  writeHfDirectory(dir, hfConfig(cfg, opts), hfTensors(cfg, params, () => true), opts.chatTemplate);
}

/**
 * A reward model as transformers' LlamaForSequenceClassification / GPT2ForSequenceClassification
 * with one label: the trunk's tensors (no LM head) and `score.weight` (1, C). transformers reads
 * the score at each row's last token that is not pad_token_id, so that id must not occur inside
 * the texts scored (the end-of-text id is usual).
 */
export function exportHfSequenceClassifier(
  dir: string, cfg: ModelConfig, params: Map<string, Tensor>, score: Tensor, opts: HfExportOptions & { padTokenId: number },
): void {
  if (score.shape.length !== 2 || score.shape[0] !== 1 || score.shape[1] !== cfg.nEmbd) {
    throw new LlmError(`cannot export: the score head has shape [${score.shape.join(', ')}], expected [1, ${cfg.nEmbd}]`);
  }
  const config = hfConfig(cfg, opts);
  config.architectures = [cfg.family === 'gpt2' ? 'GPT2ForSequenceClassification' : 'LlamaForSequenceClassification'];
  Object.assign(config, { id2label: { 0: 'LABEL_0' }, label2id: { LABEL_0: 0 }, pad_token_id: opts.padTokenId });
  const tensors = hfTensors(cfg, params, (name) => name !== 'lm_head.weight');
  tensors['score.weight'] = { dtype: 'F32', shape: [1, cfg.nEmbd], data: score.data };
  writeHfDirectory(dir, config, tensors, opts.chatTemplate);
}

/** The config's parameters (those `keep` accepts) as float32 tensors to write; GPT-2 gets its zero biases. */
function hfTensors(cfg: ModelConfig, params: Map<string, Tensor>, keep: (name: string) => boolean): Record<string, TensorToWrite> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const spec of parameterSpecs(cfg)) {
    if (!keep(spec.name)) continue;
    const t = params.get(spec.name);
    if (!t) throw new LlmError(`cannot export: parameter '${spec.name}' is missing`);
    tensors[spec.name] = { dtype: 'F32', shape: [...t.shape], data: t.data };
  }
  if (cfg.family === 'gpt2' && !cfg.bias) addZeroBiases(cfg, tensors); // GPT2LMHeadModel always has biases
  return tensors;
}

function writeHfDirectory(dir: string, config: Record<string, unknown>, tensors: Record<string, TensorToWrite>, chatTemplate: string | undefined): void {
  mkdirSync(dir, { recursive: true });
  saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (chatTemplate !== undefined) writeFileAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: chatTemplate }, null, 2) + '\n');
}

function addZeroBiases(cfg: ModelConfig, tensors: Record<string, TensorToWrite>): void {
  const withBias = parameterSpecs({ ...cfg, bias: true });
  for (const s of withBias) {
    if (!tensors[s.name]) tensors[s.name] = { dtype: 'F32', shape: s.shape, data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) };
  }
}

/** Our config from the config.json of a transformers checkpoint directory. */
export function readHfConfig(dir: string): ModelConfig {
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new LlmError(`${dir} has no config.json (expected a Hugging Face checkpoint directory)`);
  return configFromHf(readJsonFile(configPath, 'config file'), configPath);
}

/** Float dtypes a weight may be stored in. */
const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/** Layer index of a per-layer tensor name (model.layers.N. / transformer.h.N. / h.N.), else null. */
function layerOf(name: string): number | null {
  const m = /^(?:model\.layers|transformer\.h|h)\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Read a transformers checkpoint directory into our config and parameter map. Everything is
 * checked against the safetensors headers before any data is read or anything is built per
 * layer: the layers present must be exactly the config's, every parameter must be there in a
 * float dtype with the shape the config implies.
 */
export function importHfCheckpoint(dir: string): { config: ModelConfig; params: Map<string, Tensor>; source: FileSourceMode } {
  const config = readHfConfig(dir);
  const configPath = join(dir, 'config.json');
  const files = weightFiles(dir);
  // every tensor's header entry and the file holding it
  const entries = new Map<string, { entry: SafetensorsEntry; file: string }>();
  for (const f of files) {
    for (const [name, entry] of readSafetensorsHeader(f).tensors) {
      const other = entries.get(name);
      if (other) throw new LlmError(`${dir}: tensor '${short(name)}' is in both ${other.file} and ${f}`);
      entries.set(name, { entry, file: f });
    }
  }
  checkLayers(config, [...entries.keys()], configPath);
  const specs = parameterSpecs(config);
  const wanted = new Map<string, string>(); // our name -> name in the files
  for (const spec of specs) {
    const stored = [spec.name, spec.name.replace(/^transformer\./, '')].find((n) => entries.has(n));
    if (stored === undefined) throw new LlmError(`${dir}: weights have no tensor '${spec.name}'`);
    const { entry: t, file } = entries.get(stored)!;
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new LlmError(`${file}: tensor '${stored}' has dtype ${t.dtype}; weights must be ${FLOAT_DTYPES.join(', ')}`);
    }
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new LlmError(`${dir}: tensor '${spec.name}' has shape ${preview(t.shape)}, config.json implies [${spec.shape.join(', ')}]`);
    }
    wanted.set(spec.name, stored);
  }
  const { tensors: raw, source } = readWeights(files, new Set(wanted.values()));
  const params = new Map<string, Tensor>();
  for (const spec of specs) params.set(spec.name, new Tensor(raw.get(wanted.get(spec.name)!)!, spec.shape, true));
  return { config, params, source };
}

/** The layers the tensors hold must be exactly 0..nLayer-1 (checked before anything per layer is built). */
function checkLayers(config: ModelConfig, names: string[], configPath: string): void {
  const key = config.family === 'gpt2' ? 'n_layer' : 'num_hidden_layers';
  const layers = new Set<number>();
  let beyond: string | null = null;
  for (const n of names) {
    const l = layerOf(n);
    if (l === null) continue;
    layers.add(l);
    if (l >= config.nLayer && beyond === null) beyond = n;
  }
  if (beyond !== null) {
    throw new LlmError(`${configPath}: ${key} is ${config.nLayer} but the weights hold more layers (tensor '${short(beyond)}'); the config and the weights disagree`);
  }
  if (layers.size < config.nLayer) {
    throw new LlmError(`${configPath}: ${key} is ${config.nLayer} but the weights hold ${layers.size} layer${layers.size === 1 ? '' : 's'}; the config and the weights disagree`);
  }
}

/** A name from a file, cut for a message. */
function short(name: string): string {
  return name.length > 100 ? `${name.slice(0, 100)}...` : name;
}

/** The safetensors files of a directory: model.safetensors, or the shards its index names. */
function weightFiles(dir: string): string[] {
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(single)) return [single];
  if (!existsSync(index)) throw new LlmError(`${dir} has no model.safetensors (pytorch_model.bin is not supported: convert it to safetensors)`);
  const json = readJsonFile(index, 'shard index file');
  const map = isJsonObject(json) ? json.weight_map : undefined;
  if (!isJsonObject(map)) throw new LlmError(`${index}: a shard index must be a JSON object with a "weight_map" object (tensor name -> shard file), got ${isJsonObject(json) ? `weight_map ${preview(map)}` : preview(json)}`);
  const files = new Set<string>();
  for (const [tensor, f] of Object.entries(map)) {
    if (typeof f !== 'string' || f === '' || isAbsolute(f) || f.split(/[\\/]/).includes('..')) {
      throw new LlmError(`${index}: weight_map names ${preview(f)} as the shard of '${short(tensor)}'; expected a file name inside ${dir}`);
    }
    files.add(join(dir, f));
  }
  if (files.size === 0) throw new LlmError(`${index}: weight_map names no shard files`);
  return [...files];
}

/** The float data of the tensors named `names` (header-checked already), each float32. */
function readWeights(files: string[], names: Set<string>): { tensors: Map<string, Float32Array>; source: FileSourceMode } {
  const out = new Map<string, Float32Array>();
  let source: FileSourceMode = 'mmap';
  for (const f of files) {
    const st = loadSafetensors(f);
    if (st.source === 'read') source = 'read';
    for (const [name, t] of st.tensors) {
      if (names.has(name) && t.data instanceof Float32Array) out.set(name, t.data);
    }
  }
  return { tensors: out, source };
}
