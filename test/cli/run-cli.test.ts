/**
 * llmts run as a user runs it: a child process on an llm.ts checkpoint (random weights, char
 * tokenizer), streaming to stdout; stop strings, seeds, one-line errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { generate } from '../../src/generate/generate.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { tmpDir } from '../helpers/tmp.js';
import { assertOneLineError, runCli, type CliResult } from '../helpers/cli.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';

const llmts = (...args: string[]): CliResult => runCli(args);

const tok = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz ,.!?\n');
const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 48, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
const model = scaledModel(cfg, { seed: 4, gain: 4 });
const dir = tmpDir('run-cli');
const ckpt = join(dir, 'ckpt.safetensors');
saveCheckpoint(ckpt, { config: cfg, params: model.params, tokenizer: tok.toJSON(), trainer: {} });

describe('llmts run', () => {
  it('prints usage with --help', () => {
    const r = llmts('run', '--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--repeat-penalty X/);
    assert.match(llmts('--help').stdout, /run /);
  });

  it('streams the same text as generate(), greedy and seeded', async () => {
    const opts = { maxTokens: 30, temperature: 0, topK: 0, seed: 1 };
    const want = await generate(model, tok, 'hello', opts).collect();
    const r = llmts('run', dir, '-p', 'hello', '--max-tokens', '30', '--temperature', '0');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${want}\n`);
    const a = llmts('run', ckpt, '-p', 'hi', '--max-tokens', '25', '--seed', '7', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--min-p', '0');
    const b = llmts('run', ckpt, '-p', 'hi', '--max-tokens', '25', '--seed', '7', '--temperature', '1', '--top-k', '0', '--top-p', '1', '--min-p', '0');
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
    const s = llmts('run', ckpt, '-p', 'hi', '--max-tokens', '25', '--seed', '7', '--temperature', '1', '--verbose');
    assert.match(s.stderr, /^llmts run: \d+ prompt \+ \d+ generated tokens in [\d.]+ s; prefill [\d.]+ ms \([\d.]+ tok\/s\), decode [\d.]+ tok\/s; stopped: (length|context)\n$/);
  });

  it('--prompt-ids and --output ids: token ids in, token ids out, same tokens as text mode', () => {
    const prompt = tok.encode('hello');
    const r = llmts('run', dir, '--prompt-ids', prompt.join(','), '--output', 'ids', '--max-tokens', '12', '--temperature', '0');
    assert.equal(r.code, 0, r.stderr);
    const ids = JSON.parse(r.stdout) as number[];
    assert.equal(ids.length, 12);
    const text = llmts('run', dir, '-p', 'hello', '--max-tokens', '12', '--temperature', '0').stdout.slice(0, -1);
    assert.equal(tok.decode(ids), text);
    assert.equal(llmts('run', dir, '--prompt-ids', `[${prompt.join(', ')}]`, '--output', 'ids', '--max-tokens', '12', '--temperature', '0').stdout, r.stdout);
    assertOneLineError(llmts('run', dir, '--prompt-ids', '1,x'), /give token ids as non-negative integers/);
    assertOneLineError(llmts('run', dir, '--prompt-ids', '99999', '--output', 'ids'), /token id 99999 is outside the model's vocabulary/);
  });

  it('--stop ends the text before the stop string', () => {
    const full = llmts('run', dir, '-p', 'hello', '--max-tokens', '30', '--temperature', '0').stdout.slice(0, -1);
    const stop = full.slice(8, 10);
    const r = llmts('run', dir, '-p', 'hello', '--max-tokens', '30', '--temperature', '0', '--stop', 'qqqqq', '--stop', stop);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${full.slice(0, full.indexOf(stop))}\n`);
  });

  it('stops at the end of the context; a longer prompt is a one-line error', () => {
    const r = llmts('run', dir, '-p', 'a'.repeat(40), '--max-tokens', '100', '--verbose');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /40 prompt \+ 9 generated tokens.*stopped: context/);
    assertOneLineError(llmts('run', dir, '-p', 'a'.repeat(49)), /prompt has 49 tokens but the model's context holds 48/);
    assertOneLineError(llmts('run', dir), /-p PROMPT\) or as token ids/);
    assertOneLineError(llmts('run', join(dir, 'nope'), '-p', 'x'), /model not found/);
  });
});
