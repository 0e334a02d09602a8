/**
 * llm.ts models <-> GGUF files in llama.cpp's conventions.
 *
 *   exportGgufModel('model.gguf', config, params, { quant: 'q8_0', tokenizer });
 *   const { config, params, tokenizer } = importGgufModel('model.gguf');
 *
 * Architectures (general.architecture):
 *   llama: token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate,
 *          ffn_up, ffn_down}, output_norm, output (all '.weight'). Linear weights are (out, in)
 *          row-major = ggml dims [in, out], as ours. q/k rows are stored in llama.cpp's interleaved
 *          RoPE order (Meta's), so export applies hfToMetaRows (q with n_head, k with n_head_kv)
 *          and import metaToHfRows. Keys llama.{context_length, embedding_length, block_count,
 *          feed_forward_length, attention.head_count, attention.head_count_kv,
 *          attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count, vocab_size}.
 *   gpt2:  token_embd, position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm, ffn_up,
 *          ffn_down} (.weight and .bias), output_norm(.bias), output. Our Conv1D weights are
 *          (in, out); llama.cpp wants (out, in) row-major, i.e. ggml dims [in, out], so they are
 *          transposed. A model without biases gets zero biases (llama.cpp requires them), which
 *          import reads back as bias = true (same outputs). Keys gpt2.{context_length,
 *          embedding_length, block_count, feed_forward_length, attention.head_count,
 *          attention.head_count_kv, attention.layer_norm_epsilon}.
 *   Tied embeddings: output.weight is omitted (llama.cpp then uses token_embd); a file without
 *   output.weight imports as tied.
 *
 * Tensor types: --quant applies to every 2-D weight, embeddings included (token_embd,
 * position_embd, output), as llama.cpp's quantize does for the base type; a matrix whose rows are
 * not a multiple of 32 falls back to F16 for Q8_0/Q4_0. Norm weights and biases stay F32.
 * general.file_type is 0 (F32), 1 (F16), 7 (Q8_0) or 2 (Q4_0).
 *
 * Import dequantizes F16/BF16 (and, without keepQuantized, Q8_0/Q4_0) to F32 parameters. Before
 * anything is sized by the metadata, configFromGguf checks it against the tensors present:
 * block_count must equal the number of blk.N (0 .. block_count - 1), embedding_length, the
 * vocabulary, feed_forward_length, the key/value heads (and gpt2's context_length) must match
 * token_embd / blk.0 / position_embd dims; counts must be positive integers, rope.freq_base
 * positive and finite, the norm epsilon in (0, 0.1] (the messages name the GGUF key). A Llama
 * context length sizes nothing at load. A token list must have one token per token_embd row, as
 * llama.cpp requires. Every tensor's dims are checked against the configuration the metadata
 * implies, and its offset + size against the file, before any of its bytes are used; a type we
 * cannot read is named in ggml's terms (I32, Q4_K, ...). The file is memory-mapped where the native
 * addon can (file-source.ts): F32 tensors stored as we use them (4-byte aligned, no transpose or
 * RoPE row permutation) and quantized blocks kept as they are become views into the mapping;
 * only converted tensors are copied.
 *
 * Tokenizer metadata: SentencePiece -> tokenizer.ggml.model 'llama' (tokens, scores, token_type,
 * bos/eos/unknown ids, add_bos/eos, add_space_prefix); byte-level BPE -> 'gpt2' (tokens in GPT-2's
 * byte-level alphabet, merges "a b", token_type 1 normal / 3 control, pre from the split pattern:
 * gpt2 -> 'gpt-2', cl100k -> 'llama-bpe', o200k -> 'gpt-4o'; '<|endoftext|>' becomes bos/eos when the
 * tokenizer names none, GPT-2's convention). The token list is padded to the
 * model's vocabulary with '[PADn]' tokens of type 5 (unused). Char tokenizers -> 'llama' with one
 * NORMAL piece per character (' ' written '▁'; see tokenizer/gguf-char.ts), which llama.cpp
 * encodes and decodes character by character, and which tokenizerFromGguf reads back as a
 * CharTokenizer. BPE vocabularies without a merge list (tiktoken ranks) are refused.
 */
