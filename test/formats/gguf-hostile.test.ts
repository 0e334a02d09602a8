/**
 * Hostile GGUF files (issue 14), each crafted byte by byte here: absurd but well-formed
 * hyperparameters (10^9 layers, a context of 10^8), metadata built to amplify memory (a 60 MB BOOL
 * array, 42 MB of empty sub-arrays, millions of strings), lenient layouts (overlapping or unaligned
 * tensor data, duplicate names and keys, alignment as a string, more blocks than block_count),
 * unsupported tensor types and out-of-range float hyperparameters. Each ends in a one-line
 * LlmError naming the GGUF key or tensor, or loads, within a second; the memory cases run in a
 * child process that reports its peak RSS.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFromGguf, importGgufModel } from '../../src/formats/gguf-model.js';
import { GgufArrayRef, GgufType, MAX_STRING_ARRAY, readGguf, readGgufArray } from '../../src/formats/gguf.js';
import { sentencePieceFromGguf } from '../../src/tokenizer/gguf-sentencepiece.js';
import { LlmError } from '../../src/util/errors.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('gguf-hostile');

// ---------------------------------------------------------------- a raw GGUF writer

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number | bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const f32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return b;
};
const str = (s: string): Buffer => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);

/** A metadata entry as bytes: key, value type, payload. */
const kv = {
  raw: (k: string, type: number, payload: Buffer): Buffer => Buffer.concat([str(k), u32(type), payload]),
  u32: (k: string, v: number): Buffer => kv.raw(k, GgufType.UINT32, u32(v)),
  u64: (k: string, v: number | bigint): Buffer => kv.raw(k, GgufType.UINT64, u64(v)),
  f32: (k: string, v: number): Buffer => kv.raw(k, GgufType.FLOAT32, f32(v)),
  str: (k: string, v: string): Buffer => kv.raw(k, GgufType.STRING, str(v)),
  bool: (k: string, v: boolean): Buffer => kv.raw(k, GgufType.BOOL, Buffer.from([v ? 1 : 0])),
  strs: (k: string, a: string[]): Buffer => kv.raw(k, GgufType.ARRAY, Buffer.concat([u32(GgufType.STRING), u64(a.length), ...a.map(str)])),
  f32s: (k: string, a: number[]): Buffer => kv.raw(k, GgufType.ARRAY, Buffer.concat([u32(GgufType.FLOAT32), u64(a.length), ...a.map(f32)])),
  i32s: (k: string, a: number[]): Buffer => kv.raw(k, GgufType.ARRAY, Buffer.concat([u32(GgufType.INT32), u64(a.length), ...a.map((v) => u32(v >>> 0))])),
};

/** An array value's payload (element type, count, elements) of `count` elements of `elemType` from `body`. */
const arrayPayload = (elemType: number, count: number, body: Buffer): Buffer => Buffer.concat([u32(elemType), u64(count), body]);

const F32 = 0;
const I32 = 26;
const F64 = 28;
const Q8_0 = 8;
const BYTES: Record<number, (n: number) => number> = { [F32]: (n) => 4 * n, [I32]: (n) => 4 * n, [F64]: (n) => 8 * n, [Q8_0]: (n) => (n / 32) * 34 };

interface RawTensor {
  name: string;
  /** ggml order */
  dims: number[];
  type?: number;
  /** default: after the previous tensor, aligned */
  offset?: number;
}

/** GGUF v3 bytes: metadata entries as given, tensor infos, then the data (every tensor filled with small values). */
function rawGguf(kvs: Buffer[], tensors: RawTensor[], alignment = 32): Buffer {
  let next = 0;
  const placed = tensors.map((t) => {
    const type = t.type ?? F32;
    const size = BYTES[type](t.dims.reduce((a, b) => a * b, 1));
    const offset = t.offset ?? next;
    next = Math.max(next, Math.ceil((offset + size) / alignment) * alignment);
    return { ...t, type, size, offset };
  });
  const infos = placed.map((t) => Buffer.concat([str(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type), u64(t.offset)]));
  const header = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(kvs.length), ...kvs, ...infos]);
  const data = Buffer.alloc(next);
  for (const t of placed) {
    if (t.type !== F32) continue;
    const ones = t.dims.length === 1;
    for (let i = 0; i < t.size / 4; i++) data.writeFloatLE(ones ? 1 : 0.05 * Math.sin(i + t.offset), t.offset + 4 * i);
  }
  const pad = Buffer.alloc((alignment - (header.length % alignment)) % alignment);
  return Buffer.concat([header, pad, data]);
}

