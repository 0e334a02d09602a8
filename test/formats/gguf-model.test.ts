/**
 * GGUF writer + llama.cpp-convention model export/import: metadata of every type round-trips
 * through our reader; Llama (GQA) and GPT-2 models export with their tokenizers and come back
 * with identical logits (F32), close logits (F16, Q8_0, Q4_0; top-1 agreement reported);
 * malformed files are one-line errors; `llmts convert` and `llmts info` as child processes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GgufArrayRef, readGguf, readGgufArray } from '../../src/formats/gguf.js';
import { exportGgufModel, importGgufModel, type GgufQuant } from '../../src/formats/gguf-model.js';
import { ggufMeta, writeGguf } from '../../src/formats/gguf-write.js';
import { GgmlType } from '../../src/formats/quant.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { bpeTokenizerFromTrained, trainBpe } from '../../src/tokenizer/bpe-train.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { bpeFromGguf } from '../../src/tokenizer/gguf-bpe.js';
import { readGgufSentencePiece, sentencePieceFromGguf } from '../../src/tokenizer/gguf-sentencepiece.js';
import type { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';
import { tinySentencePiece as tinySp } from '../helpers/tiny-sentencepiece.js';

const dir = tmpDir('gguf-model');

const tinySentencePiece = (): SentencePieceTokenizer => tinySp(['▁', 'a', 'b', 'c', '▁a', 'ab', '▁ab', 'ca'], (p, i) => -i + p.length * 10);

function tinyBpe(): Tokenizer {
  const text = 'the cat sat on the mat. the dog ate the hat; cats and dogs! ' .repeat(20);
  return bpeTokenizerFromTrained(trainBpe(text, { vocabSize: 290, pattern: 'gpt2', specialTokens: ['<|endoftext|>'] }));
}

function scaledModel(cfg: ModelConfig, seed: number): Transformer {
  const m = new Transformer(cfg, new Rng(seed));
  for (const p of m.parameters()) if (p.shape.length === 2) for (let i = 0; i < p.data.length; i++) p.data[i] *= 5;
  // non-trivial norms and biases
  const rng = new Rng(seed + 1);
  for (const [name, p] of m.params) if (p.shape.length === 1) for (let i = 0; i < p.data.length; i++) p.data[i] += 0.1 * rng.normal() + (name.endsWith('bias') ? 0 : 0);
  return m;
}

function logits(m: Transformer, tokens: number[]): Float32Array {
  return m.forward(Int32Array.from(tokens), 1, tokens.length).logits.data;
}

function compare(a: Float32Array, b: Float32Array, V: number): { maxDiff: number; scale: number; top1: number } {
  let maxDiff = 0;
  let scale = 0;
  let agree = 0;
  const rows = a.length / V;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]));
  }
  for (let r = 0; r < rows; r++) {
    let ia = 0;
    let ib = 0;
    for (let v = 1; v < V; v++) {
      if (a[r * V + v] > a[r * V + ia]) ia = v;
      if (b[r * V + v] > b[r * V + ib]) ib = v;
    }
    if (ia === ib) agree++;
  }
  return { maxDiff, scale, top1: agree / rows };
}

const llamaCfg: ModelConfig = {
  family: 'llama', vocabSize: 280, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 64, hiddenDim: 96,
  bias: false, tiedEmbeddings: false, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
};
const gpt2Cfg: ModelConfig = {
  family: 'gpt2', vocabSize: 290, blockSize: 24, nLayer: 2, nHead: 4, nKvHead: 4, nEmbd: 48, hiddenDim: 192,
  bias: true, tiedEmbeddings: true, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
};
const TOKENS = [1, 270, 5, 100, 3, 260, 279, 42, 7, 9, 11, 200, 150, 33, 2, 19];

describe('GGUF writer', () => {
  it('writes metadata of every type and aligned tensors that our reader reads back', () => {
    const f = join(dir, 'all-types.gguf');
    const t1 = Float32Array.from({ length: 6 }, (_, i) => i - 2.5);
    writeGguf(f, {
      metadata: [
        ['u8', ggufMeta.u8(255)], ['i8', ggufMeta.i8(-128)], ['u16', ggufMeta.u16(65535)], ['i16', ggufMeta.i16(-300)],
        ['u32', ggufMeta.u32(4_000_000_000)], ['i32', ggufMeta.i32(-5)], ['f32', ggufMeta.f32(0.5)], ['f64', ggufMeta.f64(0.1)],
        ['u64', ggufMeta.u64(2n ** 60n)], ['i64', ggufMeta.i64(-7)], ['bool', ggufMeta.bool(true)], ['s', ggufMeta.string('héllo')],
        ['strs', ggufMeta.strings(['a', '', 'Ġx'])], ['f32s', ggufMeta.f32s([1.5, -2])], ['i32s', ggufMeta.i32s([3, -4])],
        ['u8s', ggufMeta.array('u8', [1, 2, 3])], ['bools', ggufMeta.array('bool', [true, false])],
        ['nested', ggufMeta.arrays([ggufMeta.strings(['x']), ggufMeta.i32s([1, 2])])],
      ],
      tensors: [
        { name: 'a', dims: [3, 2], type: GgmlType.F32, data: () => new Uint8Array(t1.buffer) },
        { name: 'b', dims: [32], type: GgmlType.Q8_0, data: () => [new Uint8Array(10), new Uint8Array(24)] },
      ],
    });
    const g = readGguf(f);
    const m = g.metadata;
    assert.equal(g.version, 3);
    assert.equal(m.get('u8'), 255);
    assert.equal(m.get('i8'), -128);
    assert.equal(m.get('u16'), 65535);
    assert.equal(m.get('i16'), -300);
    assert.equal(m.get('u32'), 4_000_000_000);
    assert.equal(m.get('i32'), -5);
    assert.equal(m.get('f32'), 0.5);
    assert.equal(m.get('f64'), 0.1);
    assert.equal(m.get('u64'), 2n ** 60n);
    assert.equal(m.get('i64'), -7);
    assert.equal(m.get('bool'), true);
    assert.equal(m.get('s'), 'héllo');
    // arrays outside the tokenizer's are left in the file until asked for
    assert.ok(m.get('strs') instanceof GgufArrayRef);
    assert.equal(String(m.get('nested')), 'array of 2 ARRAY');
    assert.deepEqual(readGgufArray(g, 'strs'), ['a', '', 'Ġx']);
    assert.deepEqual(readGgufArray(g, 'f32s'), Float32Array.from([1.5, -2]));
    assert.deepEqual(readGgufArray(g, 'i32s'), Int32Array.from([3, -4]));
    assert.deepEqual(readGgufArray(g, 'u8s'), Uint8Array.from([1, 2, 3]));
    assert.deepEqual(readGgufArray(g, 'bools'), Uint8Array.from([1, 0]));
    assert.deepEqual(readGgufArray(g, 'nested'), [['x'], Int32Array.from([1, 2])]);
    assert.deepEqual(g.tensors, [
      { name: 'a', dims: [3, 2], type: 0, offset: 0 },
      { name: 'b', dims: [32], type: 8, offset: 32 },
    ]);
    assert.equal(g.dataOffset % 32, 0);
    assert.equal(g.fileSize, g.dataOffset + 32 + 64); // every tensor padded to 32, the last one (34 bytes) too
    const raw = readFileSync(f);
    assert.deepEqual(new Float32Array(raw.buffer.slice(raw.byteOffset + g.dataOffset, raw.byteOffset + g.dataOffset + 24)), t1);
  });

  it('refuses out-of-range values and wrong tensor sizes, leaving no file behind', () => {
    const f = join(dir, 'bad.gguf');
    assert.throws(() => writeGguf(f, { metadata: [['x', ggufMeta.u8(256)]], tensors: [] }), /does not fit type u8/);
    assert.throws(
      () => writeGguf(f, { metadata: [], tensors: [{ name: 'w', dims: [4], type: GgmlType.F32, data: () => new Uint8Array(12) }] }),
      /produced 12 bytes, expected 16/,
    );
    assert.equal(existsSync(f), false);
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('bad.gguf')), []);
  });
});

describe('GGUF model export/import', () => {
  const sp = tinySentencePiece();
  const llama = scaledModel(llamaCfg, 1);
  const bpe = tinyBpe();
  const gpt2 = scaledModel({ ...gpt2Cfg, vocabSize: bpe.vocabSize }, 2);
  const gptTokens = TOKENS.map((t) => t % bpe.vocabSize);

  it('Llama (GQA) F32: llama.cpp names, dims, metadata; identical parameters and logits', () => {
    const f = join(dir, 'llama-f32.gguf');
    exportGgufModel(f, llama.config, llama.params, { quant: 'f32', tokenizer: sp, name: 'tiny' });
    const g = readGguf(f);
    const names = g.tensors.map((t) => t.name);
    assert.ok(names.includes('token_embd.weight') && names.includes('output.weight') && names.includes('blk.1.ffn_gate.weight'));
    assert.deepEqual(g.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!.dims, [64, 32]);
    assert.deepEqual(g.tensors.find((t) => t.name === 'token_embd.weight')!.dims, [64, 280]);
    assert.ok(g.tensors.every((t) => t.offset % 32 === 0 && t.type === GgmlType.F32));
    assert.equal(g.metadata.get('general.architecture'), 'llama');
    assert.equal(g.metadata.get('general.name'), 'tiny');
    assert.equal(g.metadata.get('llama.attention.head_count_kv'), 2);
    assert.equal(g.metadata.get('llama.rope.dimension_count'), 16);
    assert.equal(g.metadata.get('llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
    const back = importGgufModel(f);
    assert.deepEqual(back.config, llama.config);
    for (const [name, p] of llama.params) assert.deepEqual(back.params.get(name)!.data, p.data, name);
    assert.deepEqual(logits(new Transformer(back.config, back.params), TOKENS), logits(llama, TOKENS));
    // q rows are stored in llama.cpp's interleaved order: row 1 of head 0 is HF row half (= 8)
    const raw = readFileSync(f);
    const q = g.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    const at = g.dataOffset + q.offset + 1 * 64 * 4;
    assert.equal(raw.readFloatLE(at), llama.params.get('model.layers.0.self_attn.q_proj.weight')!.data[8 * 64]);
  });

  it('the SentencePiece metadata reads back with our GGUF tokenizer loader (padded to the model vocab)', () => {
    const f = join(dir, 'llama-f32.gguf');
    const tok = readGgufSentencePiece(f);
    assert.equal(tok.vocabSize, 280);
    for (const text of ['a ab ca', 'abc cab ☃', ' b']) assert.deepEqual(tok.encode(text), sp.encode(text), text);
    assert.equal(tok.decode(sp.encode('cab ☃')), 'cab ☃');
    const g = readGguf(f);
    assert.equal((g.metadata.get('tokenizer.ggml.token_type') as Int32Array)[279], 5);
    assert.equal(g.metadata.get('tokenizer.ggml.unknown_token_id'), 0);
  });

  it('GPT-2 F32 with a byte-level BPE vocabulary: transposed Conv1D weights, tied head omitted, identical logits', () => {
    const f = join(dir, 'gpt2-f32.gguf');
    exportGgufModel(f, gpt2.config, gpt2.params, { tokenizer: bpe });
    const g = readGguf(f);
    const names = g.tensors.map((t) => t.name);
    assert.ok(names.includes('position_embd.weight') && names.includes('blk.0.attn_qkv.bias') && !names.includes('output.weight'));
    assert.deepEqual(g.tensors.find((t) => t.name === 'blk.0.attn_qkv.weight')!.dims, [48, 144]);
    assert.equal(g.metadata.get('gpt2.context_length'), 24);
    const back = importGgufModel(f);
    assert.deepEqual(back.config, gpt2.config);
    assert.deepEqual(logits(new Transformer(back.config, back.params), gptTokens), logits(gpt2, gptTokens));
    const tok = bpeFromGguf(g);
    assert.equal(g.metadata.get('tokenizer.ggml.pre'), 'gpt-2');
    assert.equal(g.metadata.get('tokenizer.ggml.eos_token_id'), bpe.specialTokens!['<|endoftext|>']);
    for (const text of ['the cat sat', 'dogs ate hats!<|endoftext|>x', 'ünïcode 😀']) {
      assert.deepEqual(tok.encode(text, { allowedSpecial: 'all' }), bpe.encode(text, { allowedSpecial: 'all' }), text);
    }
    assert.ok(back.tokenizer !== null && back.tokenizer.kind === 'bpe');
  });

  it('GPT-2 without biases gets zero biases and the same logits', () => {
    const cfg = { ...gpt2Cfg, vocabSize: bpe.vocabSize, bias: false, tiedEmbeddings: false };
    const m = scaledModel(cfg, 5);
    const f = join(dir, 'gpt2-nobias.gguf');
    exportGgufModel(f, cfg, m.params, { tokenizer: null });
    const back = importGgufModel(f);
    assert.equal(back.config.bias, true);
    assert.equal(back.tokenizer, null);
    assert.deepEqual(logits(new Transformer(back.config, back.params), gptTokens), logits(m, gptTokens));
  });

  for (const quant of ['f16', 'q8_0', 'q4_0'] as GgufQuant[]) {
    it(`${quant}: logits close to float32, top-1 agreement reported`, (t) => {
      const tol: Record<string, number> = { f16: 0.005, q8_0: 0.05, q4_0: 0.5 };
      for (const [label, m, toks, tok] of [['llama', llama, TOKENS, sp], ['gpt2', gpt2, gptTokens, bpe]] as const) {
        const f = join(dir, `${label}-${quant}.gguf`);
        exportGgufModel(f, m.config, m.params, { quant, tokenizer: tok });
        const g = readGguf(f);
        const want = quant === 'f16' ? GgmlType.F16 : quant === 'q8_0' ? GgmlType.Q8_0 : GgmlType.Q4_0;
        for (const ti of g.tensors) {
          const expect = ti.dims.length === 1 ? GgmlType.F32 : ti.dims[0] % 32 === 0 ? want : GgmlType.F16;
          assert.equal(ti.type, expect, `${label} ${ti.name}`);
        }
        const back = importGgufModel(f);
        const c = compare(logits(m, toks), logits(new Transformer(back.config, back.params), toks), m.config.vocabSize);
        t.diagnostic(`${label} ${quant}: max |Δlogit| ${c.maxDiff.toExponential(2)} (max |logit| ${c.scale.toFixed(2)}), top-1 agreement ${(100 * c.top1).toFixed(0)}%, ${statSync(f).size} bytes`);
        assert.ok(c.maxDiff <= tol[quant] * c.scale, `${label} ${quant}: ${c.maxDiff} > ${tol[quant]} x ${c.scale}`);
        if (quant !== 'q4_0') assert.ok(c.top1 >= 0.8, `${label} ${quant} top-1 agreement ${c.top1}`);
      }
    });
  }

  it('stores char tokenizers (see char-export.test.ts), and reads the Llama 2 vocabulary back when the shared data has it', (t) => {
    const char = CharTokenizer.fromText('abc');
    exportGgufModel(join(dir, 'char.gguf'), llama.config, llama.params, { tokenizer: char });
    assert.deepEqual((importGgufModel(join(dir, 'char.gguf')).tokenizer as CharTokenizer).chars, ['a', 'b', 'c']);
    const p = sharedDataPath('gguf-vocab/ggml-vocab-llama-spm.gguf');
    if (!p) return t.skip('shared data not available');
    const llama2 = sentencePieceFromGguf(readGguf(p));
    const cfg = { ...llamaCfg, vocabSize: llama2.vocabSize, nLayer: 1, nEmbd: 32, hiddenDim: 32, nHead: 2, nKvHead: 1 };
    const m = new Transformer(cfg, new Rng(3));
    const f = join(dir, 'llama2-vocab.gguf');
    exportGgufModel(f, cfg, m.params, { quant: 'q8_0', tokenizer: llama2 });
    const back = readGgufSentencePiece(f);
    const text = 'Hello world! Ünïcödé 😀 and    spaces\n';
    assert.deepEqual(back.encode(text), llama2.encode(text));
  });

  it('rejects truncated files and tensors whose dims contradict the metadata', () => {
    const f = join(dir, 'llama-f32.gguf');
    const raw = readFileSync(f);
    const cut = join(dir, 'cut.gguf');
    writeFileSync(cut, raw.subarray(0, raw.length - 100));
    assert.throws(() => importGgufModel(cut), (e: Error) => e instanceof LlmError && /extends past the end of the file/.test(e.message));
    const bad = join(dir, 'bad-dims.gguf');
    writeGguf(bad, {
      metadata: [
        ['general.architecture', ggufMeta.string('llama')], ['llama.context_length', ggufMeta.u32(8)], ['llama.embedding_length', ggufMeta.u32(8)],
        ['llama.block_count', ggufMeta.u32(1)], ['llama.feed_forward_length', ggufMeta.u32(16)], ['llama.attention.head_count', ggufMeta.u32(2)],
      ],
      tensors: [
        { name: 'token_embd.weight', dims: [8, 10], type: GgmlType.F32, data: () => new Uint8Array(320) },
        { name: 'blk.0.attn_norm.weight', dims: [4], type: GgmlType.F32, data: () => new Uint8Array(16) },
      ],
    });
    assert.throws(() => importGgufModel(bad), /'blk.0.attn_norm.weight' has dims \[4\], the metadata implies \[8\]/);
  });
});

describe('llmts convert / info', () => {
  const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const llmts = (...args: string[]): { code: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('converts a checkpoint to GGUF Q8_0 and to Hugging Face, and describes each', () => {
    const bpe = tinyBpe();
    const cfg = { ...llamaCfg, vocabSize: bpe.vocabSize };
    const m = scaledModel(cfg, 7);
    const ckpt = join(dir, 'cli-ckpt.safetensors');
    saveCheckpoint(ckpt, { config: cfg, params: m.params, tokenizer: bpe.toJSON(), trainer: {} });
    const gguf = join(dir, 'cli.gguf');
    let r = llmts('convert', ckpt, '--to', 'gguf', '--quant', 'q8_0', '--out', gguf);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /llama GGUF, \d+ tensors \(.*Q8_0 x \d+/);
    r = llmts('info', gguf);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /format\s+GGUF v3/);
    assert.match(r.stdout, /architecture\s+llama/);
    assert.match(r.stdout, /heads\s+4 \(2 key\/value\)/);
    assert.match(r.stdout, /tensor types\s+.*Q8_0 x 16, F32 x 5/);
    assert.match(r.stdout, new RegExp(`tokenizer\\s+gpt2 \\(byte-level BPE\\), ${bpe.vocabSize} tokens`));
    r = llmts('info', ckpt);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /format\s+llm\.ts checkpoint/);
    assert.match(r.stdout, new RegExp(`tokenizer\\s+bpe, ${bpe.vocabSize} tokens`));
    const hf = join(dir, 'cli-hf');
    r = llmts('convert', gguf, '--to', 'hf', '--out', hf);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(hf, 'config.json')) && existsSync(join(hf, 'model.safetensors')) && existsSync(join(hf, 'tokenizer.json')));
    r = llmts('info', hf);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /format\s+Hugging Face directory/);
    assert.match(r.stdout, /context\s+32/);
    assert.match(r.stdout, new RegExp(`tokenizer\\s+bpe, ${bpe.vocabSize} tokens`));
    assert.match(r.stdout, /tensor types\s+F32 x 21/);
    // the same greedy text from the checkpoint, its Hugging Face export and (F32) GGUF export
    const gguf32 = join(dir, 'cli-f32.gguf');
    assert.equal(llmts('convert', ckpt, '--to', 'gguf', '--out', gguf32).code, 0);
    const hf32 = join(dir, 'cli-hf32');
    assert.equal(llmts('convert', ckpt, '--to', 'hf', '--out', hf32).code, 0);
    const texts = [ckpt, hf32, gguf32].map((model) => {
      const out = llmts('run', model, '-p', 'ab', '--max-tokens', '8', '--temperature', '0');
      assert.equal(out.code, 0, out.stderr);
      return out.stdout;
    });
    assert.equal(texts[1], texts[0]);
    assert.equal(texts[2], texts[0]);
    r = llmts('convert', ckpt, '--to', 'gguf', '--quant', 'q5_k', '--out', gguf);
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), /^llmts convert: error: --quant q5_k: choose one of f32, f16, q8_0, q4_0$/);
  });
});