import { headDim, validateConfig, type ModelConfig } from '../model/config.js';
import { Tensor } from '../tensor/index.js';
import { bytesToTokenText } from '../tokenizer/bytes-to-unicode.js';
import type { BpeTokenizer } from '../tokenizer/bpe.js';
import { bpeFromGguf, GGUF_PRE_TOKENIZERS } from '../tokenizer/gguf-bpe.js';
import type { CharTokenizer } from '../tokenizer/char.js';
import { charFromGguf, charGgufMetadata } from '../tokenizer/gguf-char.js';
import { sentencePieceFromGguf } from '../tokenizer/gguf-sentencepiece.js';
import { SPLIT_PATTERNS, type SplitPattern } from '../tokenizer/pretokenize.js';
import type { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { openFileSource, type FileSourceMode } from './file-source.js';
import { describeGgufValue, GGML_TYPES, GgufArrayRef, ggmlTypeLabel, readGguf, type Gguf, type GgufTensorInfo, type GgufValue } from './gguf.js';
import { ggufMeta, writeGguf, type GgufTensorToWrite, type GgufWriteValue } from './gguf-write.js';
import { hfToMetaRows, metaToHfRowsInPlace } from './llama2c.js';
import type { QuantizedWeight } from '../model/quantized.js';
import { quantTypeOfGgml } from '../model/quantized.js';
import { decodeTensor, encodeTensor, GgmlType, ggmlTensorBytes, ggmlTypeName, isSupportedType, QK } from './quant.js';

export type GgufQuant = 'f32' | 'f16' | 'q8_0' | 'q4_0';
export const GGUF_QUANTS: readonly GgufQuant[] = ['f32', 'f16', 'q8_0', 'q4_0'];

const QUANT_TYPE: Record<GgufQuant, GgmlType> = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0 };
/** llama.cpp's llama_ftype numbers */
const FILE_TYPE: Record<GgufQuant, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 };

export interface GgufExportOptions {
  /** type of the 2-D weights (default f32) */
  quant?: GgufQuant;
  /** general.name */
  name?: string;
  /** written as tokenizer.ggml.* metadata; omit for a file without a vocabulary */
  tokenizer?: Tokenizer | null;
  /** the model's chat template (Jinja source), written as tokenizer.chat_template */
  chatTemplate?: string;
}

export interface GgufExportResult {
  bytes: number;
  tensors: { name: string; type: string; dims: number[] }[];
}

/** How one of our parameters is stored in the GGUF file. */
interface Entry {
  gguf: string;
  ours: string;
  /** our (HF) shape */
  shape: number[];
  /** ggml dims in the file */
  dims: number[];
  transform: 'copy' | 'transpose' | { permuteHeads: number };
  /** zero tensor written for llama.cpp, not one of our parameters (gpt2 without biases) */
  zeroFill?: boolean;
}

function layout(cfg: ModelConfig): Entry[] {
  const C = cfg.nEmbd;
  const H = cfg.hiddenDim;
  const kv = cfg.nKvHead * headDim(cfg);
  const V = cfg.vocabSize;
  const out: Entry[] = [];
  const copy = (gguf: string, ours: string, shape: number[], zeroFill = false): void => {
    out.push({ gguf, ours, shape, dims: [...shape].reverse(), transform: 'copy', zeroFill });
  };
  if (cfg.family === 'llama') {
    copy('token_embd.weight', 'model.embed_tokens.weight', [V, C]);
    for (let l = 0; l < cfg.nLayer; l++) {
      const b = `blk.${l}`;
      const p = `model.layers.${l}`;
      copy(`${b}.attn_norm.weight`, `${p}.input_layernorm.weight`, [C]);
      out.push({ gguf: `${b}.attn_q.weight`, ours: `${p}.self_attn.q_proj.weight`, shape: [C, C], dims: [C, C], transform: { permuteHeads: cfg.nHead } });
      out.push({ gguf: `${b}.attn_k.weight`, ours: `${p}.self_attn.k_proj.weight`, shape: [kv, C], dims: [C, kv], transform: { permuteHeads: cfg.nKvHead } });
      copy(`${b}.attn_v.weight`, `${p}.self_attn.v_proj.weight`, [kv, C]);
      copy(`${b}.attn_output.weight`, `${p}.self_attn.o_proj.weight`, [C, C]);
      copy(`${b}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`, [C]);
      copy(`${b}.ffn_gate.weight`, `${p}.mlp.gate_proj.weight`, [H, C]);
      copy(`${b}.ffn_up.weight`, `${p}.mlp.up_proj.weight`, [H, C]);
      copy(`${b}.ffn_down.weight`, `${p}.mlp.down_proj.weight`, [C, H]);
    }
    copy('output_norm.weight', 'model.norm.weight', [C]);
  } else {
    const noBias = !cfg.bias;
    copy('token_embd.weight', 'transformer.wte.weight', [V, C]);
    copy('position_embd.weight', 'transformer.wpe.weight', [cfg.blockSize, C]);
    const norm = (gguf: string, ours: string): void => {
      copy(`${gguf}.weight`, `${ours}.weight`, [C]);
      copy(`${gguf}.bias`, `${ours}.bias`, [C], noBias);
    };
    // Conv1D (in, out) -> row-major (out, in): ggml dims [in, out] = our shape
    const conv = (gguf: string, ours: string, inDim: number, outDim: number): void => {
      out.push({ gguf: `${gguf}.weight`, ours: `${ours}.weight`, shape: [inDim, outDim], dims: [inDim, outDim], transform: 'transpose' });
      copy(`${gguf}.bias`, `${ours}.bias`, [outDim], noBias);
    };
    for (let l = 0; l < cfg.nLayer; l++) {
      const b = `blk.${l}`;
      const p = `transformer.h.${l}`;
      norm(`${b}.attn_norm`, `${p}.ln_1`);
      conv(`${b}.attn_qkv`, `${p}.attn.c_attn`, C, C + 2 * kv);
      conv(`${b}.attn_output`, `${p}.attn.c_proj`, C, C);
      norm(`${b}.ffn_norm`, `${p}.ln_2`);
      conv(`${b}.ffn_up`, `${p}.mlp.c_fc`, C, H);
      conv(`${b}.ffn_down`, `${p}.mlp.c_proj`, H, C);
    }
    norm('output_norm', 'transformer.ln_f');
  }
  if (!cfg.tiedEmbeddings) copy('output.weight', 'lm_head.weight', [V, C]);
  return out;
}

