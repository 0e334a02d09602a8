/**
 * llmts data split|text as a user runs them: the files they write, their summaries, one-line errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('data-cli');
const input = join(dir, 'pairs.jsonl');
const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ chosen: `good ${i}`, rejected: `bad ${i}` }));
writeFileSync(input, lines.join('\n') + '\n');

describe('llmts data', () => {
  it('split writes train.jsonl and heldout.jsonl: every line once, unchanged, the same on a rerun', () => {
    const out = join(dir, 'split');
    const r = runCli(['data', 'split', input, '--eval-split', '0.25', '--seed', '2', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /40 rows: 30 -> .*train\.jsonl, 10 held out -> .*heldout\.jsonl/);
    const train = readFileSync(join(out, 'train.jsonl'), 'utf8');
    const held = readFileSync(join(out, 'heldout.jsonl'), 'utf8');
    const got = [...train.trim().split('\n'), ...held.trim().split('\n')];
    assert.deepEqual([...got].sort(), [...lines].sort());
    assert.equal(runCli(['data', 'split', '--data', input, '--eval-split', '0.25', '--seed', '2', '-o', out]).code, 0);
    assert.equal(readFileSync(join(out, 'heldout.jsonl'), 'utf8'), held);
  });

  it('text writes the fields of each row', () => {
    const out = join(dir, 'pairs.txt');
    const r = runCli(['data', 'text', input, '--field', 'chosen', '--field', 'rejected', '--separator', '\\n', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /40 rows, 80 fields \(chosen, rejected\)/);
    assert.equal(readFileSync(out, 'utf8'), lines.map((l) => { const o = JSON.parse(l) as { chosen: string; rejected: string }; return `${o.chosen}\n${o.rejected}\n`; }).join(''));
  });

  it('bad input: one-line errors', () => {
    assertOneLineError(runCli(['data', 'split', join(dir, 'nope.jsonl'), '-o', dir]), /nope\.jsonl/);
    assertOneLineError(runCli(['data', 'split', input]), /-o DIR/);
    assertOneLineError(runCli(['data', 'split', input, '-o', dir, '--eval-split', '1.5']), /--eval-split must be a fraction/);
    assertOneLineError(runCli(['data', 'text', input, '-o', join(dir, 'x.txt')]), /--field NAME/);
    assertOneLineError(runCli(['data', 'text', input, '--field', 'prompt', '-o', join(dir, 'x.txt')]), /pairs\.jsonl:1: field "prompt" is missing/);
  });
});
