/**
 * The fused decode step (Backend.compileDecode, src/backend/decode-program.ts) against the
 * op-by-op path it replaces for single tokens: the same logits, bit for bit, for GPT-2
 * (LayerNorm, biases, Conv1D weights, learned positions) and Llama (RMSNorm, RoPE, GQA, SwiGLU),
 * F32 and GGUF Q8_0/Q4_0 blocks, over a KV cache that grows past 256 positions; on either
 * backend, and whatever the thread count. Bad programs and bad (token, pos) get clean errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backend } from '../../src/backend/index.js';
import { DecodeProgramBuilder, Op, WeightType } from '../../src/backend/decode-program.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import { exportGgufModel, importGgufModel, type GgufQuant } from '../../src/formats/gguf-model.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const LLAMA = tinyLlama({ vocabSize: 83, blockSize: 300, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 64, hiddenDim: 96 });
const GPT2 = tinyGpt2({ vocabSize: 71, blockSize: 300, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 64, hiddenDim: 128 });

// biases and gains away from their init (0 and 1), so a dropped or misplaced one shows
const makeModel = (cfg: ModelConfig, seed = 1): Transformer => scaledModel(cfg, { seed, gain: 3, jitter: 0.2 });

function quantized(dir: string, m: Transformer, quant: GgufQuant): Transformer {
  const file = join(dir, `m.${m.config.family}.${quant}.gguf`);
  exportGgufModel(file, m.config, m.params, { quant });
  const g = importGgufModel(file, { keepQuantized: true });
  assert.ok(g.quantized.size > 0);
  const q = new Transformer(g.config, g.params, { quantized: g.quantized });
  q.eval();
  return q;
}

/** Prefill `prompt` tokens, then `steps` greedy single-token forwards; every step's logits. */
function decode(m: Transformer, useProgram: boolean, prompt: number, steps: number, cache = new KvCache(m.config)): Float32Array[] {
  m.useDecodeProgram = useProgram;
  const V = m.config.vocabSize;
  const out: Float32Array[] = [];
  let next = 1;
  if (prompt > 0) {
    const l = m.forwardCached(Int32Array.from({ length: prompt }, (_, i) => (7 * i + 3) % V), cache);
    next = backend().argmax(l, V);
  }
  for (let i = 0; i < steps; i++) {
    const l = m.forwardCached(Int32Array.of(next), cache);
    out.push(l);
    next = backend().argmax(l, V);
  }
  m.useDecodeProgram = true;
  return out;
}

function assertSame(a: Float32Array[], b: Float32Array[], what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a[i].length; j++) {
      if (a[i][j] !== b[i][j] && !(Number.isNaN(a[i][j]) && Number.isNaN(b[i][j]))) {
        assert.fail(`${what}: step ${i}, logit ${j}: op-by-op ${a[i][j]} vs program ${b[i][j]}`);
      }
    }
  }
}

