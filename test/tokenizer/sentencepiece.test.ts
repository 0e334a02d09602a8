/**
 * SentencePiece BPE (Llama 1/2) parity:
 *  - llama.cpp's 46 test vectors for ggml-vocab-llama-spm.gguf (made with Hugging Face's Llama
 *    tokenizer, add_special_tokens=False);
 *  - Google's SentencePiece (python3-sentencepiece) on all of Tiny Shakespeare and on
 *    adversarial strings, through tokenizer.model, the GGUF vocab and a tokenizer.json;
 *  - decoding, streaming, JSON round trip and malformed input.
 * The fixtures come from scripts/make_sentencepiece_fixture.py; shared data is optional
 * (tests skip with a message when it is absent).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ProtoReader } from '../../src/formats/protobuf.js';
import { readGgufSentencePiece } from '../../src/tokenizer/gguf-sentencepiece.js';
import { readHfTokenizerJson, sentencePieceFromHfTokenizerJson } from '../../src/tokenizer/hf-tokenizer-json.js';
import { readSentencePieceModel, sentencePieceFromModelProto } from '../../src/tokenizer/sentencepiece-model.js';
import { PieceType, SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { StreamDecoder } from '../../src/tokenizer/stream-decoder.js';
import { tokenizerFromJSON } from '../../src/tokenizer/tokenizer.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import {
  hfTokenizerJsonFromSentencePiece,
  readU16Gz,
  spFixturePath,
} from '../helpers/sentencepiece-vectors.js';
import { tmpDir } from '../helpers/tmp.js';
import { firstMismatch, readLlamaCppVectors } from '../helpers/bpe-parity.js';

interface Cases {
  text_sha256: string;
  text_ids: number;
  encode: { text: string; ids: number[]; pieces: string[]; decoded: string }[];
  decode: { ids: number[]; text: string }[];
  tiny: { model_base64: string; encode: { text: string; ids: number[]; pieces: string[]; decoded: string }[] };
}
const cases = JSON.parse(readFileSync(spFixturePath('llama2-sentencepiece.json'), 'utf8')) as Cases;

const modelPath = sharedDataPath('llama2-tokenizer/tokenizer.model');
const ggufPath = sharedDataPath('gguf-vocab/ggml-vocab-llama-spm.gguf');
const shakespearePath = sharedDataPath('tinyshakespeare/input.txt');
const NO_MODEL = 'shared data llama2-tokenizer/tokenizer.model not available';
const NO_GGUF = 'shared data gguf-vocab/ggml-vocab-llama-spm.gguf not available';

let modelTok: SentencePieceTokenizer | undefined;
const model = (): SentencePieceTokenizer => (modelTok ??= readSentencePieceModel(modelPath!));
let ggufTok: SentencePieceTokenizer | undefined;
const gguf = (): SentencePieceTokenizer => (ggufTok ??= readGgufSentencePiece(ggufPath!));

/** Tiny Shakespeare and SentencePiece's ids for it, or a reason to skip. */
function shakespeare(): { text: string; ids: Uint16Array } | string {
  if (shakespearePath === null) return 'shared data tinyshakespeare/input.txt not available';
  const raw = readFileSync(shakespearePath);
  const sha = createHash('sha256').update(raw).digest('hex');
  if (sha !== cases.text_sha256) return `tinyshakespeare/input.txt has sha256 ${sha}, not the fixture's ${cases.text_sha256}`;
  const ids = readU16Gz(spFixturePath('llama2-tinyshakespeare.u16.gz'));
  assert.equal(ids.length, cases.text_ids);
  return { text: raw.toString('utf8'), ids };
}

function assertSameIds(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const at = firstMismatch(actual, expected);
  if (at >= 0) {
    const show = (a: ArrayLike<number>): string => JSON.stringify(Array.from(a).slice(Math.max(0, at - 3), at + 4));
    assert.fail(`${what}: ids differ at ${at} of ${expected.length} (got ${actual.length}): ${show(actual)} vs expected ${show(expected)}`);
  }
}

