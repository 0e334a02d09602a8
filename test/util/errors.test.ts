import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LlmError } from '../../src/util/errors.js';

test('LlmError is an Error named LlmError carrying the message', () => {
  const e = new LlmError('data file not found: x.txt');
  assert.ok(e instanceof Error);
  assert.ok(e instanceof LlmError);
  assert.equal(e.name, 'LlmError');
  assert.equal(e.message, 'data file not found: x.txt');
  assert.match(String(e), /^LlmError: data file not found/);
});

test('LlmError cuts a huge message to its start and end (a hostile value cannot flood the terminal)', () => {
  const shape = Array.from({ length: 5_000_000 }, (_, i) => i % 10).join(', ');
  const e = new LlmError(`tensor 'x' has shape [${shape}]; expected 2 dims`);
  assert.ok(e.message.length < 1100, `${e.message.length} characters`);
  assert.match(e.message, /^tensor 'x' has shape \[0, 1, 2/);
  assert.match(e.message, /\[\.\.\. \d+ characters cut \.\.\.\]/);
  assert.match(e.message, /; expected 2 dims$/);
  assert.equal(new LlmError('short').message, 'short');
});