describe(`decode program (${backend().name} backend)`, () => {
  const dir = tmpDir('decode-program');

  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family} F32: identical logits to the op-by-op path over 280 positions (cache grows past 256)`, () => {
      const m = makeModel(cfg);
      assertSame(decode(m, false, 9, 271), decode(m, true, 9, 271), cfg.family);
      // and from an empty cache (position 0 decoded by the program)
      assertSame(decode(m, false, 0, 20), decode(m, true, 0, 20), `${cfg.family} from position 0`);
    });
  }

  for (const quant of ['q8_0', 'q4_0'] as const) {
    for (const cfg of [LLAMA, GPT2]) {
      it(`${cfg.family} ${quant} blocks (embeddings and head too): identical logits to the op-by-op path`, () => {
        const m = quantized(dir, makeModel(cfg, 2), quant);
        assertSame(decode(m, false, 5, 40), decode(m, true, 5, 40), `${cfg.family} ${quant}`);
      });
    }
  }

  it('one model, two caches: the program follows whichever cache it is given', () => {
    const m = makeModel(LLAMA, 3);
    const a = new KvCache(LLAMA);
    const b = new KvCache(LLAMA);
    const separateA = decode(m, true, 4, 30);
    const separateB = decode(m, true, 11, 30);
    // interleaved: a's prefill, b's prefill, then alternate single tokens
    const V = LLAMA.vocabSize;
    const first = (n: number, c: KvCache) => backend().argmax(m.forwardCached(Int32Array.from({ length: n }, (_, i) => (7 * i + 3) % V), c), V);
    let na = first(4, a);
    let nb = first(11, b);
    const gotA: Float32Array[] = [];
    const gotB: Float32Array[] = [];
    for (let i = 0; i < 30; i++) {
      const la = m.forwardCached(Int32Array.of(na), a);
      const lb = m.forwardCached(Int32Array.of(nb), b);
      gotA.push(la);
      gotB.push(lb);
      na = backend().argmax(la, V);
      nb = backend().argmax(lb, V);
    }
    assertSame(separateA, gotA, 'cache a');
    assertSame(separateB, gotB, 'cache b');
  });

  it('a token outside the vocabulary or a full cache is a clean error and leaves the cache as it was', () => {
    const m = makeModel(LLAMA);
    const cache = new KvCache(LLAMA, 8);
    m.forwardCached(Int32Array.of(1, 2, 3), cache);
    assert.throws(() => m.forwardCached(Int32Array.of(LLAMA.vocabSize), cache), (e: unknown) => e instanceof LlmError && /outside the vocabulary/.test(e.message));
    assert.throws(() => m.forwardCached(Int32Array.of(-1), cache), LlmError);
    assert.equal(cache.pos, 3);
    for (let i = 0; i < 5; i++) m.forwardCached(Int32Array.of(4), cache);
    assert.equal(cache.pos, 8);
    assert.throws(() => m.forwardCached(Int32Array.of(4), cache), (e: unknown) => e instanceof LlmError && /exceed the context/.test(e.message));
  });

  it('compileDecode refuses malformed programs with a message naming the op', () => {
    const be = backend();
    const x = new Float32Array(32);
    const y = new Float32Array(16);
    const w = new Float32Array(16 * 32);
    const good = () => {
      const b = new DecodeProgramBuilder();
      b.matvec(x, [{ w: { data: w, type: WeightType.F32, N: 16, K: 32, bias: null }, out: y }]);
      return b.build();
    };
    // the good program runs and computes y = W x
    x.fill(1);
    w.fill(0.5);
    be.compileDecode(good()).run(0, 0);
    assert.deepEqual(Array.from(y), new Array(16).fill(16));
    const bad: [string, (p: ReturnType<typeof good>) => void, RegExp][] = [
      ['unknown op', (p) => { p.code[0] = 99; }, /unknown op/],
      ['weight too short', (p) => { p.buffers[1] = new Float32Array(10); }, /holds|short|needed/],
      ['output too short', (p) => { p.buffers[2] = new Float32Array(3); }, /holds|short|needed/],
      ['buffer index out of range', (p) => { p.code[1] = 7; }, /out of range|index/],
      ['truncated op', (p) => { p.code = p.code.subarray(0, 7); }, /truncated/],
    ];
    for (const [what, spoil, message] of bad) {
      const p = good();
      spoil(p);
      assert.throws(() => be.compileDecode(p), (e: unknown) => e instanceof Error && message.test(e.message), what);
    }
    // run-time checks: token, rope position and KV slot capacity
    const b = new DecodeProgramBuilder();
    const table = new Float32Array(4 * 8);
    const h = new Float32Array(8);
    b.embed(table, WeightType.F32, 8, h);
    const slot = b.slot(new Float32Array(8 * 2));
    b.kvStore(h, slot, 8);
    const r = be.compileDecode(b.build());
    r.run(3, 1);
    assert.throws(() => r.run(4, 0), /outside the vocabulary/);
    assert.throws(() => r.run(0, 2), /does not fit the KV cache/);
    r.bind(slot, new Float32Array(8 * 3));
    r.run(0, 2);
    assert.equal(Op.KV_STORE, 6);
  });

  it('gives the same logits with 1 and 2 threads (native pool)', (t) => {
    if (backend().name !== 'native') return t.skip('the thread pool is native');
    const here = fileURLToPath(import.meta.url);
    const child = join(here, '..', '..', 'helpers', 'decode-threads-child.js');
    const sums = [1, 2].map((threads) => {
      const r = spawnSync(process.execPath, [child], { env: { ...process.env, LLMTS_THREADS: String(threads) }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    });
    assert.match(sums[0], /^[0-9a-f]{64}$/);
    assert.equal(sums[0], sums[1]);
  });
});
