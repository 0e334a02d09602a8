/**
 * llama2.c model file writer: the inverse of llama2c.ts's reader.
 *
 *   writeLlama2c('model.bin', config, params, { version: 0 });   // what llama2.c's run.c reads
 *   writeLlama2c('model-v1.bin', config, params, { version: 1 }); // export.py --version 1 layout
 *
 * Layouts (see llama2c.ts for the field-by-field description, both little-endian float32):
 *
 *   version 0 (legacy): 7 int32 = dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 *     seq_len, with vocab_size NEGATIVE when the classifier is not shared with the embedding;
 *     then token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, the RoPE
 *     tables freq_cis_real and freq_cis_imag (seq_len, head_size/2) each, and wcls if unshared.
 *     The tables are computed as export.py's precompute_freqs_cis does: freqs[i] =
 *     1 / 10000^(2i/head_size), t = 0..seq_len-1, real = cos(t*freqs[i]), imag = sin(t*freqs[i]).
 *     run.c (and our reader) skip them, but their size is part of the layout.
 *   version 1: a 256-byte header = uint32 magic "ak42", int32 1, the same 7 int32 (vocab_size
 *     positive), uint8 shared_classifier, zeros; then rms_att, rms_ffn, rms_final,
 *     token_embedding, wq, wk, wv, wo, w1, w2, w3, wcls if unshared.
 *
 * Our q/k projection rows are in Hugging Face's rotate-half order; llama2.c rotates interleaved
 * pairs (Meta's order), so wq/wk rows are permuted back with hfToMetaRows. Only what llama2.c
 * can represent is written: the llama family without biases, RoPE theta 10000 and RMSNorm eps
 * 1e-5 (both hard-coded in run.c and assumed by our reader). The file is written atomically
 * (temp file + fsync + rename) from views of the parameters; only wq/wk are copied (permuted).
 */
import type { ModelConfig } from '../model/config.js';
import type { Tensor } from '../tensor/index.js';
import { writeFileAtomicParts } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import { hfToMetaRows, LLAMA2C_MAGIC } from './llama2c.js';

export interface Llama2cWriteOptions {
  /** 0: legacy header + RoPE tables (run.c's format); 1: export.py's 256-byte "ak42" header */
  version: 0 | 1;
}

/** run.c's constants (rmsnorm adds 1e-5f; RoPE uses powf(10000.0f, ...)). */
const LLAMA2C_NORM_EPS = 1e-5;
const LLAMA2C_ROPE_THETA = 10000;
const INT32_MAX = 2 ** 31 - 1;

/**
 * Throw an LlmError when `config` cannot be stored in a llama2.c file (GPT-2, biases, a RoPE
 * theta or norm eps other than run.c's, sizes beyond int32).
 */
export function checkLlama2cConfig(config: ModelConfig): void {
  const what = 'llama2.c files store';
  if (config.family !== 'llama') {
    throw new LlmError(`${what} Llama models only (RMSNorm, RoPE, SwiGLU); this is a ${config.family} model: convert it --to gguf or --to hf instead`);
  }
  if (config.bias) throw new LlmError(`${what} no biases, but this llama model has bias = true: convert it --to gguf or --to hf instead`);
  if (Math.fround(config.ropeTheta) !== Math.fround(LLAMA2C_ROPE_THETA)) {
    throw new LlmError(`${what} RoPE theta 10000 only (run.c hard-codes it), but this model has rope theta ${config.ropeTheta}: convert it --to gguf or --to hf instead`);
  }
  if (Math.fround(config.normEps) !== Math.fround(LLAMA2C_NORM_EPS)) {
    throw new LlmError(`${what} RMSNorm eps 1e-5 only (run.c hard-codes it), but this model has norm eps ${config.normEps}: convert it --to gguf or --to hf instead`);
  }
  const ints: [string, number][] = [
    ['dim', config.nEmbd], ['hidden_dim', config.hiddenDim], ['n_layers', config.nLayer], ['n_heads', config.nHead],
    ['n_kv_heads', config.nKvHead], ['vocab_size', config.vocabSize], ['seq_len', config.blockSize],
  ];
  for (const [name, v] of ints) {
    if (!Number.isInteger(v) || v <= 0 || v > INT32_MAX) throw new LlmError(`cannot write a llama2.c file: ${name} = ${v} must be a positive int32`);
  }
  if (config.nEmbd % config.nHead !== 0 || config.nHead % config.nKvHead !== 0 || (config.nEmbd / config.nHead) % 2 !== 0) {
    throw new LlmError(`cannot write a llama2.c file: dim ${config.nEmbd}, ${config.nHead} heads, ${config.nKvHead} kv heads do not give an even head size shared by whole kv groups`);
  }
}

