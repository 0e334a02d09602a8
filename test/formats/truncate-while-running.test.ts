/**
 * Issue 14, defect 1: a model file truncated while llm.ts runs it (memory-mapped) killed the
 * process with SIGBUS ('Bus error', exit 135, no message). Now the addon catches the fault in its
 * mappings (native/mmap.c) and the run ends in a one-line error naming the file.
 *
 * Each case runs a child process (test/helpers/truncate-child.ts) that loads a few-MB model the
 * way `llmts run` does, says so, and waits; the test truncates the file to 4096 bytes, lets the
 * child generate, and checks: no signal, a non-zero exit, one stderr line saying the file was
 * truncated, no stack trace. Covered: llama2.c, GGUF F32, GGUF Q8_0, a Hugging Face directory
 * (safetensors) and an llm.ts checkpoint (safetensors); the same runs without truncation and
 * with LLMTS_MMAP=0 (truncated after loading) still generate every token; a SIGBUS sent with
 * kill() still ends the process; and `llmts run` itself, stopped after its first output while
 * the file is truncated, ends in `llmts run: error: ...`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, truncateSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileMappingAvailable } from '../../src/formats/file-source.js';
import { exportGgufModel } from '../../src/formats/gguf-model.js';
import { validateConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { Rng } from '../../src/util/rng.js';
import { CLI } from '../helpers/cli.js';
import { writeModelFiles, type ModelFileKind } from '../helpers/model-memory.js';
import { tmpDir } from '../helpers/tmp.js';

const CHILD = fileURLToPath(new URL('../helpers/truncate-child.js', import.meta.url));
const dir = tmpDir('truncate');
const mapping = fileMappingAvailable();
const noMapping = mapping ? false : 'files are not memory-mapped here (no native addon, LLMTS_BACKEND=reference or LLMTS_MMAP=0)';

// ~6 MB in F32 (a 4096-token vocabulary, untied): most of every tensor lies past the first page
const cfg = validateConfig({
  family: 'llama', vocabSize: 4096, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 128, hiddenDim: 384,
  bias: false, tiedEmbeddings: false, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
});
const params = new Transformer(cfg, new Rng(1)).params;
const TOKENS = 40;

type Kind = ModelFileKind | 'checkpoint';
const KINDS: readonly Kind[] = ['llama2c', 'gguf-f32', 'gguf-q8_0', 'hf', 'checkpoint'];

let written = 0;
/** A fresh copy of the model in `kind` (each case truncates its own): [path to load, file to truncate]. */
function writeModel(kind: Kind): [string, string] {
  const sub = join(dir, `${kind}-${written++}`);
  mkdirSync(sub);
  if (kind === 'checkpoint') {
    const path = join(sub, 'ckpt.safetensors');
    saveCheckpoint(path, { config: cfg, params, tokenizer: CharTokenizer.fromText('abc').toJSON(), trainer: {} });
    return [path, path];
  }
  const path = writeModelFiles(sub, cfg, params, [kind])[kind];
  return [path, kind === 'hf' ? join(path, 'model.safetensors') : path];
}

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `node args...`; `onOutput` sees stdout as it arrives (with the child, to stop or feed it). */
function runNode(args: string[], env: NodeJS.ProcessEnv, onOutput: (stdout: string, child: ReturnType<typeof spawn>) => void): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      onOutput(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => {}); // the child may be gone before its input is written
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Load `path` in a child; once it is loaded, truncate `file` to 4096 bytes (or not) and let it generate. */
function loadThenGenerate(path: string, file: string, truncate: boolean, env: NodeJS.ProcessEnv = {}): Promise<ChildResult> {
  let released = false;
  return runNode([CHILD, path, String(TOKENS)], env, (stdout, child) => {
    if (released || !stdout.includes('\n')) return;
    released = true;
    if (truncate) truncateSync(file, 4096);
    child.stdin!.end('go\n');
  });
}

