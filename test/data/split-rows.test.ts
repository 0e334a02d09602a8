/**
 * splitRows / jsonlLines (llmts data split): exact held-out counts chosen by content, duplicates
 * kept on one side, and JSONL lines checked and kept unchanged.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jsonlLines, splitRows } from '../../src/data/split-rows.js';
import { splitHash } from '../../src/data/split.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';

const rows = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ id: i, text: `row ${i * 7919 % 1000}` }));

describe('splitRows', () => {
  it('holds out exactly round(fraction * n) rows: those with the smallest hashes, in file order', () => {
    for (const [fraction, want] of [[0.1, 100], [0.05, 50], [0.333, 333]] as const) {
      const { train, held } = splitRows(rows, { fraction, seed: 0 });
      assert.equal(held.length, want);
      assert.equal(train.length + held.length, rows.length);
      const maxHeld = Math.max(...held.map((r) => splitHash(r, 0)));
      const minTrain = Math.min(...train.map((r) => splitHash(r, 0)));
      assert.ok(maxHeld < minTrain);
      assert.deepEqual(held, rows.filter((r) => held.includes(r))); // file order kept
    }
  });

  it('depends on each row, not its position; another seed holds out other rows', () => {
    const shuffled = [...rows];
    const rng = new Rng(5);
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    const a = splitRows(rows, { fraction: 0.1, seed: 3 });
    const b = splitRows(shuffled, { fraction: 0.1, seed: 3 });
    assert.deepEqual(new Set(b.held), new Set(a.held));
    const c = splitRows(rows, { fraction: 0.1, seed: 4 });
    const overlap = c.held.filter((r) => a.held.includes(r)).length;
    assert.ok(overlap < 30, `seeds 3 and 4 share ${overlap} of 100 held-out rows`);
  });

  it('identical rows land on the same side; tiny inputs keep one row on each side', () => {
    const dup = [...rows.slice(0, 50), ...rows.slice(0, 50)];
    const { train, held } = splitRows(dup, { fraction: 0.1 });
    for (const r of held) assert.ok(!train.includes(r));
    assert.equal(held.length % 2, 0);
    assert.deepEqual(splitRows(['a', 'b'], { fraction: 0.01 }).held.length, 1);
    assert.deepEqual(splitRows(['a', 'b'], { fraction: 0.99 }).train.length, 1);
    assert.deepEqual(splitRows(rows, { fraction: 0 }), { train: rows, held: [] });
    assert.throws(() => splitRows(rows, { fraction: 1 }), LlmError);
  });
});

describe('jsonlLines', () => {
  it('keeps each non-blank line unchanged (CRLF read as LF) and names a line that is not JSON', () => {
    assert.deepEqual(jsonlLines('{"a": 1}\r\n\n  \n{"b":2}', 'f.jsonl'), ['{"a": 1}', '{"b":2}']);
    assert.throws(() => jsonlLines('{"a": 1}\n{"b":\n', 'f.jsonl'), /^LlmError: f\.jsonl:2: not a JSON value/);
    assert.throws(() => jsonlLines('[\n{"a": 1}\n]\n', 'f.json'), /f\.json:1: .*JSON array file/);
  });
});
