/**
 * Batch decode programs (DecodeRunner.runBatch, native/decode.c) against the reference
 * interpreter: the same logits (to float rounding) for Llama and GPT-2 programs, F32 and Q8_0,
 * over steps with different row counts, slots in any order and positions per slot; and, on the
 * native side, every row bit-identical to a single-token run of the same model (the batch tiles
 * keep the one-row arithmetic) at this machine's SIMD level and, in child processes, with
 * LLMTS_SIMD=portable and avx2. Also the argument checks of both implementations.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeBackendInfo, referenceBackend, type Backend } from '../../src/backend/index.js';
import { DecodeProgramBuilder, WeightType, type DecodeRunner } from '../../src/backend/decode-program.js';
import { exportGgufModel, importGgufModel } from '../../src/formats/gguf-model.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer, type DecodeProgramParts } from '../../src/model/transformer.js';
import { reserveRope } from '../../src/tensor/ops/rope.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';
import { nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

const CHILD = process.env.LLMTS_DECODE_BATCH_CHILD;
const LLAMA = tinyLlama({ vocabSize: 77, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 48, hiddenDim: 88 });
const GPT2 = tinyGpt2({ vocabSize: 53, blockSize: 64, nLayer: 2, nHead: 3, nKvHead: 3, nEmbd: 48, hiddenDim: 96 });
const ROWS = 6;
const SLOT_ROWS = 40;

/** A compiled program of `rows` rows with KV buffers of its own, bound; runs keep the rope tables bound. */
class Runner {
  readonly parts: DecodeProgramParts;
  readonly runner: DecodeRunner;
  constructor(readonly model: Transformer, be: Backend, rows: number, slots: number) {
    this.parts = model.decodeProgram(rows);
    this.runner = be.compileDecode(this.parts.program);
    const kvDim = model.config.nKvHead * (model.config.nEmbd / model.config.nHead);
    for (const s of this.parts.slots) {
      this.runner.bind(s.k, new Float32Array(slots * SLOT_ROWS * kvDim));
      this.runner.bind(s.v, new Float32Array(slots * SLOT_ROWS * kvDim));
    }
  }
  private rope(): void {
    const r = this.parts.rope;
    if (!r) return;
    reserveRope(r.tables, SLOT_ROWS);
    this.runner.bind(r.cos, r.tables.cos);
    this.runner.bind(r.sin, r.tables.sin);
  }
  batch(tokens: number[], positions: number[], slots: number[]): Float32Array {
    this.rope();
    this.runner.runBatch(Int32Array.from(tokens), Int32Array.from(positions), Int32Array.from(slots), tokens.length, SLOT_ROWS);
    return this.parts.logits.slice(0, tokens.length * this.model.config.vocabSize);
  }
  single(token: number, pos: number): Float32Array {
    this.rope();
    this.runner.run(token, pos);
    return this.parts.logits.slice();
  }
}

/** Steps of (rows): slot, token; positions advance per slot. */
function schedule(V: number): { tokens: number[]; slots: number[] }[] {
  const steps: { tokens: number[]; slots: number[] }[] = [];
  const orders = [[0, 1, 2, 3, 4, 5], [5, 3, 1], [2], [4, 0, 5, 1, 3, 2], [1, 2, 3, 4, 5], [3, 0], [0, 1, 2, 3, 4, 5]];
  let t = 1;
  for (let rep = 0; rep < 4; rep++) {
    for (const slots of orders) steps.push({ slots, tokens: slots.map(() => (t = (t * 31 + 7) % V)) });
  }
  return steps;
}

function models(): [string, Transformer][] {
  const llama = scaledModel(LLAMA, { seed: 1, gain: 3, jitter: 0.2 });
  const gpt2 = scaledModel(GPT2, { seed: 2, gain: 3, jitter: 0.2 });
  const dir = tmpDir('decode-batch');
  const file = join(dir, 'llama.q8_0.gguf');
  exportGgufModel(file, LLAMA, llama.params, { quant: 'q8_0' });
  const g = importGgufModel(file, { keepQuantized: true });
  const q8 = new Transformer(g.config, g.params, { quantized: g.quantized });
  q8.eval();
  return [['llama', llama], ['gpt2', gpt2], ['llama q8_0', q8]];
}

/**
 * For each model: native batch vs reference batch (worst relative error), and each native batch
 * row against a single-token run of a one-row native program fed the same sequence (must be equal).
 */
function checkAll(): number {
  const native = nativeOrFail();
  let worst = 0;
  for (const [name, m] of models()) {
    const V = m.config.vocabSize;
    const nat = new Runner(m, native, ROWS, ROWS);
    const ref = new Runner(m, referenceBackend, ROWS, ROWS);
    // one single-row program per slot, each with its own KV buffers (slot 0 of its own)
    const alone = Array.from({ length: ROWS }, () => new Runner(m, native, 1, 1));
    const pos = new Array<number>(ROWS).fill(0);
    for (const { tokens, slots } of schedule(V)) {
      const positions = slots.map((s) => pos[s]);
      const a = nat.batch(tokens, positions, slots);
      const b = ref.batch(tokens, positions, slots);
      slots.forEach((s, r) => {
        const one = alone[s].single(tokens[r], pos[s]);
        for (let j = 0; j < V; j++) {
          const x = a[r * V + j];
          if (x !== one[j]) assert.fail(`${name}: slot ${s} at position ${pos[s]}, logit ${j}: batch ${x} vs single ${one[j]}`);
          const d = Math.abs(x - b[r * V + j]) / Math.max(1, Math.abs(b[r * V + j]));
          if (!(d < 2e-4)) assert.fail(`${name}: slot ${s} at position ${pos[s]}, logit ${j}: native ${x} vs reference ${b[r * V + j]}`);
          worst = Math.max(worst, d);
        }
        pos[s]++;
      });
    }
  }
  return worst;
}