interface Tiny {
  /** metadata entries by key (replace or delete before writing) */
  meta: Map<string, Buffer>;
  tensors: RawTensor[];
}

const C = 8;
const H = 16;
const V = 8;

/** A tiny Llama (nEmbd 8, 2 heads, hidden 16, `layers` blocks, tied embeddings) with a char vocabulary 'xabcdefg'. */
function tinyLlama(layers = 1): Tiny {
  const meta = new Map<string, Buffer>();
  const put = (b: Buffer, k: string): void => void meta.set(k, b);
  put(kv.str('general.architecture', 'llama'), 'general.architecture');
  for (const [k, v] of [['context_length', 16], ['embedding_length', C], ['block_count', layers], ['feed_forward_length', H], ['attention.head_count', 2], ['attention.head_count_kv', 2]] as const) {
    put(kv.u32(`llama.${k}`, v), `llama.${k}`);
  }
  put(kv.f32('llama.attention.layer_norm_rms_epsilon', 1e-5), 'llama.attention.layer_norm_rms_epsilon');
  put(kv.f32('llama.rope.freq_base', 10000), 'llama.rope.freq_base');
  put(kv.str('tokenizer.ggml.model', 'llama'), 'tokenizer.ggml.model');
  put(kv.strs('tokenizer.ggml.tokens', [...'xabcdefg']), 'tokenizer.ggml.tokens');
  put(kv.f32s('tokenizer.ggml.scores', new Array(V).fill(0)), 'tokenizer.ggml.scores');
  put(kv.i32s('tokenizer.ggml.token_type', new Array(V).fill(1)), 'tokenizer.ggml.token_type');
  put(kv.bool('tokenizer.ggml.add_bos_token', false), 'tokenizer.ggml.add_bos_token');
  put(kv.bool('tokenizer.ggml.add_space_prefix', false), 'tokenizer.ggml.add_space_prefix');
  const tensors: RawTensor[] = [{ name: 'token_embd.weight', dims: [C, V] }];
  for (let l = 0; l < layers; l++) tensors.push(...blockTensors(l));
  tensors.push({ name: 'output_norm.weight', dims: [C] });
  return { meta, tensors };
}

function blockTensors(l: number): RawTensor[] {
  const b = `blk.${l}`;
  return [
    { name: `${b}.attn_norm.weight`, dims: [C] }, { name: `${b}.attn_q.weight`, dims: [C, C] }, { name: `${b}.attn_k.weight`, dims: [C, C] },
    { name: `${b}.attn_v.weight`, dims: [C, C] }, { name: `${b}.attn_output.weight`, dims: [C, C] }, { name: `${b}.ffn_norm.weight`, dims: [C] },
    { name: `${b}.ffn_gate.weight`, dims: [C, H] }, { name: `${b}.ffn_up.weight`, dims: [C, H] }, { name: `${b}.ffn_down.weight`, dims: [H, C] },
  ];
}

let counter = 0;
function save(bytes: Buffer, name = 'case'): string {
  const f = join(dir, `${name}-${counter++}.gguf`);
  writeFileSync(f, bytes);
  return f;
}

function write(t: Tiny, extra: Buffer[] = [], alignment = 32): string {
  return save(rawGguf([...t.meta.values(), ...extra], t.tensors, alignment));
}

/** `fn` throws a one-line LlmError matching `pattern` in under a second of CPU time. */
function rejects(fn: () => unknown, pattern: RegExp, what: string): void {
  const cpu0 = process.cpuUsage();
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LlmError, `${what}: ${String(err)}`);
    assert.match(err.message, pattern, what);
    assert.ok(!err.message.includes('\n'), `${what}: one line`);
    return true;
  }, what);
  const cpu = process.cpuUsage(cpu0);
  const ms = (cpu.user + cpu.system) / 1000;
  assert.ok(ms < 1000, `${what}: ${ms.toFixed(0)} ms of CPU time`);
}

// ---------------------------------------------------------------- child process with peak RSS

