/**
 * The llmts command as a user runs it: a child process, exit codes, one-line errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { trainingText } from '../helpers/tiny-run.js';
import { assertOneLineError, runCli, type CliResult } from '../helpers/cli.js';

const llmts = (...args: string[]): CliResult => runCli(args);

const tiny = ['--max-iters', '4', '--n-layer', '1', '--n-embd', '16', '--n-head', '2', '--block-size', '16',
  '--batch-size', '4', '--eval-interval', '2', '--eval-iters', '1', '--final-eval-iters', '1'];

describe('llmts CLI', () => {
  it('prints usage with --help', () => {
    const r = llmts('--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /train/);
    assert.match(llmts('train', '--help').stdout, /--max-iters N/);
  });

  it('an unknown command is one line naming the commands (also one named like an Object method)', () => {
    for (const name of ['nope', 'toString', 'constructor']) {
      const r = llmts(name);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `llmts: unknown command '${name}' (commands: train, sample, run, chat, tokenizer, convert, info, sft, merge, reward, dpo, ppo, data, serve)\n`);
    }
  });

  it('missing data file', () => {
    assertOneLineError(llmts('train', '--data', '/no/such/file.txt'), /data file not found: \/no\/such\/file\.txt/);
  });

  it('empty data file', () => {
    const dir = tmpDir('cli-empty');
    const f = join(dir, 'empty.txt');
    writeFileSync(f, '');
    assertOneLineError(llmts('train', '--data', f, '--out', join(dir, 'run')), /empty/);
  });

  it('n_embd not divisible by n_head', () => {
    const dir = tmpDir('cli-heads');
    const f = join(dir, 'd.txt');
    writeFileSync(f, trainingText(5000));
    assertOneLineError(llmts('train', '--data', f, '--out', join(dir, 'run'), '--n-embd', '130', '--n-head', '4'),
      /n_embd 130 is not divisible by n_head 4/);
  });

  it('bad flag values and unknown flags', () => {
    assertOneLineError(llmts('train', '--max-iters', 'lots'), /--max-iters lots: must be an integer/);
    assertOneLineError(llmts('train', '--learning-rate', '1'), /Unknown option '--learning-rate'/);
  });

  it('corrupt checkpoint', () => {
    const dir = tmpDir('cli-corrupt');
    const f = join(dir, 'ckpt.safetensors');
    writeFileSync(f, Buffer.from('this is not a checkpoint at all'));
    assertOneLineError(llmts('sample', '--ckpt', f), /ckpt\.safetensors/);
    const r = llmts('sample', '--ckpt', f, '--debug');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\n\s+at /, '--debug shows the stack');
  });

  it('trains, writes its files, resumes, and samples deterministically', () => {
    const dir = tmpDir('cli-run');
    const f = join(dir, 'd.txt');
    writeFileSync(f, trainingText(20_000));
    const out = join(dir, 'run');
    const r = llmts('train', '--data', f, '--out', out, ...tiny, '--sample-tokens', '20');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /final: step 4, val loss \d+\.\d+ \(mean over 1 batches/);
    for (const file of ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg', 'data/train.bin', 'data/val.bin']) {
      assert.ok(existsSync(join(out, file)), `${file} written`);
    }
    assert.match(readFileSync(join(out, 'loss.svg'), 'utf8'), /^<svg/);
    const more = llmts('train', '--out', out, '--resume', '--max-iters', '6', '--sample-tokens', '0', '--final-eval-iters', '1');
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, /resuming from step 4/);
    assert.match(more.stdout, /final: step 6/);
    const a = llmts('sample', '--ckpt', out, '--max-tokens', '30', '--seed', '7', '--prompt', 'the');
    const b = llmts('sample', '--ckpt', out, '--max-tokens', '30', '--seed', '7', '--prompt', 'the');
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
    assert.ok(a.stdout.startsWith('the') && a.stdout.length >= 30);
  });
});
