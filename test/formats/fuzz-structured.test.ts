/**
 * Structured fuzzing of model files, as an attacker would: not random bytes (fuzz.test.ts does
 * that) but well-formed files whose header fields and hyperparameters are set to absurd values
 * (0, -1, 2^31, 2^32-1, 2^53, 1e308, NaN, wrong types, duplicates, missing keys), each driven
 * through the whole `llmts run` (format detection, load, model build, one generated token) in a
 * child process with limits. Every case must end in success or a one-line error: no signal,
 * no hang over 10 s, peak RSS under 1 GB (the files are under 10 MB), no `internal error` or
 * stack trace.
 *
 * The full list has a few hundred cases; `npm test` runs a seeded sample of them
 * (LLMTS_FUZZ_STRUCTURED=all runs every case, =N a sample of N). A failure names the case, so
 * `LLMTS_FUZZ_ONLY='gguf: llama.block_count = 1e9'` reruns one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ggufModelTensors, modelGgufMetadata, tokenizerGgufMetadata } from '../../src/formats/gguf-model.js';
import { ggufMeta, writeGguf, type GgufTensorToWrite, type GgufWriteValue } from '../../src/formats/gguf-write.js';
import { exportHfCheckpoint, hfConfig } from '../../src/formats/hf-checkpoint.js';
import { writeLlama2c } from '../../src/formats/llama2c-write.js';
import { GgmlType } from '../../src/formats/quant.js';
import type { ModelConfig } from '../../src/model/config.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { charTokenizerJsonString } from '../../src/tokenizer/hf-char.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { Rng } from '../../src/util/rng.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const HANG_MS = 10_000;
const RSS_LIMIT_KB = 1024 * 1024;
const DEFAULT_CASES = 120;

const tok = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz .,\n');
const llama = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
const gpt2 = tinyGpt2({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 4, nEmbd: 32, hiddenDim: 128 });
const llamaParams = scaledModel(llama, { seed: 1 }).params;
const gpt2Params = scaledModel(gpt2, { seed: 2 }).params;

/** Values aimed at integer fields: edges of every integer width, floats where ints belong, huge. */
const ABSURD_INTS = [0, 1, 3, 7, 2 ** 16, 2 ** 31 - 1, 2 ** 32 - 1, 1e9, 2 ** 53, 1e308];
/** Values aimed at float fields. */
const ABSURD_FLOATS = [0, -1, 3, 2 ** 40, 1e-45, 1e38, Number.NaN, Number.POSITIVE_INFINITY];

interface Case {
  name: string;
  /** writes the model into dir and returns the argv after `llmts` */
  make: (dir: string) => string[];
}

// ------------------------------------------------------------------ GGUF

type Meta = [string, GgufWriteValue][];

function writeGgufCase(
  dir: string, cfg: ModelConfig, params: typeof llamaParams, edit: (m: Meta, t: GgufTensorToWrite[]) => void,
  quant: 'f32' | 'q8_0' = 'f32', patch?: (file: string) => void,
): string[] {
  const meta: Meta = [...modelGgufMetadata(cfg, quant, 'fuzz'), ...tokenizerGgufMetadata(tok, cfg.vocabSize)];
  const tensors = ggufModelTensors(cfg, params, quant);
  edit(meta, tensors);
  const file = join(dir, 'model.gguf');
  writeGguf(file, { metadata: meta, tensors });
  patch?.(file);
  return ['run', file, '-p', 'ab', '-n', '1', '--temperature', '0'];
}

/** A name of the same byte length that differs in its last character (our writer refuses duplicates: write this, then patch it back). */
const twin = (name: string): string => name.slice(0, -1) + (name.endsWith('~') ? '^' : '~');

/** Replace the first occurrence of `from` by `to`, of the same byte length, in a file. */
function patchBytes(file: string, from: string, to: string): void {
  const buf = readFileSync(file);
  const at = buf.indexOf(Buffer.from(from));
  assert.ok(at >= 0 && Buffer.byteLength(from) === Buffer.byteLength(to), `cannot patch ${from}`);
  Buffer.from(to).copy(buf, at);
  writeFileSync(file, buf);
}

