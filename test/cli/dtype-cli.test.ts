/**
 * --dtype bf16 from the command line: every training command takes it; on a CPU without
 * AVX512-BF16 or AMX (and without LLMTS_BF16=portable) `llmts train --dtype bf16` says so in one
 * line and trains in float32; with the override the run is bf16 (metrics, checkpoint); a resume
 * keeps the run's dtype and refuses another one in one line.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backend, nativeFunction } from '../../src/backend/index.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { tmpDir } from '../helpers/tmp.js';
import { trainingText } from '../helpers/tiny-run.js';
import { CLI, assertOneLineError, type CliResult } from '../helpers/cli.js';

/** llmts with LLMTS_BF16 set (or removed: undefined) */
function llmts(bf16: string | undefined, ...args: string[]): CliResult {
  const env: NodeJS.ProcessEnv = { ...process.env, LLMTS_BACKEND: process.env.LLMTS_BACKEND ?? '' };
  delete env.LLMTS_BF16;
  if (bf16 !== undefined) env.LLMTS_BF16 = bf16;
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tiny = ['--max-iters', '2', '--n-layer', '1', '--n-embd', '16', '--n-head', '2', '--block-size', '16', '--batch-size', '4',
  '--eval-interval', '2', '--eval-iters', '1', '--final-eval-iters', '1', '--sample-tokens', '0'];

/** does this CPU (with the backend the tests run on) have a fast bf16 kernel? */
function hasFastKernel(): boolean {
  if (backend().name !== 'native') return false;
  const select = nativeFunction<(r: string) => { kernel: string }>('bf16Kernel');
  return select !== undefined && select('auto').kernel !== 'none';
}

describe('--dtype', () => {
  it('every training command takes it (float32 or bf16)', () => {
    for (const cmd of [['train'], ['sft'], ['reward', 'train'], ['dpo'], ['ppo']]) {
      const r = llmts(undefined, ...cmd, '--help');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /--dtype float32\|bf16/, `${cmd.join(' ')} --help`);
    }
    assertOneLineError(llmts(undefined, 'train', '--dtype', 'fp16'), /--dtype fp16: must be one of float32, bf16/);
  });

  it('without AVX512-BF16 or AMX: one line saying so, then a float32 run', (t) => {
    if (hasFastKernel()) return t.skip('this CPU has a bf16 kernel');
    const dir = tmpDir('dtype-off');
    const data = join(dir, 'd.txt');
    writeFileSync(data, trainingText(8_000));
    const out = join(dir, 'run');
    const r = llmts(undefined, 'train', '--data', data, '--out', out, ...tiny, '--dtype', 'bf16');
    assert.equal(r.code, 0, r.stderr);
    const notes = r.stderr.split('\n').filter((l) => /bf16/.test(l));
    assert.equal(notes.length, 1, r.stderr);
    assert.match(notes[0], backend().name === 'native'
      ? /this CPU has neither AVX512-BF16 nor AMX: training in float32 \(LLMTS_BF16=portable/
      : /backend has no bf16 kernels: training in float32/);
    assert.ok(readMetrics(join(out, 'metrics.jsonl')).every((rec) => !('dtype' in rec)), 'float32 metrics');
    const ck = loadCheckpoint(join(out, 'ckpt.safetensors'));
    assert.equal((ck.trainer as { options: { dtype: string } }).options.dtype, 'bf16', 'what was asked is saved');
    assert.equal((ck.trainer as { dtype?: string }).dtype, undefined, 'what ran: float32');
  });

  it('LLMTS_BF16=portable trains in bf16; resume keeps the dtype and refuses another', () => {
    const dir = tmpDir('dtype-bf16');
    const data = join(dir, 'd.txt');
    writeFileSync(data, trainingText(8_000));
    const out = join(dir, 'run');
    const r = llmts('portable', 'train', '--data', data, '--out', out, ...tiny, '--dtype', 'bf16');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /bf16: operands rounded to bf16 then float32 products \(LLMTS_BF16=portable\)/);
    assert.deepEqual(readMetrics(join(out, 'metrics.jsonl')).filter((rec) => rec.type === 'train').map((rec) => rec.dtype), ['bf16', 'bf16']);
    assert.equal((loadCheckpoint(join(out, 'ckpt.safetensors')).trainer as { dtype?: string }).dtype, 'bf16');

    assertOneLineError(llmts('portable', 'train', '--out', out, '--resume', '--max-iters', '3', '--dtype', 'float32'),
      /--dtype float32: this run was trained with --dtype bf16, and a resumed run keeps its dtype/);
    const more = llmts('portable', 'train', '--out', out, '--resume', '--max-iters', '3', '--dtype', 'bf16', '--sample-tokens', '0', '--final-eval-iters', '1');
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, /final: step 3/);
    if (!hasFastKernel()) {
      // the same run where bf16 is off: the loop refuses to continue it in float32
      const off = llmts(undefined, 'train', '--out', out, '--resume', '--max-iters', '4', '--sample-tokens', '0');
      assert.notEqual(off.code, 0);
      assert.match(off.stderr.trim().split('\n').at(-1)!, /trained with dtype bf16; a resumed run keeps its dtype, and this one asks for bf16, which computes in float32 here/);
    }
  });
});