test('native batch decode programs match the reference, and each row a single-token run bit for bit', { skip: nativeSkipReason }, (t) => {
  const line = `DECODE_BATCH_MAXERR simd=${nativeBackendInfo()?.simd} ${checkAll()}`;
  if (CHILD) process.stdout.write(`${line}\n`);
  else t.diagnostic(line);
});

test('runBatch and compileDecode check their arguments (native and reference alike)', { skip: nativeSkipReason }, () => {
  for (const be of [nativeOrFail(), referenceBackend]) {
    const x = new Float32Array(3 * 16);
    const y = new Float32Array(3 * 8);
    const table = new Float32Array(5 * 16);
    const w = new Float32Array(8 * 16).fill(0.25);
    const build = () => {
      const b = new DecodeProgramBuilder();
      b.embed(table, WeightType.F32, 16, x);
      const slot = b.slot(new Float32Array(0));
      b.kvStore(x, slot, 16);
      b.matvec(x, [{ w: { data: w, type: WeightType.F32, N: 8, K: 16, bias: null }, out: y }]);
      const p = b.build();
      p.rowStrides = Int32Array.from(p.buffers, (buf) => (buf === x ? 16 : buf === y ? 8 : 0));
      return { p, slot };
    };
    const { p, slot } = build();
    const r = be.compileDecode(p);
    r.bind(slot, new Float32Array(2 * 4 * 16)); // 2 slots of 4 positions
    table.forEach((_, i) => (table[i] = Math.floor(i / 16)));
    r.runBatch(Int32Array.of(1, 4), Int32Array.of(0, 3), Int32Array.of(1, 0), 2, 4);
    assert.deepEqual(Array.from(y.subarray(0, 16)), [...new Array(8).fill(4), ...new Array(8).fill(16)], be.name);
    const bad: [() => void, RegExp][] = [
      [() => r.runBatch(Int32Array.of(1, 1, 1, 1), Int32Array.of(0, 0, 0, 0), Int32Array.of(0, 1, 2, 3), 4, 4), /4 rows given, but the program's buffers hold 3/],
      [() => r.runBatch(Int32Array.of(1, 2), Int32Array.of(0, 0), Int32Array.of(1, 1), 2, 4), /rows 0 and 1 both decode KV slot 1/],
      [() => r.runBatch(Int32Array.of(1, 2), Int32Array.of(0, 4), Int32Array.of(0, 1), 2, 4), /row 1: position 4 in KV slot 1 is outside the slot's 4 positions/],
      [() => r.runBatch(Int32Array.of(1, 5), Int32Array.of(0, 1), Int32Array.of(0, 1), 2, 4), /row 1: token id 5 is outside the vocabulary/],
      [() => r.runBatch(Int32Array.of(1, 2), Int32Array.of(0, 1), Int32Array.of(0, 2), 2, 4), /row 1: position 1 does not fit the KV cache buffer/],
      [() => r.bind(p.buffers.indexOf(x), new Float32Array(48)), /row buffer of a batch program cannot be rebound/],
    ];
    for (const [f, message] of bad) assert.throws(f, (e: unknown) => e instanceof Error && message.test(e.message), `${be.name}: ${message}`);
    const spoilt = build().p;
    spoilt.rowStrides = new Int32Array(2);
    assert.throws(() => be.compileDecode(spoilt), /one entry per buffer/, be.name);
    spoilt.rowStrides = Int32Array.from(spoilt.buffers, () => -1);
    assert.throws(() => be.compileDecode(spoilt), /row strides must be >= 0/, be.name);
    // a program without row strides runs one row only
    const single = build().p;
    delete single.rowStrides;
    const one = be.compileDecode(single);
    one.bind(slot, new Float32Array(2 * 4 * 16));
    assert.throws(() => one.runBatch(Int32Array.of(1, 2), Int32Array.of(0, 0), Int32Array.of(0, 1), 2, 4), /buffers hold 1/, be.name);
  }
});

if (!CHILD) {
  for (const level of ['portable', 'avx2']) {
    test(`native batch decode programs with LLMTS_SIMD=${level}`, { skip: nativeSkipReason }, (t) => {
      nativeOrFail();
      const simd = nativeBackendInfo()?.simd;
      if (level === 'avx2' && simd !== 'avx2' && simd !== 'avx512') {
        t.skip(`this CPU has no AVX2 (${simd})`);
        return;
      }
      const env: NodeJS.ProcessEnv = { ...process.env, LLMTS_SIMD: level, LLMTS_DECODE_BATCH_CHILD: '1' };
      delete env.NODE_TEST_CONTEXT;
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env, encoding: 'utf8' });
      const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
      assert.equal(r.status, 0, `the LLMTS_SIMD=${level} child failed:\n${out.slice(-4000)}`);
      const line = /DECODE_BATCH_MAXERR simd=(\S+) .*/.exec(out);
      assert.ok(line, out.slice(-2000));
      assert.equal(line[1], level);
      t.diagnostic(line[0]);
    });
  }
}
