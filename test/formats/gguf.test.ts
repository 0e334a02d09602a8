import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readGguf, ggufString, ggufStringArray } from '../../src/formats/gguf.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';

/** A tiny GGUF v3 file written by hand from the spec: two metadata entries and one tensor. */
function handMade(): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: number): void => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s: string): void => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF'));
  u32(3); u64(1); u64(2);
  str('general.architecture'); u32(8); str('llama');
  str('tokenizer.ggml.tokens'); u32(9); u32(8); u64(2); str('a'); str('bc');
  str('w'); u32(2); u64(4); u64(3); u32(0); u64(0);
  const header = Buffer.concat(parts);
  const padded = Math.ceil(header.length / 32) * 32;
  return Buffer.concat([header, Buffer.alloc(padded - header.length), Buffer.alloc(48)]);
}

describe('GGUF reader', () => {
  it('reads a file written by hand from the spec', () => {
    const dir = tmpDir('gguf');
    const f = join(dir, 'tiny.gguf');
    const bytes = handMade();
    writeFileSync(f, bytes);
    const g = readGguf(f);
    assert.equal(g.version, 3);
    assert.equal(ggufString(g, 'general.architecture'), 'llama');
    assert.deepEqual(ggufStringArray(g, 'tokenizer.ggml.tokens'), ['a', 'bc']);
    assert.deepEqual(g.tensors, [{ name: 'w', dims: [4, 3], type: 0, offset: 0 }]);
    assert.equal(g.dataOffset % 32, 0);
    assert.equal(g.dataOffset, bytes.length - 48);
  });

  it('reads the llama.cpp vocabulary files', (t) => {
    const p = sharedDataPath('gguf-vocab/ggml-vocab-gpt-2.gguf');
    if (!p) return t.skip('shared/data/gguf-vocab not available');
    const g = readGguf(p);
    assert.equal(ggufString(g, 'tokenizer.ggml.model'), 'gpt2');
    assert.equal(ggufStringArray(g, 'tokenizer.ggml.tokens').length, 50257);
    assert.equal(ggufStringArray(g, 'tokenizer.ggml.merges')[0], 'Ġ t');
    const s = readGguf(sharedDataPath('gguf-vocab/ggml-vocab-llama-spm.gguf')!);
    assert.equal((s.metadata.get('tokenizer.ggml.scores') as Float32Array).length, 32000);
  });

  it('rejects truncated, foreign and hostile files with one-line errors', () => {
    const dir = tmpDir('gguf-bad');
    const good = handMade();
    const cases: [string, Buffer, RegExp][] = [
      ['truncated', good.subarray(0, 60), /truncated|file ends/],
      ['not gguf', Buffer.concat([Buffer.from('PK\x03\x04'), good.subarray(4)]), /is not a GGUF file/],
      ['version', Buffer.concat([good.subarray(0, 4), Buffer.from([9, 0, 0, 0]), good.subarray(8)]), /version 9/],
    ];
    const huge = Buffer.from(good);
    huge.writeBigUInt64LE(1n << 60n, 16); // metadata count
    cases.push(['huge count', huge, /larger than possible/]);
    const longString = Buffer.from(good);
    longString.writeBigUInt64LE(1n << 40n, 24); // length of the first key
    cases.push(['huge string', longString, /larger than possible/]);
    for (const [name, bytes, pattern] of cases) {
      const f = join(dir, `${name.replace(' ', '-')}.gguf`);
      writeFileSync(f, bytes);
      assert.throws(() => readGguf(f), (err: unknown) => {
        assert.ok(err instanceof LlmError, `${name}: ${String(err)}`);
        assert.match(err.message, pattern, name);
        assert.ok(!err.message.includes('\n'));
        return true;
      });
    }
  });
});
