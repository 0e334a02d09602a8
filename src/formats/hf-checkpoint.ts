/**
 * Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or sharded
 * `model.safetensors.index.json` + shards), as `transformers` writes for GPT2LMHeadModel and
 * LlamaForCausalLM. Our parameter names and layouts already are Hugging Face's
 * (model/parameters.ts), so export and import are copies plus a config translation.
 *
 *   exportHfCheckpoint('out/hf', model.config, model.params);  // opens with transformers' from_pretrained
 *   const { config, params } = importHfCheckpoint('path/to/llama-dir');
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig, type ModelConfig } from '../model/config.js';
import { parameterSpecs } from '../model/parameters.js';
import { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { FileSourceMode } from './file-source.js';
import { loadSafetensors, saveSafetensors, type TensorToWrite } from './safetensors.js';

export interface HfExportOptions {
  bosTokenId?: number;
  eosTokenId?: number;
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

/** Our config from a transformers config.json (GPT2LMHeadModel or LlamaForCausalLM). */
export function configFromHf(json: Record<string, unknown>, source: string): ModelConfig {
  const num = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== 'number') throw new LlmError(`${source}: config.json has no numeric '${key}'`);
    return v;
  };
  const type = json.model_type;
  if (type === 'gpt2') {
    const nEmbd = num('n_embd');
    const inner = json.n_inner;
    const act = json.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
      throw new LlmError(`${source}: activation '${String(act)}' is not supported (llm.ts GPT-2 uses the tanh GELU, 'gelu_new')`);
    }
    return validateConfig({
      family: 'gpt2', vocabSize: num('vocab_size'), blockSize: num('n_positions', num('n_ctx', 1024)), nLayer: num('n_layer'),
      nHead: num('n_head'), nKvHead: num('n_head'), nEmbd, hiddenDim: typeof inner === 'number' ? inner : 4 * nEmbd,
      bias: true, tiedEmbeddings: json.tie_word_embeddings !== false, normEps: num('layer_norm_epsilon', 1e-5),
      ropeTheta: 10000, dropout: 0,
    });
  }
  if (type === 'llama') {
    if (json.attention_bias === true || json.mlp_bias === true) throw new LlmError(`${source}: Llama with biases is not supported`);
    if (json.rope_scaling) throw new LlmError(`${source}: rope_scaling is not supported yet`);
    if (json.hidden_act !== undefined && json.hidden_act !== 'silu') throw new LlmError(`${source}: hidden_act '${String(json.hidden_act)}' is not supported (silu)`);
    const nHead = num('num_attention_heads');
    return validateConfig({
      family: 'llama', vocabSize: num('vocab_size'), blockSize: num('max_position_embeddings', 2048), nLayer: num('num_hidden_layers'),
      nHead, nKvHead: num('num_key_value_heads', nHead), nEmbd: num('hidden_size'), hiddenDim: num('intermediate_size'),
      bias: false, tiedEmbeddings: json.tie_word_embeddings === true, normEps: num('rms_norm_eps', 1e-6),
      ropeTheta: num('rope_theta', 10000), dropout: 0,
    });
  }
  throw new LlmError(`${source}: model_type '${String(type)}' is not supported (gpt2 or llama)`);
}

/** Write config.json and model.safetensors (float32) into dir, each atomically. */
export function exportHfCheckpoint(dir: string, cfg: ModelConfig, params: Map<string, Tensor>, opts: HfExportOptions = {}): void {
  const config = hfConfig(cfg, opts);
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const spec of parameterSpecs(cfg)) {
    const t = params.get(spec.name);
    if (!t) throw new LlmError(`cannot export: parameter '${spec.name}' is missing`);
    tensors[spec.name] = { dtype: 'F32', shape: [...t.shape], data: t.data };
  }
  if (cfg.family === 'gpt2' && !cfg.bias) addZeroBiases(cfg, tensors); // GPT2LMHeadModel always has biases
  saveSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
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
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  } catch {
    throw new LlmError(`${configPath} is not valid JSON`);
  }
  return configFromHf(json, configPath);
}

/** Read a transformers checkpoint directory into our config and parameter map. */
export function importHfCheckpoint(dir: string): { config: ModelConfig; params: Map<string, Tensor>; source: FileSourceMode } {
  const config = readHfConfig(dir);
  const { tensors: raw, source } = readWeights(dir);
  const params = new Map<string, Tensor>();
  const specs = parameterSpecs(config);
  for (const spec of specs) {
    const t = raw.get(spec.name) ?? raw.get(spec.name.replace(/^transformer\./, ''));
    if (!t) throw new LlmError(`${dir}: weights have no tensor '${spec.name}'`);
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new LlmError(`${dir}: tensor '${spec.name}' has shape [${t.shape.join(', ')}], config.json implies [${spec.shape.join(', ')}]`);
    }
    params.set(spec.name, new Tensor(t.data, spec.shape, true));
  }
  return { config, params, source };
}

function readWeights(dir: string): { tensors: Map<string, { shape: number[]; data: Float32Array }>; source: FileSourceMode } {
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  const files: string[] = [];
  if (existsSync(single)) files.push(single);
  else if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
    files.push(...new Set(Object.values(map).map((f) => join(dir, f))));
  } else {
    throw new LlmError(`${dir} has no model.safetensors (pytorch_model.bin is not supported: convert it to safetensors)`);
  }
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  let source: FileSourceMode = 'mmap';
  for (const f of files) {
    const st = loadSafetensors(f);
    if (st.source === 'read') source = 'read';
    for (const [name, t] of st.tensors) {
      if (!(t.data instanceof Float32Array)) continue; // integer buffers (e.g. masks) are not parameters
      out.set(name, { shape: t.shape, data: t.data });
    }
  }
  return { tensors: out, source };
}