/** Patch a GGUF tensor info in place (u64 name length, name, u32 n_dims, u64 dims, u32 type, u64 offset). */
function patchTensorInfo(file: string, name: string, edit: { dim0?: bigint; type?: number }): void {
  const buf = readFileSync(file);
  const key = Buffer.alloc(8 + Buffer.byteLength(name));
  key.writeBigUInt64LE(BigInt(Buffer.byteLength(name)));
  key.write(name, 8);
  const at = buf.indexOf(key);
  assert.ok(at >= 0, `no tensor info for ${name}`);
  const nDims = buf.readUInt32LE(at + key.length);
  const dims = at + key.length + 4;
  if (edit.dim0 !== undefined) buf.writeBigUInt64LE(edit.dim0, dims);
  if (edit.type !== undefined) buf.writeUInt32LE(edit.type, dims + 8 * nDims);
  writeFileSync(file, buf);
}

function setMeta(m: Meta, key: string, value: GgufWriteValue): void {
  const i = m.findIndex(([k]) => k === key);
  if (i >= 0) m[i] = [key, value];
  else m.push([key, value]);
}

function ggufCases(): Case[] {
  const cases: Case[] = [];
  const archs: [string, ModelConfig, typeof llamaParams][] = [['llama', llama, llamaParams], ['gpt2', gpt2, gpt2Params]];
  for (const [a, cfg, params] of archs) {
    const intKeys = [`${a}.context_length`, `${a}.embedding_length`, `${a}.block_count`, `${a}.feed_forward_length`, `${a}.attention.head_count`, `${a}.attention.head_count_kv`];
    if (a === 'llama') intKeys.push('llama.rope.dimension_count', 'llama.vocab_size');
    for (const key of intKeys) {
      for (const v of ABSURD_INTS) {
        const value = v > 2 ** 32 - 1 ? ggufMeta.u64(BigInt(Math.min(v, 2 ** 63))) : ggufMeta.u32(v);
        cases.push({ name: `gguf: ${key} = ${v}`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, key, value)) });
      }
      cases.push({ name: `gguf: ${key} = -1 (i32)`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, key, ggufMeta.i32(-1))) });
      cases.push({ name: `gguf: ${key} as a string`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, key, ggufMeta.string('12'))) });
      cases.push({ name: `gguf: ${key} as an array`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, key, ggufMeta.array('u32', [1, 2]))) });
      cases.push({ name: `gguf: ${key} missing`, make: (d) => writeGgufCase(d, cfg, params, (m) => m.splice(m.findIndex(([k]) => k === key), 1)) });
      cases.push({ name: `gguf: ${key} twice`, make: (d) => writeGgufCase(d, cfg, params, (m) => m.push([twin(key), ggufMeta.u32(1)]), 'f32', (f) => patchBytes(f, twin(key), key)) });
    }
    const floatKeys = a === 'llama' ? ['llama.attention.layer_norm_rms_epsilon', 'llama.rope.freq_base'] : ['gpt2.attention.layer_norm_epsilon'];
    for (const key of floatKeys) {
      for (const v of ABSURD_FLOATS) cases.push({ name: `gguf: ${key} = ${v}`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, key, ggufMeta.f32(v))) });
      cases.push({ name: `gguf: ${key} as f64 1e300`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, key, ggufMeta.f64(1e300))) });
    }
    for (const v of ['', 'mamba', 'llama\u0000', 'x'.repeat(100_000)]) {
      cases.push({ name: `gguf: ${a} general.architecture = ${JSON.stringify(v.slice(0, 12))}`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'general.architecture', ggufMeta.string(v))) });
    }
    // tokenizer metadata
    cases.push({ name: `gguf: ${a} tokens empty`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'tokenizer.ggml.tokens', ggufMeta.strings([]))) });
    cases.push({ name: `gguf: ${a} tokens as u8 array`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'tokenizer.ggml.tokens', ggufMeta.array('u8', [1, 2, 3]))) });
    cases.push({ name: `gguf: ${a} 10^6 tokens`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'tokenizer.ggml.tokens', ggufMeta.strings(Array.from({ length: 1e6 }, (_, i) => `t${i}`)))) });
    cases.push({ name: `gguf: ${a} token_type wrong length`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'tokenizer.ggml.token_type', ggufMeta.i32s([1]))) });
    cases.push({ name: `gguf: ${a} tokenizer model gpt2 without merges`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'tokenizer.ggml.model', ggufMeta.string('gpt2'))) });
    cases.push({ name: `gguf: ${a} bos id 2^32-1`, make: (d) => writeGgufCase(d, cfg, params, (m) => setMeta(m, 'tokenizer.ggml.bos_token_id', ggufMeta.u32(2 ** 32 - 1))) });
    cases.push({ name: `gguf: ${a} 4M-element bool array`, make: (d) => writeGgufCase(d, cfg, params, (m) => m.push(['fuzz.flags', ggufMeta.array('bool', new Array<boolean>(4_000_000).fill(true))])) });
    cases.push({ name: `gguf: ${a} 500k empty sub-arrays`, make: (d) => writeGgufCase(d, cfg, params, (m) => m.push(['fuzz.nested', ggufMeta.arrays(Array.from({ length: 500_000 }, () => ggufMeta.array('u8', [])))])) });
    // tensors
    const blk1 = (t: GgufTensorToWrite[]): number => t.findIndex((x) => x.name.startsWith('blk.1.'));
    const tensorEdits: [string, (t: GgufTensorToWrite[]) => void, ((file: string, t: GgufTensorToWrite[]) => void)?][] = [
      ['first dim doubled', (t) => { t[0] = { ...t[0], dims: [t[0].dims[0] * 2, ...t[0].dims.slice(1)], data: () => new Uint8Array(4 * t[0].dims.reduce((x, y) => x * y, 1)) }; }],
      ['a dim of 2^31', () => undefined, (f, t) => patchTensorInfo(f, t[1].name, { dim0: 2n ** 31n })],
      ['a dim of 2^63', () => undefined, (f, t) => patchTensorInfo(f, t[1].name, { dim0: 2n ** 63n })],
      ['type I32 (26)', () => undefined, (f, t) => patchTensorInfo(f, t[1].name, { type: 26 })],
      ['type Q4_K (12)', () => undefined, (f, t) => patchTensorInfo(f, t[1].name, { type: 12 })],
      ['type 2^31', () => undefined, (f, t) => patchTensorInfo(f, t[1].name, { type: 2 ** 31 })],
      ['last tensor missing', (t) => { t.pop(); }],
      ['a tensor named twice', (t) => { t.push({ ...t[1], name: twin(t[1].name) }); }, (f, t) => patchBytes(f, twin(t[1].name), t[1].name)],
      ['an extra layer', (t) => { const i = blk1(t); t.push({ ...t[i], name: t[i].name.replace('blk.1.', 'blk.7.') }); }],
      ['renamed to blk.1000000000', (t) => { const i = blk1(t); t[i] = { ...t[i], name: t[i].name.replace('blk.1.', 'blk.1000000000.') }; }],
    ];
    for (const [what, edit, patch] of tensorEdits) {
      cases.push({
        name: `gguf: ${a} tensor ${what}`,
        make: (d) => {
          let seen: GgufTensorToWrite[] = [];
          return writeGgufCase(d, cfg, params, (_m, t) => { edit(t); seen = t; }, 'f32', patch ? (f) => patch(f, seen) : undefined);
        },
      });
    }
  }
  cases.push({ name: 'gguf: q8_0 llama.block_count = 1e9', make: (d) => writeGgufCase(d, llama, llamaParams, (m) => setMeta(m, 'llama.block_count', ggufMeta.u32(1e9)), 'q8_0') });
  cases.push({ name: 'gguf: q8_0 llama.context_length = 2^32-1', make: (d) => writeGgufCase(d, llama, llamaParams, (m) => setMeta(m, 'llama.context_length', ggufMeta.u32(2 ** 32 - 1)), 'q8_0') });
  return cases;
}

