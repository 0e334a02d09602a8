import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectSftFormat, loadSftExamples, parseSftFormat, type SftExample, type SftLoadOptions } from '../../src/data/sft-examples.js';
import { badRowsReport, parseOnBadRow } from '../../src/data/rows.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('sft-examples');
let n = 0;

/** A JSONL file of `rows` (strings are written as they are, anything else as JSON). */
function jsonl(rows: unknown[]): string {
  const p = join(dir, `d${n++}.jsonl`);
  writeFileSync(p, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return p;
}

const user = (content: string) => ({ role: 'user' as const, content });
const assistant = (content: string) => ({ role: 'assistant' as const, content });
const system = (content: string) => ({ role: 'system' as const, content });
const chat = (...messages: { role: 'system' | 'user' | 'assistant'; content: string }[]): SftExample => ({ kind: 'chat', messages });

/** The one bad row's reason in a file of one good row and `row`. */
function reasonFor(good: unknown, row: unknown, opts: SftLoadOptions = {}): string {
  const r = loadSftExamples(jsonl([good, row]), opts);
  assert.equal(r.bad.length, 1, JSON.stringify(r.bad));
  assert.equal(r.bad[0].line, 2);
  return r.bad[0].reason;
}

// ---------------------------------------------------------------------------------------------
// Each format from crafted rows

test('alpaca: instruction (+ blank line + input) is the user turn, output the assistant; system and history when given', () => {
  const r = loadSftExamples(
    jsonl([
      { instruction: 'Translate to French.', input: 'cat', output: 'chat', status: 'ok', similarity: 0.3 },
      { instruction: 'Name a color.', input: '', output: 'Blue.' },
      { instruction: 'Name a color.', input: '  \n', output: 'Red.' },
      { instruction: 'Add.', output: '4' },
      { instruction: 'And now?', input: null, output: 'Yes.', system: 'Be brief.', history: [['Hi', 'Hello']] },
    ]),
  );
  assert.equal(r.format, 'alpaca');
  assert.deepEqual(r.bad, []);
  assert.equal(r.rows, 5);
  assert.deepEqual(r.lines, [1, 2, 3, 4, 5]);
  assert.deepEqual(r.examples, [
    chat(user('Translate to French.\n\ncat'), assistant('chat')),
    chat(user('Name a color.'), assistant('Blue.')),
    chat(user('Name a color.'), assistant('Red.')),
    chat(user('Add.'), assistant('4')),
    chat(system('Be brief.'), user('Hi'), assistant('Hello'), user('And now?'), assistant('Yes.')),
  ]);
});

test('prompt-completion: strings give a completion example; message lists give a chat', () => {
  const r = loadSftExamples(
    jsonl([
      { prompt: 'The sky is', completion: ' blue.' },
      { prompt: [system('Be brief.'), user('Sky?')], completion: [assistant('Blue.')] },
    ]),
  );
  assert.equal(r.format, 'prompt-completion');
  assert.deepEqual(r.examples, [
    { kind: 'completion', prompt: 'The sky is', completion: ' blue.' },
    chat(system('Be brief.'), user('Sky?'), assistant('Blue.')),
  ]);
});

test('messages: system turn, multi-turn, other keys of a message ignored, a blank system dropped', () => {
  const r = loadSftExamples(
    jsonl([
      { messages: [system('You are terse.'), user('2+2?'), assistant('4'), user('3+3?'), { role: 'assistant', content: '6', weight: 1 }] },
      { messages: [system(''), user('Hi'), assistant('Hello')] },
    ]),
  );
  assert.equal(r.format, 'messages');
  assert.deepEqual(r.examples, [chat(system('You are terse.'), user('2+2?'), assistant('4'), user('3+3?'), assistant('6')), chat(user('Hi'), assistant('Hello'))]);
});

test('sharegpt: human/gpt/system mapped to user/assistant/system; a top-level system field', () => {
  const r = loadSftExamples(
    jsonl([
      { id: 'a', conversations: [{ from: 'human', value: 'Who are you?' }, { from: 'gpt', value: 'Vicuna.' }] },
      { conversations: [{ from: 'system', value: 'Be kind.' }, { from: 'user', value: 'Hi' }, { from: 'assistant', value: 'Hello' }] },
      { system: 'Be kind.', conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello' }] },
    ]),
  );
  assert.equal(r.format, 'sharegpt');
  assert.deepEqual(r.examples, [
    chat(user('Who are you?'), assistant('Vicuna.')),
    chat(system('Be kind.'), user('Hi'), assistant('Hello')),
    chat(system('Be kind.'), user('Hi'), assistant('Hello')),
  ]);
});

test('text and self-instruct (one example per instance)', () => {
  const t = loadSftExamples(jsonl([{ text: 'Once upon a time' }, { text: 'The end.', meta: 1 }]));
  assert.equal(t.format, 'text');
  assert.deepEqual(t.examples, [
    { kind: 'text', text: 'Once upon a time' },
    { kind: 'text', text: 'The end.' },
  ]);
  const s = loadSftExamples(jsonl([{ id: 't0', instruction: 'Antonym?', instances: [{ input: 'hot', output: 'cold' }, { input: '', output: 'none' }], is_classification: false }]));
  assert.equal(s.format, 'self-instruct');
  assert.deepEqual(s.examples, [chat(user('Antonym?\n\nhot'), assistant('cold')), chat(user('Antonym?'), assistant('none'))]);
  assert.deepEqual(s.lines, [1, 1]);
});

test('a JSON array file (Alpaca and ShareGPT .json) is read like JSONL', () => {
  const p = join(dir, 'arr.json');
  writeFileSync(p, JSON.stringify([{ instruction: 'a', input: '', output: 'b' }, { instruction: 'c', input: '', output: '' }], null, 2));
  const r = loadSftExamples(p);
  assert.equal(r.format, 'alpaca');
  assert.deepEqual(r.examples, [chat(user('a'), assistant('b'))]);
  assert.deepEqual(r.bad, [{ line: 7, reason: 'field "output" is empty' }]);
});

// ---------------------------------------------------------------------------------------------
// Detection and --format

test('detection: the first row that fits a format decides; a later row of another format is bad and says so', () => {
  const r = loadSftExamples(jsonl(['not json', { foo: 1 }, { text: 'a' }, { messages: [user('q'), assistant('a')] }, { text: 'b' }]));
  assert.equal(r.format, 'text');
  assert.deepEqual(r.examples, [
    { kind: 'text', text: 'a' },
    { kind: 'text', text: 'b' },
  ]);
  assert.equal(r.bad.length, 3);
  assert.deepEqual(
    r.bad.slice(1),
    [
      { line: 2, reason: 'no known fields (keys "foo"); expected the fields of one of: messages, sharegpt, self-instruct, alpaca, prompt-completion, text (or name the format with --format)' },
      { line: 4, reason: 'field "text" is missing (the row looks like messages, but the file is read as text, decided by line 3; one format per file)' },
    ],
  );
  assert.equal(detectSftFormat({ instruction: 'x', instances: [] }), 'self-instruct');
  assert.equal(detectSftFormat({ instruction: 'x' }), 'alpaca');
  assert.equal(detectSftFormat({ prompt: 'x', completion: 'y' }), 'prompt-completion');
  assert.equal(detectSftFormat({ question: 'x' }), null);
});

test('--format names the format: a row with both text and messages is read as text when asked', () => {
  const p = jsonl([{ text: 'plain', messages: [user('q'), assistant('a')] }]);
  assert.deepEqual(loadSftExamples(p).examples, [chat(user('q'), assistant('a'))]);
  assert.deepEqual(loadSftExamples(p, { format: 'text' }).examples, [{ kind: 'text', text: 'plain' }]);
  assert.equal(parseSftFormat('sharegpt'), 'sharegpt');
  assert.equal(parseSftFormat('auto'), 'auto');
  assert.throws(() => parseSftFormat('dolly'), (e: unknown) => e instanceof LlmError && e.message === "--format must be auto or one of messages, sharegpt, self-instruct, alpaca, prompt-completion, text, not 'dolly'");
  assert.throws(() => loadSftExamples(p, { format: 'dolly' as 'text' }), /unknown SFT data format 'dolly'/);
});

test('preference pairs and prompt-only rows are refused with a reason that says what they are', () => {
  const r = loadSftExamples(jsonl([{ text: 'ok' }, { chosen: 'a', rejected: 'b' }]), { format: 'auto' });
  assert.deepEqual(r.bad, [{ line: 2, reason: 'field "text" is missing' }]);
  assert.throws(
    () => loadSftExamples(jsonl([{ chosen: 'a', rejected: 'b' }])),
    (e: unknown) => e instanceof LlmError && e.message.endsWith('has no usable SFT data: 1 of 1 rows are bad; line 1: a preference pair (chosen/rejected), not an SFT example; preference data is for reward-model and DPO training'),
  );
  assert.throws(() => loadSftExamples(jsonl([{ prompt: 'hi' }])), /line 1: a prompt without a "completion" \(prompt-only rows are for generation or RL, not SFT\)/);
});

// ---------------------------------------------------------------------------------------------
// Bad rows, with their exact reasons

test('bad rows: not an object, missing fields, wrong types', () => {
  const ok = { instruction: 'i', input: '', output: 'o' };
  assert.equal(reasonFor(ok, [1, 2]), 'the row is an array, not a JSON object');
  assert.equal(reasonFor(ok, '"just a string"'), 'the row is a string, not a JSON object');
  assert.equal(reasonFor(ok, 'null'), 'the row is null, not a JSON object');
  assert.equal(reasonFor(ok, { instruction: 'i', input: '' }), 'field "output" is missing');
  assert.equal(reasonFor(ok, { instruction: 'i', input: '', output: 42 }), 'field "output" is a number, not a string');
  assert.equal(reasonFor(ok, { instruction: ['i'], output: 'o' }), 'field "instruction" is an array, not a string');
  assert.equal(reasonFor(ok, { instruction: 'i', input: 7, output: 'o' }), 'field "input" is a number, not a string');
  assert.equal(reasonFor(ok, { instruction: 'i', output: ' \n ' }), 'field "output" is empty');
  assert.equal(reasonFor(ok, { instruction: 'i', output: 'o', history: [['only one']] }), 'history[0] is not a [user, assistant] pair of strings');
  const t = { text: 'x' };
  assert.equal(reasonFor(t, { text: null }), 'field "text" is null, not a string');
  assert.equal(reasonFor(t, { text: '' }), 'field "text" is empty');
  const pc = { prompt: 'p', completion: 'c' };
  assert.equal(reasonFor(pc, { prompt: '', completion: 'c' }), 'field "prompt" is empty (for text without a prompt, use the text format)');
  assert.equal(reasonFor(pc, { prompt: 'p', completion: '' }), 'field "completion" is empty');
  assert.equal(reasonFor(pc, { prompt: 'p', completion: [assistant('c')] }), '"prompt" and "completion" must both be strings or both be lists of messages');
  assert.equal(reasonFor(pc, { prompt: [user('p')], completion: [user('c')] }), 'completion[0].role is "user"; a completion holds assistant messages');
  const si = { instruction: 'i', instances: [{ input: '', output: 'o' }] };
  assert.equal(reasonFor(si, { instruction: 'i', instances: [] }), 'field "instances" is empty (no input/output pair to learn from)');
  assert.equal(reasonFor(si, { instruction: 'i', instances: [{ input: 'a', output: 'b' }, { input: 'c' }] }), 'instances[1].output is missing');
  assert.equal(reasonFor(si, { instruction: 'i', instances: [{ input: 1, output: 'b' }] }), 'instances[0].input is a number, not a string');
});

test('bad rows in conversations: unknown roles, empty turns, order', () => {
  const ok = { messages: [user('q'), assistant('a')] };
  const bad = (messages: unknown) => reasonFor(ok, { messages });
  assert.equal(bad('hi'), 'field "messages" is a string, not a list of messages');
  assert.equal(bad([]), 'the conversation is empty');
  assert.equal(bad([system('s')]), 'the conversation has no user or assistant turn');
  assert.equal(bad([user('q'), { role: 'tool', content: '4' }]), 'messages[1].role is "tool" (expected system, user or assistant)');
  assert.equal(bad([user('q'), { role: 'assistant' }]), 'messages[1].content is missing');
  assert.equal(bad([user('q'), { role: 'assistant', content: [{ type: 'text', text: 'a' }] }]), 'messages[1].content is a list of parts (only text content is supported; give a string)');
  assert.equal(bad([user('q'), 'a']), 'messages[1] is a string, not an object');
  assert.equal(bad([user('q'), assistant('  ')]), 'messages[1] is an empty assistant turn');
  assert.equal(bad([user(''), assistant('a')]), 'messages[0] is an empty user turn');
  assert.equal(bad([assistant('a'), user('q'), assistant('a')]), 'messages[0] is an assistant turn before any user turn (a conversation starts with a user turn, after an optional system message)');
  assert.equal(bad([user('q'), user('q2'), assistant('a')]), 'messages[1] is a user turn after a user turn (turns must alternate user, assistant, user, ...)');
  assert.equal(bad([user('q'), assistant('a'), assistant('b')]), 'messages[2] is an assistant turn after an assistant turn (turns must alternate user, assistant, user, ...)');
  assert.equal(bad([user('q'), assistant('a'), system('s')]), 'messages[2] is a system message after the first message (only the first may be system)');
  assert.equal(bad([user('q'), assistant('a'), user('q2')]), "the conversation ends with a user turn (messages[2]); a training conversation ends with the assistant's answer");

  const sg = { conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] };
  const badSg = (conversations: unknown, extra = {}) => reasonFor(sg, { conversations, ...extra });
  assert.equal(badSg([{ from: 'human', value: 'q' }, { from: 'bing', value: 'a' }]), 'conversations[1].from is "bing" (expected human, gpt or system)');
  assert.equal(badSg([{ from: 'human', value: 'q' }, { from: 'gpt' }]), 'conversations[1].value is missing');
  assert.equal(badSg([{ from: 'gpt', value: 'a' }, { from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }]), 'conversations[0] is an assistant turn before any user turn (a conversation starts with a user turn, after an optional system message)');
  assert.equal(badSg([{ from: 'human', value: 'q' }, { from: 'gpt', value: '' }]), 'conversations[1] is an empty assistant turn');
  assert.equal(badSg(sg.conversations, { system: 3 }), 'field "system" is a number, not a string');
  assert.equal(badSg([{ from: 'system', value: 's' }, ...sg.conversations], { system: 'top' }), 'conversations[0] is a system message after the first message (only the first may be system)');
});

test('bad bytes and huge lines are bad rows with the file line', () => {
  const p = join(dir, 'bytes.jsonl');
  const big = `{"text": "${'z'.repeat(10 * 1024 * 1024)}"}`;
  writeFileSync(p, Buffer.concat([Buffer.from('{"text": "a"}\n{"text": "'), Buffer.from([0xff]), Buffer.from(`"}\n${big}\n{"text": "b"}\n`)]));
  const r = loadSftExamples(p, { maxRowBytes: 1024 * 1024 });
  assert.deepEqual(r.examples, [
    { kind: 'text', text: 'a' },
    { kind: 'text', text: 'b' },
  ]);
  assert.deepEqual(r.bad, [
    { line: 2, reason: 'invalid UTF-8 byte 0xff at offset 10 of the row, after: {"text": " (save the file as UTF-8)' },
    { line: 3, reason: `the row is ${big.length} bytes, over the limit of 1048576 (a broken file? raise maxRowBytes if it is a real row)` },
  ]);
  assert.equal(loadSftExamples(p).examples.length, 3, 'a 10 MB row is read under the default limit');
});

// ---------------------------------------------------------------------------------------------
// --on-bad-row

test('--on-bad-row skip reports the count and the first few; error throws at the first bad row with file:line', () => {
  const rows = [{ text: 'a' }, { text: 1 }, '{"text": ', { text: 'b' }, { text: '' }, { text: [] }, { text: 'c' }];
  const p = jsonl(rows);
  const skipped = loadSftExamples(p, { onBadRow: 'skip' });
  assert.equal(skipped.examples.length, 3);
  assert.deepEqual(skipped.lines, [1, 4, 7]);
  assert.deepEqual(skipped.bad.map((b) => b.line), [2, 3, 5, 6]);
  assert.equal(
    badRowsReport(p, skipped),
    `${p}: left out 4 bad rows of 7: line 2: field "text" is a number, not a string; line 3: not valid JSON (Unexpected end of JSON input): {"text": ; line 5: field "text" is empty; and 1 more`,
  );
  assert.equal(badRowsReport(p, { bad: [], rows: 3 }), null);
  assert.throws(
    () => loadSftExamples(p, { onBadRow: 'error' }),
    (e: unknown) => e instanceof LlmError && e.message === `${p}:2: field "text" is a number, not a string (fix or remove the row, or pass --on-bad-row skip to leave bad rows out)`,
  );
  const notJson = jsonl([{ text: 'a' }, '{oops}']);
  assert.throws(() => loadSftExamples(notJson, { onBadRow: 'error' }), (e: unknown) => e instanceof LlmError && e.message.startsWith(`${notJson}:2: not valid JSON (`) && e.message.includes('): {oops} (fix or remove'));
  assert.equal(parseOnBadRow('error'), 'error');
  assert.throws(() => parseOnBadRow('ignore'), (e: unknown) => e instanceof LlmError && e.message === "--on-bad-row must be skip or error, not 'ignore'");
});

test('a file with no usable rows is an error even with skip, and so is an empty file', () => {
  const p = jsonl([{ text: '' }, { text: 2 }]);
  assert.throws(() => loadSftExamples(p), (e: unknown) => e instanceof LlmError && e.message === `${p} has no usable SFT data: 2 of 2 rows are bad; line 1: field "text" is empty`);
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '\n');
  assert.throws(() => loadSftExamples(empty), (e: unknown) => e instanceof LlmError && e.message === `${empty} holds no rows (an empty file? SFT data is one JSON object per line, or a JSON array of objects)`);
});

