import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hfToMetaRows, LLAMA2C_MAGIC, metaToHfRows, metaToHfRowsInPlace, readLlama2c } from '../../src/formats/llama2c.js';
import type { ModelConfig } from '../../src/model/config.js';
import { parameterSpecs } from '../../src/model/parameters.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad, Tensor } from '../../src/tensor/index.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { tmpDir } from '../helpers/tmp.js';

function tinyLlama(tied: boolean): ModelConfig {
  return {
    family: 'llama', vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 16, hiddenDim: 24,
    bias: false, tiedEmbeddings: tied, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
  };
}

/** Random weights large enough that RoPE (and so the q/k row order) changes the logits a lot. */
function randomParams(cfg: ModelConfig, seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  const params = new Map<string, Tensor>();
  for (const s of parameterSpecs(cfg)) {
    const t = Tensor.randn(s.shape, rng, s.init === 'ones' ? 0.2 : 0.4, true);
    if (s.init === 'ones') for (let i = 0; i < t.size; i++) t.data[i] += 1;
    params.set(s.name, t);
  }
  return params;
}

/** Our (HF-convention) weights in llama2.c's convention: per-layer arrays in llama2.c naming. */
function toLlama2c(cfg: ModelConfig, p: Map<string, Tensor>): Record<string, Float32Array[]> {
  const hs = cfg.nEmbd / cfg.nHead;
  const L = Array.from({ length: cfg.nLayer }, (_, l) => l);
  const w = (l: number, n: string): Float32Array => p.get(`model.layers.${l}.${n}.weight`)!.data;
  return {
    emb: [p.get('model.embed_tokens.weight')!.data],
    rmsAtt: L.map((l) => w(l, 'input_layernorm')),
    wq: L.map((l) => hfToMetaRows(w(l, 'self_attn.q_proj'), cfg.nHead, hs, cfg.nEmbd)),
    wk: L.map((l) => hfToMetaRows(w(l, 'self_attn.k_proj'), cfg.nKvHead, hs, cfg.nEmbd)),
    wv: L.map((l) => w(l, 'self_attn.v_proj')),
    wo: L.map((l) => w(l, 'self_attn.o_proj')),
    rmsFfn: L.map((l) => w(l, 'post_attention_layernorm')),
    w1: L.map((l) => w(l, 'mlp.gate_proj')),
    w2: L.map((l) => w(l, 'mlp.down_proj')),
    w3: L.map((l) => w(l, 'mlp.up_proj')),
    rmsFinal: [p.get('model.norm.weight')!.data],
    wcls: cfg.tiedEmbeddings ? [] : [p.get('lm_head.weight')!.data],
  };
}

const f32 = (arrs: Float32Array[]): Buffer[] => arrs.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));

/** A legacy (version 0) file laid out as run.c reads it. */
function legacyFile(cfg: ModelConfig, p: Map<string, Tensor>): Buffer {
  const w = toLlama2c(cfg, p);
  const header = Buffer.alloc(28);
  const vocab = cfg.tiedEmbeddings ? cfg.vocabSize : -cfg.vocabSize;
  [cfg.nEmbd, cfg.hiddenDim, cfg.nLayer, cfg.nHead, cfg.nKvHead, vocab, cfg.blockSize].forEach((v, i) => header.writeInt32LE(v, 4 * i));
  const freqs = new Float32Array(cfg.blockSize * (cfg.nEmbd / cfg.nHead / 2) * 2).fill(0.5);
  return Buffer.concat([
    header, ...f32(w.emb), ...f32(w.rmsAtt), ...f32(w.wq), ...f32(w.wk), ...f32(w.wv), ...f32(w.wo), ...f32(w.rmsFfn),
    ...f32(w.w1), ...f32(w.w2), ...f32(w.w3), ...f32(w.rmsFinal), ...f32([freqs]), ...f32(w.wcls),
  ]);
}

/** A version 1 file as export.py's version1_export writes it. */
function v1File(cfg: ModelConfig, p: Map<string, Tensor>): Buffer {
  const w = toLlama2c(cfg, p);
  const header = Buffer.alloc(256);
  header.writeUInt32LE(LLAMA2C_MAGIC, 0);
  header.writeInt32LE(1, 4);
  [cfg.nEmbd, cfg.hiddenDim, cfg.nLayer, cfg.nHead, cfg.nKvHead, cfg.vocabSize, cfg.blockSize].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
  header.writeUInt8(cfg.tiedEmbeddings ? 1 : 0, 36);
  return Buffer.concat([
    header, ...f32(w.rmsAtt), ...f32(w.rmsFfn), ...f32(w.rmsFinal), ...f32(w.emb), ...f32(w.wq), ...f32(w.wk), ...f32(w.wv),
    ...f32(w.wo), ...f32(w.w1), ...f32(w.w2), ...f32(w.w3), ...f32(w.wcls),
  ]);
}