// ------------------------------------------------------------------ safetensors headers (HF directories, checkpoints)

/** Rewrite a safetensors file's JSON header (the data bytes stay). */
function editSafetensorsHeader(file: string, edit: (h: Record<string, unknown>) => unknown): void {
  const buf = readFileSync(file);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Record<string, unknown>;
  const replaced = edit(header);
  let json = typeof replaced === 'string' ? replaced : JSON.stringify(replaced ?? header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(file, Buffer.concat([head, Buffer.from(json), buf.subarray(8 + len)]));
}

function firstTensor(h: Record<string, unknown>): { dtype: string; shape: number[]; data_offsets: number[] } {
  return h[Object.keys(h).find((k) => k !== '__metadata__')!] as { dtype: string; shape: number[]; data_offsets: number[] };
}

const HEADER_EDITS: [string, (h: Record<string, unknown>) => unknown][] = [
  ['dtype I32', (h) => { firstTensor(h).dtype = 'I32'; }],
  ['dtype unknown', (h) => { firstTensor(h).dtype = 'F8_E9'; }],
  ['shape with 5,000,000 dims', (h) => { firstTensor(h).shape = new Array<number>(5_000_000).fill(1); }],
  ['shape [2^53]', (h) => { firstTensor(h).shape = [2 ** 53]; }],
  ['shape [-1]', (h) => { firstTensor(h).shape = [-1]; }],
  ['offsets reversed', (h) => { const t = firstTensor(h); t.data_offsets = [t.data_offsets[1], t.data_offsets[0]]; }],
  ['offsets overlap the next tensor', (h) => { const t = firstTensor(h); t.data_offsets = [t.data_offsets[0] + 4, t.data_offsets[1] + 4]; }],
  ['offsets past the end', (h) => { const t = firstTensor(h); t.data_offsets = [2 ** 40, 2 ** 40 + 4]; }],
  ['header is null', () => 'null'],
  ['header is an array', () => '[1,2,3]'],
  ['a value nested 100,000 deep', (h) => {
    (firstTensor(h) as { shape: unknown }).shape = '@DEEP@';
    return JSON.stringify(h).replace('"@DEEP@"', '['.repeat(100_000) + ']'.repeat(100_000));
  }],
  ['10^5 extra keys', (h) => { for (let i = 0; i < 100_000; i++) h[`k${i}`] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] }; }],
  ['metadata is a number', (h) => { h.__metadata__ = 5; }],
];