function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

function tensorType(e: Entry, quant: GgufQuant): GgmlType {
  if (e.dims.length < 2) return GgmlType.F32;
  const t = QUANT_TYPE[quant];
  if ((t === GgmlType.Q8_0 || t === GgmlType.Q4_0) && e.dims[0] % QK !== 0) return GgmlType.F16;
  return t;
}

/** The GGUF metadata of the model's architecture and hyperparameters. */
export function modelGgufMetadata(cfg: ModelConfig, quant: GgufQuant, name: string): [string, GgufWriteValue][] {
  const a = cfg.family;
  const m: [string, GgufWriteValue][] = [
    ['general.architecture', ggufMeta.string(a)],
    ['general.name', ggufMeta.string(name)],
    ['general.file_type', ggufMeta.u32(FILE_TYPE[quant])],
  ];
  if (quant === 'q8_0' || quant === 'q4_0') m.push(['general.quantization_version', ggufMeta.u32(2)]);
  m.push(
    [`${a}.context_length`, ggufMeta.u32(cfg.blockSize)],
    [`${a}.embedding_length`, ggufMeta.u32(cfg.nEmbd)],
    [`${a}.block_count`, ggufMeta.u32(cfg.nLayer)],
    [`${a}.feed_forward_length`, ggufMeta.u32(cfg.hiddenDim)],
    [`${a}.attention.head_count`, ggufMeta.u32(cfg.nHead)],
    [`${a}.attention.head_count_kv`, ggufMeta.u32(cfg.nKvHead)],
  );
  if (a === 'llama') {
    m.push(
      ['llama.attention.layer_norm_rms_epsilon', ggufMeta.f32(cfg.normEps)],
      ['llama.rope.freq_base', ggufMeta.f32(cfg.ropeTheta)],
      ['llama.rope.dimension_count', ggufMeta.u32(headDim(cfg))],
      ['llama.vocab_size', ggufMeta.u32(cfg.vocabSize)],
    );
  } else {
    m.push(['gpt2.attention.layer_norm_epsilon', ggufMeta.f32(cfg.normEps)]);
  }
  return m;
}

const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const UNUSED = 5;