/** run.c's forward, token by token with a KV cache, on llama2.c-convention weights: logits (T, V). */
function llama2cForward(cfg: ModelConfig, w: Record<string, Float32Array[]>, tokens: number[]): Float64Array[] {
  const D = cfg.nEmbd, H = cfg.hiddenDim, hs = D / cfg.nHead, kvDim = hs * cfg.nKvHead, kvMul = cfg.nHead / cfg.nKvHead;
  const matvec = (m: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array => {
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += m[r * cols + c] * x[c];
      out[r] = s;
    }
    return out;
  };
  const rmsnorm = (x: Float64Array, g: Float32Array): Float64Array => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const k = 1 / Math.sqrt(ss / x.length + 1e-5);
    return x.map((v, i) => v * k * g[i]);
  };
  const keys: Float64Array[][] = Array.from({ length: cfg.nLayer }, () => []);
  const vals: Float64Array[][] = Array.from({ length: cfg.nLayer }, () => []);
  const cls = cfg.tiedEmbeddings ? w.emb[0] : w.wcls[0];
  const logits: Float64Array[] = [];
  tokens.forEach((tok, pos) => {
    let x = Float64Array.from(w.emb[0].subarray(tok * D, (tok + 1) * D));
    for (let l = 0; l < cfg.nLayer; l++) {
      const xb = rmsnorm(x, w.rmsAtt[l]);
      const q = matvec(w.wq[l], xb, D, D);
      const k = matvec(w.wk[l], xb, kvDim, D);
      const v = matvec(w.wv[l], xb, kvDim, D);
      // RoPE on interleaved pairs, as run.c
      for (let i = 0; i < D; i += 2) {
        const freq = 1 / Math.pow(10000, (i % hs) / hs);
        const c = Math.cos(pos * freq), s = Math.sin(pos * freq);
        for (const vec of i < kvDim ? [q, k] : [q]) {
          const a = vec[i], b = vec[i + 1];
          vec[i] = a * c - b * s;
          vec[i + 1] = a * s + b * c;
        }
      }
      keys[l].push(k);
      vals[l].push(v);
      const att = new Float64Array(D);
      for (let h = 0; h < cfg.nHead; h++) {
        const kvh = Math.floor(h / kvMul);
        const scores = keys[l].map((kt) => {
          let s = 0;
          for (let i = 0; i < hs; i++) s += q[h * hs + i] * kt[kvh * hs + i];
          return s / Math.sqrt(hs);
        });
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        e.forEach((p, t) => {
          for (let i = 0; i < hs; i++) att[h * hs + i] += (p / z) * vals[l][t][kvh * hs + i];
        });
      }
      const o = matvec(w.wo[l], att, D, D);
      x = x.map((xv, i) => xv + o[i]);
      const xf = rmsnorm(x, w.rmsFfn[l]);
      const h1 = matvec(w.w1[l], xf, H, D);
      const h3 = matvec(w.w3[l], xf, H, D);
      const g = h1.map((a, i) => (a / (1 + Math.exp(-a))) * h3[i]);
      const down = matvec(w.w2[l], g, D, H);
      x = x.map((xv, i) => xv + down[i]);
    }
    logits.push(matvec(cls, rmsnorm(x, w.rmsFinal[0]), cfg.vocabSize, D));
  });
  return logits;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const TOKENS = [3, 11, 0, 7, 7, 2, 12, 5];

function logitsOf(cfg: ModelConfig, params: Map<string, Tensor>): Float32Array {
  return noGrad(() => Float32Array.from(new Transformer(cfg, params).forward(Int32Array.from(TOKENS), 1, TOKENS.length).logits.data));
}

