/**
 * rowsText (llmts data text): the named string fields of each row, in order, with a separator;
 * a missing or non-string field is an error naming the line.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rowsText } from '../../src/data/text-fields.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('text-fields');
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('rowsText', () => {
  it('writes the fields of each row in the order asked, each followed by the separator', () => {
    const path = file('pairs.jsonl', '{"chosen": "A1", "rejected": "B1", "x": 3}\n\n{"rejected": "B2", "chosen": "A2"}\n');
    assert.deepEqual(rowsText(path, ['chosen', 'rejected'], '\n\n'), { text: 'A1\n\nB1\n\nA2\n\nB2\n\n', rows: 2, fields: 4 });
    assert.equal(rowsText(path, ['rejected'], '|').text, 'B1|B2|');
  });

  it('names the line and field of a row that lacks a string field', () => {
    const path = file('bad.jsonl', '{"text": "a"}\n{"text": 5}\n');
    assert.throws(() => rowsText(path, ['text'], '\n'), /bad\.jsonl:2: field "text" is a number, not a string/);
    assert.throws(() => rowsText(path, ['body'], '\n'), /bad\.jsonl:1: field "body" is missing/);
    assert.throws(() => rowsText(file('list.jsonl', '[1, 2]\n'), ['text'], '\n'), /list\.jsonl:1: expected a JSON object/);
    assert.throws(() => rowsText(path, [], '\n'), /at least one field/);
  });
});