/** tokenizer.ggml.* metadata for our tokenizer, padded to vocabSize tokens. */
export function tokenizerGgufMetadata(tok: Tokenizer, vocabSize: number): [string, GgufWriteValue][] {
  if (tok.vocabSize > vocabSize) throw new LlmError(`the tokenizer has ${tok.vocabSize} tokens but the model only ${vocabSize}`);
  const m: [string, GgufWriteValue][] = [];
  const ids = (): void => {
    if (tok.bosId !== undefined && tok.bosId !== null) m.push(['tokenizer.ggml.bos_token_id', ggufMeta.u32(tok.bosId)]);
    if (tok.eosId !== undefined && tok.eosId !== null) m.push(['tokenizer.ggml.eos_token_id', ggufMeta.u32(tok.eosId)]);
  };
  if (tok.kind === 'sentencepiece') {
    const sp = tok as SentencePieceTokenizer;
    const n = sp.pieces.length;
    const tokens = [...sp.pieces];
    const scores = new Float32Array(vocabSize);
    scores.set(sp.scores.subarray(0, n));
    const types = new Int32Array(vocabSize);
    for (let i = 0; i < vocabSize; i++) types[i] = i < n ? sp.types[i] : UNUSED;
    for (let i = n; i < vocabSize; i++) tokens.push(`[PAD${i}]`);
    m.push(['tokenizer.ggml.model', ggufMeta.string('llama')], ['tokenizer.ggml.pre', ggufMeta.string('default')]);
    m.push(['tokenizer.ggml.tokens', ggufMeta.strings(tokens)], ['tokenizer.ggml.scores', ggufMeta.f32s(scores)], ['tokenizer.ggml.token_type', ggufMeta.i32s(types)]);
    ids();
    const unk = sp.unkId ?? types.indexOf(UNKNOWN);
    if (unk >= 0) m.push(['tokenizer.ggml.unknown_token_id', ggufMeta.u32(unk)]);
    m.push(
      ['tokenizer.ggml.add_bos_token', ggufMeta.bool(sp.addBos)],
      ['tokenizer.ggml.add_eos_token', ggufMeta.bool(sp.addEos)],
      ['tokenizer.ggml.add_space_prefix', ggufMeta.bool(sp.addDummyPrefix)],
      ['tokenizer.ggml.remove_extra_whitespaces', ggufMeta.bool(sp.removeExtraWhitespaces)],
    );
    return m;
  }
  if (tok.kind === 'bpe') {
    const bpe = tok as BpeTokenizer;
    const merges = bpe.mergeList();
    if (!merges) throw new LlmError('this BPE tokenizer ranks merges by token id (tiktoken ranks) and has no merge list, which GGUF vocabularies need');
    const pre = preTokenizerName(bpe);
    const json = bpe.toJSON();
    const specialById = new Map<number, string>();
    for (const [text, id] of Object.entries(bpe.specialTokens)) specialById.set(id, text);
    const tokens: string[] = new Array(vocabSize);
    const types = new Int32Array(vocabSize);
    for (let i = 0; i < vocabSize; i++) {
      const b64 = i < json.tokens.length ? json.tokens[i] : '';
      if (b64 !== '') {
        tokens[i] = bytesToTokenText(Buffer.from(b64, 'base64'));
        types[i] = NORMAL;
      } else if (specialById.has(i)) {
        tokens[i] = specialById.get(i)!;
        types[i] = CONTROL;
      } else {
        tokens[i] = `[PAD${i}]`;
        types[i] = UNUSED;
      }
    }
    const mergeTexts = merges.map(([a, b]) => {
      if (types[a] !== NORMAL || types[b] !== NORMAL) throw new LlmError(`BPE merge (${a}, ${b}) names a token without bytes`);
      return `${tokens[a]} ${tokens[b]}`;
    });
    m.push(['tokenizer.ggml.model', ggufMeta.string('gpt2')], ['tokenizer.ggml.pre', ggufMeta.string(pre)]);
    m.push(['tokenizer.ggml.tokens', ggufMeta.strings(tokens)], ['tokenizer.ggml.token_type', ggufMeta.i32s(types)], ['tokenizer.ggml.merges', ggufMeta.strings(mergeTexts)]);
    ids();
    // GPT-2's convention: <|endoftext|> is both bos and eos (llama.cpp would otherwise assume GPT-2's id 50256)
    const eot = bpe.specialTokens['<|endoftext|>'];
    if (eot !== undefined) {
      if (bpe.bosId === undefined) m.push(['tokenizer.ggml.bos_token_id', ggufMeta.u32(eot)]);
      if (bpe.eosId === undefined) m.push(['tokenizer.ggml.eos_token_id', ggufMeta.u32(eot)]);
    }
    m.push(['tokenizer.ggml.add_bos_token', ggufMeta.bool(false)]);
    return m;
  }
  if (tok.kind === 'char') return charGgufMetadata(tok as CharTokenizer, vocabSize);
  throw new LlmError(
    `a '${tok.kind}' tokenizer cannot be stored in GGUF (llama.cpp reads SentencePiece 'llama' and byte-level BPE 'gpt2' vocabularies); train a BPE tokenizer, or export without a vocabulary (llmts convert --no-vocab)`,
  );
}