test('llama.cpp test vectors for ggml-vocab-llama-spm.gguf: every case matches', (t) => {
  if (ggufPath === null) return t.skip(NO_GGUF);
  const { inputs, expected } = readLlamaCppVectors(ggufPath);
  assert.equal(inputs.length, 46);
  const tok = gguf();
  const bad: string[] = [];
  let tokens = 0;
  inputs.forEach((text, i) => {
    const ids = tok.encode(text, { addBos: false });
    tokens += expected[i].length;
    if (firstMismatch(ids, expected[i]) >= 0) bad.push(`#${i} ${JSON.stringify(text)}: got ${ids.join(' ')}, expected ${expected[i].join(' ')}`);
  });
  t.diagnostic(`${inputs.length} cases, ${tokens} tokens`);
  assert.deepEqual(bad, []);
});

test('tokenizer.model: ids equal SentencePiece on all of Tiny Shakespeare', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const data = shakespeare();
  if (typeof data === 'string') return t.skip(data);
  const tok = model();
  const t0 = performance.now();
  const ids = tok.encode(data.text, { addBos: false });
  const ms = performance.now() - t0;
  t.diagnostic(`${data.text.length} characters -> ${ids.length} ids in ${ms.toFixed(0)} ms`);
  assertSameIds(ids, data.ids, 'Tiny Shakespeare via tokenizer.model');
  assert.deepEqual(tok.encode(data.text.slice(0, 50)).slice(0, 1), [1], 'BOS is added by default');
  // and back
  assert.equal(tok.decode(ids), data.text);
});

test('tokenizer.model: adversarial strings encode and decode as SentencePiece does', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const tok = model();
  for (const c of cases.encode) {
    const ids = tok.encode(c.text, { addBos: false });
    assert.deepEqual(ids, c.ids, `encode ${JSON.stringify(c.text)} (SentencePiece: ${c.pieces.join(' ')})`);
    assert.equal(tok.decode(ids), c.decoded, `decode(encode(${JSON.stringify(c.text)}))`);
    assert.deepEqual(tok.encode(c.text), c.text === '' ? [1] : [1, ...c.ids], 'with BOS');
  }
  for (const c of cases.decode) assert.equal(tok.decode(c.ids), c.text, `decode ${JSON.stringify(c.ids)}`);
});

test('round trip: decode(encode(s)) == s except that literal "▁" comes back as a space', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const tok = model();
  for (const c of cases.encode) {
    const back = tok.decode(tok.encode(c.text));
    assert.equal(back, c.text.includes('\u2581') ? c.text.replaceAll('\u2581', ' ') : c.text);
  }
});

test('GGUF vocabulary and tokenizer.model give identical ids', (t) => {
  if (modelPath === null || ggufPath === null) return t.skip(modelPath === null ? NO_MODEL : NO_GGUF);
  const a = model();
  const b = gguf();
  assert.deepEqual(b.pieces, a.pieces);
  assert.deepEqual(b.types, a.types);
  assert.deepEqual(b.scores, a.scores);
  assert.equal(b.bosId, 1);
  assert.equal(b.eosId, 2);
  assert.equal(b.unkId, 0);
  assert.equal(b.addBos, true);
  for (const c of cases.encode) assert.deepEqual(b.encode(c.text, { addBos: false }), c.ids, JSON.stringify(c.text));
  const data = shakespeare();
  if (typeof data === 'string') return t.skip(data);
  assertSameIds(b.encode(data.text, { addBos: false }), data.ids, 'Tiny Shakespeare via GGUF');
});

test('tokenizer.json (made from the same vocabulary) gives identical ids', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const json = hfTokenizerJsonFromSentencePiece(model());
  const path = join(tmpDir('sp-hf'), 'tokenizer.json');
  writeFileSync(path, JSON.stringify(json));
  const tok = readHfTokenizerJson(path);
  t.diagnostic(`${(json.model as { merges: string[] }).merges.length} merges`);
  assert.deepEqual(tok.pieces, model().pieces);
  assert.deepEqual(tok.types, model().types);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.addBos, true);
  for (const c of cases.encode) assert.deepEqual(tok.encode(c.text, { addBos: false }), c.ids, JSON.stringify(c.text));
  assert.deepEqual(tok.encode('Hello world'), [1, 15043, 3186]);
  const data = shakespeare();
  if (typeof data === 'string') return t.skip(data);
  assertSameIds(tok.encode(data.text, { addBos: false }), data.ids, 'Tiny Shakespeare via tokenizer.json');
});

