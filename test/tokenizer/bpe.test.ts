/**
 * Byte-level BPE: parity with the reference implementations, token for token.
 *
 * - tiktoken vocabularies (r50k_base = GPT-2, cl100k_base, o200k_base) loaded by our loader from
 *   rank files rebuilt from js-tiktoken's bundled ranks (byte-identical to OpenAI's files, checked
 *   by sha256), compared with js-tiktoken on Tiny Shakespeare (whole file) and with js-tiktoken and
 *   tiktoken (Rust/WASM) on adversarial strings (test/fixtures/tokenizer/adversarial.txt + lone
 *   surrogates + long generated inputs);
 * - the split patterns and their hand-written scanners, against js-tiktoken's pat_str;
 * - a GGUF 'gpt2' vocabulary against llama.cpp's test vectors (ggml-vocab-gpt-2.gguf.inp/.out);
 * - decode round trips, streaming decode, toJSON round trips, rank-file round trips, errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getEncoding, type Tiktoken } from 'js-tiktoken';
import { get_encoding } from 'tiktoken';
import { BpeTokenizer } from '../../src/tokenizer/bpe.js';
import { bpeFromGguf, readGgufBpe } from '../../src/tokenizer/gguf-bpe.js';
import { preTokenize, scanChunks, SPLIT_PATTERNS, type SplitPattern } from '../../src/tokenizer/pretokenize.js';
import { StreamDecoder } from '../../src/tokenizer/stream-decoder.js';
import { loadTiktoken, readTiktoken, saveTiktoken, TIKTOKEN_ENCODINGS, tiktokenRanksText } from '../../src/tokenizer/tiktoken.js';
import { tokenizerFromJSON, type Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { LlmError } from '../../src/util/errors.js';
import type { Gguf } from '../../src/formats/gguf.js';
import { adversarialFixture, adversarialStrings, longStrings, loneSurrogateStrings } from '../helpers/adversarial-strings.js';
import { firstMismatch, mismatchReport, readLlamaCppVectors } from '../helpers/bpe-parity.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { jsTiktokenRankText, jsTiktokenSpec, writeJsTiktokenRankFile, type JsTiktokenName } from '../helpers/tiktoken-ranks.js';
import { tmpDir } from '../helpers/tmp.js';

const ENCODINGS: { name: JsTiktokenName; pattern: SplitPattern }[] = [
  { name: 'r50k_base', pattern: 'gpt2' },
  { name: 'cl100k_base', pattern: 'cl100k' },
  { name: 'o200k_base', pattern: 'o200k' },
];

const dir = tmpDir('bpe');
const ours = new Map<string, Promise<BpeTokenizer>>();
const refs = new Map<string, Tiktoken>();

/** Our tokenizer for a tiktoken encoding, loaded from a rank file through loadTiktoken. */
function tiktoken(name: JsTiktokenName): Promise<BpeTokenizer> {
  let t = ours.get(name);
  if (!t) {
    t = loadTiktoken(writeJsTiktokenRankFile(name, dir));
    ours.set(name, t);
  }
  return t;
}

function jsTiktoken(name: JsTiktokenName): Tiktoken {
  let t = refs.get(name);
  if (!t) {
    t = getEncoding(name);
    refs.set(name, t);
  }
  return t;
}

const shakespearePath = sharedDataPath('tinyshakespeare/input.txt');
const ggufPath = sharedDataPath('gguf-vocab/ggml-vocab-gpt-2.gguf');
const cases = adversarialStrings();

/** Lone surrogates become U+FFFD (what UTF-8 encoding does). */
function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

function assertSameIds(tok: Tokenizer, got: ArrayLike<number>, want: ArrayLike<number>, what: string, refName: string): void {
  const i = firstMismatch(got, want);
  if (i >= 0) assert.fail(`${what}: ${mismatchReport(tok, got, want, i, refName)}`);
}