function hfCases(): Case[] {
  const cases: Case[] = [];
  const make = (cfg: ModelConfig, params: typeof llamaParams, edit: (c: Record<string, unknown>) => void, editHeader?: (h: Record<string, unknown>) => unknown) => (dir: string): string[] => {
    const out = join(dir, 'hf');
    exportHfCheckpoint(out, cfg, params);
    writeFileSync(join(out, 'tokenizer.json'), charTokenizerJsonString(tok));
    const config = hfConfig(cfg);
    edit(config);
    writeFileSync(join(out, 'config.json'), JSON.stringify(config));
    if (editHeader) editSafetensorsHeader(join(out, 'model.safetensors'), editHeader);
    return ['run', out, '-p', 'ab', '-n', '1', '--temperature', '0'];
  };
  const llamaInts = ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'max_position_embeddings', 'vocab_size'];
  const gpt2Ints = ['n_embd', 'n_layer', 'n_head', 'n_positions', 'n_inner', 'vocab_size'];
  for (const [a, cfg, params, ints, floats] of [
    ['llama', llama, llamaParams, llamaInts, ['rms_norm_eps', 'rope_theta']],
    ['gpt2', gpt2, gpt2Params, gpt2Ints, ['layer_norm_epsilon']],
  ] as const) {
    for (const key of ints) {
      for (const v of [...ABSURD_INTS, -1, 1.5]) cases.push({ name: `hf ${a}: ${key} = ${v}`, make: make(cfg, params, (c) => { c[key] = v; }) });
      for (const v of [null, '32', [32], { n: 32 }, true]) cases.push({ name: `hf ${a}: ${key} = ${JSON.stringify(v)}`, make: make(cfg, params, (c) => { c[key] = v; }) });
    }
    for (const key of floats) {
      for (const v of [0, -1, 3, 2 ** 40, 1e308]) cases.push({ name: `hf ${a}: ${key} = ${v}`, make: make(cfg, params, (c) => { c[key] = v; }) });
      cases.push({ name: `hf ${a}: ${key} = "x"`, make: make(cfg, params, (c) => { c[key] = 'x'; }) });
    }
    for (const v of [null, 'bert', 7]) cases.push({ name: `hf ${a}: model_type = ${JSON.stringify(v)}`, make: make(cfg, params, (c) => { c.model_type = v; }) });
    cases.push({ name: `hf ${a}: tie_word_embeddings = "yes"`, make: make(cfg, params, (c) => { c.tie_word_embeddings = 'yes'; }) });
    for (const [what, edit] of HEADER_EDITS) cases.push({ name: `hf ${a}: model.safetensors ${what}`, make: make(cfg, params, () => undefined, edit) });
  }
  cases.push({
    name: 'hf llama: config.json is null',
    make: (dir) => { const args = make(llama, llamaParams, () => undefined)(dir); writeFileSync(join(dir, 'hf', 'config.json'), 'null'); return args; },
  });
  return cases;
}

