/**
 * Fuzzing the file loaders: seeded random mutations of small valid safetensors, GGUF and llama2.c
 * files; every load must either return or throw an LlmError. Each format runs in a worker thread
 * (this same file, isMainThread false) with a heap limit, so an infinite loop (watchdog) or a
 * memory blow-up fails the test with the seed and mutation instead of hanging or killing it.
 *
 * Reproduce one case: mutateCase(baseFile(format), seed) gives the same bytes and description.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { readGguf } from '../../src/formats/gguf.js';
import { LLAMA2C_MAGIC, readLlama2c } from '../../src/formats/llama2c.js';
import { loadSafetensors, parseSafetensors, serializeSafetensors } from '../../src/formats/safetensors.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';

type Format = 'safetensors' | 'gguf' | 'llama2c';

const CASES: Record<Format, number> = { safetensors: 5000, gguf: 5000, llama2c: 2000 };
const SEED_BASE: Record<Format, number> = { safetensors: 1_000_000, gguf: 2_000_000, llama2c: 3_000_000 };
/** a case that makes no progress for this long is a hang */
const HANG_MS = 5000;

// ---------------------------------------------------------------- base files

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
}

function baseSafetensors(): Uint8Array {
  return concat(serializeSafetensors({
    'a.weight': { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-3, 7]) },
    'b.half': { dtype: 'F16', shape: [4], data: Float32Array.from([0.5, -1, 2, 65504]) },
    'c.bf16': { dtype: 'BF16', shape: [1, 2], data: Float32Array.from([3, -0.25]) },
    ids: { dtype: 'I64', shape: [3], data: BigInt64Array.from([1n, -2n, 3n]) },
    mask: { dtype: 'U8', shape: [2, 2], data: Uint8Array.from([0, 1, 1, 0]) },
    scalar: { dtype: 'I32', shape: [], data: Int32Array.from([42]) },
    empty: { dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
  }, { format: 'pt', note: 'fuzz' }));
}

/** A small GGUF v3 written by hand from the spec, with several value types. */
function baseGguf(): Uint8Array {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: number | bigint): void => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s: string): void => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF'));
  u32(3); u64(2); u64(7);
  str('general.architecture'); u32(8); str('llama');
  str('general.alignment'); u32(4); u32(32);
  str('tokenizer.ggml.tokens'); u32(9); u32(8); u64(3); str('a'); str('bc'); str('<s>');
  str('tokenizer.ggml.scores'); u32(9); u32(6); u64(3); for (const f of [0, -1.5, 2]) { const b = Buffer.alloc(4); b.writeFloatLE(f); parts.push(b); }
  str('llama.context_length'); u32(10); u64(4096);
  str('x.nested'); u32(9); u32(9); u64(2); u32(4); u64(1); u32(7); u32(5); u64(0);
  str('x.flag'); u32(7); parts.push(Buffer.from([1]));
  str('w'); u32(2); u64(4); u64(3); u32(0); u64(0);
  str('v'); u32(1); u64(8); u32(1); u64(64);
  const header = Buffer.concat(parts);
  const padded = Math.ceil(header.length / 32) * 32;
  return Buffer.concat([header, Buffer.alloc(padded - header.length), Buffer.alloc(80)]);
}

/** A tiny llama2.c file: legacy (version 0) or version 1, dim 8, 2 heads, 1 kv head, 1 layer. */
function baseLlama2c(version: 0 | 1): Uint8Array {
  const [dim, hidden, layers, heads, kvHeads, vocab, seq] = [8, 12, 1, 2, 1, 5, 4];
  const kv = (dim / heads) * kvHeads;
  let floats = vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim) + dim + vocab * dim;
  let header: Buffer;
  if (version === 0) {
    header = Buffer.alloc(28);
    [dim, hidden, layers, heads, kvHeads, -vocab, seq].forEach((v, i) => header.writeInt32LE(v, 4 * i));
    floats += seq * (dim / heads); // freq_cis real + imag
  } else {
    header = Buffer.alloc(256);
    header.writeUInt32LE(LLAMA2C_MAGIC, 0);
    header.writeInt32LE(1, 4);
    [dim, hidden, layers, heads, kvHeads, vocab, seq].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
    header.writeUInt8(0, 36);
  }
  const w = Float32Array.from({ length: floats }, (_, i) => Math.sin(i) * 0.1);
  return concat([header, new Uint8Array(w.buffer)]);
}

function baseFile(format: Format, seed: number): Uint8Array {
  if (format === 'safetensors') return baseSafetensors();
  if (format === 'gguf') return baseGguf();
  return baseLlama2c(seed % 2 === 0 ? 0 : 1);
}

// ---------------------------------------------------------------- mutations

const HUGE: bigint[] = [
  0xffffffffffffffffn, 0x7fffffffffffffffn, 0x8000000000000000n, 1n << 53n, (1n << 53n) + 1n, 1n << 32n,
  0xffffffffn, 0x7fffffffn, 0x80000000n, 1n << 40n, 0n,
];
const JSON_NUMBERS = ['-1', '1e308', '18446744073709551616', '9007199254740993', '0', '4294967296', '1.5', '-0', '1e2', '99999999999'];

