/**
 * Hostile model files (issue 14) for the Hugging Face, llm.ts checkpoint and llama2.c loaders:
 * absurd but well-formed hyperparameters (layer counts of 10^9 or 1e308, contexts of 10^8 or
 * 2^32-1, RoPE theta 0, epsilon 3), FIFOs where files belong, JSON of the wrong shape, layers
 * the config does not declare, misleading format detection. Everything that could hang or eat
 * memory runs `llmts run` in a child process with a time limit, reporting its peak RSS; each
 * case must end in a one-line error (or a clean run) within seconds and a few hundred MB.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportHfCheckpoint, importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { writeLlama2c } from '../../src/formats/llama2c-write.js';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { validateConfig, type ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import { ropeTables, reserveRope } from '../../src/tensor/ops/rope.js';
import { noGrad, withBufferScope } from '../../src/tensor/index.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { charTokenizerJsonString } from '../../src/tokenizer/hf-char.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.js';
import { LlmError } from '../../src/util/errors.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** limits for one `llmts run` on a crafted file of a few KB */
const TIME_LIMIT_MS = 15_000;
const RSS_LIMIT_KB = 400 * 1024;

const tok = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz .,\n');
const llama = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 32 });
const gpt2 = tinyGpt2({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 64 });
const llamaParams = scaledModel(llama, { seed: 1 }).params;
const gpt2Params = scaledModel(gpt2, { seed: 2 }).params;