test('rank files rebuilt from js-tiktoken are byte-identical to OpenAI\'s (sha256)', () => {
  for (const name of ['r50k_base', 'p50k_base', 'cl100k_base', 'o200k_base'] as const) {
    const sha = createHash('sha256').update(jsTiktokenRankText(name)).digest('hex');
    assert.equal(sha, TIKTOKEN_ENCODINGS[name].sha256, name);
  }
});

test('special tokens and split patterns of the named encodings equal js-tiktoken\'s', () => {
  for (const { name } of ENCODINGS) {
    assert.deepEqual(TIKTOKEN_ENCODINGS[name].specialTokens, jsTiktokenSpec(name).specialTokens, name);
  }
});

test('split patterns and their scanners cut text exactly as js-tiktoken\'s pat_str', (t) => {
  const texts = [...cases, cases.join('\n')];
  if (shakespearePath) texts.push(readFileSync(shakespearePath, 'utf8').slice(0, 200_000));
  // random strings over an alphabet of the characters the patterns care about
  const alphabet = [
    'a', 'Z', 'é', 'ß', 'ǅ', 'ʰ', '中', '𝐀', '𝐚', '\u0301', '\u0915', '\u093e', 'ـ', '0', '7', '٣', 'Ⅻ', '½', '𝟙',
    ' ', ' ', ' ', '\t', '\n', '\r', '\u00a0', '\u3000', '\u0085', '\ufeff', '\u2028', '\u000b', '\u001c',
    "'", 's', 'S', 't', 'l', 'L', 'v', 'e', 'E', 'r', 'd', 'D', 'm', 'ſ', 'K',
    '/', '!', '.', '(', '😀', '\u200d', '\ud800', '\udc00',
  ];
  let seed = 7;
  const rnd = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  for (let k = 0; k < 3000; k++) {
    let s = '';
    for (let i = 1 + rnd(24); i > 0; i--) s += alphabet[rnd(alphabet.length)];
    texts.push(s);
  }
  let chunks = 0;
  for (const { name, pattern } of ENCODINGS) {
    const reference = new RegExp(jsTiktokenSpec(name).patStr, 'ug');
    for (const text of texts) {
      const want = text.match(reference) ?? [];
      assert.deepEqual(preTokenize(text, pattern), want, `${pattern} regex on ${JSON.stringify(text.slice(0, 80))}`);
      assert.deepEqual(scanChunks(text, pattern), want, `${pattern} scanner on ${JSON.stringify(text.slice(0, 80))}`);
      assert.deepEqual(scanChunks(text, SPLIT_PATTERNS[pattern]), want);
      chunks += want.length;
    }
  }
  t.diagnostic(`${texts.length} texts x 3 patterns, ${chunks} chunks compared`);
});

test('Tiny Shakespeare: ids equal js-tiktoken for r50k_base, cl100k_base, o200k_base', async (t) => {
  if (shakespearePath === null) return t.skip('shared/data/tinyshakespeare/input.txt not found');
  const text = readFileSync(shakespearePath, 'utf8');
  for (const { name } of ENCODINGS) {
    const tok = await tiktoken(name);
    const got = tok.encode(text);
    const want = jsTiktoken(name).encode(text);
    assertSameIds(tok, got, want, `${name} on Tiny Shakespeare`, 'js-tiktoken');
    assert.equal(tok.decode(got), text);
    t.diagnostic(`${name}: ${got.length} tokens identical`);
  }
});