function checkpointCases(): Case[] {
  const cases: Case[] = [];
  const make = (editConfig: (c: Record<string, unknown>) => void, editHeader?: (h: Record<string, unknown>) => unknown) => (dir: string): string[] => {
    const file = join(dir, 'ckpt.safetensors');
    saveCheckpoint(file, { config: llama, params: llamaParams, tokenizer: tok.toJSON(), trainer: {} });
    editSafetensorsHeader(file, (h) => {
      const meta = h.__metadata__ as Record<string, string>;
      const config = JSON.parse(meta.config) as Record<string, unknown>;
      editConfig(config);
      meta.config = JSON.stringify(config);
      return editHeader?.(h);
    });
    return ['run', file, '-p', 'ab', '-n', '1', '--temperature', '0'];
  };
  for (const key of ['nLayer', 'nEmbd', 'nHead', 'nKvHead', 'hiddenDim', 'blockSize', 'vocabSize']) {
    for (const v of [...ABSURD_INTS, -1, null, '4']) cases.push({ name: `checkpoint: ${key} = ${JSON.stringify(v)}`, make: make((c) => { c[key] = v; }) });
  }
  for (const key of ['normEps', 'ropeTheta', 'dropout']) {
    for (const v of [0, -1, 3, 2 ** 40, null]) cases.push({ name: `checkpoint: ${key} = ${JSON.stringify(v)}`, make: make((c) => { c[key] = v; }) });
  }
  cases.push({ name: 'checkpoint: config = null', make: (dir) => make(() => undefined, (h) => { (h.__metadata__ as Record<string, string>).config = 'null'; })(dir) });
  cases.push({ name: 'checkpoint: tokenizer = null', make: (dir) => make(() => undefined, (h) => { (h.__metadata__ as Record<string, string>).tokenizer = 'null'; })(dir) });
  for (const [what, edit] of HEADER_EDITS) cases.push({ name: `checkpoint: ${what}`, make: make(() => undefined, edit) });
  return cases;
}

// ------------------------------------------------------------------ llama2.c

function llama2cCases(): Case[] {
  const fields = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  const cases: Case[] = [];
  const l2c = { ...llama, nKvHead: llama.nKvHead, tiedEmbeddings: true, normEps: 1e-5, ropeTheta: 10000 };
  const params = scaledModel(l2c, { seed: 3 }).params;
  for (const [i, field] of fields.entries()) {
    for (const v of [0, 1, -1, -(2 ** 31), 2 ** 31 - 1, 65536, 1e9]) {
      cases.push({
        name: `llama2c: ${field} = ${v}`,
        make: (dir) => {
          const file = join(dir, 'model.bin');
          writeLlama2c(file, l2c, params, { version: 0 });
          const buf = readFileSync(file);
          buf.writeInt32LE(v, 4 * i);
          writeFileSync(file, buf);
          return ['run', file, '--prompt-ids', '1', '--output', 'ids', '-n', '1', '--temperature', '0'];
        },
      });
    }
  }
  return cases;
}

