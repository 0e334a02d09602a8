import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileMappingAvailable } from '../../src/formats/file-source.js';
import {
  loadSafetensors,
  parseSafetensors,
  saveSafetensors,
  serializeSafetensors,
  type TensorToWrite,
} from '../../src/formats/safetensors.js';
import { LlmError } from '../../src/util/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('safetensors');

const sample: Record<string, TensorToWrite> = {
  'h.0.attn.w': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-8, -7]) },
  half: { dtype: 'F16', shape: [3], data: new Float32Array([1, -0.5, 65504]) },
  brain: { dtype: 'BF16', shape: [2], data: new Float32Array([1.5, -256]) },
  ids: { dtype: 'I32', shape: [4], data: new Int32Array([0, -1, 2147483647, -2147483648]) },
  step: { dtype: 'I64', shape: [], data: new BigInt64Array([9007199254740993n]) },
  widened: { dtype: 'I64', shape: [2], data: new Int32Array([-3, 4]) },
  bytes: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) },
  shorts: { dtype: 'U16', shape: [1, 1], data: new Uint16Array([65535]) },
  empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
};

/** Build a file by hand: u64 LE header length, header text, data. */
function rawFile(header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function expectError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LlmError, `expected LlmError, got ${String(e)}`);
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `"${e.message}" should contain "${p}"`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

test('round trip of every dtype plus metadata through a file', () => {
  const p = join(dir, 'all.safetensors');
  saveSafetensors(p, sample, { format: 'pt', note: 'héllo' });
  const { tensors, metadata } = loadSafetensors(p);
  assert.deepEqual(metadata, { format: 'pt', note: 'héllo' });
  assert.deepEqual([...tensors.keys()].sort(), Object.keys(sample).sort());

  const get = (name: string) => tensors.get(name)!;
  assert.deepEqual(get('h.0.attn.w'), { dtype: 'F32', shape: [2, 3], data: sample['h.0.attn.w'].data });
  assert.deepEqual(get('half'), { dtype: 'F16', shape: [3], data: new Float32Array([1, -0.5, 65504]) });
  assert.deepEqual(get('brain'), { dtype: 'BF16', shape: [2], data: new Float32Array([1.5, -256]) });
  assert.deepEqual(get('ids'), { dtype: 'I32', shape: [4], data: sample.ids.data });
  assert.deepEqual(get('step'), { dtype: 'I64', shape: [], data: new BigInt64Array([9007199254740993n]) });
  assert.deepEqual(get('widened'), { dtype: 'I64', shape: [2], data: new BigInt64Array([-3n, 4n]) });
  assert.deepEqual(get('bytes'), { dtype: 'U8', shape: [3], data: sample.bytes.data });
  assert.deepEqual(get('shorts'), { dtype: 'U16', shape: [1, 1], data: sample.shorts.data });
  assert.deepEqual(get('empty'), { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });

  // parseSafetensors on the same bytes gives the same answer.
  const parsed = parseSafetensors(readFileSync(p), p);
  assert.deepEqual(parsed.tensors, tensors);
});

test('parsed arrays are fresh copies at offset 0; loaded arrays are views of the mapping (or own reads) and writes never reach the file', () => {
  const src = new Float32Array([1, 2, 3]);
  const p = join(dir, 'own.safetensors');
  saveSafetensors(p, { a: { dtype: 'U8', shape: [1], data: new Uint8Array([7]) }, w: { dtype: 'F32', shape: [3], data: src } });
  const before = readFileSync(p);
  const parsed = parseSafetensors(before, p).tensors.get('w')!;
  assert.equal(parsed.data.byteOffset, 0);
  assert.equal(parsed.data.buffer.byteLength, 12);
  (parsed.data as Float32Array)[0] = 42;
  assert.equal(src[0], 1);

  const loaded = loadSafetensors(p);
  const w = loaded.tensors.get('w')!.data as Float32Array;
  assert.equal(loaded.source, fileMappingAvailable() ? 'mmap' : 'read');
  if (loaded.source === 'mmap') {
    assert.equal(w.buffer.byteLength, before.byteLength, 'a view into the whole mapped file');
    assert.ok(w.byteOffset > 8);
  } else {
    assert.equal(w.byteOffset, 0);
    assert.equal(w.buffer.byteLength, 12);
  }
  w[0] = 42;
  assert.deepEqual(readFileSync(p), before, 'the file is unchanged');
  assert.equal((loadSafetensors(p).tensors.get('w')!.data as Float32Array)[0], 1);
});