test('adversarial strings: ids equal js-tiktoken and tiktoken (WASM)', async (t) => {
  // js-tiktoken's merge loop is quadratic with a large constant: the long generated strings
  // (thousands of bytes in one chunk) go to tiktoken (WASM) only
  const short = [...adversarialFixture(), ...loneSurrogateStrings()];
  short.push(short.join('\n'));
  const long = [...longStrings(), cases.join('\n')];
  for (const { name } of ENCODINGS) {
    const tok = await tiktoken(name);
    const js = jsTiktoken(name);
    const wasm = get_encoding(name);
    try {
      let tokens = 0;
      const all = [...short, ...long];
      for (let i = 0; i < all.length; i++) {
        const s = all[i];
        const got = tok.encode(s);
        const what = `${name} on ${JSON.stringify(s.slice(0, 60))}`;
        if (i < short.length) assertSameIds(tok, got, js.encode(s, [], []), what, 'js-tiktoken');
        assertSameIds(tok, got, wasm.encode(s, [], []), what, 'tiktoken');
        tokens += got.length;
      }
      t.diagnostic(`${name}: ${short.length + long.length} strings, ${tokens} tokens identical (js-tiktoken on the first ${short.length})`);
    } finally {
      wasm.free();
    }
  }
});

test('more distinct chunks than the cache holds: same ids as tiktoken (WASM), before and after it fills', async () => {
  const words: string[] = [];
  for (let i = 0; i < 50_000; i++) {
    let w = '';
    for (let k = i + 26; k > 0; k = Math.floor(k / 26)) w += String.fromCharCode(97 + (k % 26));
    words.push(i % 7 === 0 ? w.toUpperCase() : w);
  }
  const text = words.join(' ');
  const tok = await tiktoken('cl100k_base');
  const wasm = get_encoding('cl100k_base');
  try {
    const want = wasm.encode(text);
    assertSameIds(tok, tok.encode(text), want, 'first pass', 'tiktoken');
    assertSameIds(tok, tok.encode(text), want, 'second pass', 'tiktoken');
  } finally {
    wasm.free();
  }
});

test('allowedSpecial: all, a set, none (special text then encodes as plain text)', async () => {
  const texts = [
    '<|endoftext|>',
    'Hello<|endoftext|>world<|endofprompt|>',
    '<|fim_prefix|>a<|fim_middle|>b<|fim_suffix|>c<|endoftext|>',
    '  <|endoftext|>  x',
    '<|endoftext|><|endoftext|>\n',
  ];
  for (const { name } of ENCODINGS) {
    const tok = await tiktoken(name);
    const js = jsTiktoken(name);
    const specials = Object.keys(tok.specialTokens);
    for (const s of texts) {
      assert.deepEqual(tok.encode(s, { allowedSpecial: 'all' }), js.encode(s, 'all'), `${name} all ${s}`);
      assert.deepEqual(tok.encode(s), js.encode(s, [], []), `${name} default ${s}`);
      assert.deepEqual(tok.encode(s, { allowedSpecial: 'none' }), js.encode(s, [], []), `${name} none ${s}`);
      const one = new Set([specials[0]]);
      assert.deepEqual(tok.encode(s, { allowedSpecial: one }), js.encode(s, [...one], []), `${name} set ${s}`);
    }
  }
  const cl = await tiktoken('cl100k_base');
  assert.deepEqual(cl.encode('<|endoftext|>', { allowedSpecial: 'all' }), [100257]);
  assert.deepEqual(cl.encode('x<|endofprompt|>', { allowedSpecial: 'all' }), [87, 100276]);
  assert.throws(() => cl.encode('x', { allowedSpecial: new Set(['<|nope|>']) }), (e: unknown) => e instanceof LlmError && /<\|nope\|>/.test(e.message));
  assert.equal(cl.decode([100257]), '<|endoftext|>');
  assert.deepEqual([...cl.tokenBytes(100257)], [...Buffer.from('<|endoftext|>')]);
});