function preTokenizerName(bpe: BpeTokenizer): string {
  const source = (p: SplitPattern | string): string => (Object.hasOwn(SPLIT_PATTERNS, p) ? SPLIT_PATTERNS[p as SplitPattern] : p);
  const mine = source(bpe.pattern);
  const candidates = Object.entries(GGUF_PRE_TOKENIZERS).filter(([, spec]) => source(spec.pattern) === mine);
  const exact = candidates.find(([, spec]) => (spec.ignoreMerges ?? false) === bpe.ignoreMerges);
  const found = exact ?? candidates[0];
  if (!found) throw new LlmError(`the BPE split pattern '${bpe.pattern.slice(0, 40)}' has no llama.cpp pre-tokenizer name (gpt2, cl100k and o200k do)`);
  return found[0];
}

/** The tensors to write for a model (each encoded only when the writer asks for it). */
export function ggufModelTensors(cfg: ModelConfig, params: Map<string, Tensor>, quant: GgufQuant): GgufTensorToWrite[] {
  const hd = headDim(cfg);
  return layout(cfg).map((e) => {
    const type = tensorType(e, quant);
    const t = params.get(e.ours);
    if (!e.zeroFill) {
      if (!t) throw new LlmError(`cannot export: parameter '${e.ours}' is missing`);
      if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        throw new LlmError(`cannot export: parameter '${e.ours}' has shape [${t.shape.join(', ')}], the config needs [${e.shape.join(', ')}]`);
      }
    }
    const data = (): Uint8Array => {
      if (e.zeroFill) return new Uint8Array(ggmlTensorBytes(type, e.dims));
      let x = t!.data;
      if (e.transform === 'transpose') x = transpose(x, e.shape[0], e.shape[1]);
      else if (e.transform !== 'copy') x = hfToMetaRows(x, e.transform.permuteHeads, hd, e.shape[1]);
      return encodeTensor(type, x);
    };
    return { name: e.gguf, dims: e.dims, type, data };
  });
}

/** Write config + params (+ tokenizer) as a llama.cpp GGUF file, atomically. */
export function exportGgufModel(path: string, cfg: ModelConfig, params: Map<string, Tensor>, opts: GgufExportOptions = {}): GgufExportResult {
  const quant = opts.quant ?? 'f32';
  if (!GGUF_QUANTS.includes(quant)) throw new LlmError(`unknown GGUF quantization '${String(quant)}' (choose one of: ${GGUF_QUANTS.join(', ')})`);
  if (cfg.family === 'llama' && cfg.bias) throw new LlmError('a Llama model with biases has no llama.cpp equivalent');
  const metadata = modelGgufMetadata(cfg, quant, opts.name ?? `llmts-${cfg.family}`);
  if (opts.tokenizer) metadata.push(...tokenizerGgufMetadata(opts.tokenizer, cfg.vocabSize));
  if (opts.chatTemplate !== undefined) metadata.push(['tokenizer.chat_template', ggufMeta.string(opts.chatTemplate)]);
  const tensors = ggufModelTensors(cfg, params, quant);
  const bytes = writeGguf(path, { metadata, tensors });
  return { bytes, tensors: tensors.map((t) => ({ name: t.name, type: ggmlTypeName(t.type), dims: t.dims })) };
}

/** A float32 metadata value as the short decimal it was written from (1e-5, not 9.99999974e-6). */
function shortFloat(v: number): number {
  const short = Number(v.toPrecision(7));
  return Math.fround(short) === Math.fround(v) ? short : v;
}

/** A count (layers, heads, sizes): a positive integer. */
function count(g: Gguf, key: string, fallback?: number): number {
  const v = g.metadata.get(key) ?? fallback;
  if (v === undefined) throw new LlmError(`${g.path}: GGUF metadata '${key}' is missing`);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new LlmError(`${g.path}: GGUF metadata ${key} = ${shown(v)}: must be a positive integer`);
  }
  return v;
}

/** A metadata value in a message: a number as it is, anything else described ('a string (1)'). */
const shown = (v: GgufValue): string => (typeof v === 'number' ? String(v) : describeGgufValue(v));

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** Epsilons of the norms: llama.cpp's models use 1e-6 to 1e-5; anything above 0.1 is not a real model. */
const MAX_NORM_EPS = 0.1;