test('tokenizer.json: the newer Metaspace form and unsupported forms', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const json = hfTokenizerJsonFromSentencePiece(model());
  const meta = { ...json, normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false } };
  const tok = sentencePieceFromHfTokenizerJson(meta);
  for (const c of cases.encode.slice(0, 12)) assert.deepEqual(tok.encode(c.text, { addBos: false }), c.ids, JSON.stringify(c.text));
  const rejects = (j: unknown, re: RegExp): void =>
    assert.throws(() => sentencePieceFromHfTokenizerJson(j, 'x/tokenizer.json'), (e: unknown) => e instanceof LlmError && re.test(e.message) && e.message.includes('x/tokenizer.json'));
  rejects({ ...json, model: { ...(json.model as object), type: 'WordPiece' } }, /only BPE/);
  rejects({ ...json, pre_tokenizer: { type: 'ByteLevel' } }, /pre_tokenizer "ByteLevel" is not supported/);
  rejects({ ...meta, pre_tokenizer: { ...meta.pre_tokenizer, split: true } }, /split: true/);
  rejects({ ...json, model: { ...(json.model as object), merges: ['\u2581 zzqq'] } }, /merge 0/);
  rejects([1, 2], /not a JSON object/);
  const dir = tmpDir('sp-hf-bad');
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
  assert.throws(() => readHfTokenizerJson(join(dir, 'tokenizer.json')), (e: unknown) => e instanceof LlmError && /is not valid JSON/.test(e.message));
});

test('control tokens in text stay text unless allowedSpecial lets them through', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const tok = model();
  const plain = cases.encode.find((c) => c.text === '<s>Hello</s>')!;
  assert.deepEqual(tok.encode('<s>Hello</s>', { addBos: false }), plain.ids);
  assert.deepEqual(tok.encode('<s>Hello</s>', { addBos: false, allowedSpecial: 'none' }), plain.ids);
  // each stretch of text around a special token gets its own dummy prefix (llama.cpp, HF legacy)
  assert.deepEqual(tok.encode('<s>Hello</s>', { addBos: false, allowedSpecial: 'all' }), [1, 15043, 2]);
  assert.deepEqual(tok.encode('Hi</s><s>Hello', { addBos: false, allowedSpecial: new Set(['</s>']) }), [
    ...tok.encode('Hi', { addBos: false }), 2, ...tok.encode('<s>Hello', { addBos: false }),
  ]);
  assert.deepEqual(tok.specialTokens, { '<unk>': 0, '<s>': 1, '</s>': 2 });
});

test('a lone surrogate encodes as U+FFFD does', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const tok = model();
  assert.deepEqual(tok.encode('a\uD83Db', { addBos: false }), tok.encode('a\uFFFDb', { addBos: false }));
  assert.deepEqual(tok.encode('\uDE00', { addBos: false }), tok.encode('\uFFFD', { addBos: false }));
});

test('StreamDecoder over byte-fallback tokens never shows half a character', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const tok = model();
  for (const text of ['😀😃 你好 \u16a0\u16c7 cafe\u0301', cases.encode[3].text, cases.encode[6].text]) {
    const ids = tok.encode(text, { addBos: false });
    assert.ok(ids.some((id) => tok.types[id] === PieceType.BYTE), 'uses byte fallback');
    const d = new StreamDecoder(tok);
    let out = '';
    for (const id of ids) {
      const piece = d.push(id);
      assert.ok(!piece.includes('\uFFFD'), `no replacement character after id ${id}`);
      assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(piece), `no lone surrogate after id ${id}`);
      out += piece;
    }
    out += d.flush();
    // token bytes keep the dummy-prefix space that decode() drops
    assert.equal(out, ' ' + text);
    assert.equal(tok.decode(ids), text);
  }
  assert.deepEqual(tok.tokenBytes(1), new Uint8Array(0), '<s> has no bytes');
  assert.deepEqual(tok.tokenBytes(3 + 0xe2), Uint8Array.of(0xe2));
});