test('GGUF gpt-2 vocabulary: every llama.cpp test vector (no BOS, specials as text)', (t) => {
  if (ggufPath === null) return t.skip('shared/data/gguf-vocab/ggml-vocab-gpt-2.gguf not found');
  const tok = readGgufBpe(ggufPath);
  assert.equal(tok.vocabSize, 50257);
  assert.equal(tok.bosId, undefined); // llama.cpp adds no BOS for 'gpt2' vocabularies unless add_bos_token says so
  assert.equal(tok.eosId, 50256);
  assert.deepEqual(tok.specialTokens, { '<|endoftext|>': 50256 });
  const { inputs, expected } = readLlamaCppVectors(ggufPath);
  assert.equal(inputs.length, 46);
  let tokens = 0;
  inputs.forEach((s, i) => {
    const got = tok.encode(s);
    assertSameIds(tok, got, expected[i], `case ${i} ${JSON.stringify(s.slice(0, 60))}`, 'llama.cpp');
    assert.equal(tok.decode(got), s, `round trip of case ${i}`);
    tokens += got.length;
  });
  assert.deepEqual(tok.encode('Hello world'), [15496, 995]);
  t.diagnostic(`${inputs.length} cases, ${tokens} tokens identical`);
});

test('GGUF gpt-2 (merge list) agrees with r50k_base (tiktoken ranks) on all inputs', async (t) => {
  if (ggufPath === null) return t.skip('shared/data/gguf-vocab/ggml-vocab-gpt-2.gguf not found');
  const gguf = readGgufBpe(ggufPath);
  const r50k = await tiktoken('r50k_base');
  const texts = [...cases, ...readLlamaCppVectors(ggufPath).inputs];
  if (shakespearePath) texts.push(readFileSync(shakespearePath, 'utf8'));
  for (const s of texts) assertSameIds(gguf, gguf.encode(s), r50k.encode(s), JSON.stringify(s.slice(0, 60)), 'r50k_base');
});

test('decode(encode(s)) == s, and streaming decode equals decode for every prefix', async () => {
  const toks: Tokenizer[] = [await tiktoken('cl100k_base'), await tiktoken('o200k_base'), await tiktoken('r50k_base')];
  if (ggufPath) toks.push(readGgufBpe(ggufPath));
  for (const tok of toks) {
    const label = (tok as BpeTokenizer).name;
    for (const s of cases) {
      const ids = tok.encode(s);
      assert.equal(tok.decode(ids), wellFormed(s), `${label} round trip of ${JSON.stringify(s.slice(0, 60))}`);
      // one stream: what it shows is always a prefix of the full text, and all of it in the end
      const full = tok.decode(ids);
      const d = new StreamDecoder(tok);
      let shown = '';
      for (const id of ids) {
        shown += d.push(id);
        assert.ok(full.startsWith(shown));
      }
      assert.equal(shown + d.flush(), full);
      // every prefix split: a stream fed ids[0..k) and flushed equals decode(ids[0..k))
      if (ids.length > 120) continue;
      for (let k = 0; k <= ids.length; k++) {
        const dk = new StreamDecoder(tok);
        let text = '';
        for (let i = 0; i < k; i++) text += dk.push(ids[i]);
        assert.equal(text + dk.flush(), tok.decode(ids.slice(0, k)), `prefix ${k} of ${JSON.stringify(s.slice(0, 40))}`);
      }
    }
  }
});

test('toJSON / tokenizerFromJSON round trip gives identical ids (tiktoken ranks and merge list)', async (t) => {
  const sample = shakespearePath ? readFileSync(shakespearePath, 'utf8').slice(0, 100_000) : 'no data';
  const texts = [...cases, sample];
  const toks: BpeTokenizer[] = [await tiktoken('cl100k_base'), await tiktoken('o200k_base')];
  if (ggufPath) toks.push(readGgufBpe(ggufPath));
  for (const tok of toks) {
    const json = JSON.stringify(tok.toJSON());
    const back = tokenizerFromJSON(JSON.parse(json));
    assert.ok(back instanceof BpeTokenizer);
    assert.equal(back.kind, 'bpe');
    assert.equal(back.vocabSize, tok.vocabSize);
    assert.deepEqual(back.specialTokens, tok.specialTokens);
    assert.equal(back.bosId, tok.bosId);
    assert.equal(back.eosId, tok.eosId);
    for (const s of texts) {
      assert.deepEqual(back.encode(s, { allowedSpecial: 'all' }), tok.encode(s, { allowedSpecial: 'all' }));
    }
    for (let id = 0; id < tok.vocabSize; id += 97) assert.deepEqual(back.tokenBytes(id), tok.tokenBytes(id));
    assert.ok(json.length < tok.vocabSize * 24, `JSON is compact (${json.length} characters)`);
    t.diagnostic(`${tok.name}: toJSON is ${(json.length / 1e6).toFixed(2)} MB`);
  }
});

