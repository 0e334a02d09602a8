/**
 * recipes/rewards/exact-match.mjs, the reward module GRPO recipes pass to llmts ppo --reward:
 * loaded as llmts ppo loads it (moduleSource), it gives 1 exactly where src/eval/exact-match.ts
 * counts an answer correct and 0 elsewhere, reads the reference from the prompt row's meta as
 * loadPromptRows makes it (prompt rows' "answer", Alpaca rows' "output"), and a row without an
 * answer stops with a one-line error.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { moduleSource } from '../../src/align/rewards.js';
import { loadPromptRows } from '../../src/data/prompt-rows.js';
import { exactMatch } from '../../src/eval/exact-match.js';
import { alpacaJsonl, additionTask } from '../../src/eval/tasks.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const MODULE = fileURLToPath(new URL('../../../recipes/rewards/exact-match.mjs', import.meta.url)); // from dist/test/align/
const dir = tmpDir('exact-reward');

describe('recipes/rewards/exact-match.mjs', () => {
  it('scores 1 exactly where exactMatch counts the answer correct, from Alpaca and prompt rows', async () => {
    const source = await moduleSource(MODULE);
    const { heldOut } = additionTask({ heldOut: 6, seed: 3 });
    const alpaca = join(dir, 'alpaca.jsonl'), prompt = join(dir, 'prompt.jsonl');
    writeFileSync(alpaca, alpacaJsonl(heldOut));
    writeFileSync(prompt, heldOut.map((it) => JSON.stringify({ prompt: it.question, answer: it.answer }) + '\n').join(''));
    // right, right with spaces, one digit off, right followed by more text, empty, the answer twice
    const completions = heldOut.map((it, i) => [it.answer, ` ${it.answer}\n`, String(Number(it.answer) + 1), `${it.answer} apples`, '', it.answer + it.answer][i]);
    for (const file of [alpaca, prompt]) {
      const rows = loadPromptRows(file).rows;
      const scores = source.score(rows.map((r, i) => ({ prompt: r.messages, completion: completions[i], meta: r.meta })));
      const expected = heldOut.map((it, i) => exactMatch([{ text: completions[i], ended: true, tokens: 1 }], [it.answer]).correct);
      assert.deepEqual(Array.from(scores), expected, file);
      assert.deepEqual(expected, [1, 1, 0, 0, 0, 0]);
    }
  });

  it('a prompt row without an answer is a one-line error naming the prompt', async () => {
    const source = await moduleSource(MODULE);
    assert.throws(() => source.score([{ prompt: [{ role: 'user', content: 'What is 2 + 2?' }], completion: '4', meta: {} }]),
      (e: unknown) => e instanceof LlmError && /threw on completion 1: .*What is 2 \+ 2\?.* has no "answer"/.test(e.message) && !e.message.includes('\n'));
  });
});
