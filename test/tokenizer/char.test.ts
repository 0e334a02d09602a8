import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { tokenizerFromJSON } from '../../src/tokenizer/tokenizer.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';

test('vocabulary is the sorted set of code points', () => {
  const tok = CharTokenizer.fromText('hello world\n');
  assert.equal(tok.kind, 'char');
  assert.deepEqual(tok.chars, ['\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
  assert.equal(tok.vocabSize, 9);
  assert.deepEqual(tok.encode('hold'), [4, 6, 5, 2]);
  assert.equal(tok.decode([4, 3, 5, 5, 6]), 'hello');
  assert.equal(tok.decode(new Uint16Array([4, 6])), 'ho');
});

test('characters outside the BMP are single tokens, sorted by code point', () => {
  // U+FF21 (fullwidth A) sorts before U+1F600 by code point, though not by UTF-16 unit.
  const tok = CharTokenizer.fromText('😀Ａa😀');
  assert.deepEqual(tok.chars, ['a', 'Ａ', '😀']);
  assert.deepEqual(tok.encode('😀a'), [2, 0]);
  assert.equal(tok.decode([2, 1, 0]), '😀Ａa');
});

test('toJSON / tokenizerFromJSON round trip', () => {
  const tok = CharTokenizer.fromText('ba\n😀');
  const json = JSON.parse(JSON.stringify(tok.toJSON()));
  assert.deepEqual(json, { kind: 'char', chars: '\nab😀' });
  const back = tokenizerFromJSON(json);
  assert.ok(back instanceof CharTokenizer);
  assert.deepEqual(back.encode('ab😀\n'), tok.encode('ab😀\n'));
});

test('errors', () => {
  const tok = CharTokenizer.fromText('abc');
  assert.throws(() => tok.encode('abz'), (e: unknown) => e instanceof LlmError && e.message.includes('"z" (U+007A)'));
  assert.throws(() => tok.encode('a\tb'), (e: unknown) => e instanceof LlmError && e.message.includes('"\\t" (U+0009)'));
  assert.throws(() => tok.decode([0, 3]), (e: unknown) => e instanceof LlmError && e.message.includes('token id 3'));
  assert.throws(() => tok.decode([-1]), LlmError);
  assert.throws(() => tok.decode([0.5]), LlmError);
  assert.throws(() => tokenizerFromJSON({ kind: 'char', chars: 'aa' }), /twice/);
  assert.throws(() => tokenizerFromJSON({ kind: 'char', chars: 5 }), LlmError);
  assert.throws(() => CharTokenizer.fromText(''), LlmError);
});

test('Tiny Shakespeare: 65 characters, newline 0, space 1, lossless round trip', (t) => {
  const path = sharedDataPath('tinyshakespeare/input.txt');
  if (path === null) {
    t.skip('shared/data/tinyshakespeare/input.txt not found');
    return;
  }
  const text = readFileSync(path, 'utf8');
  const tok = CharTokenizer.fromText(text);
  assert.equal(tok.vocabSize, 65);
  assert.deepEqual(tok.encode('\n '), [0, 1]);
  assert.equal(tok.toJSON().chars, "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  const ids = tok.encode(text);
  assert.equal(ids.length, 1115394);
  assert.equal(tok.decode(ids), text);
});