test('saveTiktoken writes the rank file back byte for byte; readTiktoken reads it', async () => {
  for (const { name } of ENCODINGS) {
    const tok = await tiktoken(name);
    const path = join(dir, 'saved', `${name}.tiktoken`);
    saveTiktoken(path, tok);
    assert.equal(readFileSync(path, 'latin1'), jsTiktokenRankText(name));
    const again = readTiktoken(path);
    assert.deepEqual(again.encode('Hello, world! <|endoftext|>', { allowedSpecial: 'all' }), tok.encode('Hello, world! <|endoftext|>', { allowedSpecial: 'all' }));
  }
  if (ggufPath) {
    assert.throws(() => tiktokenRanksText(readGgufBpe(ggufPath)), LlmError); // a merge list is not a rank file
  }
});

test('loadTiktoken resolves names through the cache ($LLMTS_CACHE/tokenizers) and fails clearly offline', async () => {
  const cache = join(dir, 'cache');
  mkdirSync(join(cache, 'tokenizers'), { recursive: true });
  writeJsTiktokenRankFile('cl100k_base', join(cache, 'tokenizers'));
  const saved = process.env.LLMTS_CACHE;
  const savedFetch = globalThis.fetch;
  try {
    process.env.LLMTS_CACHE = cache;
    const tok = await loadTiktoken('cl100k_base');
    assert.equal(tok.name, 'cl100k_base');
    assert.deepEqual(tok.encode('hello world'), [15339, 1917]);
    // not cached, no network: a one-line LlmError naming the URL and what to do
    globalThis.fetch = (() => Promise.reject(new TypeError('fetch failed', { cause: new Error('getaddrinfo ENOTFOUND') }))) as typeof fetch;
    await assert.rejects(loadTiktoken('o200k_base'), (e: unknown) => {
      assert.ok(e instanceof LlmError);
      assert.match(e.message, /o200k_base/);
      assert.match(e.message, /openaipublic\.blob\.core\.windows\.net\/encodings\/o200k_base\.tiktoken/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
    await assert.rejects(loadTiktoken('gpt2', { cacheDir: join(dir, 'empty') }), LlmError); // gpt2 = r50k_base
  } finally {
    globalThis.fetch = savedFetch;
    if (saved === undefined) delete process.env.LLMTS_CACHE;
    else process.env.LLMTS_CACHE = saved;
  }
  await assert.rejects(loadTiktoken(join(dir, 'nope.tiktoken')), LlmError);
  await assert.rejects(loadTiktoken('cl100k_bass'), (e: unknown) => e instanceof LlmError && /cl100k_base/.test(e.message));
  // a rank file of unknown name needs its pattern
  const odd = join(dir, 'odd');
  mkdirSync(odd, { recursive: true });
  const renamed = join(odd, 'mine.tiktoken');
  saveTiktoken(renamed, await tiktoken('r50k_base'));
  assert.throws(() => readTiktoken(renamed), LlmError);
  const mine = readTiktoken(renamed, { pattern: 'gpt2', specialTokens: { '<|endoftext|>': 50256 } });
  assert.deepEqual(mine.encode('Hello world'), [15496, 995]);
});

test('decode never throws; tokenBytes checks its id; malformed inputs are LlmErrors', async () => {
  const tok = await tiktoken('cl100k_base');
  assert.equal(tok.decode([-1, 1e9, 1.5, NaN, 100256]), '\ufffd'.repeat(5)); // 100256 is an unused id
  const euro = tok.encode('€'); // 3 bytes, one or more tokens
  assert.equal(tok.decode(euro), '€');
  const bytesOnly = [...Buffer.from('€')].map((b) => tok.tokenId(Uint8Array.of(b)));
  assert.equal(tok.decode(bytesOnly.slice(0, 2)), '\ufffd');
  assert.throws(() => tok.tokenBytes(-1), LlmError);
  assert.throws(() => tok.tokenBytes(tok.vocabSize), LlmError);
  assert.throws(() => tok.tokenBytes(0.5), LlmError);
  assert.deepEqual([...tok.tokenBytes(100256)], [0xef, 0xbf, 0xbd]);
  assert.throws(() => tokenizerFromJSON({ kind: 'bpe', pattern: 'gpt2' }), LlmError);
  assert.throws(() => tokenizerFromJSON({ kind: 'bpe', pattern: 'gpt2', tokens: ['YQ=='] }), LlmError); // not all 256 bytes
  const bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
  assert.throws(() => new BpeTokenizer({ tokens: bytes, pattern: '(' }), (e: unknown) => e instanceof LlmError && /split pattern/.test(e.message));
  assert.throws(() => new BpeTokenizer({ tokens: bytes, pattern: 'gpt2', specialTokens: { '<|x|>': 65 } }), LlmError); // id of 'A'
});

test('a merge list ranks pairs: only listed pairs merge, in list order', () => {
  const tokens: Uint8Array[] = [];
  for (let b = 0; b < 256; b++) tokens.push(Uint8Array.of(b));
  const id = (s: string): number => tokens.push(Buffer.from(s)) - 1;
  const a = 97;
  const b = 98;
  const c = 99;
  const bc = id('bc');
  const abc = id('abc');
  const ab = id('ab');
  // 'ab' is a token but not a merge result here; tiktoken ranks would merge a+b first (id 258 < ...)
  const merges: [number, number][] = [[b, c], [a, bc]];
  const tok = new BpeTokenizer({ tokens, merges, pattern: 'gpt2' });
  assert.deepEqual(tok.encode('abc'), [abc]);
  assert.deepEqual(tok.encode('ab'), [a, b]); // (a, b) is no merge
  assert.deepEqual(tok.encode('abcbc'), [abc, bc]);
  const ranked = new BpeTokenizer({ tokens, pattern: 'gpt2' }); // tiktoken semantics: bc (256) < abc (257) < ab (258)
  assert.deepEqual(ranked.encode('ab'), [ab]);
  assert.deepEqual(ranked.encode('abc'), [abc]);
  const back = tokenizerFromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
  assert.deepEqual(back.encode('ab abc abcbc'), tok.encode('ab abc abcbc'));
  assert.throws(() => new BpeTokenizer({ tokens, merges: [[a, c]], pattern: 'gpt2' }), LlmError); // 'ac' is no token
});

test('GGUF: unknown pre-tokenizer or model is an LlmError', () => {
  const fake = (meta: Record<string, unknown>): Gguf => ({
    path: 'fake.gguf',
    version: 3,
    metadata: new Map(Object.entries(meta)) as Gguf['metadata'],
    tensors: [],
    alignment: 32,
    dataOffset: 0,
    fileSize: 0,
  });
  assert.throws(() => bpeFromGguf(fake({ 'tokenizer.ggml.model': 'llama' })), (e: unknown) => e instanceof LlmError && /not 'gpt2'/.test(e.message));
  assert.throws(
    () => bpeFromGguf(fake({ 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'mystery', 'tokenizer.ggml.tokens': ['a'], 'tokenizer.ggml.merges': [] })),
    (e: unknown) => e instanceof LlmError && /mystery/.test(e.message),
  );
});

test('the fixture file parses into the expected cases', () => {
  const fixture = adversarialFixture();
  assert.ok(fixture.length > 100);
  assert.ok(fixture.includes(''));
  assert.ok(fixture.includes('line1\r\nline2\r\n\r\nline4\r\n'));
  assert.ok(fixture.includes('12345678901234567890'));
  assert.ok(fixture.some((s) => s.includes('\u200d')));
});