const CHILD = `
const [mode, file] = process.argv.slice(2);
const { importGgufModel } = await import(${JSON.stringify(new URL('../../src/formats/gguf-model.js', import.meta.url).href)});
const { readGguf } = await import(${JSON.stringify(new URL('../../src/formats/gguf.js', import.meta.url).href)});
const { LlmError } = await import(${JSON.stringify(new URL('../../src/util/errors.js', import.meta.url).href)});
// peak RSS of this process image: Linux's VmHWM (getrusage's maxRSS also counts the parent's
// pages at fork time, so it would report the test runner's size), elsewhere maxRSS
const { readFileSync } = await import('node:fs');
const peakKb = () => {
  try {
    const m = /VmHWM:\\s*(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {}
  return process.resourceUsage().maxRSS;
};
const before = peakKb();
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const out = {};
try {
  if (mode === 'read') readGguf(file);
  else {
    const m = importGgufModel(file);
    out.layers = m.config.nLayer;
    out.tokenizer = m.tokenizer ? m.tokenizer.kind : null;
  }
  out.ok = true;
} catch (err) {
  out.ok = false;
  out.llmError = err instanceof LlmError;
  out.message = String(err && err.message);
}
out.ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
out.cpuMs = (cpu.user + cpu.system) / 1000;
out.baseMb = before / 1024;
out.peakMb = peakKb() / 1024;
console.log(JSON.stringify(out));
`;

interface ChildOutcome { ok: boolean; llmError?: boolean; message?: string; layers?: number; tokenizer?: string | null; ms: number; cpuMs: number; baseMb: number; peakMb: number }