// ------------------------------------------------------------------ running

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
  maxRssKb: number;
  timedOut: boolean;
}

function runChild(argv: string[], preload: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--require', preload, CLI, ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LLMTS_THREADS: '1' } });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => { if (stderr.length < 100_000) stderr += s; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, HANG_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const m = /\nMAXRSS_KB (\d+)\n/.exec(stderr);
      resolve({ code, signal, stderr: stderr.replace(/\nMAXRSS_KB \d+\n/, ''), ms: Date.now() - t0, maxRssKb: m ? Number(m[1]) : -1, timedOut });
    });
  });
}

function problems(o: Outcome): string[] {
  const p: string[] = [];
  if (o.timedOut) p.push(`hung (killed after ${HANG_MS} ms)`);
  else if (o.signal) p.push(`died by ${o.signal}`);
  if (o.code !== 0 && o.code !== 1 && !o.timedOut && !o.signal) p.push(`exit code ${o.code}`);
  if (/internal error/.test(o.stderr)) p.push('internal error');
  if (/\n\s+at /.test(o.stderr)) p.push('stack trace');
  if (o.code === 1) {
    const lines = o.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('llmts: warning'));
    if (lines.length !== 1) p.push(`${lines.length} error lines`);
  }
  if (o.maxRssKb > RSS_LIMIT_KB) p.push(`peak RSS ${Math.round(o.maxRssKb / 1024)} MB`);
  return p;
}

function selectCases(all: Case[]): Case[] {
  const only = process.env.LLMTS_FUZZ_ONLY;
  if (only) return all.filter((c) => c.name === only);
  const want = process.env.LLMTS_FUZZ_STRUCTURED;
  if (want === 'all') return all;
  const n = want ? Number(want) : DEFAULT_CASES;
  const rng = new Rng(20261203);
  const order = all.map((c, i) => ({ c, k: rng.uniform() + (i === 0 ? -1 : 0) }));
  order.sort((a, b) => a.k - b.k);
  return order.slice(0, n).map((x) => x.c);
}

describe('structured fuzz of model files through llmts run', () => {
  const all = [...ggufCases(), ...hfCases(), ...checkpointCases(), ...llama2cCases()];

  it(`${all.length} hostile-but-well-formed cases: each a clean result or a one-line error, no signal, hang or 1 GB`, async () => {
    assert.equal(new Set(all.map((c) => c.name)).size, all.length, 'case names are unique');
    const cases = selectCases(all);
    const root = tmpDir('fuzz-structured');
    const preload = join(root, 'maxrss.cjs');
    // peak RSS of this process: VmHWM (getrusage's maxRSS survives exec and would include this test runner)
    writeFileSync(preload, [
      "const fs = require('fs');",
      "process.on('exit', () => {",
      "  let kb = process.resourceUsage().maxRSS;",
      "  try { kb = Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]); } catch {}",
      "  fs.writeSync(2, '\\nMAXRSS_KB ' + kb + '\\n');",
      "});",
    ].join('\n'));
    const failures: string[] = [];
    let worstRss = 0;
    let slowest = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= cases.length) return;
        const c = cases[i];
        const dir = join(root, `case-${i}`);
        mkdirSync(dir, { recursive: true });
        let argv: string[];
        try {
          argv = c.make(dir);
        } catch (err) {
          failures.push(`${c.name}: could not build the case: ${(err as Error).message}`);
          continue;
        }
        const o = await runChild(argv, preload);
        worstRss = Math.max(worstRss, o.maxRssKb);
        slowest = Math.max(slowest, o.ms);
        const p = problems(o);
        if (p.length > 0) failures.push(`${c.name}: ${p.join(', ')}; stderr: ${o.stderr.trim().slice(0, 300)}`);
      }
    };
    await Promise.all([worker(), worker()]);
    console.log(`# structured fuzz: ${cases.length} of ${all.length} cases, worst peak RSS ${Math.round(worstRss / 1024)} MB, slowest ${slowest} ms`);
    assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases failed:\n${failures.join('\n')}`);
  });
});
