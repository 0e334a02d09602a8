import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hhDialogue, loadPreferenceExamples, parsePreferenceFormat, splitHhPair } from '../../src/data/preference-examples.js';
import { BadRowError } from '../../src/data/rows.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('preference-examples');
let n = 0;

function jsonl(rows: unknown[]): string {
  const p = join(dir, `p${n++}.jsonl`);
  writeFileSync(p, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return p;
}

const user = (content: string) => ({ role: 'user' as const, content });
const assistant = (content: string) => ({ role: 'assistant' as const, content });
const system = (content: string) => ({ role: 'system' as const, content });

/** The reason the second of two rows is bad. */
function reasonFor(good: unknown, row: unknown): string {
  const r = loadPreferenceExamples(jsonl([good, row]));
  assert.equal(r.bad.length, 1, JSON.stringify(r.bad));
  assert.equal(r.bad[0].line, 2);
  return r.bad[0].reason;
}

test('prompt/chosen/rejected: a string prompt, a message prompt, conversational answers', () => {
  const r = loadPreferenceExamples(
    jsonl([
      { prompt: 'Capital of France?', chosen: 'Paris.', rejected: 'Lyon.' },
      { prompt: [system('Be brief.'), user('2+2?'), assistant('4'), user('3+3?')], chosen: [assistant('6')], rejected: [assistant('7')] },
    ]),
  );
  assert.equal(r.format, 'prompt-chosen-rejected');
  assert.deepEqual(r.examples, [
    { prompt: [user('Capital of France?')], chosen: 'Paris.', rejected: 'Lyon.' },
    { prompt: [system('Be brief.'), user('2+2?'), assistant('4'), user('3+3?')], chosen: '6', rejected: '7' },
  ]);
  assert.deepEqual(r.lines, [1, 2]);
});

test('HH-RLHF dialogues: split at the last Assistant turn into the shared prompt and the two answers', () => {
  const prompt = '\n\nHuman: Hi there\n\nAssistant: Hello!  How can I help?\n\nHuman: Tell me a joke.';
  const r = loadPreferenceExamples(jsonl([{ chosen: `${prompt}\n\nAssistant: Why did the chicken...`, rejected: `${prompt}\n\nAssistant:  No.` }]));
  assert.equal(r.format, 'chosen-rejected');
  assert.deepEqual(r.examples, [
    { prompt: [user('Hi there'), assistant('Hello!  How can I help?'), user('Tell me a joke.')], chosen: 'Why did the chicken...', rejected: 'No.' },
  ]);
  assert.deepEqual(hhDialogue('Human: a\n\nAssistant: b\n\nHuman: c', 'chosen'), [
    { role: 'user', content: 'a', at: 'chosen turn 1' },
    { role: 'assistant', content: 'b', at: 'chosen turn 2' },
    { role: 'user', content: 'c', at: 'chosen turn 3' },
  ]);
  assert.deepEqual(splitHhPair('\n\nHuman: q\n\nAssistant: a', '\n\nHuman: q\n\nAssistant: b'), { prompt: [user('q')], chosen: 'a', rejected: 'b' });
});

test('chosen/rejected as message lists with an implicit prompt', () => {
  const r = loadPreferenceExamples(jsonl([{ chosen: [user('q'), assistant('good')], rejected: [user('q'), assistant('bad')] }]));
  assert.deepEqual(r.examples, [{ prompt: [user('q')], chosen: 'good', rejected: 'bad' }]);
});

test('bad rows: a prompt the two dialogues do not share, empty or equal answers, broken dialogues', () => {
  const ok = { chosen: '\n\nHuman: q\n\nAssistant: a', rejected: '\n\nHuman: q\n\nAssistant: b' };
  assert.equal(
    reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: a', rejected: '\n\nHuman: Q\n\nAssistant: b' }),
    'chosen and rejected do not share the prompt before their last "\\n\\nAssistant:" (they differ from character 9, in turn 1; lengths 10 and 10)',
  );
  assert.equal(reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: ', rejected: '\n\nHuman: q\n\nAssistant: b' }), 'the chosen answer is empty');
  assert.equal(reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: b', rejected: '\n\nHuman: q\n\nAssistant:' }), 'the rejected answer is empty');
  assert.equal(reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: b', rejected: '\n\nHuman: q\n\nAssistant: b' }), 'chosen and rejected are the same answer (nothing to prefer)');
  assert.equal(reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: a\n\nHuman: more', rejected: '\n\nHuman: q\n\nAssistant: b' }), 'chosen ends with a Human turn, not the Assistant\'s answer');
  assert.equal(reasonFor(ok, { chosen: 'q\n\nAssistant: a', rejected: 'q\n\nAssistant: b' }), 'chosen does not start with "Human:" (an HH-RLHF dialogue is "\\n\\nHuman: ...\\n\\nAssistant: ...")');
  assert.equal(reasonFor(ok, { chosen: '\n\nHuman: q', rejected: '\n\nHuman: q' }), 'chosen has no "\\n\\nAssistant:" turn');
  assert.equal(
    reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: x\n\nAssistant: y\n\nHuman: r\n\nAssistant: a', rejected: '\n\nHuman: q\n\nAssistant: x\n\nAssistant: y\n\nHuman: r\n\nAssistant: b' }),
    'chosen turn 3 is an assistant turn after an assistant turn (turns must alternate user, assistant, user, ...)',
  );
  assert.equal(
    reasonFor(ok, { chosen: '\n\nHuman: q\n\nAssistant: x\n\nAssistant: a', rejected: '\n\nHuman: q\n\nAssistant: x\n\nAssistant: b' }),
    "the prompt ends with an assistant turn (chosen turn 2); a prompt ends with the user's turn",
  );
  assert.equal(reasonFor(ok, { chosen: ok.chosen, rejected: [assistant('b')] }), '"chosen" and "rejected" must both be dialogues as text or both lists of messages (they are a string and an array)');
  assert.equal(reasonFor(ok, { chosen: [user('q'), assistant('a')], rejected: [user('Q'), assistant('b')] }), 'chosen and rejected do not share the prompt (every message but the last must be the same)');
  assert.equal(reasonFor(ok, { chosen: ok.chosen }), 'field "rejected" is missing');

  const pcr = { prompt: 'q', chosen: 'a', rejected: 'b' };
  assert.equal(reasonFor(pcr, { prompt: 'q', chosen: 'a' }), 'field "rejected" is missing');
  assert.equal(reasonFor(pcr, { prompt: 'q', chosen: 3, rejected: 'b' }), 'field "chosen" is a number, not a string');
  assert.equal(reasonFor(pcr, { prompt: '', chosen: 'a', rejected: 'b' }), 'field "prompt" is empty');
  assert.equal(reasonFor(pcr, { prompt: [user('q'), assistant('a')], chosen: 'a', rejected: 'b' }), 'the prompt ends with an assistant turn (prompt[1]); a prompt ends with the user\'s turn');
  assert.equal(reasonFor(pcr, { prompt: 'q', chosen: [assistant('a'), assistant('b')], rejected: 'b' }), 'field "chosen" must be one assistant message when it is a list (it has 2 messages)');
  assert.throws(() => splitHhPair('\n\nHuman: q\n\nAssistant: a', '\n\nHuman: q\n\nAssistant: a'), BadRowError);
});

test('a row with only one of chosen/rejected says so; SFT rows are not preference data', () => {
  assert.throws(() => loadPreferenceExamples(jsonl([{ chosen: 'x' }])), (e: unknown) => e instanceof LlmError && e.message.endsWith('line 1: a pair needs both "chosen" and "rejected" (this row has only "chosen")'));
  assert.throws(() => loadPreferenceExamples(jsonl([{ text: 'x' }])), /no known fields \(keys "text"\); expected the fields of one of: prompt-chosen-rejected, chosen-rejected/);
  const p = jsonl([{ prompt: 'q', chosen: 'a', rejected: 'b' }, { prompt: 'q', chosen: 'a', rejected: 'a' }]);
  assert.throws(
    () => loadPreferenceExamples(p, { onBadRow: 'error' }),
    (e: unknown) => e instanceof LlmError && e.message === `${p}:2: chosen and rejected are the same answer (nothing to prefer) (fix or remove the row, or pass --on-bad-row skip to leave bad rows out)`,
  );
  assert.equal(parsePreferenceFormat('chosen-rejected'), 'chosen-rejected');
  assert.throws(() => parsePreferenceFormat('hh'), /--format must be auto or one of prompt-chosen-rejected, chosen-rejected, not 'hh'/);
});

test('real data: hh-rlhf harmless-base (1,965 rows: 1,953 pairs, 12 bad rows named)', (t) => {
  const p = sharedDataPath('hh-rlhf/harmless-base-train.jsonl');
  if (p === null) return t.skip('../shared/data/hh-rlhf not available');
  const r = loadPreferenceExamples(p);
  assert.equal(r.format, 'chosen-rejected');
  assert.deepEqual({ rows: r.rows, examples: r.examples.length, bad: r.bad.length }, { rows: 1965, examples: 1953, bad: 12 });
  const why = (line: number) => r.bad.find((b) => b.line === line)?.reason ?? '';
  // a prompt the two dialogues do not share (an answer with "Human:" inside it, no blank line before)
  for (const line of [267, 972, 1199, 1586, 1847]) assert.match(why(line), /^chosen and rejected do not share the prompt/, `line ${line}`);
  for (const line of [574, 756, 1701]) assert.equal(why(line), 'the chosen answer is empty', `line ${line}`);
  for (const line of [419, 953, 1403, 1521]) assert.match(why(line), /is an assistant turn after an assistant turn/, `line ${line}`);
  const first = r.examples[0];
  assert.equal(first.prompt[0].role, 'user');
  assert.match(first.prompt[0].content, /^I need to find a gun/);
  assert.ok(r.examples.every((e) => e.prompt.length % 2 === 1 && e.prompt[e.prompt.length - 1].role === 'user' && e.chosen !== e.rejected));
  assert.throws(() => loadPreferenceExamples(p, { onBadRow: 'error' }), (e: unknown) => e instanceof LlmError && e.message.startsWith(`${p}:267: chosen and rejected do not share the prompt`));
});