/** Load `file` in a child process (heap capped at 256 MB); its outcome, time and peak RSS. */
function loadInChild(file: string, mode: 'import' | 'read' = 'import'): ChildOutcome {
  const script = join(dir, 'child.mjs');
  writeFileSync(script, CHILD);
  const r = spawnSync(process.execPath, ['--max-old-space-size=256', script, mode, file], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `child exited with ${r.status} (${r.signal ?? ''}): ${r.stderr.slice(0, 500)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildOutcome;
}

const PEAK_MB = 200;

function assertCheap(o: ChildOutcome, what: string, t: { diagnostic: (s: string) => void }): void {
  t.diagnostic(`${what}: ${o.ok ? 'loaded' : `LlmError: ${o.message?.slice(0, 120)}`} in ${o.ms.toFixed(0)} ms, peak RSS ${o.peakMb.toFixed(0)} MB (${o.baseMb.toFixed(0)} MB before loading)`);
  assert.ok(o.ok || o.llmError, `${what}: ${o.message}`);
  assert.ok(o.peakMb < PEAK_MB, `${what}: peak RSS ${o.peakMb.toFixed(0)} MB`);
  // CPU time, not wall time: the bound catches seconds of work, not a machine busy with other jobs
  assert.ok(o.cpuMs < 1000, `${what}: ${o.cpuMs.toFixed(0)} ms of CPU time`);
}

// ---------------------------------------------------------------- the tests

describe('hostile GGUF files', () => {
  it('the tiny model written here loads (the base of every case)', () => {
    const m = importGgufModel(write(tinyLlama(2)));
    assert.equal(m.config.nLayer, 2);
    assert.equal(m.config.nEmbd, C);
    assert.equal(m.tokenizer?.kind, 'char');
  });

  describe('hyperparameters that size allocations are checked against the tensors present', () => {
    it('a block_count of 10^9 or 10^6 with one block of tensors is an error at once, in run too', () => {
      for (const n of [1e9, 1e6, 2]) {
        const t = tinyLlama(1);
        t.meta.set('llama.block_count', kv.u32('llama.block_count', n));
        const f = write(t);
        rejects(() => importGgufModel(f), new RegExp(`llama\\.block_count = ${n}, but the file has tensors of 1 block \\(blk\\.0 to blk\\.0\\): the layer count must match`), `${n} layers`);
        rejects(() => configFromGguf(readGguf(f)), /block_count/, `${n} layers, configFromGguf`);
        if (n === 1e9) {
          const t0 = performance.now();
          const r = runCli(['run', f, '-p', 'x', '-n', '1']);
          assertOneLineError(r, /llama\.block_count = 1000000000, but the file has tensors of 1 block/);
          assert.ok(performance.now() - t0 < 10_000);
        }
      }
    });

    it('fewer layers declared than blocks present, a missing block, block_count 0 or beyond 2^53', () => {
      const two = tinyLlama(2);
      two.meta.set('llama.block_count', kv.u32('llama.block_count', 1));
      rejects(() => importGgufModel(write(two)), /llama\.block_count = 1, but the file has tensors of blk\.1 \(2 blocks in all\)/, 'fewer declared');
      const gap = tinyLlama(1);
      gap.tensors.push(...blockTensors(2));
      gap.meta.set('llama.block_count', kv.u32('llama.block_count', 2));
      rejects(() => importGgufModel(write(gap)), /block_count = 2, but the file has tensors of blk\.2/, 'blk.0 and blk.2');
      const gap3 = tinyLlama(1);
      gap3.tensors.push(...blockTensors(2));
      gap3.meta.set('llama.block_count', kv.u32('llama.block_count', 3));
      rejects(() => importGgufModel(write(gap3)), /block_count = 3, but the file has tensors of 2 blocks \(blk\.0 to blk\.2, some missing\)/, 'gap');
      const zero = tinyLlama(1);
      zero.meta.set('llama.block_count', kv.u32('llama.block_count', 0));
      rejects(() => importGgufModel(write(zero)), /llama\.block_count = 0: must be a positive integer/, 'zero');
      const huge = tinyLlama(1);
      huge.meta.set('llama.block_count', kv.u64('llama.block_count', 1n << 60n));
      rejects(() => importGgufModel(write(huge)), /llama\.block_count = a bigint \(1152921504606846976\): must be a positive integer/, '2^60');
      const str = tinyLlama(1);
      str.meta.set('llama.block_count', kv.str('llama.block_count', '1'));
      rejects(() => importGgufModel(write(str)), /llama\.block_count = a string \(1\): must be a positive integer/, 'string');
    });

    it('embedding, vocabulary, feed-forward and key/value sizes must match the tensor dims', () => {
      const cases: [string, Buffer, RegExp][] = [
        ['llama.embedding_length', kv.u32('llama.embedding_length', 1 << 30), /llama\.embedding_length = 1073741824, but token_embd\.weight has dims \[8, 8\]/],
        ['llama.feed_forward_length', kv.u32('llama.feed_forward_length', 1e9), /llama\.feed_forward_length = 1000000000, but blk\.0\.ffn_up\.weight has dims \[8, 16\]/],
        ['llama.attention.head_count_kv', kv.u32('llama.attention.head_count_kv', 1), /head_count = 2, head_count_kv = 1 imply 4 key rows, but blk\.0\.attn_k\.weight has dims \[8, 8\]/],
        ['llama.vocab_size', kv.u32('llama.vocab_size', 1e9), /llama\.vocab_size = 1000000000, but token_embd\.weight has 8 rows/],
      ];
      for (const [key, value, pattern] of cases) {
        const t = tinyLlama(1);
        t.meta.set(key, value);
        rejects(() => importGgufModel(write(t)), pattern, key);
      }
    });

    it('a context of 10^8 or 2^32 - 1 costs nothing proportional to it while loading', (t) => {
      for (const ctx of [1e8, 2 ** 32 - 1]) {
        const m = tinyLlama(1);
        m.meta.set('llama.context_length', kv.u32('llama.context_length', ctx));
        const o = loadInChild(write(m));
        // either loads (the context only bounds generation) or is refused by the config's range check
        assertCheap(o, `context ${ctx}`, t);
        if (!o.ok) assert.match(o.message!, /blockSize|context/);
      }
    });
  });

  describe('float hyperparameters are range-checked where they are read', () => {
    for (const [key, value, pattern] of [
      ['llama.rope.freq_base', 0, /llama\.rope\.freq_base = 0: must be a positive finite number/],
      ['llama.rope.freq_base', -10000, /freq_base = -10000: must be a positive finite number/],
      ['llama.rope.freq_base', NaN, /freq_base = NaN: must be a positive finite number/],
      ['llama.rope.freq_base', Infinity, /freq_base = Infinity: must be a positive finite number/],
      ['llama.attention.layer_norm_rms_epsilon', 3, /layer_norm_rms_epsilon = 3: must be a number in \(0, 0\.1\]/],
      ['llama.attention.layer_norm_rms_epsilon', 2 ** 40, /layer_norm_rms_epsilon = 1099511627776: must be a number in \(0, 0\.1\]/],
      ['llama.attention.layer_norm_rms_epsilon', 0, /layer_norm_rms_epsilon = 0: must be/],
      ['llama.attention.layer_norm_rms_epsilon', -1e-5, /layer_norm_rms_epsilon = -0\.00000999.*: must be/],
      ['llama.attention.layer_norm_rms_epsilon', NaN, /layer_norm_rms_epsilon = NaN: must be/],
    ] as const) {
      it(`${key} = ${value}`, () => {
        const t = tinyLlama(1);
        t.meta.set(key, kv.f32(key, value));
        rejects(() => importGgufModel(write(t)), pattern, `${key} ${value}`);
      });
    }

    it('accepts the values real models use (1e-6, 1e-5, bases 10000 to 5e6)', () => {
      for (const [eps, base] of [[1e-6, 10000], [1e-5, 500000], [1e-5, 5e6]]) {
        const t = tinyLlama(1);
        t.meta.set('llama.attention.layer_norm_rms_epsilon', kv.f32('llama.attention.layer_norm_rms_epsilon', eps));
        t.meta.set('llama.rope.freq_base', kv.f32('llama.rope.freq_base', base));
        const cfg = importGgufModel(write(t)).config;
        assert.equal(cfg.normEps, eps);
        assert.equal(cfg.ropeTheta, base);
      }
    });
  });

  describe('metadata cannot amplify memory', () => {
    const big = (payload: Buffer, key = 'x.hostile', tiny = tinyLlama(1)): string => {
      tiny.meta.set(key, kv.raw(key, GgufType.ARRAY, payload));
      return write(tiny);
    };

    it('a 60 MB BOOL array (peak 1.3 GB before) is left in the file', (t) => {
      const n = 60_000_000;
      const body = Buffer.alloc(n, 1);
      const f = big(arrayPayload(GgufType.BOOL, n, body));
      const o = loadInChild(f);
      assertCheap(o, '60 MB BOOL array', t);
      assert.ok(o.ok && o.tokenizer === 'char');
      const g = readGguf(f);
      const ref = g.metadata.get('x.hostile');
      assert.ok(ref instanceof GgufArrayRef);
      assert.equal(String(ref), 'array of 60000000 BOOL');
      rmSync(f);
    });

    it('42 MB of empty sub-arrays (peak 1.35 GB before) are skipped', (t) => {
      const n = 3_500_000;
      const body = Buffer.alloc(12 * n);
      for (let i = 0; i < n; i++) body.writeUInt32LE(GgufType.UINT8, 12 * i);
      const f = big(arrayPayload(GgufType.ARRAY, n, body));
      assertCheap(loadInChild(f), '42 MB of empty sub-arrays', t);
      assert.equal(String(readGguf(f).metadata.get('x.hostile')), 'array of 3500000 ARRAY');
      // asked for, they are refused rather than made into 3.5 million arrays
      rejects(() => readGgufArray(readGguf(f), 'x.hostile'), /array 'x\.hostile' holds more than 65536 arrays, more than llm\.ts reads/, 'readGgufArray');
      rmSync(f);
    });

    it('60 MB of strings under an unknown key are skipped; a BOOL token_type is reported, not read', (t) => {
      const n = 7_000_000;
      const body = Buffer.alloc(8 * n); // empty strings
      const f = big(arrayPayload(GgufType.STRING, n, body));
      assertCheap(loadInChild(f), '7,000,000 empty strings', t);
      rmSync(f);
      const types = big(arrayPayload(GgufType.BOOL, 60_000_000, Buffer.alloc(60_000_000, 1)), 'tokenizer.ggml.token_type');
      const o = loadInChild(types);
      assertCheap(o, '60 MB BOOL token_type', t);
      assert.match(o.message ?? '', /tokenizer\.ggml\.token_type must be an int32 array with one type per token \(8\); it is an array of 60000000 BOOL/);
      rmSync(types);
    });

    it(`a vocabulary of more than ${MAX_STRING_ARRAY} strings is refused without reading them`, (t) => {
      const n = MAX_STRING_ARRAY + 1;
      const body = Buffer.alloc(9 * n);
      for (let i = 0; i < n; i++) {
        body.writeUInt32LE(1, 9 * i);
        body[9 * i + 8] = 0x61;
      }
      const f = big(arrayPayload(GgufType.STRING, n, body), 'tokenizer.ggml.tokens');
      const o = loadInChild(f);
      assertCheap(o, `${n} one-letter tokens`, t);
      assert.match(o.message ?? '', /tokenizer\.ggml\.tokens has 4194305 tokens, but token_embd\.weight has 8 rows; they must be equal/);
      // read as a vocabulary on its own, the list is refused by its length
      rejects(() => sentencePieceFromGguf(readGguf(f)), /GGUF metadata 'tokenizer\.ggml\.tokens' holds 4194305 strings, more than llm\.ts reads \(4194304\)/, 'vocabulary');
      rmSync(f);
    });

    it('arrays nested deeper than 3 levels are refused; 3 levels are read on request', () => {
      const level = (inner: Buffer): Buffer => arrayPayload(GgufType.ARRAY, 1, inner);
      const leaf = arrayPayload(GgufType.INT32, 2, Buffer.concat([u32(7), u32(8)]));
      const ok = write(tinyLlama(1), [kv.raw('x.deep', GgufType.ARRAY, level(level(leaf)))]);
      assert.deepEqual(readGgufArray(readGguf(ok), 'x.deep'), [[Int32Array.from([7, 8])]]);
      const deep = write(tinyLlama(1), [kv.raw('x.deep', GgufType.ARRAY, level(level(level(leaf))))]);
      rejects(() => readGguf(deep), /array 'x\.deep' nests arrays more than 3 levels deep/, 'four levels');
      // and a file of 200,000 levels is refused at the fourth, without recursing
      const parts: Buffer[] = [];
      for (let i = 0; i < 200_000; i++) parts.push(u32(GgufType.ARRAY), u64(1));
      const deeper = write(tinyLlama(1), [kv.raw('x.deeper', GgufType.ARRAY, Buffer.concat([...parts, u32(GgufType.UINT8), u64(0)]))]);
      rejects(() => readGguf(deeper), /nests arrays more than 3 levels deep/, '200,000 levels');
    });

    it('a token list longer or shorter than token_embd is refused, as llama.cpp refuses it', () => {
      for (const tokens of [[...'xabcdefgh'], [...'xab']]) {
        const t = tinyLlama(1);
        t.meta.set('tokenizer.ggml.tokens', kv.strs('tokenizer.ggml.tokens', tokens));
        rejects(() => importGgufModel(write(t)), new RegExp(`tokenizer\\.ggml\\.tokens has ${tokens.length} tokens, but token_embd\\.weight has 8 rows`), `${tokens.length} tokens`);
      }
    });

    it('the tokenizer arrays llm.ts uses are still read eagerly, with their types', () => {
      const g = readGguf(write(tinyLlama(1)));
      assert.deepEqual(g.metadata.get('tokenizer.ggml.tokens'), [...'xabcdefg']);
      assert.ok(g.metadata.get('tokenizer.ggml.scores') instanceof Float32Array);
      assert.ok(g.metadata.get('tokenizer.ggml.token_type') instanceof Int32Array);
    });
  });

  describe('lenient layouts are rejected as llama.cpp rejects them', () => {
    const layout = (mutate: (t: Tiny, extra: Buffer[]) => number | void): string => {
      const t = tinyLlama(1);
      const extra: Buffer[] = [];
      const alignment = mutate(t, extra) ?? 32;
      return write(t, extra, alignment);
    };

    it('overlapping tensor data', () => {
      const f = layout((t) => {
        t.tensors[1].offset = 224; // attn_norm over the last 32 bytes of token_embd (0 to 256)
      });
      rejects(() => readGguf(f), /the data of tensors 'token_embd\.weight' \(offset 0, 256 bytes\) and 'blk\.0\.attn_norm\.weight' \(offset 224\) overlap/, 'overlap');
      const same = layout((t) => {
        t.tensors[1].offset = 0; // attn_norm on top of token_embd
      });
      rejects(() => readGguf(same), /the data of tensors 'token_embd\.weight' \(offset 0, 256 bytes\) and 'blk\.0\.attn_norm\.weight' \(offset 0\) overlap/, 'same offset');
    });

    it('offsets that are not multiples of the alignment', () => {
      const f = layout((t) => {
        t.tensors[t.tensors.length - 1].offset = 100_000 + 4;
      });
      rejects(() => readGguf(f), /tensor 'output_norm\.weight' has offset 100004, not a multiple of the alignment 32/, 'unaligned');
    });

    it('data past the end of the file', () => {
      const bytes = readFileSync(write(tinyLlama(1)));
      const cut = save(bytes.subarray(0, bytes.length - 16), 'cut');
      rejects(() => readGguf(cut), /tensor 'output_norm\.weight' \(32 bytes at offset \d+\) extends past the end of the file \(truncated\?\)/, 'past the end');
    });

    it('duplicate tensor names and duplicate metadata keys', () => {
      const names = layout((t) => {
        t.tensors.push({ name: 'blk.0.attn_q.weight', dims: [C, C] });
      });
      rejects(() => readGguf(names), /malformed GGUF file: tensor 'blk\.0\.attn_q\.weight' is listed twice/, 'tensor names');
      const keys = layout((_, extra) => {
        extra.push(kv.u32('llama.block_count', 1));
      });
      rejects(() => readGguf(keys), /malformed GGUF file: metadata key 'llama\.block_count' appears twice/, 'metadata keys');
    });

    it('general.alignment as a string, a UINT64, 0 or 48', () => {
      const cases: [Buffer, RegExp][] = [
        [kv.str('general.alignment', '32'), /general\.alignment must be a UINT32, not a STRING/],
        [kv.u64('general.alignment', 32), /general\.alignment must be a UINT32, not a UINT64/],
        [kv.u32('general.alignment', 0), /general\.alignment 0 is not a power of two/],
        [kv.u32('general.alignment', 48), /general\.alignment 48 is not a power of two/],
      ];
      for (const [value, pattern] of cases) {
        const f = layout((_, extra) => {
          extra.push(value);
        });
        rejects(() => readGguf(f), pattern, String(pattern));
      }
      // a power of two other than 32 is fine when the data follows it
      const ok = layout((_, extra) => {
        extra.push(kv.u32('general.alignment', 64));
        return 64;
      });
      assert.equal(readGguf(ok).alignment, 64);
      assert.equal(importGgufModel(ok).config.nLayer, 1);
    });

    it('more than 4 dims, rows that are not whole blocks', () => {
      const dims = layout((t) => {
        t.tensors.push({ name: 'x.weight', dims: [2, 2, 2, 2, 2] });
      });
      rejects(() => readGguf(dims), /tensor 'x\.weight' has 5 dimensions \(1 to 4 are possible\)/, '5 dims');
      const rows = layout((t) => {
        t.tensors.push({ name: 'x.weight', dims: [33, 1], type: Q8_0 });
      });
      rejects(() => readGguf(rows), /tensor 'x\.weight' of type Q8_0 has rows of 33 elements, not a multiple of its block size 32/, 'Q8_0 rows');
    });
  });

  it('a directory or a FIFO named as a GGUF file is refused before it is opened', { skip: process.platform === 'win32' }, () => {
    rejects(() => readGguf(dir), /is a directory, not a GGUF file/, 'directory');
    const fifo = join(dir, 'pipe.gguf');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return;
    rejects(() => readGguf(fifo), /pipe\.gguf is a FIFO \(named pipe\), not a GGUF file/, 'FIFO');
  });

  describe('unsupported tensor types are named in GGUF terms', () => {
    for (const [type, label] of [[I32, 'I32 \\(26\\)'], [F64, 'F64 \\(28\\)']] as const) {
      it(`an ${label.replace(/\\/g, '')} weight`, () => {
        const t = tinyLlama(1);
        t.tensors[2].type = type; // blk.0.attn_q.weight
        const f = write(t);
        rejects(() => importGgufModel(f), new RegExp(`GGUF tensor 'blk\\.0\\.attn_q\\.weight' has ggml type ${label}, which llm\\.ts cannot read \\(it reads F32, F16, BF16, Q8_0 and Q4_0\\)`), label);
        assertOneLineError(runCli(['run', f, '-p', 'x', '-n', '1']), new RegExp(`attn_q\\.weight' has ggml type ${label}`));
      });
    }
  });
});
