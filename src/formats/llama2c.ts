/**
 * llama2.c model files (karpathy/llama2.c, read by its run.c, written by its export.py).
 *
 *   const { config, params } = readLlama2c('stories15M.bin');
 *   const model = new Transformer(config, params);
 *
 * Two layouts, all little-endian, followed from export.py (legacy_export, version1_export) and run.c:
 *
 *   version 0 (legacy, export.py --version 0; what run.c reads):
 *     header: 7 int32 = dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *             (vocab_size < 0 means the classifier is NOT shared with the token embedding)
 *     float32: token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim),
 *              wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim),
 *              w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 *              freq_cis_real (seq_len, head_size/2), freq_cis_imag (same) -- skipped,
 *              wcls (vocab, dim) only when unshared
 *   version 1 (export.py --version 1): a 256-byte header = uint32 magic 0x616b3432 ("ak42"),
 *     int32 version = 1, the same 7 int32 (vocab_size always positive), uint8 shared_classifier,
 *     zero padding; then float32: rms_att (L, dim), rms_ffn (L, dim), rms_final (dim),
 *     token_embedding, wq, wk, wv, wo, w1, w2, w3 (all layers of each in turn), wcls if unshared.
 *     No RoPE tables.
 *   version 2 (Q8_0) is rejected.
 *
 * Linear weights are (out, in) in both, as ours. llama2.c applies RoPE to interleaved pairs
 * (2i, 2i+1) of each head (Meta's convention); our model rotates (i, i + head_size/2) (Hugging
 * Face's), so wq/wk rows are permuted exactly as HF's convert_llama_weights_to_hf.py `permute`
 * does for Meta checkpoints: hf_row[h, j*half + i] = meta_row[h, 2i + j] (i < half, j in {0, 1}).
 * w1 -> gate_proj, w3 -> up_proj, w2 -> down_proj; rope theta 10000, RMSNorm eps 1e-5 (run.c's).
 */
