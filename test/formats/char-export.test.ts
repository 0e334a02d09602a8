/**
 * The README's char model travels: a char tokenizer goes into GGUF (a 'llama' vocabulary of
 * single characters, tokenizer/gguf-char.ts) and into a Hugging Face tokenizer.json (BPE over the
 * characters, no merges, Fuse decoder, tokenizer/hf-char.ts), and comes back from each as the same
 * CharTokenizer; Python's `gguf` and `tokenizers` decode our ids to our text (checked against the
 * committed fixture, so this test needs no Python); llama.cpp does too (node-llama-cpp, optional);
 * `llmts convert` of a char run to gguf and hf works without flags, and `llmts run` on each gives
 * the run's greedy text.
 *
 * Making the fixture again (after a change to either export form; needs Python with gguf and
 * tokenizers, e.g. `pip install gguf tokenizers`):
 *   npm run build
 *   LLMTS_CHAR_EXPORT_OUT=/tmp/char-export node --test dist/test/formats/char-export.test.js
 *   python scripts/check_char_export.py /tmp/char-export/model.gguf /tmp/char-export/hf \
 *     /tmp/char-export/cases.json --write test/fixtures/char-export/python.json
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGguf } from '../../src/formats/gguf.js';
import { exportGgufModel, importGgufModel, tokenizerFromGguf, tokenizerGgufMetadata } from '../../src/formats/gguf-model.js';
import { writeGguf } from '../../src/formats/gguf-write.js';
import { exportHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { generateCached } from '../../src/generate/generate.js';
import { Transformer } from '../../src/model/transformer.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { charFromHfTokenizerJson, charTokenizerJson, charTokenizerJsonString } from '../../src/tokenizer/hf-char.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { hfTokenizerJsonString } from '../../src/tokenizer/bpe-save.js';
import { SPLIT_PATTERNS } from '../../src/tokenizer/pretokenize.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { writeFileAtomic } from '../../src/util/atomic-write.js';
import { runCli } from '../helpers/cli.js';
import { scaledModel, tinyGpt2 } from '../helpers/tiny-model.js';
import { tinySentencePiece } from '../helpers/tiny-sentencepiece.js';
import { trainingText } from '../helpers/tiny-run.js';
import { tmpDir } from '../helpers/tmp.js';
import { importNodeLlamaCpp, llamaCppGreedy, NODE_LLAMA_CPP_SKIP, nodeLlamaCppEntry } from '../helpers/node-llama-cpp.js';

const dir = tmpDir('char-export');

/**
 * The characters of the exported vocabulary: spaces, newlines, CR, tab, Latin-1, a 3-byte and a
 * 4-byte character, and "some test text here", which node-llama-cpp tokenizes when it loads a model
 * (llama.cpp aborts on a character outside an SPM vocabulary without byte pieces).
 */
const TEXT = 'some test text here\nFirst Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n'
  + 'Ünïcödé — café 😀\ttab  two spaces\r\n';
const CASES = [TEXT, ' spaces: lead, trail  ', '\n\n', '😀é—', 'First Citizen:', ''];

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/char-export/python.json', import.meta.url)); // from dist/test/formats/

function assertSameChars(got: Tokenizer | null, want: CharTokenizer): void {
  assert.ok(got, 'no tokenizer read back');
  assert.equal(got.kind, 'char');
  assert.deepEqual((got as CharTokenizer).chars, want.chars);
  for (const text of CASES) {
    assert.deepEqual(got.encode(text), want.encode(text), JSON.stringify(text));
    assert.equal(got.decode(want.encode(text)), text);
  }
}

/** A vocabulary-only GGUF file holding `tok` (padded to vocabSize). */
function vocabGguf(name: string, tok: Tokenizer, vocabSize = tok.vocabSize): string {
  const file = join(dir, name);
  writeGguf(file, { metadata: tokenizerGgufMetadata(tok, vocabSize), tensors: [] });
  return file;
}

/** sha256 of the tokenizer.* metadata of a GGUF file, in key order (arrays as plain arrays). */
function ggufTokenizerDigest(file: string): string {
  const entries = [...readGguf(file).metadata]
    .filter(([k]) => k.startsWith('tokenizer.'))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as ArrayLike<number>) : v]);
  return createHash('sha256').update(JSON.stringify(entries)).digest('hex');
}

