/**
 * llama2.c writer: write -> read round trips exactly (shared and separate classifier, GQA,
 * versions 0 and 1); the bytes are laid out as run.c / export.py expect (header fields, negative
 * vocab_size, RoPE tables, Meta row order of wq/wk); configs llama2.c cannot represent are
 * refused with one-line errors; tokenizer.bin reproduces llama2.c's published file;
 * `llmts convert --to llama2c` as a child process.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hfToMetaRows, LLAMA2C_MAGIC, readLlama2c } from '../../src/formats/llama2c.js';
import { llama2cRopeTables, writeLlama2c } from '../../src/formats/llama2c-write.js';
import type { ModelConfig } from '../../src/model/config.js';
import { parameterSpecs } from '../../src/model/parameters.js';
import { Transformer } from '../../src/model/transformer.js';
import { Tensor } from '../../src/tensor/index.js';
import { llama2cTokenizerBytes, parseLlama2cTokenizer, writeLlama2cTokenizer } from '../../src/tokenizer/llama2c-tokenizer.js';
import { readSentencePieceModel } from '../../src/tokenizer/sentencepiece-model.js';
import type { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { runCli, assertOneLineError } from '../helpers/cli.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';
import { tinySentencePiece as tinySp } from '../helpers/tiny-sentencepiece.js';

function llama(o: Partial<ModelConfig> = {}): ModelConfig {
  return {
    family: 'llama', vocabSize: 19, blockSize: 12, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 24, hiddenDim: 40,
    bias: false, tiedEmbeddings: false, normEps: 1e-5, ropeTheta: 10000, dropout: 0, ...o,
  };
}

/** Every parameter random (norms too), so any misplaced or mis-permuted float shows. */
function randomParams(cfg: ModelConfig, seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  return new Map(parameterSpecs(cfg).map((s) => [s.name, Tensor.randn(s.shape, rng, 1, true)]));
}

function expectLlmError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LlmError, String(err));
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
}

const tinySentencePiece = (): SentencePieceTokenizer => tinySp(['▁', 'a', 'b', 'é', '▁a', 'ab', '▁ab', '▁▁é'], (_, i) => -0.25 * i);