/** export.py's freq_cis tables: real then imag, each (seq_len, head_size/2), as float32. */
export function llama2cRopeTables(headSize: number, seqLen: number): Float32Array {
  const half = headSize / 2;
  const out = new Float32Array(2 * seqLen * half);
  for (let i = 0; i < half; i++) {
    // computed in float32 as torch does: theta ** (arange(0, dim, 2) / dim)
    const freq = Math.fround(1 / Math.fround(Math.pow(LLAMA2C_ROPE_THETA, Math.fround((2 * i) / headSize))));
    for (let t = 0; t < seqLen; t++) {
      const angle = Math.fround(t * freq);
      out[t * half + i] = Math.cos(angle);
      out[seqLen * half + t * half + i] = Math.sin(angle);
    }
  }
  return out;
}

/** Write `params` (our Hugging Face names and layouts) as a llama2.c model file; returns its size. */
export function writeLlama2c(path: string, config: ModelConfig, params: Map<string, Tensor>, opts: Llama2cWriteOptions): { bytes: number } {
  const version = opts.version;
  if (version !== 0 && version !== 1) throw new LlmError(`llama2.c version must be 0 (legacy) or 1, got ${String(version)}`);
  checkLlama2cConfig(config);
  const { nEmbd: D, hiddenDim: H, nLayer: L, vocabSize: V, nHead, nKvHead } = config;
  const headSize = D / nHead;
  const kvDim = headSize * nKvHead;
  const shared = config.tiedEmbeddings;

  const get = (name: string, shape: number[]): Float32Array => {
    const t = params.get(name);
    if (!t) throw new LlmError(`cannot write a llama2.c file: parameter ${name} is missing (is this a complete llama model?)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new LlmError(`cannot write a llama2.c file: parameter ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    return t.data;
  };
  const perLayer = (name: string, shape: number[], fn?: (w: Float32Array) => Float32Array): Float32Array[] =>
    Array.from({ length: L }, (_, l) => {
      const w = get(`model.layers.${l}.${name}.weight`, shape);
      return fn ? fn(w) : w;
    });

  const emb = [get('model.embed_tokens.weight', [V, D])];
  const rmsAtt = perLayer('input_layernorm', [D]);
  const rmsFfn = perLayer('post_attention_layernorm', [D]);
  const wq = perLayer('self_attn.q_proj', [D, D], (w) => hfToMetaRows(w, nHead, headSize, D));
  const wk = perLayer('self_attn.k_proj', [kvDim, D], (w) => hfToMetaRows(w, nKvHead, headSize, D));
  const wv = perLayer('self_attn.v_proj', [kvDim, D]);
  const wo = perLayer('self_attn.o_proj', [D, D]);
  const w1 = perLayer('mlp.gate_proj', [H, D]);
  const w2 = perLayer('mlp.down_proj', [D, H]);
  const w3 = perLayer('mlp.up_proj', [H, D]);
  const rmsFinal = [get('model.norm.weight', [D])];
  const wcls = shared ? [] : [get('lm_head.weight', [V, D])];

  const ints = [D, H, L, nHead, nKvHead, shared || version === 1 ? V : -V, config.blockSize];
  let header: Buffer;
  let body: Float32Array[];
  if (version === 0) {
    header = Buffer.alloc(28);
    ints.forEach((v, i) => header.writeInt32LE(v, 4 * i));
    const rope = llama2cRopeTables(headSize, config.blockSize);
    body = [...emb, ...rmsAtt, ...wq, ...wk, ...wv, ...wo, ...rmsFfn, ...w1, ...w2, ...w3, ...rmsFinal, rope, ...wcls];
  } else {
    header = Buffer.alloc(256);
    header.writeUInt32LE(LLAMA2C_MAGIC, 0);
    header.writeInt32LE(1, 4);
    ints.forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
    header.writeUInt8(shared ? 1 : 0, 36);
    body = [...rmsAtt, ...rmsFfn, ...rmsFinal, ...emb, ...wq, ...wk, ...wv, ...wo, ...w1, ...w2, ...w3, ...wcls];
  }
  const parts: Uint8Array[] = [header, ...body.map((a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength))];
  writeFileAtomicParts(path, parts);
  return { bytes: parts.reduce((s, p) => s + p.byteLength, 0) };
}