test('unaligned and F16 tensors are copied; aligned F32 ones are views', () => {
  // a hand-made file whose F32 tensor starts at an odd offset of the data buffer
  const data = new Uint8Array(1 + 8 + 2); // U8 pad, F32 x 2, F16 x 1: the data must be contiguous
  new DataView(data.buffer).setFloat32(1, 1.5, true);
  new DataView(data.buffer).setFloat32(5, -2, true);
  new DataView(data.buffer).setUint16(9, 0x3c00, true); // F16 1.0
  let header = '{"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"odd":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},"h":{"dtype":"F16","shape":[1],"data_offsets":[9,11]}}';
  header += ' '.repeat((4 - ((8 + header.length) % 4)) % 4); // data buffer 4-aligned in the file, so 'odd' is at 1 mod 4
  const p = join(dir, 'unaligned.safetensors');
  writeFileSync(p, rawFile(header, data));
  const t = loadSafetensors(p).tensors;
  assert.deepEqual(t.get('odd')!.data, new Float32Array([1.5, -2]));
  assert.equal(t.get('odd')!.data.byteOffset, 0, 'an unaligned tensor gets its own buffer');
  assert.deepEqual(t.get('h')!.data, new Float32Array([1]));
});

test('Uint16Array data for F16/BF16 is written as raw bits', () => {
  const parts = serializeSafetensors({ h: { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) } });
  const buf = concat(parts);
  assert.deepEqual(parseSafetensors(buf, 'mem').tensors.get('h')!.data, new Float32Array([1, -2]));
});

test('writer layout: 8-byte aligned header, space padding, aligned data, offsets relative to data start', () => {
  const parts = serializeSafetensors(
    {
      b: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      a: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
    },
    { x: 'y' },
  );
  const buf = concat(parts);
  const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0);
  assert.equal(parts[0].byteLength, 8 + n);
  const text = new TextDecoder().decode(buf.subarray(8, 8 + n));
  assert.match(text, /^\{.*\} *$/);
  const header = JSON.parse(text);
  assert.deepEqual(header.__metadata__, { x: 'y' });
  // The F32 tensor comes first so that it is 4-byte aligned.
  assert.deepEqual(header.a, { dtype: 'F32', shape: [2], data_offsets: [0, 8] });
  assert.deepEqual(header.b, { dtype: 'U8', shape: [3], data_offsets: [8, 11] });
  assert.equal(buf.byteLength, 8 + n + 11);
  const data = new DataView(buf.buffer, 8 + n);
  assert.equal(data.getFloat32(0, true), 1);
  assert.equal(data.getFloat32(4, true), 2);
  assert.deepEqual([...buf.subarray(8 + n + 8)], [1, 2, 3]);
});

test('reads a file written by hand following the spec byte by byte', () => {
  const header =
    '{"__metadata__":{"format":"pt"},' +
    '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"n":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},' +
    '"h":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]}}    ';
  const data = new Uint8Array(18);
  const dv = new DataView(data.buffer);
  dv.setFloat32(0, 0.25, true);
  dv.setFloat32(4, -3, true);
  dv.setBigInt64(8, -5n, true);
  dv.setUint16(16, 0x4049, true); // bf16 3.140625
  const { tensors, metadata } = parseSafetensors(rawFile(header, data), 'hand.safetensors');
  assert.deepEqual(metadata, { format: 'pt' });
  assert.deepEqual(tensors.get('w'), { dtype: 'F32', shape: [2], data: new Float32Array([0.25, -3]) });
  assert.deepEqual(tensors.get('n'), { dtype: 'I64', shape: [1], data: new BigInt64Array([-5n]) });
  assert.deepEqual(tensors.get('h'), { dtype: 'BF16', shape: [1], data: new Float32Array([3.140625]) });
});