/** Apply 1-3 seeded mutations; returns the bytes and a description of what was done. */
export function mutateCase(base: Uint8Array, seed: number, format: Format): { bytes: Uint8Array; desc: string } {
  const rng = new Rng(seed);
  let b: Uint8Array = Uint8Array.from(base);
  const steps: string[] = [];
  const n = 1 + rng.int(3);
  // most structure sits in the header: bias positions towards the first bytes
  const pos = (len: number): number => (len === 0 ? 0 : rng.uniform() < 0.7 ? rng.int(Math.min(len, 300)) : rng.int(len));
  for (let k = 0; k < n; k++) {
    const kind = rng.int(format === 'safetensors' ? 8 : 7);
    switch (kind) {
      case 0: {
        const p = pos(b.length), bit = rng.int(8);
        if (b.length) b[p] ^= 1 << bit;
        steps.push(`flip bit ${bit} of byte ${p}`);
        break;
      }
      case 1: {
        const p = pos(b.length), v = [0x00, 0xff, rng.int(256)][rng.int(3)];
        if (b.length) b[p] = v;
        steps.push(`byte ${p} = 0x${v.toString(16)}`);
        break;
      }
      case 2: {
        const len = rng.uniform() < 0.5 ? pos(b.length) : rng.int(b.length + 1);
        b = b.slice(0, len);
        steps.push(`truncate to ${len}`);
        break;
      }
      case 3: {
        const p = pos(b.length + 1), count = 1 + rng.int(16);
        const ins = Uint8Array.from({ length: count }, () => rng.int(256));
        b = concat([b.subarray(0, p), ins, b.subarray(p)]);
        steps.push(`insert ${count} random bytes at ${p}`);
        break;
      }
      case 4: {
        const p = pos(b.length), count = 1 + rng.int(16);
        b = concat([b.subarray(0, p), b.subarray(p + count)]);
        steps.push(`delete ${count} bytes at ${p}`);
        break;
      }
      case 5:
      case 6: {
        if (b.length < 8) break;
        // aligned to 4 most of the time: integer fields of these formats start there
        let p = pos(b.length - 7);
        if (rng.uniform() < 0.8) p -= p % 4;
        const v = HUGE[rng.int(HUGE.length)];
        new DataView(b.buffer, b.byteOffset).setBigUint64(p, v, true);
        steps.push(`u64 at ${p} = 0x${v.toString(16)}`);
        break;
      }
      case 7: {
        // safetensors: replace a number in the JSON header and fix the header length
        const view = new DataView(b.buffer, b.byteOffset);
        if (b.length < 8) break;
        const hl = Number(view.getBigUint64(0, true));
        if (hl > b.length - 8) break;
        const json = Buffer.from(b.subarray(8, 8 + hl)).toString('latin1');
        const runs = [...json.matchAll(/\d+/g)];
        if (runs.length === 0) break;
        const m = runs[rng.int(runs.length)];
        const rep = JSON_NUMBERS[rng.int(JSON_NUMBERS.length)];
        const out = json.slice(0, m.index) + rep + json.slice(m.index! + m[0].length);
        const head = new Uint8Array(8);
        new DataView(head.buffer).setBigUint64(0, BigInt(out.length), true);
        b = concat([head, Buffer.from(out, 'latin1'), b.subarray(8 + hl)]);
        steps.push(`json number '${m[0]}' at ${m.index} -> '${rep}'`);
        break;
      }
    }
  }
  return { bytes: b, desc: steps.join('; ') || 'none' };
}

// ---------------------------------------------------------------- worker: run the cases

interface Job { format: Format; from: number; to: number; progress: SharedArrayBuffer; tmp: string }
interface Bad { seed: number; desc: string; error: string }

function runCases(job: Job): void {
  const progress = new Int32Array(job.progress);
  const bad: Bad[] = [];
  const multiLine: Bad[] = [];
  let ok = 0, rejected = 0, badCount = 0, multiLineCount = 0;
  const path = join(job.tmp, `fuzz-${job.format}.bin`);
  const bases = [baseFile(job.format, 0), baseFile(job.format, 1)];
  for (let i = job.from; i < job.to; i++) {
    const seed = SEED_BASE[job.format] + i;
    Atomics.store(progress, 0, i);
    const { bytes, desc } = mutateCase(bases[seed % 2], seed, job.format);
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, bytes);
      ftruncateSync(fd, bytes.length);
    } finally {
      closeSync(fd);
    }
    const calls: [string, () => unknown][] =
      job.format === 'safetensors'
        ? [['parseSafetensors', () => parseSafetensors(bytes, 'fuzz')], ['loadSafetensors', () => loadSafetensors(path)]]
        : job.format === 'gguf'
          ? [['readGguf', () => readGguf(path)]]
          : [['readLlama2c', () => readLlama2c(path)]];
    for (const [name, call] of calls) {
      try {
        call();
        ok++;
      } catch (err) {
        if (err instanceof LlmError) {
          rejected++;
          if (err.message.includes('\n')) {
            multiLineCount++;
            if (multiLine.length < 5) multiLine.push({ seed, desc, error: `${name}: ${JSON.stringify(err.message.slice(0, 160))}` });
          }
        } else {
          badCount++;
          if (bad.length < 20) bad.push({ seed, desc, error: `${name}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}` });
        }
      }
    }
  }
  parentPort!.postMessage({ ok, rejected, bad, badCount, multiLine, multiLineCount });
}

