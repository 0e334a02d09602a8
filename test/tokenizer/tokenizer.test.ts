import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { tokenizerFromJSON, type Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { LlmError } from '../../src/util/errors.js';

test('tokenizerFromJSON dispatches on kind', () => {
  const tok: Tokenizer = tokenizerFromJSON({ kind: 'char', chars: 'ab' });
  assert.ok(tok instanceof CharTokenizer);
  assert.equal(tok.vocabSize, 2);
});

test('tokenizerFromJSON rejects unknown kinds and non-objects', () => {
  assert.throws(
    () => tokenizerFromJSON({ kind: 'wordpiece' }),
    (e: unknown) => e instanceof LlmError && e.message.includes('unknown tokenizer kind "wordpiece"'),
  );
  assert.throws(() => tokenizerFromJSON(null), LlmError);
  assert.throws(() => tokenizerFromJSON('char'), LlmError);
  assert.throws(() => tokenizerFromJSON({ chars: 'ab' }), LlmError);
});