function assertTruncationError(r: ChildResult, file: string, prefix = 'error: '): void {
  assert.equal(r.signal, null, `the child died of ${r.signal} (stderr: ${r.stderr})`);
  assert.notEqual(r.code, 0, `the child should fail; stdout: ${r.stdout}`);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.ok(lines[0].startsWith(prefix), lines[0]);
  assert.ok(lines[0].includes(basename(file)), `the error names the file: ${lines[0]}`);
  assert.match(lines[0], /was truncated or changed while in use/);
  assert.match(lines[0], /LLMTS_MMAP=0/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

function assertGenerated(r: ChildResult, source: string): void {
  assert.equal(r.signal, null, `the child died of ${r.signal} (stderr: ${r.stderr})`);
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, `loaded ${source}\ngenerated ${TOKENS}\n`);
}

describe('a model file truncated while in use (issue 14)', () => {
  for (const kind of KINDS) {
    it(`${kind}, memory-mapped: a one-line error naming the file, not SIGBUS`, { skip: noMapping }, async () => {
      const [path, file] = writeModel(kind);
      const r = await loadThenGenerate(path, file, true);
      assert.ok(r.stdout.startsWith('loaded mmap\n'), r.stdout);
      assertTruncationError(r, file);
    });

    it(`${kind}, memory-mapped, not truncated: generates as before`, { skip: noMapping }, async () => {
      const [path, file] = writeModel(kind);
      assertGenerated(await loadThenGenerate(path, file, false), 'mmap');
    });

    it(`${kind}, LLMTS_MMAP=0: read into memory, so truncating after loading changes nothing`, async () => {
      const [path, file] = writeModel(kind);
      assertGenerated(await loadThenGenerate(path, file, true, { LLMTS_MMAP: '0' }), 'read');
    });
  }

  it('a SIGBUS that is not a fault in a mapped file still ends the process', { skip: noMapping }, async () => {
    const [path] = writeModel('gguf-f32');
    const r = await runNode([CHILD, '--kill-self', path], {}, () => {});
    assert.equal(r.stdout, 'loaded mmap\n');
    assert.equal(r.signal, 'SIGBUS');
  });

  describe('llmts run', () => {
    // a char tokenizer and enough layers that 480 tokens take a while (about 1.5 s here): the run is stopped
    // (SIGSTOP) at its first output, the file truncated, and the run continued (SIGCONT)
    const tok = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz .,\n');
    const big = validateConfig({ ...cfg, vocabSize: tok.vocabSize, blockSize: 512, nLayer: 4, nEmbd: 256, nHead: 8, nKvHead: 4, hiddenDim: 768 });
    const bigParams = new Transformer(big, new Rng(2)).params;
    const writeGguf = (): string => {
      const sub = join(dir, `run-${written++}`);
      mkdirSync(sub);
      const path = join(sub, 'model.gguf');
      exportGgufModel(path, big, bigParams, { tokenizer: tok });
      return path;
    };
    const runArgs = (path: string, n: number): string[] => [CLI, 'run', path, '-p', 'the ', '-n', String(n), '--temperature', '0'];

    it('GGUF F32 truncated mid-generation: `llmts run: error: ... was truncated ...`, exit 1', { skip: noMapping }, async () => {
      const path = writeGguf();
      let truncated = false;
      const r = await runNode(runArgs(path, 480), { LLMTS_BACKEND: process.env.LLMTS_BACKEND ?? '' }, (_stdout, child) => {
        if (truncated) return;
        truncated = true;
        child.kill('SIGSTOP');
        truncateSync(path, 4096);
        child.kill('SIGCONT');
      });
      assert.ok(truncated, 'the run printed nothing before it ended');
      assertTruncationError(r, path, 'llmts run: error: ');
    });

    it('the same run without truncation, mapped and with LLMTS_MMAP=0, prints the same text', { skip: noMapping }, async () => {
      const path = writeGguf();
      const env = { LLMTS_BACKEND: process.env.LLMTS_BACKEND ?? '' };
      const mapped = await runNode(runArgs(path, 30), env, () => {});
      const read = await runNode(runArgs(path, 30), { ...env, LLMTS_MMAP: '0' }, () => {});
      for (const r of [mapped, read]) {
        assert.equal(r.signal, null);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, '');
      }
      assert.ok(mapped.stdout.length > 1);
      assert.equal(read.stdout, mapped.stdout);
    });
  });
});
