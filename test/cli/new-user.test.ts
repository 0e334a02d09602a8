/**
 * What a new user met trying the CLI (issue 13): each defect found, as the user ran it.
 * --version, -t/-n/-p, binary --data, a .gguf without magic, an existing --out, --resume on
 * a finished run, the final progress line, chat on a char model, the context-limit notice.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { writeTokenShard } from '../../src/train/token-shards.js';
import { firstInvalidUtf8 } from '../../src/data/text-file.js';
import { assertOneLineError, runCli, type CliResult } from '../helpers/cli.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';
import { trainingText } from '../helpers/tiny-run.js';
import { tmpDir } from '../helpers/tmp.js';

const llmts = (...args: string[]): CliResult => runCli(args);
const reference = process.env.LLMTS_BACKEND === 'reference';

const tiny = ['--max-iters', '4', '--n-layer', '1', '--n-embd', '16', '--n-head', '2', '--block-size', '16',
  '--batch-size', '4', '--eval-interval', '2', '--eval-iters', '1', '--final-eval-iters', '1', '--sample-tokens', '0'];

describe('the CLI as a new user meets it', () => {
  it('llmts --version and -v print the version; --help lists the environment variables', () => {
    const version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-v']) {
      const r = llmts(flag);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^llmts ${version.replace(/\./g, '\\.')} \\(node v\\d+`));
    }
    const help = llmts('--help').stdout;
    for (const v of ['LLMTS_THREADS', 'LLMTS_SIMD', 'LLMTS_BACKEND', 'LLMTS_CACHE', 'LLMTS_MMAP']) assert.match(help, new RegExp(v));
  });

  it('errors are one line with no blank line before it, naming the flag as typed', () => {
    const r = llmts('train', '--block-size', '-5');
    assert.equal(r.stderr, "llmts train: error: --block-size -5: must be an integer >= 1\n");
    assertOneLineError(llmts('run', 'm', '-p', 'x', '--temperature', '-1'), /--temperature -1: must be a number >= 0/);
    assertOneLineError(llmts('run', 'm', '-p', 'x', '--top-p', '2'), /--top-p 2: must be a number >= 0 and <= 1/);
    assertOneLineError(llmts('run', 'm', '-p', 'x', '--repeat-penalty', '0'), /--repeat-penalty 0: must be a number > 0/);
    assertOneLineError(llmts('run', 'm', '-p', 'x', '-n', 'many'), /-n many: must be an integer >= 0/);
    assertOneLineError(llmts('train', '-t', '0'), /-t 0: must be an integer >= 1/);
    assertOneLineError(llmts('train', '-b', '100000000'), /-b 100000000 x --block-size 64 = 6,400,000,000 tokens a micro-batch is more than/);
  });

  it('defect 1: a binary file as --data is refused with the byte offset; a token shard trains with --tokenizer', () => {
    const dir = tmpDir('nu-binary');
    const nul = join(dir, 'prog.bin');
    writeFileSync(nul, Buffer.concat([Buffer.from('\x7fELF'), Buffer.from([2, 1, 1, 0, 0, 0])]));
    assertOneLineError(llmts('train', '--data', nul, '--out', join(dir, 'a'), ...tiny), /prog\.bin is not a text file: a NUL byte at offset 7/);
    const latin1 = join(dir, 'latin1.txt');
    writeFileSync(latin1, Buffer.from('caf\xe9 au lait', 'latin1'));
    assertOneLineError(llmts('train', '--data', latin1, '--out', join(dir, 'b'), ...tiny), /latin1\.txt is not UTF-8 text: invalid byte 0xe9 at offset 3/);
    assert.ok(!existsSync(join(dir, 'a', 'ckpt.safetensors')), 'nothing trained');
    if (existsSync('/bin/ls')) assertOneLineError(llmts('train', '--data', '/bin/ls', '--out', join(dir, 'c'), ...tiny), /\/bin\/ls is not a text file: a NUL byte at offset \d+/);
    // llm.c token shards: with the tokenizer they were made with
    const tok = CharTokenizer.fromText(trainingText(20_000));
    const ids = tok.encode(trainingText(20_000));
    const shard = join(dir, 'train.bin');
    writeTokenShard(shard, ids);
    assertOneLineError(llmts('train', '--data', shard, '--out', join(dir, 'd'), ...tiny), /is a token shard: name the tokenizer .* with --tokenizer/);
    const ckpt = join(dir, 'tok.safetensors');
    const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 16, hiddenDim: 32 });
    saveCheckpoint(ckpt, { config: cfg, params: scaledModel(cfg).params, tokenizer: tok.toJSON(), trainer: {} });
    const r = llmts('train', '--data', shard, '--tokenizer', ckpt, '--out', join(dir, 'e'), ...tiny);
    assert.equal(r.code, 0, r.stderr);
    const n = Math.floor(ids.length * 0.9);
    assert.ok(r.stdout.includes(`data: ${n.toLocaleString('en-US')} train / ${(ids.length - n).toLocaleString('en-US')} val tokens`), r.stdout);
  });

  it('firstInvalidUtf8 follows the Unicode definition', () => {
    const at = (...b: number[]): number => firstInvalidUtf8(Uint8Array.from(b));
    assert.equal(at(0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80), -1); // a é € 😀
    assert.equal(at(0x61, 0xc3), 1); // cut short
    assert.equal(at(0xc0, 0x80), 0); // overlong NUL
    assert.equal(at(0x61, 0xe0, 0x80, 0x80), 1); // overlong
    assert.equal(at(0xed, 0xa0, 0x80), 0); // surrogate
    assert.equal(at(0xf4, 0x90, 0x80, 0x80), 0); // above U+10FFFF
    assert.equal(at(0x80), 0); // lone continuation
  });

  it('defect 2: a .gguf or .safetensors without its magic is reported in its own format', () => {
    const dir = tmpDir('nu-magic');
    const random = join(dir, 'model.gguf');
    writeFileSync(random, Buffer.from([0x13, 0x37, 0x00, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    assertOneLineError(llmts('run', random, '-p', 'x'), /model\.gguf is not a GGUF file: it starts with bytes 13 37 00 ff 01 02 03 04, not the magic 'GGUF'/);
    const empty = join(dir, 'empty.gguf');
    writeFileSync(empty, '');
    assertOneLineError(llmts('info', empty), /empty\.gguf is not a GGUF file: the file is empty/);
    const cut = join(dir, 'ckpt.safetensors');
    writeFileSync(cut, 'PK\x03\x04 a zip, not a checkpoint');
    assertOneLineError(llmts('run', cut, '-p', 'x'), /ckpt\.safetensors is not a safetensors checkpoint: it starts with/);
    assertOneLineError(llmts('run', join(dir, 'nothing.bin'), '-p', 'x'), /model not found/);
  });

  it('defects 4-6: an existing --out is refused without --resume or --overwrite; a finished run has nothing to do; the last progress line once', () => {
    const dir = tmpDir('nu-out');
    const data = join(dir, 'd.txt');
    writeFileSync(data, trainingText(20_000));
    const out = join(dir, 'run');
    const first = llmts('train', '--data', data, '--out', out, ...tiny);
    assert.equal(first.code, 0, first.stderr);
    // stderr is a pipe here: the 100% line appears once (it used to be printed again by done())
    assert.equal(first.stderr.split('\n').filter((l) => / 4\/4 /.test(l)).length, 1, first.stderr);
    const ckpt = readFileSync(join(out, 'ckpt.safetensors'));
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8');

    assertOneLineError(llmts('train', '--data', data, '--out', out, ...tiny), /already holds a run \(ckpt\.safetensors, metrics\.jsonl, loss\.svg\): continue it with --resume, replace it with --overwrite/);
    assert.deepEqual(readFileSync(join(out, 'ckpt.safetensors')), ckpt, 'the run is untouched');
    assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8'), metrics);

    const again = llmts('train', '--out', out, '--resume');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^nothing to do: the run in .* finished at step 4 of 4; raise --max-iters/);
    assert.doesNotMatch(again.stdout, /speed|final:/);
    assert.deepEqual(readFileSync(join(out, 'ckpt.safetensors')), ckpt);
    assertOneLineError(llmts('train', '--out', out, '--resume', '--lr', '0.5'), /--lr cannot change \(only --max-iters can/);

    const more = llmts('train', '--out', out, '--resume', '--max-iters', '6', '--final-eval-iters', '1', '--sample-tokens', '0');
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, /resuming from step 4[\s\S]*final: step 6/);

    const over = llmts('train', '--data', data, '--out', out, '--overwrite', ...tiny, '--seed', '5');
    assert.equal(over.code, 0, over.stderr);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step?: number });
    assert.ok(lines.every((l) => l.step === undefined || l.step <= 4), 'the old run\'s metrics are gone');
  });

  it('-t sets the threads (the banner says "1 thread"); -p and -n on run; the context-limit notice', () => {
    const dir = tmpDir('nu-threads');
    const data = join(dir, 'd.txt');
    writeFileSync(data, trainingText(20_000));
    const out = join(dir, 'run');
    const r = llmts('train', '--data', data, '-o', out, ...tiny, '-t', '1');
    assert.equal(r.code, 0, r.stderr);
    if (!reference) assert.match(r.stdout, /backend: native \(\w+, 1 thread\)/);
    const g = llmts('run', out, '-p', 'the', '-n', '5', '--temperature', '0', '-t', '2');
    assert.equal(g.code, 0, g.stderr);
    assert.equal([...g.stdout.replace(/\n$/, '')].length, 5);
    assert.equal(llmts('run', '-m', out, '-p', 'the', '-n', '5', '--temperature', '0').stdout, g.stdout);
    // the model's context is 16 tokens: a 10-token prompt leaves room for 6 more positions, so 7 tokens come out
    const c = llmts('run', out, '-p', 'the king a', '--max-tokens', '50', '--temperature', '0');
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stderr, 'llmts run: stopped at the end of the 16-token context after 7 of --max-tokens 50 tokens\n');
    assert.equal([...c.stdout.replace(/\n$/, '')].length, 7);
    const small = llmts('run', out, '-p', 'the', '-n', '50', '-c', '8', '--temperature', '0');
    assert.equal(small.stderr, 'llmts run: stopped at the end of the 8-token context after 6 of -n 50 tokens\n');
    assertOneLineError(llmts('run', out, '-p', 'the', '-c', '17'), /-c 17: the model's context holds 16 tokens/);
  });

  it('defect 7: chat on a char model picks the qa template and says so', () => {
    const dir = tmpDir('nu-chat');
    const data = join(dir, 'd.txt');
    writeFileSync(data, trainingText(20_000) + 'QA:?');
    const out = join(dir, 'run');
    assert.equal(llmts('train', '--data', data, '-o', out, ...tiny).code, 0);
    const r = runCli(['chat', out, '-n', '5', '--temperature', '0'], 'the king\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^\(template qa: the model has no chat tokens; --template chooses another\)\n/);
    assert.ok(r.stdout.length > 0);
    const chatml = runCli(['chat', out, '--template', 'chatml', '-n', '5'], 'hi\n');
    assertOneLineError(chatml, /chatml/);
  });
});