interface ExportSource {
  chars: string;
  ggufTokenizerSha256: string;
  tokenizerJsonSha256: string;
}

/**
 * A tiny GPT-2 with TEXT's char tokenizer exported to OUT/model.gguf and OUT/hf (as `llmts
 * convert` writes them), and OUT/cases.json: our ids of each case text, the input of
 * scripts/check_char_export.py.
 */
function exportCharModel(out: string): { tok: CharTokenizer; model: Transformer; gguf: string; hf: string; source: ExportSource } {
  const tok = CharTokenizer.fromText(TEXT);
  const cfg = tinyGpt2({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
  const model = scaledModel(cfg, { seed: 5, gain: 4 });
  mkdirSync(out, { recursive: true });
  const gguf = join(out, 'model.gguf');
  exportGgufModel(gguf, cfg, model.params, { tokenizer: tok });
  const hf = join(out, 'hf');
  exportHfCheckpoint(hf, cfg, model.params);
  writeFileAtomic(join(hf, 'tokenizer.json'), charTokenizerJsonString(tok));
  const source: ExportSource = {
    chars: tok.chars.join(''),
    ggufTokenizerSha256: ggufTokenizerDigest(gguf),
    tokenizerJsonSha256: createHash('sha256').update(readFileSync(join(hf, 'tokenizer.json'))).digest('hex'),
  };
  const cases = CASES.map((text) => ({ text, ids: tok.encode(text) }));
  writeFileSync(join(out, 'cases.json'), JSON.stringify({ source, cases }, null, 1) + '\n');
  return { tok, model, gguf, hf, source };
}

describe('char tokenizer in GGUF', () => {
  const tok = CharTokenizer.fromText(TEXT);

  it('is a llama vocabulary of NORMAL single-character pieces, space as ▁, no BOS and no space prefix', () => {
    const g = readGguf(vocabGguf('plain.gguf', tok));
    const md = g.metadata;
    assert.equal(md.get('tokenizer.ggml.model'), 'llama');
    assert.deepEqual(md.get('tokenizer.ggml.tokens'), tok.chars.map((c) => (c === ' ' ? '▁' : c)));
    assert.deepEqual([...(md.get('tokenizer.ggml.token_type') as Int32Array)], tok.chars.map(() => 1));
    assert.deepEqual([...(md.get('tokenizer.ggml.scores') as Float32Array)], tok.chars.map(() => 0));
    for (const k of ['add_bos_token', 'add_eos_token', 'add_space_prefix', 'remove_extra_whitespaces']) assert.equal(md.get(`tokenizer.ggml.${k}`), false, k);
    assert.equal(md.has('tokenizer.ggml.eos_token_id'), false, 'no spare id for an eos');
  });

  it('reads back as the same CharTokenizer (tokenizerFromGguf, loadTokenizer)', async () => {
    const file = vocabGguf('roundtrip.gguf', tok);
    assertSameChars(tokenizerFromGguf(readGguf(file)), tok);
    assertSameChars(await loadTokenizer(file), tok);
  });

  it('pads a larger model vocabulary with UNUSED pieces, which bos/eos point at, and reads back the characters', () => {
    const n = tok.vocabSize;
    const md = readGguf(vocabGguf('padded.gguf', tok, n + 3)).metadata;
    assert.deepEqual((md.get('tokenizer.ggml.tokens') as string[]).slice(n), [`[PAD${n}]`, `[PAD${n + 1}]`, `[PAD${n + 2}]`]);
    assert.deepEqual([...(md.get('tokenizer.ggml.token_type') as Int32Array)].slice(n - 1), [1, 5, 5, 5]);
    assert.equal(md.get('tokenizer.ggml.bos_token_id'), n);
    assert.equal(md.get('tokenizer.ggml.eos_token_id'), n);
    assertSameChars(tokenizerFromGguf(readGguf(join(dir, 'padded.gguf'))), tok);
  });

  it('refuses a vocabulary holding ▁ itself, which would read back as a space', () => {
    assert.throws(() => tokenizerGgufMetadata(CharTokenizer.fromText('a b▁'), 4), /holds '▁' \(U\+2581, id 3\).*--no-vocab/);
  });

  it('a SentencePiece vocabulary with other pieces still reads as SentencePiece', () => {
    const sp = tinySentencePiece(['▁', 'a', 'b', '▁a'], (_, i) => -i);
    assert.equal(tokenizerFromGguf(readGguf(vocabGguf('sp.gguf', sp)))?.kind, 'sentencepiece');
  });
});

describe('char tokenizer as a Hugging Face tokenizer.json', () => {
  const tok = CharTokenizer.fromText(TEXT);

  it('is BPE over the characters in id order, no merges, Fuse decoder', () => {
    const text = charTokenizerJsonString(tok);
    const json = JSON.parse(text) as { model: { type: string; vocab: Record<string, number>; merges: unknown[] }; decoder: unknown; pre_tokenizer: unknown };
    assert.equal(json.model.type, 'BPE');
    assert.deepEqual(json.model.merges, []);
    assert.deepEqual(json.decoder, { type: 'Fuse' });
    assert.equal(json.pre_tokenizer, null);
    assert.deepEqual(json, charTokenizerJson(tok));
    const keysInText = [...text.matchAll(/^ {6}("(?:[^"\\]|\\.)*"): (\d+),?$/gm)].map((m) => [JSON.parse(m[1]) as string, Number(m[2])]);
    assert.deepEqual(keysInText, tok.chars.map((c, i) => [c, i]), 'one entry a line, in id order');
  });

  it('reads back as the same CharTokenizer (a directory, the file)', async () => {
    const hf = join(dir, 'hf-tok');
    writeFileAtomic(join(hf, 'tokenizer.json'), charTokenizerJsonString(tok));
    assertSameChars(await loadTokenizer(hf), tok);
    assertSameChars(await loadTokenizer(join(hf, 'tokenizer.json')), tok);
  });

  it('other tokenizer.json files are not taken for one: no Fuse decoder, merges, or a byte-level BPE', async () => {
    const json = charTokenizerJson(tok);
    assert.equal(charFromHfTokenizerJson({ ...json, decoder: null }), null);
    assert.equal(charFromHfTokenizerJson({ ...json, model: { ...(json.model as object), merges: ['a b'] } }), null);
    assert.equal(charFromHfTokenizerJson({ ...json, pre_tokenizer: { type: 'ByteLevel' } }), null);
    const bpeDir = join(dir, 'bpe-tok');
    const bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    writeFileAtomic(join(bpeDir, 'tokenizer.json'), hfTokenizerJsonString({ regex: SPLIT_PATTERNS.gpt2, tokenBytes: bytes, merges: [], specialTokens: {} }));
    assert.equal((await loadTokenizer(bpeDir)).kind, 'bpe');
  });
});

describe('Python gguf / tokenizers decode our ids to our text (committed fixture)', () => {
  const out = process.env.LLMTS_CHAR_EXPORT_OUT ?? join(dir, 'export');
  const exp = exportCharModel(out);

  it('the fixture was made from this very export (else make it again: see the top of this file)', () => {
    const fixture = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { source: ExportSource };
    assert.deepEqual(fixture.source, exp.source, 'the GGUF or tokenizer.json char form changed: run scripts/check_char_export.py again (top of this file)');
  });

  it('each case: gguf decode, llama.cpp-style gguf encode, tokenizers decode and encode equal ours', () => {
    const fixture = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {
      results: { text: string; ids: number[]; gguf_decode: string; gguf_encode: number[] | null; hf_decode: string; hf_encode: number[] }[];
    };
    assert.deepEqual(fixture.results.map((r) => r.text), CASES);
    for (const r of fixture.results) {
      const ids = exp.tok.encode(r.text);
      const what = JSON.stringify(r.text);
      assert.deepEqual(r.ids, ids, what);
      assert.equal(r.gguf_decode, exp.tok.decode(ids), `gguf decode of ${what}`);
      assert.deepEqual(r.gguf_encode, ids, `gguf encode of ${what}`);
      assert.equal(r.hf_decode, exp.tok.decode(ids), `tokenizers decode of ${what}`);
      assert.deepEqual(r.hf_encode, ids, `tokenizers encode of ${what}`);
    }
  });

  it('the exported files load back in llm.ts with the same tokenizer and weights', async () => {
    const back = importGgufModel(exp.gguf);
    assertSameChars(back.tokenizer, exp.tok);
    assertSameChars(await loadTokenizer(exp.hf), exp.tok);
    const prompt = exp.tok.encode('First Citizen:');
    const greedy = (m: Transformer): number[] => [...generateCached(m, prompt, { maxTokens: 16, temperature: 0, topK: 0, seed: 1 })].map((t) => t.id);
    assert.deepEqual(greedy(new Transformer(back.config, back.params)), greedy(exp.model));
  });
});


describe('llama.cpp reads the char GGUF (node-llama-cpp, optional)', () => {
  const entry = nodeLlamaCppEntry();
  it('tokenizes and detokenizes as we do, and gives the same greedy tokens', { skip: entry ? false : NODE_LLAMA_CPP_SKIP }, async () => {
    const exp = exportCharModel(join(dir, 'llama-cpp'));
    const { getLlama } = await importNodeLlamaCpp(entry!);
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    const lm = await llama.loadModel({ modelPath: exp.gguf });
    try {
      for (const text of CASES) {
        const ids = exp.tok.encode(text);
        assert.deepEqual(lm.tokenize(text), ids, `llama.cpp tokenize ${JSON.stringify(text)}`);
        assert.equal(lm.detokenize(ids), text, `llama.cpp detokenize ${JSON.stringify(text)}`);
      }
      // no spare id for an eos: llama.cpp's default eos for a 'llama' vocabulary, id 2, ends generation
      assert.deepEqual(exp.tok.chars.map((_, id) => id).filter((id) => lm.isEogToken(id)), [2]);
      const prompt = exp.tok.encode('First Citizen:');
      const n = 16;
      const back = importGgufModel(exp.gguf);
      const ours: number[] = [];
      for (const t of generateCached(new Transformer(back.config, back.params), prompt, { maxTokens: n, temperature: 0, topK: 0, seed: 1 })) ours.push(t.id);
      const theirs = await llamaCppGreedy(lm, prompt, n);
      assert.deepEqual(theirs, ours);
    } finally {
      await lm.dispose();
    }
  });
});

describe('llmts convert / run of a char-tokenizer run', () => {
  it('converts to GGUF and Hugging Face without flags, and runs each to the run\'s greedy text', () => {
    const data = join(dir, 'data.txt');
    const text = trainingText(20_000);
    writeFileSync(data, text);
    const run = join(dir, 'run');
    const tiny = ['--max-iters', '2', '--n-layer', '1', '--n-embd', '16', '--n-head', '2', '--block-size', '16',
      '--batch-size', '4', '--eval-interval', '2', '--eval-iters', '1', '--final-eval-iters', '1', '--sample-tokens', '0'];
    let r = runCli(['train', '--data', data, '--out', run, ...tiny]);
    assert.equal(r.code, 0, r.stderr);
    const gguf = join(dir, 'run.gguf');
    r = runCli(['convert', run, '--to', 'gguf', '--out', gguf]);
    assert.equal(r.code, 0, r.stderr);
    const hf = join(dir, 'run-hf');
    r = runCli(['convert', run, '--to', 'hf', '--out', hf]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tokenizer\.json/);
    assert.ok(existsSync(join(hf, 'tokenizer.json')));
    const prompt = text.slice(0, 6);
    const outputs = [run, gguf, hf].map((model) => {
      const o = runCli(['run', model, '-p', prompt, '--temperature', '0', '--max-tokens', '20']);
      assert.equal(o.code, 0, `${model}: ${o.stderr}`);
      return o.stdout;
    });
    assert.ok(outputs[0].length > prompt.length, outputs[0]);
    assert.equal(outputs[1], outputs[0], 'GGUF');
    assert.equal(outputs[2], outputs[0], 'Hugging Face');
  });
});