import { validateConfig, type ModelConfig } from '../model/config.js';
import { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import { requireRegularFile } from '../util/regular-file.js';
import { openFileSource, type FileSource, type FileSourceMode } from './file-source.js';

export const LLAMA2C_MAGIC = 0x616b3432; // "ak42" read as a little-endian uint32
const V1_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 28;
/** Largest accepted seq_len (context length); beyond any released model, keeps RoPE tables sane. */
const MAX_SEQ_LEN = 1 << 20;
/** Largest accepted single dimension. */
const MAX_DIM = 1 << 24;

export interface Llama2cHeader {
  version: 0 | 1;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  /** bytes before the first weight */
  headerBytes: number;
}

export function readLlama2c(path: string): { config: ModelConfig; params: Map<string, Tensor>; source: FileSourceMode } {
  requireRegularFile(path, 'llama2.c model file');
  const src = openFileSource(path, 'llama2.c model');
  try {
    const size = src.size;
    const head = Buffer.from(src.copy(0, Math.min(V1_HEADER_BYTES, size), 'the header'));
    const h = parseLlama2cHeader(head, size, path);
    const config = llama2cConfig(h, path);
    return { config, params: readWeights(src, h, path), source: src.mode };
  } finally {
    src.close();
  }
}

/** Parse and check the header against the file size; `head` holds the first min(256, size) bytes. */
export function parseLlama2cHeader(head: Buffer, fileSize: number, path: string): Llama2cHeader {
  if (fileSize < LEGACY_HEADER_BYTES) {
    throw new LlmError(`${path}: llama2.c model file is only ${fileSize} bytes (a header needs ${LEGACY_HEADER_BYTES})`);
  }
  const magic = head.readUInt32LE(0);
  let version: 0 | 1;
  let ints: number[];
  let shared: boolean;
  let headerBytes: number;
  if (magic === LLAMA2C_MAGIC) {
    const v = head.readInt32LE(4);
    if (v !== 1) {
      throw new LlmError(`${path}: llama2.c file version ${v} is not supported (only versions 0 (legacy) and 1 (fp32) are; re-export with export.py --version 1)`);
    }
    if (fileSize < V1_HEADER_BYTES) throw new LlmError(`${path}: llama2.c version 1 file is only ${fileSize} bytes (the header alone is ${V1_HEADER_BYTES})`);
    version = 1;
    ints = Array.from({ length: 7 }, (_, i) => head.readInt32LE(8 + 4 * i));
    const flag = head.readUInt8(36);
    if (flag > 1) throw new LlmError(`${path}: llama2.c header shared_classifier flag is ${flag} (expected 0 or 1)`);
    shared = flag === 1;
    if (ints[5] <= 0) throw new LlmError(`${path}: llama2.c header vocab_size ${ints[5]} must be positive in a version 1 file`);
    headerBytes = V1_HEADER_BYTES;
  } else {
    version = 0;
    ints = Array.from({ length: 7 }, (_, i) => head.readInt32LE(4 * i));
    shared = ints[5] > 0;
    ints[5] = Math.abs(ints[5]);
    headerBytes = LEGACY_HEADER_BYTES;
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen] = ints;
  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  const limits = [MAX_DIM, MAX_DIM, 4096, 65536, 65536, MAX_DIM, MAX_SEQ_LEN];
  for (let i = 0; i < 7; i++) {
    if (!(ints[i] > 0 && ints[i] <= limits[i])) {
      const what = version === 0 && i === 0 && ints[i] > limits[i] ? ' (not a llama2.c model file?)' : '';
      throw new LlmError(`${path}: llama2.c header ${names[i]} = ${ints[i]} is not in [1, ${limits[i]}]${what}`);
    }
  }
  if (dim % nHeads !== 0) throw new LlmError(`${path}: llama2.c header dim ${dim} is not divisible by n_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) throw new LlmError(`${path}: llama2.c header n_heads ${nHeads} is not divisible by n_kv_heads ${nKvHeads}`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) throw new LlmError(`${path}: llama2.c head size ${headSize} must be even for rotary embeddings`);
  const h: Llama2cHeader = { version, dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier: shared, headerBytes };
  const expected = expectedFileBytes(h);
  if (expected !== BigInt(fileSize)) {
    throw new LlmError(
      `${path}: llama2.c version ${version} file should be ${expected} bytes for its header (dim ${dim}, hidden ${hiddenDim}, ` +
        `${nLayers} layers, ${nHeads}/${nKvHeads} heads, vocab ${vocabSize}, seq_len ${seqLen}, ${shared ? 'shared' : 'separate'} classifier) ` +
        `but is ${fileSize} bytes (${BigInt(fileSize) < expected ? 'truncated' : 'trailing data'})`,
    );
  }
  return h;
}

/** The config of a checked header (the file size already matched every dimension and the layer count). */
function llama2cConfig(h: Llama2cHeader, path: string): ModelConfig {
  return validateConfig({
    family: 'llama', vocabSize: h.vocabSize, blockSize: h.seqLen, nLayer: h.nLayers, nHead: h.nHeads, nKvHead: h.nKvHeads,
    nEmbd: h.dim, hiddenDim: h.hiddenDim, bias: false, tiedEmbeddings: h.sharedClassifier, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
  }, {
    source: `${path}: llama2.c header`,
    names: { vocabSize: 'vocab_size', blockSize: 'seq_len', nLayer: 'n_layers', nHead: 'n_heads', nKvHead: 'n_kv_heads', nEmbd: 'dim', hiddenDim: 'hidden_dim' },
  });
}

/** Each weight of the file in file order: name (ours, or null for skipped data), per-layer shape, layer count. */
interface Section { name: string | null; shape: number[]; layers: number; permuteHeads?: number }

function sections(h: Llama2cHeader): Section[] {
  const { dim: D, hiddenDim: H, nLayers: L, vocabSize: V } = h;
  const kv = (D / h.nHeads) * h.nKvHeads;
  const p = (name: string): string => `model.layers.{l}.${name}.weight`;
  const emb: Section = { name: 'model.embed_tokens.weight', shape: [V, D], layers: 1 };
  const attNorm: Section = { name: p('input_layernorm'), shape: [D], layers: L };
  const ffnNorm: Section = { name: p('post_attention_layernorm'), shape: [D], layers: L };
  const finalNorm: Section = { name: 'model.norm.weight', shape: [D], layers: 1 };
  const mats: Section[] = [
    { name: p('self_attn.q_proj'), shape: [D, D], layers: L, permuteHeads: h.nHeads },
    { name: p('self_attn.k_proj'), shape: [kv, D], layers: L, permuteHeads: h.nKvHeads },
    { name: p('self_attn.v_proj'), shape: [kv, D], layers: L },
    { name: p('self_attn.o_proj'), shape: [D, D], layers: L },
  ];
  const ffn: Section[] = [
    { name: p('mlp.gate_proj'), shape: [H, D], layers: L }, // w1
    { name: p('mlp.down_proj'), shape: [D, H], layers: L }, // w2
    { name: p('mlp.up_proj'), shape: [H, D], layers: L }, // w3
  ];
  const cls: Section[] = h.sharedClassifier ? [] : [{ name: 'lm_head.weight', shape: [V, D], layers: 1 }];
  if (h.version === 0) {
    const freqs: Section = { name: null, shape: [2 * h.seqLen * (D / h.nHeads / 2)], layers: 1 };
    return [emb, attNorm, ...mats.slice(0, 4), ffnNorm, ...ffn, finalNorm, freqs, ...cls];
  }
  return [attNorm, ffnNorm, finalNorm, emb, ...mats, ...ffn, ...cls];
}

function expectedFileBytes(h: Llama2cHeader): bigint {
  let floats = 0n;
  for (const s of sections(h)) floats += BigInt(s.layers) * s.shape.reduce((a, b) => a * BigInt(b), 1n);
  return BigInt(h.headerBytes) + 4n * floats;
}

/**
 * The weights: views into the mapped file (4-byte aligned: both header sizes are multiples of 4),
 * or each read into its own array; wq/wk are read into a private copy and permuted.
 */
function readWeights(src: FileSource, h: Llama2cHeader, path: string): Map<string, Tensor> {
  const params = new Map<string, Tensor>();
  let pos = h.headerBytes;
  const headSize = h.dim / h.nHeads;
  for (const s of sections(h)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.name === null) {
      pos += 4 * n * s.layers;
      continue;
    }
    for (let l = 0; l < s.layers; l++) {
      const name = s.name.replace('{l}', String(l));
      const what = `weight '${name}'`;
      let data: Float32Array;
      if (s.permuteHeads !== undefined) {
        data = metaToHfRowsInPlace(new Float32Array(src.copy(pos, 4 * n, what).buffer), s.permuteHeads, headSize, s.shape[1]);
      } else {
        data = src.f32(pos, n, what);
      }
      pos += 4 * n;
      params.set(name, new Tensor(data, s.shape, true));
    }
  }
  if (pos > src.size) throw new LlmError(`${path}: llama2.c model file ends early at byte ${src.size}`);
  return params;
}

/**
 * Reorder the rows of a q/k projection (nHeads*headSize, cols) from Meta's interleaved RoPE pairs
 * to Hugging Face's rotate-half halves: out[h, j*half + i] = in[h, 2i + j]. This is HF's
 * convert_llama_weights_to_hf.py permute(w, n_heads, rows, cols).
 */
export function metaToHfRows(w: Float32Array, nHeads: number, headSize: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headSize / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * headSize + 2 * i + j) * cols;
        const dst = (h * headSize + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/**
 * metaToHfRows in place (rows of `rowLen` elements), following the permutation's cycles with two
 * row buffers, so a loader that has just read a q/k matrix into its own buffer needs no second
 * matrix-sized buffer. Works on float rows and on rows of quantized blocks (bytes).
 */
export function metaToHfRowsInPlace<T extends Float32Array | Uint8Array>(w: T, nHeads: number, headSize: number, rowLen: number): T {
  const rows = nHeads * headSize;
  if (w.length !== rows * rowLen) throw new LlmError(`cannot permute ${w.length} values as ${rows} rows of ${rowLen}`);
  const half = headSize / 2;
  // Meta row h*headSize + 2i + j goes to HF row h*headSize + j*half + i
  const dest = (r: number): number => {
    const h = Math.floor(r / headSize);
    const k = r - h * headSize;
    return h * headSize + (k & 1) * half + (k >> 1);
  };
  const moving = w.slice(0, rowLen) as T;
  const held = w.slice(0, rowLen) as T;
  const done = new Uint8Array(rows);
  for (let start = 0; start < rows; start++) {
    if (done[start]) continue;
    moving.set(w.subarray(start * rowLen, (start + 1) * rowLen));
    let cur = start;
    do {
      const d = dest(cur);
      held.set(w.subarray(d * rowLen, (d + 1) * rowLen));
      w.set(moving, d * rowLen);
      moving.set(held);
      done[cur] = 1;
      cur = d;
    } while (cur !== start);
  }
  return w;
}

/** The inverse of metaToHfRows (for writing llama2.c files from our weights). */
export function hfToMetaRows(w: Float32Array, nHeads: number, headSize: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headSize / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * headSize + j * half + i) * cols;
        const dst = (h * headSize + 2 * i + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}
