/**
 * llmts tokenizer train / encode / decode, and llmts train --tokenizer, as child processes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';
import { assertOneLineError, runCli, type CliResult } from '../helpers/cli.js';

const llmts = (args: string[], input?: string): CliResult => runCli(args, input);

/** ~n characters of made-up words: varied enough for a few hundred merges, the same on every run. */
function wordsText(n: number): string {
  const syl = ['ka', 'to', 'ri', 'mu', 'sen', 'lo', 'vi', 'par', 'eth', 'an', 'qui', 'zor', 'the', 'king'];
  const seps = [' ', ' ', ' ', ', ', '. ', '\n', ' ', '; '];
  let x = 12345;
  const next = (m: number): number => ((x = (x * 1103515245 + 12345) % 2147483648), x % m);
  let s = '';
  while (s.length < n) {
    let w = '';
    for (let k = 1 + next(3); k > 0; k--) w += syl[next(syl.length)];
    s += (next(10) === 0 ? w[0].toUpperCase() + w.slice(1) : w) + seps[next(seps.length)];
  }
  return s;
}

describe('llmts tokenizer', () => {
  it('train -> encode -> decode round trip (tokenizer.json and tokenizer.tiktoken)', () => {
    const dir = tmpDir('tok-cli');
    const data = join(dir, 'data.txt');
    writeFileSync(data, wordsText(30_000));
    const out = join(dir, 'tok');
    const r = llmts(['tokenizer', 'train', '--data', data, '--vocab-size', '400', '--out', out, '--pattern', 'gpt2', '--special', '<|endoftext|>']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /trained 400 tokens \(143 merges, 1 special\)/);
    assert.ok(existsSync(join(out, 'tokenizer.json')) && existsSync(join(out, 'tokenizer.tiktoken')));
    const hf = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8'));
    assert.equal(Object.keys(hf.model.vocab).length, 400);
    assert.equal(hf.model.merges.length, 143);
    assert.equal(readFileSync(join(out, 'tokenizer.tiktoken'), 'utf8').trimEnd().split('\n').length, 399);

    const text = 'First Citizen:\nBefore we proceed any further, hear me speak.\n  ünïcödé ✓ 🙂 <|endoftext|>\n';
    const enc = llmts(['tokenizer', 'encode', '--tokenizer', out], text); // the directory -> tokenizer.json, text from stdin
    assert.equal(enc.code, 0, enc.stderr);
    const ids = JSON.parse(enc.stdout) as number[];
    assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 399), 'special text is encoded as plain text by default');
    assert.ok(ids.length < Buffer.byteLength(text), `${ids.length} tokens for ${Buffer.byteLength(text)} bytes`);
    const dec = llmts(['tokenizer', 'decode', '--tokenizer', join(out, 'tokenizer.json')], JSON.stringify(ids));
    assert.equal(dec.code, 0, dec.stderr);
    assert.equal(dec.stdout, text);

    const special = llmts(['tokenizer', 'encode', '--tokenizer', out, '--allow-special', '--text', 'hi<|endoftext|>']);
    assert.equal(special.code, 0, special.stderr);
    assert.equal((JSON.parse(special.stdout) as number[]).at(-1), 399);

    // the rank file holds the same ordinary tokens: decoding the ids gives the same text
    const tk = llmts(['tokenizer', 'decode', '--tokenizer', join(out, 'tokenizer.tiktoken'), '--ids', JSON.stringify(ids)]);
    assert.equal(tk.code, 0, tk.stderr);
    assert.equal(tk.stdout, text);
  });

  it('encodes with a SentencePiece tokenizer.model from the shared data', (t) => {
    const model = sharedDataPath('llama2-tokenizer/tokenizer.model');
    if (model === null) return t.skip('shared data not available (llama2-tokenizer/tokenizer.model)');
    const r = llmts(['tokenizer', 'encode', '--tokenizer', model, '--text', 'Hello world']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [1, 15043, 3186]);
    const d = llmts(['tokenizer', 'decode', '--tokenizer', model, '--ids', '[1, 15043, 3186]']);
    assert.equal(d.stdout, 'Hello world');
  });

  it('encodes with GGUF vocabularies (gpt2 -> byte-level BPE, llama -> SentencePiece)', (t) => {
    const gpt2 = sharedDataPath('gguf-vocab/ggml-vocab-gpt-2.gguf');
    const llama = sharedDataPath('gguf-vocab/ggml-vocab-llama-spm.gguf');
    if (gpt2 === null || llama === null) return t.skip('shared data not available (gguf-vocab)');
    const a = llmts(['tokenizer', 'encode', '--tokenizer', gpt2, '--text', 'Hello world']);
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(JSON.parse(a.stdout), [15496, 995]);
    const b = llmts(['tokenizer', 'encode', '--tokenizer', llama, '--text', 'Hello world']);
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(JSON.parse(b.stdout), [1, 15043, 3186]);
  });

  it('llmts train --tokenizer uses the tokenizer and its vocab size', () => {
    const dir = tmpDir('tok-train');
    const data = join(dir, 'data.txt');
    writeFileSync(data, wordsText(20_000));
    const tok = join(dir, 'tok');
    assert.equal(llmts(['tokenizer', 'train', '--data', data, '--vocab-size', '300', '--out', tok]).code, 0);
    const r = llmts(['train', '--data', data, '--tokenizer', tok, '--out', join(dir, 'run'), '--max-iters', '2', '--n-layer', '1',
      '--n-embd', '16', '--n-head', '2', '--block-size', '16', '--batch-size', '2', '--eval-interval', '2', '--eval-iters', '1',
      '--final-eval-iters', '1', '--sample-tokens', '5']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /vocab 300:/);
    assert.ok(existsSync(join(dir, 'run', 'ckpt.safetensors')));
    // the checkpoint carries the tokenizer
    const enc = llmts(['tokenizer', 'encode', '--tokenizer', join(dir, 'run', 'ckpt.safetensors'), '--text', 'the king']);
    const direct = llmts(['tokenizer', 'encode', '--tokenizer', tok, '--text', 'the king']);
    assert.equal(enc.code, 0, enc.stderr);
    assert.equal(enc.stdout, direct.stdout);
  });

  it('errors are one line with a non-zero exit', () => {
    assertOneLineError(llmts(['tokenizer', 'train', '--data', '/no/such/file.txt', '--vocab-size', '300', '--out', '/tmp/unused']),
      /data file not found: \/no\/such\/file\.txt/);
    assertOneLineError(llmts(['tokenizer', 'encode', '--tokenizer', 'no-such-tokenizer', '--text', 'x']),
      /unknown tokenizer 'no-such-tokenizer'/);
    assertOneLineError(llmts(['train', '--tokenizer', 'no-such-tokenizer']), /unknown tokenizer 'no-such-tokenizer'/);
    assertOneLineError(llmts(['tokenizer', 'train', '--data', 'x', '--vocab-size', '10', '--out', 'y']), /--vocab-size 10: must be an integer >= 256/);
    assertOneLineError(llmts(['tokenizer', 'tokenize']), /unknown subcommand 'tokenize'/);
    assertOneLineError(llmts(['tokenizer', 'decode', '--tokenizer', 'x', '--text', 'y']), /--text is not a flag of 'llmts tokenizer decode'/);
  });
});