/** A float hyperparameter from the metadata, checked where it is read (the message names the GGUF key). */
function float(g: Gguf, key: string, fallback: number, ok: (v: number) => boolean, must: string): number {
  const v = g.metadata.get(key) ?? fallback;
  if (typeof v !== 'number' || !ok(v)) throw new LlmError(`${g.path}: GGUF metadata ${key} = ${shown(v)}: must be ${must}`);
  return shortFloat(v);
}

/**
 * The hyperparameters that size tensors, checked against the tensors present before anything is
 * built: block_count = the number of blk.N (N = 0 .. block_count - 1), embedding_length and the
 * vocabulary = token_embd's dims, feed_forward_length = blk.0.ffn_up's, head_count_kv by
 * blk.0.attn_k (llama) or blk.0.attn_qkv (gpt2), gpt2's context_length = position_embd's rows.
 * A missing tensor is reported by importGgufModel; a Llama context length sizes nothing here.
 */
function checkAgainstTensors(g: Gguf, arch: 'llama' | 'gpt2', byName: Map<string, GgufTensorInfo>, c: { nLayer: number; nEmbd: number; nHead: number; nKvHead: number; hiddenDim: number; blockSize: number; vocabSize: number }): void {
  const fail = (msg: string): never => {
    throw new LlmError(`${g.path}: ${msg}`);
  };
  const blocks = new Set<number>();
  let maxBlock = -1;
  for (const t of g.tensors) {
    const m = /^blk\.(\d+)\./.exec(t.name);
    if (!m) continue;
    const b = Number(m[1]);
    blocks.add(b);
    if (b > maxBlock) maxBlock = b;
  }
  if (maxBlock >= c.nLayer) {
    fail(`GGUF metadata ${arch}.block_count = ${c.nLayer}, but the file has tensors of blk.${maxBlock} (${plural(blocks.size, 'block')} in all): the layer count must match the tensors`);
  }
  if (blocks.size !== c.nLayer) {
    const which = blocks.size === 0 ? '' : ` (blk.0 to blk.${maxBlock}${blocks.size === maxBlock + 1 ? '' : ', some missing'})`;
    fail(`GGUF metadata ${arch}.block_count = ${c.nLayer}, but the file has tensors of ${plural(blocks.size, 'block')}${which}: the layer count must match the tensors`);
  }
  const dimsOf = (name: string): number[] | undefined => byName.get(name)?.dims;
  const embd = dimsOf('token_embd.weight')!;
  if (embd[0] !== c.nEmbd) fail(`GGUF metadata ${arch}.embedding_length = ${c.nEmbd}, but token_embd.weight has dims [${embd.join(', ')}] (rows of ${embd[0]})`);
  const vocab = g.metadata.get(`${arch}.vocab_size`);
  if (vocab !== undefined && vocab !== c.vocabSize) fail(`GGUF metadata ${arch}.vocab_size = ${shown(vocab)}, but token_embd.weight has ${c.vocabSize} rows`);
  const up = dimsOf('blk.0.ffn_up.weight');
  if (up && up[1] !== c.hiddenDim) fail(`GGUF metadata ${arch}.feed_forward_length = ${c.hiddenDim}, but blk.0.ffn_up.weight has dims [${up.join(', ')}]`);
  if (c.nEmbd % c.nHead === 0 && c.nHead % c.nKvHead === 0) {
    const kv = c.nKvHead * (c.nEmbd / c.nHead);
    const k = dimsOf(arch === 'llama' ? 'blk.0.attn_k.weight' : 'blk.0.attn_qkv.weight');
    const want = arch === 'llama' ? kv : c.nEmbd + 2 * kv;
    if (k && k[1] !== want) {
      fail(`GGUF metadata ${arch}.attention.head_count = ${c.nHead}, head_count_kv = ${c.nKvHead} imply ${want} ${arch === 'llama' ? 'key' : 'q/k/v'} rows, but blk.0.${arch === 'llama' ? 'attn_k' : 'attn_qkv'}.weight has dims [${k.join(', ')}]`);
    }
  }
  const pos = dimsOf('position_embd.weight');
  if (arch === 'gpt2' && pos && pos[1] !== c.blockSize) fail(`GGUF metadata gpt2.context_length = ${c.blockSize}, but position_embd.weight has dims [${pos.join(', ')}]`);
}