function expectError(path: string, pattern: RegExp): void {
  assert.throws(() => readLlama2c(path), (err: unknown) => {
    assert.ok(err instanceof LlmError, String(err));
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
}

describe('llama2.c model files', () => {
  const dir = tmpDir('llama2c');

  it('the row permutation is HF permute() and hfToMetaRows inverts it', () => {
    // one head of size 4, 1 column: meta rows [m0 m1 m2 m3] = pairs (m0,m1), (m2,m3) -> hf [m0 m2 m1 m3]
    assert.deepEqual([...metaToHfRows(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 4, 1)], [0, 2, 1, 3, 4, 6, 5, 7]);
    const w = Float32Array.from({ length: 6 * 8 * 3 }, (_, i) => i);
    assert.deepEqual(hfToMetaRows(metaToHfRows(w, 6, 8, 3), 6, 8, 3), w);
  });

  it('the in-place permutation equals metaToHfRows, on float rows and on rows of bytes', () => {
    for (const [heads, hs, cols] of [[2, 4, 1], [6, 8, 3], [3, 16, 5], [1, 2, 7]]) {
      const w = Float32Array.from({ length: heads * hs * cols }, (_, i) => i * 0.5 - 3);
      const want = metaToHfRows(w, heads, hs, cols);
      const inPlace = w.slice();
      assert.equal(metaToHfRowsInPlace(inPlace, heads, hs, cols), inPlace);
      assert.deepEqual(inPlace, want);
      const bytes = Uint8Array.from({ length: heads * hs * cols * 4 }, (_, i) => i % 251);
      const wantBytes = new Uint8Array(new Float32Array(metaToHfRows(new Float32Array(bytes.slice().buffer), heads, hs, cols)).buffer);
      assert.deepEqual(metaToHfRowsInPlace(bytes, heads, hs, cols * 4), wantBytes);
    }
    assert.throws(() => metaToHfRowsInPlace(new Float32Array(10), 2, 4, 1), LlmError);
  });

  for (const tied of [false, true]) {
    it(`legacy file (${tied ? 'shared' : 'separate'} classifier): same logits as the original and as a run.c-style forward`, () => {
      const cfg = tinyLlama(tied);
      const params = randomParams(cfg, tied ? 1 : 2);
      const f = join(dir, `legacy-${tied}.bin`);
      writeFileSync(f, legacyFile(cfg, params));
      const back = readLlama2c(f);
      assert.deepEqual(back.config, cfg);
      assert.deepEqual([...back.params.keys()].sort(), parameterSpecs(cfg).map((s) => s.name).sort());
      const ours = logitsOf(cfg, params);
      const imported = logitsOf(back.config, back.params);
      assert.ok(maxDiff(imported, ours) < 1e-5, `imported vs original: ${maxDiff(imported, ours)}`);
      // independent reference: run.c's algorithm on the unpermuted llama2.c weights
      const ref = llama2cForward(cfg, toLlama2c(cfg, params), TOKENS);
      const refFlat = Float64Array.from(ref.flatMap((r) => [...r]));
      assert.ok(maxDiff(imported, refFlat) < 1e-4, `ours vs run.c forward: ${maxDiff(imported, refFlat)}`);
      // the check is sensitive to the q/k row order: without the permutation the logits differ
      const wrong = new Map(back.params);
      for (let l = 0; l < cfg.nLayer; l++) {
        for (const [n, heads] of [['q_proj', cfg.nHead], ['k_proj', cfg.nKvHead]] as const) {
          const name = `model.layers.${l}.self_attn.${n}.weight`;
          const t = back.params.get(name)!;
          wrong.set(name, new Tensor(hfToMetaRows(t.data, heads, cfg.nEmbd / cfg.nHead, cfg.nEmbd), t.shape, true));
        }
      }
      assert.ok(maxDiff(logitsOf(cfg, wrong), refFlat) > 1e-2, 'unpermuted weights should give different logits');
    });
  }

  for (const tied of [false, true]) {
    it(`version 1 file (${tied ? 'shared' : 'separate'} classifier) reads to the same model`, () => {
      const cfg = tinyLlama(tied);
      const params = randomParams(cfg, 5);
      const f = join(dir, `v1-${tied}.bin`);
      writeFileSync(f, v1File(cfg, params));
      const back = readLlama2c(f);
      assert.deepEqual(back.config, cfg);
      for (const [name, t] of params) assert.deepEqual(back.params.get(name)!.data, t.data, name);
    });
  }

  it('rejects truncated, padded, foreign and inconsistent files with one-line errors', () => {
    const cfg = tinyLlama(false);
    const good = legacyFile(cfg, randomParams(cfg, 3));
    const v1 = v1File(cfg, randomParams(cfg, 3));
    const write = (name: string, bytes: Buffer): string => {
      const f = join(dir, name);
      writeFileSync(f, bytes);
      return f;
    };
    expectError(write('trunc.bin', good.subarray(0, good.length - 4)), new RegExp(`should be ${good.length} bytes .* but is ${good.length - 4} bytes \\(truncated\\)`));
    expectError(write('pad.bin', Buffer.concat([good, Buffer.alloc(8)])), /but is \d+ bytes \(trailing data\)/);
    expectError(write('v1trunc.bin', v1.subarray(0, 1000)), /should be \d+ bytes .*truncated/);
    expectError(write('tiny.bin', good.subarray(0, 10)), /only 10 bytes/);
    expectError(join(dir, 'missing.bin'), /cannot open llama2.c model file/);
    const edit = (src: Buffer, at: number, v: number): Buffer => {
      const b = Buffer.from(src);
      b.writeInt32LE(v, at);
      return b;
    };
    expectError(write('zero-dim.bin', edit(good, 0, 0)), /dim = 0 is not in/);
    expectError(write('neg-layers.bin', edit(good, 8, -2)), /n_layers = -2/);
    expectError(write('heads.bin', edit(good, 12, 3)), /dim 16 is not divisible by n_heads 3/);
    expectError(write('kvheads.bin', edit(good, 16, 3)), /n_heads 4 is not divisible by n_kv_heads 3/);
    expectError(write('odd-head.bin', edit(good, 12, 16)), /n_kv_heads|head size 1 must be even/);
    expectError(write('huge.bin', edit(good, 4, 0x7fffffff)), /hidden_dim = 2147483647 is not in/);
    expectError(write('v2.bin', edit(v1, 4, 2)), /version 2 is not supported \(only versions 0 \(legacy\) and 1/);
    expectError(write('flag.bin', (() => { const b = Buffer.from(v1); b[36] = 7; return b; })()), /shared_classifier flag is 7/);
    expectError(write('text.bin', Buffer.from('hello, this is not a model file at all')), /llama2.c header/);
  });
});