// ---------------------------------------------------------------------------------------------
// Real data in ../shared/data

const REAL: { rel: string; format: string; rows: number; examples: number; bad: number; firstBad?: { line: number; reason: string } }[] = [
  { rel: 'alpaca-libre/alpaca_libre_tasks_v1.jsonl', format: 'alpaca', rows: 2375, examples: 2138, bad: 237, firstBad: { line: 35, reason: 'field "output" is empty' } },
  { rel: 'alpaca-libre/alpaca_libre_tasks_v3.jsonl', format: 'alpaca', rows: 1205, examples: 1199, bad: 6, firstBad: { line: 539, reason: 'field "output" is empty' } },
  { rel: 'gsm8k-alpaca/gsm_8k_train.json', format: 'alpaca', rows: 7473, examples: 7473, bad: 0 },
  { rel: 'gpteacher-toolformer/toolformer-similarity-0.6-dataset.json', format: 'alpaca', rows: 2396, examples: 2396, bad: 0 },
  { rel: 'fastchat/dummy_conversation.json', format: 'sharegpt', rows: 500, examples: 500, bad: 0 },
  { rel: 'self-instruct/seed_tasks.jsonl', format: 'self-instruct', rows: 175, examples: 175, bad: 0 },
];

for (const want of REAL) {
  test(`real data: ${want.rel}`, (t) => {
    const p = sharedDataPath(want.rel);
    if (p === null) return t.skip(`../shared/data/${want.rel} not available`);
    const r = loadSftExamples(p);
    assert.equal(r.format, want.format);
    assert.deepEqual({ rows: r.rows, examples: r.examples.length, bad: r.bad.length }, { rows: want.rows, examples: want.examples, bad: want.bad });
    if (want.firstBad) assert.deepEqual(r.bad[0], want.firstBad);
    assert.ok(r.examples.every((e) => e.kind === 'chat' && e.messages[e.messages.length - 1].role === 'assistant'));
    if (want.bad > 0) {
      assert.throws(() => loadSftExamples(p, { onBadRow: 'error' }), (e: unknown) => e instanceof LlmError && e.message.startsWith(`${p}:${want.firstBad!.line}: ${want.firstBad!.reason} (`));
    }
  });
}

test('real data: the shapes of the first examples', (t) => {
  const gsm = sharedDataPath('gsm8k-alpaca/gsm_8k_train.json');
  const fc = sharedDataPath('fastchat/dummy_conversation.json');
  if (gsm === null || fc === null) return t.skip('../shared/data not available');
  const g = loadSftExamples(gsm);
  assert.equal(g.lines[0], 2, 'the first element starts on line 2 of the pretty-printed array');
  const first = g.examples[0] as Extract<SftExample, { kind: 'chat' }>;
  assert.match(first.messages[0].content, /^Natalia sold clips to 48 of her friends in April/);
  assert.equal(first.messages[1].content, 'Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.');
  const f = loadSftExamples(fc);
  assert.deepEqual(f.examples[0], chat(user('Who are you?'), assistant('I am Vicuna, a language model trained by researchers from Large Model Systems Organization (LMSYS).'), user('Have a nice day!'), assistant('You too!')));
  const turns = f.examples.map((e) => (e.kind === 'chat' ? e.messages.length / 2 : 0));
  assert.equal(turns.reduce((a, b) => a + b, 0), 1000, '1000 human and 1000 gpt turns');
});