/** Our configuration from a llama/gpt2 GGUF file's metadata and tensor shapes. */
export function configFromGguf(g: Gguf): ModelConfig {
  const arch = g.metadata.get('general.architecture');
  if (arch !== 'llama' && arch !== 'gpt2') {
    throw new LlmError(`${g.path}: GGUF architecture '${String(arch)}' is not supported (llama or gpt2)`);
  }
  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  const embd = byName.get('token_embd.weight');
  if (!embd || embd.dims.length !== 2) throw new LlmError(`${g.path}: GGUF file has no 2-D token_embd.weight`);
  const nHead = count(g, `${arch}.attention.head_count`);
  const base = {
    vocabSize: embd.dims[1], blockSize: count(g, `${arch}.context_length`), nLayer: count(g, `${arch}.block_count`), nHead,
    nKvHead: count(g, `${arch}.attention.head_count_kv`, nHead), nEmbd: count(g, `${arch}.embedding_length`), hiddenDim: count(g, `${arch}.feed_forward_length`),
    tiedEmbeddings: !byName.has('output.weight'), dropout: 0,
  };
  checkAgainstTensors(g, arch, byName, base);
  const eps = (key: string): number => float(g, key, 1e-5, (v) => v > 0 && v <= MAX_NORM_EPS, `a number in (0, ${MAX_NORM_EPS}]`);
  let cfg: ModelConfig;
  try {
    if (arch === 'llama') {
      cfg = validateConfig({
        family: 'llama', ...base, bias: false, normEps: eps('llama.attention.layer_norm_rms_epsilon'),
        ropeTheta: float(g, 'llama.rope.freq_base', 10000, (v) => v > 0 && Number.isFinite(v), 'a positive finite number'),
      });
      const rotDims = g.metadata.get('llama.rope.dimension_count');
      if (rotDims !== undefined && rotDims !== headDim(cfg)) {
        throw new LlmError(`partial rotary embeddings (rope.dimension_count ${String(rotDims)} < head size ${headDim(cfg)}) are not supported`);
      }
      if (g.metadata.has('llama.rope.scaling.type') && g.metadata.get('llama.rope.scaling.type') !== 'none') throw new LlmError('RoPE scaling is not supported yet');
    } else {
      cfg = validateConfig({
        family: 'gpt2', ...base, bias: byName.has('blk.0.attn_norm.bias'), normEps: eps('gpt2.attention.layer_norm_epsilon'), ropeTheta: 10000,
      });
    }
  } catch (err) {
    if (err instanceof LlmError && err.message.startsWith(g.path)) throw err;
    throw new LlmError(`${g.path}: ${(err as Error).message}`);
  }
  return cfg;
}

export interface GgufModel {
  config: ModelConfig;
  /** float parameters (without the names in `quantized`) */
  params: Map<string, Tensor>;
  /**
   * With keepQuantized: the Q8_0/Q4_0 Linear weights (and an untied lm_head) as raw blocks, rows =
   * outputs (pass to `new Transformer(config, params, { quantized })`); empty otherwise.
   */
  quantized: Map<string, QuantizedWeight>;
  /** from the tokenizer.ggml.* metadata; null when the file has none */
  tokenizer: Tokenizer | null;
  gguf: Gguf;
  /** how the tensors were read: 'mmap' (float32 tensors and raw blocks are views into the mapped file) or 'read' */
  source: FileSourceMode;
}

/**
 * The tokenizer stored in a GGUF file's metadata, or null. A 'llama' vocabulary of single
 * characters (what a char tokenizer is exported as) comes back as a CharTokenizer.
 */
export function tokenizerFromGguf(g: Gguf): Tokenizer | null {
  const model = g.metadata.get('tokenizer.ggml.model');
  if (model === undefined) return null;
  if (model === 'llama') return charFromGguf(g) ?? sentencePieceFromGguf(g);
  if (model === 'gpt2') return bpeFromGguf(g);
  throw new LlmError(`${g.path}: tokenizer.ggml.model '${String(model)}' is not supported (llama or gpt2)`);
}

export interface GgufImportOptions {
  /** read the tokenizer from the metadata (default true) */
  tokenizer?: boolean;
  /**
   * Keep Q8_0/Q4_0 Linear weights, the token embedding table and an untied lm_head quantized,
   * for inference with the quantized kernels (Backend.matmulQuantized; the embedding lookup
   * dequantizes only the looked-up rows, and a tied head multiplies by the same blocks). Their
   * GGUF rows are already rows of outputs: Llama's (out, in) as stored (q/k rows are permuted
   * back from Meta's RoPE order as whole block rows), GPT-2's Conv1D weights were transposed by
   * the exporter, so the file's rows are (out, in) too, and token_embd's rows are tokens; all are
   * kept as they are. position_embd, norms and biases are dequantized to float32.
   */
  keepQuantized?: boolean;
}