if (!isMainThread && workerData?.fuzzJob) runCases(workerData.fuzzJob as Job);

// ---------------------------------------------------------------- main thread: the tests

interface Outcome { ok: number; rejected: number; bad: Bad[]; badCount: number; multiLine: Bad[]; multiLineCount: number }

function runWorker(format: Format, tmp: string): Promise<Outcome> {
  const progress = new SharedArrayBuffer(4);
  const view = new Int32Array(progress);
  Atomics.store(view, 0, -1);
  const job: Job = { format, from: 0, to: CASES[format], progress, tmp };
  const describeCase = (i: number): string => {
    const seed = SEED_BASE[format] + i;
    return `seed ${seed} (${mutateCase(baseFile(format, seed), seed, format).desc})`;
  };
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { fuzzJob: job },
      resourceLimits: { maxOldGenerationSizeMb: 256 },
    });
    let last = -2, lastChange = Date.now(), settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      fn();
    };
    const watchdog = setInterval(() => {
      const cur = Atomics.load(view, 0);
      if (cur !== last) { last = cur; lastChange = Date.now(); return; }
      if (Date.now() - lastChange > HANG_MS) {
        void worker.terminate();
        finish(() => reject(new Error(`${format}: hang (no progress for ${HANG_MS} ms) at ${describeCase(cur)}`)));
      }
    }, 250);
    worker.on('message', (m: Outcome) => finish(() => resolve(m)));
    worker.on('error', (err) => finish(() => reject(new Error(`${format}: worker crashed (${err.message}) at ${describeCase(Atomics.load(view, 0))}`))));
    worker.on('exit', (code) => finish(() => reject(new Error(`${format}: worker exited with code ${code} at ${describeCase(Atomics.load(view, 0))}`))));
  });
}

if (isMainThread) {
  describe('loader fuzzing: mutated files end in a clean LlmError or a valid result', () => {
    let tmp = '';
    const outcomes = new Map<Format, Outcome>();
    const setup = (): string => {
      if (!tmp) tmp = mkdtempSync(join(tmpdir(), 'llmts-fuzz-'));
      return tmp;
    };
    for (const format of ['safetensors', 'gguf', 'llama2c'] as const) {
      it(`${format}: ${CASES[format]} mutated files`, async () => {
        const started = Date.now();
        const out = await runWorker(format, setup());
        outcomes.set(format, out);
        const report = out.bad.map((b) => `seed ${b.seed} (${b.desc}): ${b.error}`).join('\n');
        assert.equal(out.badCount, 0, `${out.badCount} cases threw something other than an LlmError:\n${report}`);
        // the mutations must exercise both outcomes
        assert.ok(out.rejected > 0 && out.ok > 0, `ok ${out.ok}, rejected ${out.rejected}`);
        assert.ok(Date.now() - started < 60_000);
      });
    }
    // Known problem (not in the files this test owns): gguf.ts and safetensors.ts quote key names and
    // JSON snippets from the file unescaped, so a name containing '\n' gives a multi-line LlmError.
    it('every LlmError message is one line', () => {
      for (const [format, out] of outcomes) {
        const report = out.multiLine.map((b) => `seed ${b.seed} (${b.desc}): ${b.error}`).join('; ');
        assert.equal(out.multiLineCount, 0, `${format}: ${out.multiLineCount} multi-line messages, e.g. ${report}`);
      }
    });
    // Known problem in gguf.ts: readArray recurses once per nesting level, so a 2.4 MB file of
    // arrays nested 200,000 deep overflows the stack (RangeError, not LlmError).
    it('deeply nested GGUF arrays give an LlmError', () => {
      const parts: Buffer[] = [];
      const u32 = (v: number): void => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
      const u64 = (v: number): void => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
      parts.push(Buffer.from('GGUF')); u32(3); u64(0); u64(1);
      u64(1); parts.push(Buffer.from('k')); u32(9);
      for (let i = 0; i < 200_000; i++) { u32(9); u64(1); }
      u32(4); u64(0);
      const f = join(setup(), 'deep.gguf');
      const fd = openSync(f, 'w');
      writeSync(fd, Buffer.concat(parts));
      closeSync(fd);
      assert.throws(() => readGguf(f), LlmError);
    });
    it('cleans up', () => {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });
  });
}
