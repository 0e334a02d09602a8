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