const QUANTIZABLE = /(\.attn_(q|k|v|qkv|output)|\.ffn_(gate|up|down))\.weight$|^(output|token_embd)\.weight$/;

/**
 * Read a llama/gpt2 GGUF model, dequantizing every tensor to float32, or with keepQuantized
 * keeping the Q8_0/Q4_0 matrices as blocks (see GgufImportOptions).
 */
export function importGgufModel(path: string, opts: GgufImportOptions = {}): GgufModel {
  const g = readGguf(path);
  const config = configFromGguf(g);
  const tokens = g.metadata.get('tokenizer.ggml.tokens');
  if (opts.tokenizer !== false && (Array.isArray(tokens) || tokens instanceof GgufArrayRef) && tokens.length !== config.vocabSize) {
    // llama.cpp sizes token_embd by the token list and refuses any other shape
    throw new LlmError(`${path}: GGUF metadata tokenizer.ggml.tokens has ${tokens.length} tokens, but token_embd.weight has ${config.vocabSize} rows; they must be equal`);
  }
  const byName = new Map<string, GgufTensorInfo>(g.tensors.map((t) => [t.name, t]));
  const params = new Map<string, Tensor>();
  const quantized = new Map<string, QuantizedWeight>();
  const hd = headDim(config);
  const src = openFileSource(path, 'GGUF');
  try {
    for (const e of layout(config)) {
      if (e.zeroFill) continue; // gpt2 without biases: nothing to read
      const info = byName.get(e.gguf);
      if (!info) throw new LlmError(`${path}: GGUF file has no tensor '${e.gguf}' (needed by its ${config.family} configuration)`);
      if (info.dims.length !== e.dims.length || info.dims.some((d, i) => d !== e.dims[i])) {
        throw new LlmError(`${path}: tensor '${e.gguf}' has dims [${info.dims.join(', ')}], the metadata implies [${e.dims.join(', ')}]`);
      }
      if (!isSupportedType(info.type)) {
        throw new LlmError(`${path}: GGUF tensor '${e.gguf}' has ggml type ${GGML_TYPES.has(info.type) ? `${ggmlTypeLabel(info.type)} (${info.type})` : ggmlTypeLabel(info.type)}, which llm.ts cannot read (it reads F32, F16, BF16, Q8_0 and Q4_0)`);
      }
      const size = ggmlTensorBytes(info.type, info.dims);
      const start = g.dataOffset + info.offset;
      if (start + size > g.fileSize || start + size > src.size) {
        throw new LlmError(`${path}: tensor '${e.gguf}' (${size} bytes at offset ${info.offset}) extends past the end of the file (truncated?)`);
      }
      const what = `tensor '${e.gguf}'`;
      const qtype = opts.keepQuantized && QUANTIZABLE.test(e.gguf) ? quantTypeOfGgml(info.type) : null;
      if (qtype) {
        // blocks as they are in the file (a view into the mapping), or q/k rows reordered into a copy
        const cols = info.dims[0];
        const rows = info.dims[1];
        const blocks = typeof e.transform === 'object'
          ? metaToHfRowsInPlace(src.copy(start, size, what), e.transform.permuteHeads, hd, size / rows)
          : src.bytes(start, size, what);
        quantized.set(e.ours, { type: qtype, rows, cols, blocks });
        continue;
      }
      const n = e.shape.reduce((a, b) => a * b, 1);
      let x: Float32Array;
      if (info.type === GgmlType.F32 && e.transform === 'copy') {
        x = src.f32(start, n, what); // no conversion: a view into the mapping when there is one
      } else {
        // converted: read into a private buffer (the mapped pages stay untouched), then convert
        const raw = src.copy(start, size, what);
        x = info.type === GgmlType.F32 ? new Float32Array(raw.buffer, 0, n) : decodeTensor(info.type, raw, n);
        if (e.transform === 'transpose') x = transpose(x, e.shape[1], e.shape[0]);
        else if (e.transform !== 'copy') x = metaToHfRowsInPlace(x, e.transform.permuteHeads, hd, e.shape[1]); // x is our own buffer
      }
      params.set(e.ours, new Tensor(x, e.shape, true));
    }
  } finally {
    src.close();
  }
  const tokenizer = opts.tokenizer === false ? null : tokenizerFromGguf(g);
  return { config, params, quantized, tokenizer, gguf: g, source: src.mode };
}
