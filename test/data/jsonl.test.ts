import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_ROW_BYTES, preview, readJsonRows, type JsonRow } from '../../src/data/jsonl.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('jsonl');
let n = 0;

/** A file in the temp dir holding `content`. */
function file(content: string | Uint8Array, ext = 'jsonl'): string {
  const p = join(dir, `f${n++}.${ext}`);
  writeFileSync(p, content);
  return p;
}

const rows = (path: string, chunkBytes?: number): JsonRow[] => [...readJsonRows(path, { chunkBytes })];

/** Rows as plain objects (no undefined keys), for deepEqual. */
const plain = (rs: JsonRow[]) => rs.map((r) => (r.error !== undefined ? { line: r.line, error: r.error } : { line: r.line, value: r.value }));

test('JSONL: rows with their lines, blank lines skipped, CRLF and a missing final newline accepted', () => {
  const p = file('{"a":1}\n\n   \n{"b":"x"}\r\n[1,2]\n"str"\n{"c":null}');
  assert.deepEqual(plain(rows(p)), [
    { line: 1, value: { a: 1 } },
    { line: 4, value: { b: 'x' } },
    { line: 5, value: [1, 2] },
    { line: 6, value: 'str' },
    { line: 7, value: { c: null } },
  ]);
});

test('JSONL: a byte order mark is dropped at the start of the file and of a line', () => {
  const p = file('\ufeff{"a":1}\n\ufeff{"b":2}\n');
  assert.deepEqual(plain(rows(p)), [
    { line: 1, value: { a: 1 } },
    { line: 2, value: { b: 2 } },
  ]);
});

test('JSONL: a line that is not JSON is a bad row with a short preview; the next rows are still read', () => {
  const long = `{"instruction": "${'x'.repeat(200)}"`;
  const p = file(`{"a":1}\n{instruction: "hi"}\n${long}\n{"b":2}\n`);
  const rs = rows(p);
  assert.equal(rs.length, 4);
  assert.equal(rs[1].line, 2);
  assert.match(rs[1].error!, /^not valid JSON \(.+\): \{instruction: "hi"\}$/);
  assert.equal(rs[2].line, 3);
  assert.ok(rs[2].error!.endsWith(`: ${long.slice(0, 60)}...`), rs[2].error);
  assert.deepEqual(rs[3], { line: 4, value: { b: 2 } });
});

test('JSONL: an invalid UTF-8 byte is a bad row naming the byte, its offset in the row and the text before it', () => {
  const bytes = Buffer.concat([Buffer.from('{"a":1}\n{"text": "caf'), Buffer.from([0xe9]), Buffer.from('"}\n{"b":2}\n')]);
  const rs = rows(file(bytes));
  assert.deepEqual(plain(rs), [
    { line: 1, value: { a: 1 } },
    { line: 2, error: 'invalid UTF-8 byte 0xe9 at offset 13 of the row, after: {"text": "caf (save the file as UTF-8)' },
    { line: 3, value: { b: 2 } },
  ]);
});