test('corrupt files give LlmErrors naming the file', () => {
  const good = join(dir, 'good.safetensors');
  saveSafetensors(good, { w: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
  const size = readFileSync(good).byteLength;

  const truncated = join(dir, 'truncated.safetensors');
  writeFileSync(truncated, readFileSync(good));
  truncateSync(truncated, size - 4);
  expectError(() => loadSafetensors(truncated), truncated, 'data_offsets [0, 16]', /truncated/);

  const tiny = join(dir, 'tiny.safetensors');
  writeFileSync(tiny, new Uint8Array(5));
  expectError(() => loadSafetensors(tiny), tiny, '5 bytes');

  const headerCut = join(dir, 'header-cut.safetensors');
  writeFileSync(headerCut, readFileSync(good).subarray(0, 20));
  expectError(() => loadSafetensors(headerCut), headerCut, 'larger than the 20-byte file');

  const cases: [string, Uint8Array, string][] = [
    ['bad-json', rawFile('{"w": {"dtype": "F32",'), 'not valid JSON'],
    ['not-object', rawFile('[1, 2]'), 'must be a JSON object'],
    ['unknown-dtype', rawFile('{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)), 'unsupported dtype "Q4"'],
    ['bad-shape', rawFile('{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}', new Uint8Array(1)), 'non-negative integers'],
    ['shape-not-array', rawFile('{"w":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}', new Uint8Array(1)), 'shape "1"'],
    ['offsets-range', rawFile('{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}', new Uint8Array(4)), 'run past the 4-byte data buffer'],
    ['offsets-shape', rawFile('{"w":{"dtype":"U8","shape":[1],"data_offsets":[3]}}', new Uint8Array(4)), 'data_offsets [3]'],
    ['offsets-reversed', rawFile('{"w":{"dtype":"U8","shape":[0],"data_offsets":[3,2]}}', new Uint8Array(4)), 'begin <= end'],
    ['wrong-size', rawFile('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Uint8Array(8)), 'needs 12 bytes'],
    ['huge-shape', rawFile('{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', new Uint8Array(8)), 'more than 8'],
    ['bad-metadata', rawFile('{"__metadata__":{"a":1}}'), '__metadata__ "a"'],
  ];
  for (const [name, bytes, msg] of cases) {
    const p = join(dir, `${name}.safetensors`);
    writeFileSync(p, bytes);
    expectError(() => loadSafetensors(p), p, msg);
    expectError(() => parseSafetensors(bytes, p), p, msg);
  }

  // A header length far beyond the limit is rejected before anything is allocated.
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 1n << 60n, true);
  expectError(() => parseSafetensors(huge, 'huge.safetensors'), 'huge.safetensors', 'over the 100000000-byte limit');

  expectError(() => loadSafetensors(join(dir, 'missing.safetensors')), 'missing.safetensors');
});

test('data must tile the buffer exactly (as the safetensors crate requires): overlap, gaps and trailing bytes are errors', () => {
  const t = (name: string, begin: number, end: number): string => `"${name}":{"dtype":"U8","shape":[${end - begin}],"data_offsets":[${begin},${end}]}`;
  const cases: [string, string, number, RegExp][] = [
    ['overlap', `{${t('a', 0, 4)},${t('b', 2, 6)}}`, 6, /tensor "b" data_offsets \[2, 6\] overlap tensor "a" \[0, 4\]/],
    ['same-bytes', `{${t('a', 0, 4)},${t('b', 0, 4)}}`, 4, /overlap/],
    ['gap-at-start', `{${t('a', 2, 4)}}`, 4, /bytes \[0, 2\) of the data buffer belong to no tensor/],
    ['gap-between', `{${t('a', 0, 2)},${t('b', 3, 4)}}`, 4, /bytes \[2, 3\) of the data buffer belong to no tensor \(before tensor "b"\)/],
    ['trailing', `{${t('a', 0, 2)}}`, 4, /2 bytes after the last tensor/],
    ['no-tensors-but-data', '{}', 4, /4 bytes after the last tensor/],
  ];
  for (const [name, header, dataLen, msg] of cases) {
    const bytes = rawFile(header, new Uint8Array(dataLen));
    const p = join(dir, `tile-${name}.safetensors`);
    writeFileSync(p, bytes);
    expectError(() => loadSafetensors(p), p, msg);
    expectError(() => parseSafetensors(bytes, p), p, msg);
  }
  // header order does not matter, zero-sized tensors may sit anywhere in the sequence
  const ok = parseSafetensors(rawFile(`{${t('b', 2, 4)},${t('z', 2, 2)},${t('a', 0, 2)}}`, new Uint8Array(4)), 'ok');
  assert.deepEqual([...ok.tensors.keys()], ['b', 'z', 'a']);
});

test('duplicate keys in the header are errors (JSON.parse would keep the last silently)', () => {
  const w = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
  const cases: [string, string, RegExp][] = [
    ['tensor', `{"w":${w},"w":${w}}`, /the key "w" twice/],
    ['escaped', `{"w":${w},"\\u0077":${w}}`, /the key "w" twice/],
    ['metadata', `{"__metadata__":{"format":"pt","format":"x"},"w":${w}}`, /the key "format" twice/],
    ['metadata-object', `{"__metadata__":{},"__metadata__":{},"w":${w}}`, /the key "__metadata__" twice/],
    ['entry-field', `{"w":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, /the key "dtype" twice/],
  ];
  for (const [name, header, msg] of cases) {
    expectError(() => parseSafetensors(rawFile(header, new Uint8Array(1)), `dup-${name}`), `dup-${name}`, msg);
  }
  // the same name in different objects, and strings that look like keys, are fine
  const ok = parseSafetensors(rawFile(`{"__metadata__":{"w":"w, \\"w\\": {"},"w":${w}}`, new Uint8Array(1)), 'ok');
  assert.deepEqual(ok.metadata, { w: 'w, "w": {' });
});

test('a value nested 100,000 deep and a 5,000,000-element shape give short one-line errors (no stack overflow)', () => {
  const deep = '['.repeat(100_000) + ']'.repeat(100_000);
  expectError(() => parseSafetensors(rawFile(`{"w":{"dtype":"U8","shape":${deep},"data_offsets":[0,1]}}`, new Uint8Array(1)), 'deep'), 'deep', /nests values more than 32 deep/);
  const long = `[${new Array(5_000_000).fill(1).join(',')}]`;
  assert.throws(() => parseSafetensors(rawFile(`{"w":{"dtype":"U8","shape":${long},"data_offsets":[0,2]}}`, new Uint8Array(2)), 'long'), (e: unknown) => {
    assert.ok(e instanceof LlmError);
    assert.match(e.message, /shape \[1, 1, 1, 1, 1, 1, 1, 1, \.\.\..*of U8 needs 1 bytes/);
    assert.ok(e.message.length < 300, e.message);
    return true;
  });
});

test('writer rejects inconsistent tensors', () => {
  expectError(() => serializeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), '"w"', 'needs 3 elements');
  expectError(() => serializeSafetensors({ w: { dtype: 'I32', shape: [2], data: new Float32Array(2) } }), 'Float32Array');
  expectError(() => serializeSafetensors({ w: { dtype: 'F64' as 'F32', shape: [1], data: new Float32Array(1) } }), 'unsupported dtype "F64"');
  expectError(() => serializeSafetensors({ w: { dtype: 'U8', shape: [1.5], data: new Uint8Array(1) } }), 'non-negative integers');
  expectError(() => serializeSafetensors({ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }), 'reserved');
});

test('a tensor named __proto__ survives the round trip', () => {
  const t: Record<string, TensorToWrite> = {};
  Object.defineProperty(t, '__proto__', { value: { dtype: 'U8', shape: [1], data: new Uint8Array([5]) }, enumerable: true });
  const back = parseSafetensors(concat(serializeSafetensors(t)), 'mem');
  assert.deepEqual(back.tensors.get('__proto__')!.data, new Uint8Array([5]));
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}