describe('llama2.c writer', () => {
  const dir = tmpDir('llama2c-write');

  for (const version of [0, 1] as const) {
    for (const tied of [false, true]) {
      for (const kv of [4, 2, 1]) {
        it(`version ${version}, ${tied ? 'shared' : 'separate'} classifier, ${kv} kv heads: write -> read is exact`, () => {
          const cfg = llama({ tiedEmbeddings: tied, nKvHead: kv });
          const params = randomParams(cfg, 10 * version + kv + (tied ? 100 : 0));
          const f = join(dir, `v${version}-${tied}-${kv}.bin`);
          const { bytes } = writeLlama2c(f, cfg, params, { version });
          assert.equal(statSync(f).size, bytes);
          const back = readLlama2c(f);
          assert.deepEqual(back.config, cfg);
          assert.deepEqual([...back.params.keys()].sort(), [...params.keys()].sort());
          for (const [name, t] of params) {
            assert.deepEqual(back.params.get(name)!.shape, t.shape, name);
            assert.deepEqual(back.params.get(name)!.data, t.data, name);
          }
          assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no temp file left behind');
        });
      }
    }
  }

  it('version 0 bytes: header with negative vocab_size when unshared, Meta-order wq first, export.py RoPE tables', () => {
    const cfg = llama();
    const params = randomParams(cfg, 7);
    const f = join(dir, 'layout-v0.bin');
    writeLlama2c(f, cfg, params, { version: 0 });
    const b = readFileSync(f);
    const ints = Array.from({ length: 7 }, (_, i) => b.readInt32LE(4 * i));
    assert.deepEqual(ints, [24, 40, 2, 4, 2, -19, 12]);
    const D = 24, L = 2, V = 19, hs = 6;
    const floats = (at: number, n: number): Float32Array => new Float32Array(b.buffer.slice(b.byteOffset + at, b.byteOffset + at + 4 * n));
    // token_embedding, rms_att, then wq layer 0 in Meta's interleaved row order
    let off = 28;
    assert.deepEqual(floats(off, V * D), params.get('model.embed_tokens.weight')!.data);
    off += 4 * (V * D + L * D);
    const wq0 = floats(off, D * D);
    assert.deepEqual(wq0, hfToMetaRows(params.get('model.layers.0.self_attn.q_proj.weight')!.data, 4, hs, D));
    assert.notDeepEqual(wq0, params.get('model.layers.0.self_attn.q_proj.weight')!.data);
    // the RoPE tables sit right before wcls, which ends the file
    const half = hs / 2, T = cfg.blockSize;
    const ropeAt = b.length - 4 * V * D - 4 * 2 * T * half;
    assert.deepEqual(floats(b.length - 4 * V * D, V * D), params.get('lm_head.weight')!.data);
    const rope = floats(ropeAt, 2 * T * half);
    assert.deepEqual(rope, llama2cRopeTables(hs, T));
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        const angle = t / Math.pow(10000, (2 * i) / hs);
        assert.ok(Math.abs(rope[t * half + i] - Math.cos(angle)) < 1e-5, `real[${t},${i}]`);
        assert.ok(Math.abs(rope[T * half + t * half + i] - Math.sin(angle)) < 1e-5, `imag[${t},${i}]`);
      }
    }
    // shared classifier: positive vocab_size, no wcls
    const tiedCfg = llama({ tiedEmbeddings: true });
    const g = join(dir, 'layout-v0-tied.bin');
    const { bytes } = writeLlama2c(g, tiedCfg, randomParams(tiedCfg, 8), { version: 0 });
    assert.equal(readFileSync(g).readInt32LE(20), 19);
    assert.equal(bytes, b.length - 4 * V * D);
  });

  it('version 1 bytes: "ak42" magic, version 1, positive vocab_size, shared flag, 256-byte header, norms first', () => {
    for (const tied of [false, true]) {
      const cfg = llama({ tiedEmbeddings: tied });
      const params = randomParams(cfg, 9);
      const f = join(dir, `layout-v1-${tied}.bin`);
      writeLlama2c(f, cfg, params, { version: 1 });
      const b = readFileSync(f);
      assert.equal(b.readUInt32LE(0), LLAMA2C_MAGIC);
      assert.equal(b.toString('latin1', 0, 4), '24ka'); // "ak42" as a little-endian uint32
      assert.equal(b.readInt32LE(4), 1);
      assert.deepEqual(Array.from({ length: 7 }, (_, i) => b.readInt32LE(8 + 4 * i)), [24, 40, 2, 4, 2, 19, 12]);
      assert.equal(b[36], tied ? 1 : 0);
      assert.ok(b.subarray(37, 256).every((x) => x === 0));
      assert.deepEqual(new Float32Array(b.buffer.slice(b.byteOffset + 256, b.byteOffset + 256 + 4 * 24)), params.get('model.layers.0.input_layernorm.weight')!.data);
    }
  });

  it('refuses models llama2.c cannot represent, naming the problem, and writes nothing', () => {
    const cases: [string, ModelConfig, RegExp][] = [
      ['gpt2', { ...llama(), family: 'gpt2', bias: true, tiedEmbeddings: true }, /llama2\.c files store Llama models only .* this is a gpt2 model: convert it --to gguf or --to hf/],
      ['bias', llama({ bias: true }), /no biases, but this llama model has bias = true/],
      ['theta', llama({ ropeTheta: 500000 }), /RoPE theta 10000 only \(run\.c hard-codes it\), but this model has rope theta 500000/],
      ['eps', llama({ normEps: 1e-6 }), /RMSNorm eps 1e-5 only \(run\.c hard-codes it\), but this model has norm eps 0\.000001/],
    ];
    for (const [name, cfg, pattern] of cases) {
      const f = join(dir, `refused-${name}.bin`);
      expectLlmError(() => writeLlama2c(f, cfg, randomParams({ ...cfg, family: 'llama', bias: false }, 1), { version: 0 }), pattern);
      assert.ok(!existsSync(f), `${name}: a file was written`);
    }
    // eps read back from a float32 field (GGUF) is still run.c's 1e-5
    writeLlama2c(join(dir, 'eps-f32.bin'), llama({ normEps: Math.fround(1e-5) }), randomParams(llama(), 1), { version: 0 });
    const cfg = llama();
    const params = randomParams(cfg, 2);
    const missing = new Map(params);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    expectLlmError(() => writeLlama2c(join(dir, 'x.bin'), cfg, missing, { version: 0 }), /parameter model\.layers\.1\.mlp\.up_proj\.weight is missing/);
    const wrong = new Map(params);
    wrong.set('model.norm.weight', Tensor.zeros([23]));
    expectLlmError(() => writeLlama2c(join(dir, 'x.bin'), cfg, wrong, { version: 1 }), /model\.norm\.weight has shape \[23\], expected \[24\]/);
    expectLlmError(() => writeLlama2c(join(dir, 'x.bin'), cfg, params, { version: 2 as 0 }), /version must be 0 \(legacy\) or 1, got 2/);
    assert.ok(!existsSync(join(dir, 'x.bin')));
  });

  it('tokenizer.bin: tokenizer.py conventions; the Llama 2 tokenizer.model gives llama2.c\'s published tokenizer.bin byte for byte', (t) => {
    const tok = tinySentencePiece();
    const f = join(dir, 'tokenizer.bin');
    const res = writeLlama2cTokenizer(f, tok);
    assert.equal(res.tokens, tok.vocabSize);
    const parsed = parseLlama2cTokenizer(readFileSync(f), tok.vocabSize);
    const text = parsed.tokens.map((x) => Buffer.from(x.bytes).toString('utf8'));
    assert.deepEqual(text.slice(0, 3), ['<unk>', '\n<s>\n', '\n</s>\n']);
    assert.equal(text[3 + 0x0a], '<0x0A>');
    assert.deepEqual(text.slice(259), [' ', 'a', 'b', 'é', ' a', 'ab', ' ab', '  é']);
    assert.deepEqual(parsed.tokens.map((x) => x.score), [...tok.scores]);
    assert.equal(parsed.maxTokenLength, 6); // "\n</s>\n" and "<0xFF>"
    expectLlmError(() => parseLlama2cTokenizer(readFileSync(f), tok.vocabSize + 1), /holds 267 tokens but the model needs 268/);

    const model = sharedDataPath('llama2-tokenizer/tokenizer.model');
    const published = sharedDataPath('llama2-tokenizer/tokenizer.bin');
    if (!model || !published) return t.skip('shared llama2-tokenizer data not available');
    const ours = Buffer.from(llama2cTokenizerBytes(readSentencePieceModel(model)));
    assert.equal(ours.length, statSync(published).size);
    assert.ok(ours.equals(readFileSync(published)), 'tokenizer.bin differs from llama2.c\'s');
  });

  it('llmts convert --to llama2c writes the model and tokenizer.bin; refuses gpt2 and bad flags', () => {
    const tok = tinySentencePiece();
    const cfg = llama({ vocabSize: tok.vocabSize, tiedEmbeddings: true });
    const m = new Transformer(cfg, new Rng(4));
    const ckpt = join(dir, 'cli-ckpt.safetensors');
    saveCheckpoint(ckpt, { config: cfg, params: m.params, tokenizer: tok.toJSON(), trainer: {} });
    const outDir = join(dir, 'cli-out');
    const out = join(outDir, 'model.bin');
    let r = runCli(['convert', ckpt, '--to', 'llama2c', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /llama2\.c version 0 model, float32, shared classifier/);
    assert.match(r.stdout, /tokenizer\.bin \(llama2\.c tokenizer, 267 tokens/);
    const back = readLlama2c(out);
    for (const [name, t] of m.params) assert.deepEqual(back.params.get(name)!.data, t.data, name);
    assert.ok(Buffer.from(llama2cTokenizerBytes(tok)).equals(readFileSync(join(outDir, 'tokenizer.bin'))));
    r = runCli(['convert', ckpt, '--to', 'llama2c', '--llama2c-version', '1', '--out', join(outDir, 'v1.bin')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(outDir, 'v1.bin')).readUInt32LE(0), LLAMA2C_MAGIC);
    assertOneLineError(runCli(['convert', ckpt, '--to', 'llama2c', '--llama2c-version', '2', '--out', out]), /--llama2c-version must be 0 \(legacy, what run\.c reads\) or 1, got '2'/);
    assertOneLineError(runCli(['convert', ckpt, '--to', 'gguf', '--llama2c-version', '1', '--out', join(dir, 'x.gguf')]), /--llama2c-version applies to --to llama2c only/);
    assertOneLineError(runCli(['convert', ckpt, '--to', 'llama2c', '--quant', 'q8_0', '--out', out]), /--quant applies to --to gguf only \(llama2\.c export is float32\)/);
    const gpt = new Transformer({ ...cfg, family: 'gpt2', bias: true, hiddenDim: 96 }, new Rng(1));
    const gptCkpt = join(dir, 'gpt2.safetensors');
    saveCheckpoint(gptCkpt, { config: gpt.config, params: gpt.params, tokenizer: tok.toJSON(), trainer: {} });
    assertOneLineError(runCli(['convert', gptCkpt, '--to', 'llama2c', '--out', join(dir, 'gpt2.bin')]), /Llama models only .* this is a gpt2 model/);
    assert.ok(!existsSync(join(dir, 'gpt2.bin')));
    const help = runCli(['convert', '--help']);
    assert.match(help.stdout + help.stderr, /--to gguf\|hf\|llama2c/);
    assert.match(help.stdout + help.stderr, /--llama2c-version N/);
  });
});