test('JSONL: a key given twice and absurd nesting are bad rows', () => {
  const deep = `${'['.repeat(70)}${']'.repeat(70)}`;
  const rs = rows(file(`{"output":"a","output":"b"}\n${deep}\n`));
  assert.equal(rs[0].error, 'the key "output" appears twice in one object (which one is meant?): {"output":"a","output":"b"}');
  assert.match(rs[1].error!, /^values nest more than 64 deep: \[{60}\.\.\.$/);
});

test('JSONL: control characters in a preview are escaped', () => {
  assert.equal(preview('a\u001b[2Jb\nc'), 'a\\x1b[2Jb\\nc');
  const rs = rows(file('{"a": \u001b[31m}\n'));
  assert.match(rs[0].error!, /: \{"a": \\x1b\[31m\}$/);
});

test('JSONL: a 10 MB line is read under the default limit, and is a bad row naming its size over a lower one', () => {
  const big = `{"text": "${'y'.repeat(10 * 1024 * 1024)}"}`;
  const p = file(`{"a":1}\n${big}\n{"b":2}\n`);
  const rs = rows(p);
  assert.deepEqual(rs[1], { line: 2, value: { text: 'y'.repeat(10 * 1024 * 1024) } }, 'under the default limit it is read');
  const limited = [...readJsonRows(p, { maxRowBytes: 1024 * 1024 })];
  assert.deepEqual(plain(limited), [
    { line: 1, value: { a: 1 } },
    { line: 2, error: `the row is ${big.length} bytes, over the limit of 1048576 (a broken file? raise maxRowBytes if it is a real row)` },
    { line: 3, value: { b: 2 } },
  ]);
});

test('JSONL: a line over the default 16 MiB limit is never held whole', () => {
  const p = join(dir, 'huge.jsonl');
  const fd = openSync(p, 'w');
  const piece = Buffer.alloc(1024 * 1024, 0x61);
  writeSync(fd, '{"text": "');
  for (let i = 0; i < 20; i++) writeSync(fd, piece);
  writeSync(fd, '"}\n{"ok": true}\n');
  closeSync(fd);
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const out: JsonRow[] = [];
  for (const r of readJsonRows(p)) {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    out.push(r);
  }
  assert.equal(out.length, 2);
  assert.equal(out[0].error, `the row is ${20 * 1024 * 1024 + 12} bytes, over the limit of ${MAX_ROW_BYTES} (a broken file? raise maxRowBytes if it is a real row)`);
  assert.deepEqual(out[1], { line: 2, value: { ok: true } });
  assert.ok(peak < MAX_ROW_BYTES + 4 * 1024 * 1024, `peak ${peak}`);
});

test('JSON array file: one row per element, with the line each starts on', () => {
  const p = file('[\n  {"id": 1, "s": "a, ] } [ \\" {"},\n  {"id": 2,\n   "list": [1, [2, {"x": "]"}]]},\n\n  3, "four" , null\n]\n', 'json');
  assert.deepEqual(plain(rows(p)), [
    { line: 2, value: { id: 1, s: 'a, ] } [ " {' } },
    { line: 3, value: { id: 2, list: [1, [2, { x: ']' }]] } },
    { line: 6, value: 3 },
    { line: 6, value: 'four' },
    { line: 6, value: null },
  ]);
  assert.deepEqual(rows(file('  []  ', 'json')), []);
  assert.deepEqual(rows(file('\ufeff[{"a":1}]', 'json')).length, 1);
});

test('JSON array file: a broken element is a bad row and the elements after it are read', () => {
  const rs = plain(rows(file('[\n{"a": 1},\n{"b": tru},\n{"c": 3}\n]', 'json')));
  assert.equal(rs.length, 3);
  assert.equal(rs[1].line, 3);
  assert.match(rs[1].error!, /^not valid JSON \(.+\): \{"b": tru\}/);
  assert.deepEqual(rs[2], { line: 4, value: { c: 3 } });
});

test('JSON array file: structural damage is one error naming the file and line', () => {
  const err = (content: string) => {
    const p = file(content, 'json');
    try {
      rows(p);
    } catch (e) {
      assert.ok(e instanceof LlmError);
      return e.message.replace(p, 'F');
    }
    assert.fail('expected an LlmError');
  };
  assert.equal(err('[\n{"a": 1},\n{"b": 2'), 'F: the JSON array opened on line 1 is not closed at the end of the file (line 3); the file is cut short or an element is broken');
  assert.equal(err('[{"a": 1},\n]'), 'F:2: a ] where an element of the JSON array was expected (an empty element or a trailing comma)');
  assert.equal(err('[{"a": 1},,{"b": 2}]'), 'F:1: a comma where an element of the JSON array was expected (an empty element or a trailing comma)');
  assert.equal(err('[{"a": 1}]\n[{"b": 2}]'), 'F:2: text after the closing ] of the JSON array (a JSON file holds one array of rows; in JSONL, a line starting with [ would be an array, and rows are objects)');
  assert.equal(err('[{"a": 1}}, {"b": 2}]'), 'F:1: a } that closes nothing in the JSON array (the element before it is broken)');
});

test('the same rows whatever the chunk size (rows and UTF-8 sequences cut across reads)', () => {
  const jsonl = file('{"a":"é€😀"}\r\n\n{"b":[1,{"c":"]"}]}\n{bad\n"x"\n');
  const array = file('[\n {"a":"é€😀"},\n {"b":[1,{"c":"],"}]} , {bad}, "x\\"y"\n]\n', 'json');
  for (const p of [jsonl, array]) {
    const want = plain(rows(p));
    assert.ok(want.length >= 4);
    for (const chunk of [1, 2, 3, 5, 7, 16]) assert.deepEqual(plain(rows(p, chunk)), want, `chunk ${chunk}`);
  }
});

test('file-level problems: missing, a directory, UTF-16, empty', () => {
  assert.throws(() => rows(join(dir, 'nope.jsonl')), (e: unknown) => e instanceof LlmError && /cannot open data file .*nope\.jsonl: ENOENT \(no such file\)/.test(e.message));
  const sub = join(dir, 'sub');
  mkdirSync(sub);
  assert.throws(() => rows(sub), (e: unknown) => e instanceof LlmError && /is a directory, not a data file/.test(e.message));
  const utf16 = file(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"a":1}\n', 'utf16le')]));
  assert.throws(() => rows(utf16), (e: unknown) => e instanceof LlmError && e.message.includes('looks like UTF-16 text, not UTF-8 (convert it: iconv -f UTF-16 -t UTF-8'));
  assert.deepEqual(rows(file('')), []);
  assert.deepEqual(rows(file('\n\n  \n')), []);
});