test('toJSON / tokenizerFromJSON round trip gives identical ids', (t) => {
  if (modelPath === null) return t.skip(NO_MODEL);
  const tok = model();
  const text = JSON.stringify(tok.toJSON());
  t.diagnostic(`JSON form: ${(text.length / 1024).toFixed(0)} KiB`);
  const back = tokenizerFromJSON(JSON.parse(text));
  assert.ok(back instanceof SentencePieceTokenizer);
  assert.equal(back.kind, 'sentencepiece');
  assert.equal(back.vocabSize, 32000);
  assert.deepEqual(back.scores, tok.scores);
  assert.deepEqual(back.types, tok.types);
  for (const c of cases.encode) assert.deepEqual(back.encode(c.text), tok.encode(c.text));
  const data = shakespeare();
  if (typeof data !== 'string') assertSameIds(back.encode(data.text.slice(0, 200_000)), tok.encode(data.text.slice(0, 200_000)), 'JSON round trip');
  assert.throws(() => tokenizerFromJSON({ kind: 'sentencepiece', pieces: ['a'], scores: 'AAAA', types: '9' }), LlmError);
  assert.throws(() => tokenizerFromJSON({ kind: 'sentencepiece', pieces: ['a'], scores: 'AA', types: '1' }), LlmError);
});

test('a tiny hand-written model: no byte fallback, user-defined and unused pieces, extra whitespace', () => {
  const tok = sentencePieceFromModelProto(Buffer.from(cases.tiny.model_base64, 'base64'), 'tiny.model');
  assert.equal(tok.byteFallback, false);
  assert.equal(tok.removeExtraWhitespaces, true);
  for (const c of cases.tiny.encode) {
    const ids = tok.encode(c.text, { addBos: false });
    assert.deepEqual(ids, c.ids, `encode ${JSON.stringify(c.text)} (SentencePiece: ${c.pieces.join(' ')})`);
    assert.equal(tok.decode(ids), c.decoded, `decode(encode(${JSON.stringify(c.text)}))`);
  }
});

test('corrupt or truncated tokenizer.model is an LlmError naming the file', (t) => {
  const dir = tmpDir('sp-bad');
  const check = (bytes: Uint8Array, name: string, re: RegExp = /./): void => {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    assert.throws(
      () => readSentencePieceModel(path),
      (e: unknown) => e instanceof LlmError && e.message.includes(path) && re.test(e.message) && !e.message.includes('\n'),
      name,
    );
  };
  check(new TextEncoder().encode('{"model": {"type": "BPE"}}'), 'json.model', /malformed protobuf/);
  check(new Uint8Array(0), 'empty.model', /not a SentencePiece model/);
  check(Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f), 'huge-length.model', /runs past the end/);
  check(Uint8Array.of(0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), 'long-varint.model', /varint/);
  check(Uint8Array.of(0x0b, 0x01), 'group.model', /wire type 3/);
  let seed = 12345;
  const junk = Uint8Array.from({ length: 4096 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff);
  check(junk, 'random.model');
  assert.throws(() => readSentencePieceModel(join(dir, 'missing.model')), (e: unknown) => e instanceof LlmError && /cannot read/.test(e.message));
  // a unigram model is not silently mis-tokenized
  const tiny = Buffer.from(cases.tiny.model_base64, 'base64');
  const unigram = Buffer.concat([tiny, Buffer.from([0x12, 0x02, 0x18, 0x01])]); // trainer_spec { model_type: UNIGRAM }
  assert.throws(() => sentencePieceFromModelProto(unigram, 'uni.model'), (e: unknown) => e instanceof LlmError && /UNIGRAM/.test(e.message));
  if (modelPath === null) return t.skip(NO_MODEL);
  const real = readFileSync(modelPath);
  for (const cut of [1, 100, 1000, real.length >> 1, real.length - 1]) check(real.subarray(0, cut), `cut-${cut}.model`);
});

test('ProtoReader: varints, fixed widths and bounds', () => {
  const r = new ProtoReader(Uint8Array.of(0x08, 0x96, 0x01, 0x15, 0, 0, 0x80, 0x3f, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 'x');
  assert.deepEqual(r.tag(), { field: 1, wire: 0 });
  assert.equal(r.uint32(), 150);
  assert.deepEqual(r.tag(), { field: 2, wire: 5 });
  assert.equal(r.float(), 1);
  assert.deepEqual(r.tag(), { field: 3, wire: 0 });
  assert.equal(r.int32(), -1);
  assert.ok(r.done());
  assert.throws(() => r.tag(), LlmError);
  const short = new ProtoReader(Uint8Array.of(0x15, 0, 0), 'x');
  assert.equal(short.tag().wire, 5);
  assert.throws(() => short.float(), LlmError);
});