const root = tmpDir('hostile');
let counter = 0;
const fresh = (name: string): string => {
  const d = join(root, `${name}-${counter++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

// A preload that reports the child's peak RSS on stderr as it exits.
const preload = join(root, 'maxrss.cjs');
writeFileSync(preload, "process.on('exit', () => { require('fs').writeSync(2, '\\nMAXRSS_KB ' + process.resourceUsage().maxRSS + '\\n'); });\n");

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  maxRssKb: number;
}

function runChild(args: string[], timeoutMs = TIME_LIMIT_MS): Outcome {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--require', preload, CLI, ...args], {
    encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, LLMTS_THREADS: '1', LLMTS_BACKEND: process.env.LLMTS_BACKEND ?? '' },
  });
  const m = /\nMAXRSS_KB (\d+)\n/.exec(r.stderr ?? '');
  return {
    code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: (r.stderr ?? '').replace(/\nMAXRSS_KB \d+\n/, ''),
    ms: Date.now() - t0, maxRssKb: m ? Number(m[1]) : -1,
  };
}

/** Ended by itself, in time and memory, without an internal error or stack trace. */
function assertBounded(o: Outcome, what: string): void {
  assert.equal(o.signal, null, `${what}: killed by ${o.signal} after ${o.ms} ms (hang or crash)\n${o.stderr.slice(0, 2000)}`);
  assert.ok(o.ms < TIME_LIMIT_MS, `${what}: took ${o.ms} ms`);
  assert.ok(o.maxRssKb > 0 && o.maxRssKb < RSS_LIMIT_KB, `${what}: peak RSS ${o.maxRssKb} KB`);
  assert.doesNotMatch(o.stderr, /internal error/, `${what}: ${o.stderr}`);
  assert.doesNotMatch(o.stderr, /\n\s+at /, `${what}: stack trace`);
}

/** A one-line error matching `re`, within the limits. */
function assertCleanError(o: Outcome, re: RegExp, what: string): void {
  assertBounded(o, what);
  assert.equal(o.code, 1, `${what}: exit ${o.code}, stderr: ${o.stderr}`);
  const lines = o.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('llmts: warning'));
  assert.equal(lines.length, 1, `${what}: expected one error line, got:\n${o.stderr}`);
  assert.match(lines[0], re, what);
  assert.ok(lines[0].length < 600, `${what}: a short message, got ${lines[0].length} characters`);
}

function assertLlmError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LlmError, `expected an LlmError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

async function assertRejectsLlm(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LlmError, `expected an LlmError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

/** A Hugging Face directory of the tiny llama (or gpt2) with a char tokenizer.json, config.json edited. */
function hfDir(edit: (c: Record<string, unknown>) => void = () => undefined, family: 'llama' | 'gpt2' = 'llama'): string {
  const dir = fresh('hf');
  exportHfCheckpoint(dir, family === 'llama' ? llama : gpt2, family === 'llama' ? llamaParams : gpt2Params);
  writeFileSync(join(dir, 'tokenizer.json'), charTokenizerJsonString(tok));
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
  return dir;
}

/** An llm.ts checkpoint of the tiny llama; its metadata (config JSON included) edited. */
function checkpointFile(editConfig: (c: Record<string, unknown>) => void = () => undefined, editMeta: (m: Record<string, string>) => void = () => undefined): string {
  const file = join(fresh('ckpt'), 'ckpt.safetensors');
  saveCheckpoint(file, { config: llama, params: llamaParams, tokenizer: tok.toJSON(), trainer: {} });
  const st = loadSafetensors(file);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of st.tensors) tensors[name] = { dtype: 'F32', shape: t.shape, data: (t.data as Float32Array).slice() };
  const meta = { ...st.metadata };
  const config = JSON.parse(meta.config) as Record<string, unknown>;
  editConfig(config);
  meta.config = JSON.stringify(config);
  editMeta(meta);
  saveSafetensors(file, tensors, meta);
  return file;
}

const RUN = ['-p', 'ab', '-n', '1', '--temperature', '0'];

describe('hostile model files: absurd hyperparameters are checked before anything is sized by them', () => {
  it('Hugging Face config.json: layer counts of 1e9, 1e6, 1e308 and contexts of 1e8, 2^32-1 are one-line errors in seconds', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ num_hidden_layers: 1e9 }, /num_hidden_layers = 1000000000 is more than the 10000 supported/],
      [{ num_hidden_layers: 1e6 }, /num_hidden_layers = 1000000 is more than the 10000 supported/],
      [{ num_hidden_layers: 1e308 }, /num_hidden_layers = 1e\+308 must be a positive integer/],
      [{ num_hidden_layers: 5000 }, /num_hidden_layers is 5000 but the weights hold 2 layers/],
      [{ num_hidden_layers: 1 }, /num_hidden_layers is 1 but the weights hold more layers/],
      [{ max_position_embeddings: 1e8 }, /max_position_embeddings = 100000000 is more than the 16777216 supported/],
      [{ max_position_embeddings: 2 ** 32 - 1 }, /max_position_embeddings = 4294967295 is more than/],
      [{ vocab_size: 2 ** 32 - 1 }, /vocab_size = 4294967295 is more than/],
      [{ hidden_size: 1e308 }, /hidden_size = 1e\+308 must be a positive integer/],
      [{ rope_theta: 0 }, /rope_theta 0 must be in \[1, 1000000000000\]/],
      [{ rope_theta: -1 }, /rope_theta -1 must be in/],
      [{ rms_norm_eps: 3 }, /rms_norm_eps 3 must be in \(0, 0\.01\]/],
      [{ rms_norm_eps: 2 ** 40 }, /rms_norm_eps 1099511627776 must be in/],
    ];
    for (const [edit, re] of cases) {
      assertCleanError(runChild(['run', hfDir((c) => Object.assign(c, edit)), ...RUN]), re, `hf ${JSON.stringify(edit)}`);
    }
    for (const [edit, re] of [
      [{ n_layer: 1e9 }, /n_layer = 1000000000 is more than/],
      [{ n_positions: 2 ** 32 - 1 }, /n_positions = 4294967295 is more than/],
      [{ layer_norm_epsilon: 3 }, /layer_norm_epsilon 3 must be in/],
    ] as const) {
      assertCleanError(runChild(['run', hfDir((c) => Object.assign(c, edit), 'gpt2'), ...RUN]), re, `hf gpt2 ${JSON.stringify(edit)}`);
    }
  });

  it('a Llama context of 2^24 runs at once: the RoPE tables are built only as far as the run goes', () => {
    const o = runChild(['run', hfDir((c) => { c.max_position_embeddings = 2 ** 24; }), ...RUN]);
    assertBounded(o, 'context 2^24');
    assert.equal(o.code, 0, o.stderr);
    assert.ok(o.maxRssKb < 200 * 1024, `peak RSS ${o.maxRssKb} KB (eager tables for 2^24 positions took 580 MB)`);
    assert.ok(o.ms < 5000, `${o.ms} ms (eager tables took 12 s)`);
  });

  it('llm.ts checkpoints: absurd config metadata and layers the config does not declare are one-line errors', () => {
    const cases: [string, RegExp][] = [
      [checkpointFile((c) => { c.nLayer = 1e9; }), /config metadata: nLayer = 1000000000 is more than the 10000 supported/],
      [checkpointFile((c) => { c.nLayer = 1e308; }), /nLayer = 1e\+308 must be a positive integer/],
      [checkpointFile((c) => { c.nLayer = 5000; }), /is missing tensor 'model\.layers\.2\./],
      [checkpointFile((c) => { c.nLayer = 1; }), /its config says 1 layers but it holds tensor 'model\.layers\.1\./],
      [checkpointFile((c) => { c.blockSize = 2 ** 32 - 1; }), /blockSize = 4294967295 is more than/],
      [checkpointFile((c) => { c.ropeTheta = 0; }), /ropeTheta 0 must be in/],
      [checkpointFile((c) => { c.normEps = 3; }), /normEps 3 must be in/],
      [checkpointFile(() => undefined, (m) => { m.config = 'null'; }), /the model config must be an object, got null/],
      [checkpointFile(() => undefined, (m) => { m.optimizer = 'null'; }), /'optimizer' metadata must be a JSON object, got null/],
      [checkpointFile(() => undefined, (m) => { m.tokenizer = 'null'; }), /its tokenizer: tokenizer description must be an object/],
    ];
    for (const [file, re] of cases) assertCleanError(runChild(['run', file, ...RUN]), re, file);
    const ok = runChild(['run', checkpointFile((c) => { c.blockSize = 2 ** 24; }), ...RUN]);
    assertBounded(ok, 'checkpoint context 2^24');
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('llama2.c: the file size pins every dimension; a version-1 seq_len of 2^20 costs nothing until used', () => {
    const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 1, nHead: 1, nKvHead: 1, nEmbd: 64, hiddenDim: 32 }, { tiedEmbeddings: true });
    const file = join(fresh('l2c'), 'model.bin');
    writeLlama2c(file, cfg, scaledModel(cfg, { seed: 4 }).params, { version: 1 });
    const buf = readFileSync(file);
    buf.writeInt32LE(2 ** 20, 8 + 4 * 6); // seq_len (not part of a version-1 file's size)
    writeFileSync(file, buf);
    const o = runChild(['run', file, '--prompt-ids', '1', '--output', 'ids', ...RUN.slice(2)]);
    assertBounded(o, 'llama2.c seq_len 2^20');
    assert.equal(o.code, 0, o.stderr);
    assert.ok(o.maxRssKb < 200 * 1024, `peak RSS ${o.maxRssKb} KB`);
    buf.writeInt32LE(1e9, 8 + 4 * 2); // n_layers
    writeFileSync(file, buf);
    assertCleanError(runChild(['run', file, '--prompt-ids', '1', ...RUN.slice(2)]), /n_layers = 1000000000 is not in \[1, 4096\]/, 'llama2.c n_layers 1e9');
  });
});

describe('hostile model files: FIFOs and other non-files are refused before they are opened', () => {
  const probe = join(root, 'probe.fifo');
  const mk = spawnSync('mkfifo', [probe]);
  const skip = process.platform === 'win32' || mk.error !== undefined || mk.status !== 0 ? 'no mkfifo on this platform' : false;

  it('model file, --tokenizer, config.json, tokenizer.json, tokenizer_config.json, weights, shard index, shard and ckpt.safetensors', { skip }, () => {
    const fifo = (path: string): string => {
      rmSync(path, { recursive: true, force: true });
      assert.equal(spawnSync('mkfifo', [path]).status, 0);
      return path;
    };
    const cases: [string[], RegExp][] = [];
    cases.push([['run', fifo(join(fresh('fifo'), 'model.gguf')), ...RUN], /model\.gguf is a FIFO \(named pipe\), not a model file/]);
    cases.push([['run', fifo(join(fresh('fifo'), 'model.bin')), ...RUN], /model\.bin is a FIFO \(named pipe\), not a model file/]);
    cases.push([['run', hfDir(), '--tokenizer', fifo(join(fresh('fifo'), 'tok.json')), ...RUN], /tok\.json is a FIFO \(named pipe\), not a tokenizer file/]);
    for (const [name, what] of [
      ['config.json', 'config file'], ['tokenizer.json', 'tokenizer file'], ['tokenizer_config.json', 'tokenizer config file'], ['model.safetensors', 'safetensors file'],
    ]) {
      const dir = hfDir();
      fifo(join(dir, name));
      cases.push([['run', dir, ...RUN], new RegExp(`${name.replace('.', '\\.')} is a FIFO \\(named pipe\\), not a ${what}`)]);
    }
    // sharded: the index, then a shard
    for (const which of ['index', 'shard']) {
      const dir = hfDir();
      const st = loadSafetensors(join(dir, 'model.safetensors'));
      const tensors: Record<string, TensorToWrite> = {};
      for (const [n, t] of st.tensors) tensors[n] = { dtype: 'F32', shape: t.shape, data: (t.data as Float32Array).slice() };
      rmSync(join(dir, 'model.safetensors'));
      saveSafetensors(join(dir, 'model-00001-of-00001.safetensors'), tensors);
      writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: Object.fromEntries(Object.keys(tensors).map((n) => [n, 'model-00001-of-00001.safetensors'])) }));
      if (which === 'index') {
        fifo(join(dir, 'model.safetensors.index.json'));
        cases.push([['run', dir, ...RUN], /index\.json is a FIFO \(named pipe\), not a shard index file/]);
      } else {
        fifo(join(dir, 'model-00001-of-00001.safetensors'));
        cases.push([['run', dir, ...RUN], /model-00001-of-00001\.safetensors is a FIFO \(named pipe\), not a safetensors file/]);
      }
    }
    const runDir = fresh('fifo-run');
    fifo(join(runDir, 'ckpt.safetensors'));
    cases.push([['run', runDir, ...RUN], /ckpt\.safetensors is a FIFO \(named pipe\), not a safetensors file/]);
    for (const [args, re] of cases) assertCleanError(runChild(args, 10_000), re, args.join(' '));
  });
});

describe('hostile model files: JSON the loaders read is shape-checked', () => {
  it('checkpoint metadata: config, optimizer and trainer of the wrong shape, duplicate keys, deep nesting', () => {
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.config = 'null'; })), /checkpoint .*: config metadata: the model config must be an object, got null/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.config = '[1]'; })), /must be an object, got an array/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.config = '{"family": "llama", "family": "gpt2"}'; })), /'config' metadata has the key "family" twice/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.optimizer = 'null'; })), /'optimizer' metadata must be a JSON object, got null/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.optimizer = '{"step": -1}'; })), /'optimizer' metadata step -1 must be a non-negative integer/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.optimizer = '{"step": 1, "lr": "x"}'; })), /'optimizer' metadata "lr" = "x" must be a finite number/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.trainer = '[1, 2]'; })), /'trainer' metadata must be a JSON object, got \[1, 2\]/);
    assertLlmError(() => loadCheckpoint(checkpointFile(() => undefined, (m) => { m.tokenizer = '['.repeat(100_000) + ']'.repeat(100_000); })), /'tokenizer' metadata nests values more than 64 deep/);
    assertLlmError(() => loadCheckpoint(checkpointFile((c) => { c.bias = 'no'; })), /bias = "no" must be true or false/);
  });

  it('validateConfig: every integer a safe integer in range, every float finite in range, the config an object', () => {
    const base: ModelConfig = { ...llama };
    const bad: [Partial<Record<keyof ModelConfig, unknown>>, RegExp][] = [
      [{ nLayer: 1e308 }, /nLayer = 1e\+308 must be a positive integer/],
      [{ nLayer: 2 ** 53 }, /nLayer = 9007199254740992 must be a positive integer/],
      [{ nLayer: 10_001 }, /nLayer = 10001 is more than the 10000 supported/],
      [{ blockSize: 2 ** 24 + 1 }, /blockSize = 16777217 is more than the 16777216 supported/],
      [{ vocabSize: 2 ** 24 + 1 }, /vocabSize = 16777217 is more than/],
      [{ nEmbd: '16' }, /nEmbd = "16" must be a positive integer/],
      [{ ropeTheta: 0 }, /ropeTheta 0 must be in \[1, 1000000000000\]/],
      [{ ropeTheta: -1 }, /ropeTheta -1 must be in/],
      [{ ropeTheta: 1e-300 }, /ropeTheta 1e-300 must be in/],
      [{ ropeTheta: Number.NaN }, /ropeTheta = NaN must be a finite number/],
      [{ ropeTheta: Number.POSITIVE_INFINITY }, /ropeTheta = Infinity must be a finite number/],
      [{ normEps: 3 }, /normEps 3 must be in \(0, 0\.01\]/],
      [{ normEps: 2 ** 40 }, /normEps 1099511627776 must be in/],
      [{ normEps: 0 }, /normEps 0 must be in/],
      [{ normEps: null }, /normEps = null must be a finite number/],
      [{ dropout: 1 }, /dropout 1 must be in \[0, 1\)/],
      [{ tiedEmbeddings: 'yes' }, /tiedEmbeddings = "yes" must be true or false/],
      [{ family: 'x'.repeat(10_000) }, /family "x{40}\.\.\." must be gpt2 or llama/],
    ];
    for (const [edit, re] of bad) assertLlmError(() => validateConfig({ ...base, ...edit } as ModelConfig), re);
    assertLlmError(() => validateConfig(null as unknown as ModelConfig), /the model config must be an object, got null/);
    // the presets' and real models' values pass
    for (const v of [1e-5, 1e-6, 1e-12]) validateConfig({ ...base, normEps: v });
    for (const v of [10000, 500000, 1e6, 5e6]) validateConfig({ ...base, ropeTheta: v });
  });
});

describe('hostile model files: formats are detected by magic or name and reported in their terms', () => {
  it('a cut llm.ts checkpoint under any name is a truncated safetensors file, not a bad llama2.c header', async () => {
    const src = checkpointFile();
    const size = readFileSync(src).byteLength;
    for (const name of ['ckpt.safetensors', 'model.bin', 'weights']) {
      const file = join(fresh('cut'), name);
      writeFileSync(file, readFileSync(src));
      truncateSync(file, size - 100);
      await assertRejectsLlm(loadAnyModel(file), /data_offsets .* run past the .*-byte data buffer \(file truncated or corrupt\)/);
      truncateSync(file, 100); // inside the JSON header
      await assertRejectsLlm(loadAnyModel(file), /safetensors header length \d+ is larger than the 100-byte file \(truncated/);
    }
  });

  it('Hugging Face directories: no tokenizer file means no tokenizer; a broken or unsupported one is an error naming it', async () => {
    const none = hfDir();
    rmSync(join(none, 'tokenizer.json'));
    assert.equal((await loadAnyModel(none)).tokenizer, null);
    const corrupt = hfDir();
    writeFileSync(join(corrupt, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": ');
    await assertRejectsLlm(loadAnyModel(corrupt), /tokenizer\.json is not valid JSON/);
    assert.equal((await loadAnyModel(corrupt, { tokenizer: false })).tokenizer, null, 'a caller bringing its own tokenizer is not stopped by it');
    const wordpiece = hfDir();
    writeFileSync(join(wordpiece, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
    await assertRejectsLlm(loadAnyModel(wordpiece), /tokenizer\.json model type "WordPiece" is not supported/);
    const brokenTemplate = hfDir();
    writeFileSync(join(brokenTemplate, 'tokenizer_config.json'), '{"chat_template": ');
    await assertRejectsLlm(loadAnyModel(brokenTemplate), /tokenizer_config\.json is not valid JSON/);
    const ok = await loadAnyModel(hfDir());
    assert.equal(ok.tokenizer?.vocabSize, tok.vocabSize);
  });

  it('a config.json that is a directory is said to be one', () => {
    const dir = hfDir();
    rmSync(join(dir, 'config.json'));
    mkdirSync(join(dir, 'config.json'));
    assertLlmError(() => importHfCheckpoint(dir), /config\.json is a directory, not a config file/);
  });
});

describe('lazy RoPE tables: the same numbers as eager ones, built only as far as a run goes', () => {
  it('tables grown step by step equal tables built at once, bit for bit', () => {
    for (const [headDim, theta] of [[8, 10000], [64, 500000], [6, 1]] as const) {
      const eager = ropeTables(700, headDim, theta);
      const lazy = ropeTables(700, headDim, theta, 0);
      assert.equal(lazy.built, 0);
      for (const n of [1, 2, 3, 256, 257, 600, 700]) {
        reserveRope(lazy, n);
        assert.ok(lazy.built >= n && lazy.built <= 700);
        const half = headDim / 2;
        assert.deepEqual(lazy.cos.subarray(0, lazy.built * half), eager.cos.subarray(0, lazy.built * half));
        assert.deepEqual(lazy.sin.subarray(0, lazy.built * half), eager.sin.subarray(0, lazy.built * half));
      }
      assert.throws(() => reserveRope(lazy, 701), /beyond the 700/);
    }
  });

  it('a model with a context of 2^24 builds no table; decoding and training give the same logits and gradients as eager tables', () => {
    const big = new Transformer({ ...llama, blockSize: 2 ** 24 }, llamaParams);
    const tables = (big as unknown as { ctx: { rope: { built: number; cos: Float32Array } } }).ctx.rope;
    assert.equal(tables.built, 0);
    assert.equal(tables.cos.length, 0);

    const cfg = { ...llama, blockSize: 640 };
    const lazy = scaledModel(cfg, { seed: 5 });
    const eager = scaledModel(cfg, { seed: 5 });
    (eager as unknown as { ctx: { rope: unknown } }).ctx.rope = ropeTables(cfg.blockSize, cfg.nEmbd / cfg.nHead, cfg.ropeTheta);
    // decode 600 tokens one by one (the decode program rebinds the grown tables) after a prompt
    const ca = new KvCache(cfg);
    const cb = new KvCache(cfg);
    const prompt = Int32Array.from([1, 2, 3, 4, 5]);
    assert.deepEqual(lazy.forwardCached(prompt, ca), eager.forwardCached(prompt, cb));
    for (let i = 0; i < 600; i++) {
      const t = Int32Array.of((i * 7) % cfg.vocabSize);
      assert.deepEqual(lazy.forwardCached(t, ca), eager.forwardCached(t, cb), `position ${ca.pos}`);
    }
    // training: forward and backward over 300 positions
    const T = 300;
    const ids = Int32Array.from({ length: T }, (_, i) => (i * 5) % cfg.vocabSize);
    const targets = Int32Array.from({ length: T }, (_, i) => (i * 3 + 1) % cfg.vocabSize);
    const fresh2 = scaledModel(cfg, { seed: 6 });
    const eager2 = scaledModel(cfg, { seed: 6 });
    (eager2 as unknown as { ctx: { rope: unknown } }).ctx.rope = ropeTables(cfg.blockSize, cfg.nEmbd / cfg.nHead, cfg.ropeTheta);
    const step = (m: Transformer): { loss: number; grad: Float32Array } => withBufferScope(() => {
      const loss = m.forward(ids, 1, T, targets).loss!;
      loss.backward();
      return { loss: loss.item(), grad: m.params.get('model.layers.0.self_attn.q_proj.weight')!.grad!.slice() };
    });
    const a = step(fresh2);
    const b = step(eager2);
    assert.equal(a.loss, b.loss);
    assert.deepEqual(a.grad, b.grad);
    const la = noGrad(() => fresh2.forward(ids, 1, T).logits.data.slice());
    const lb = noGrad(() => eager2.forward(ids, 1, T).logits.data.slice());
    assert.deepEqual(la, lb);
  });
});
