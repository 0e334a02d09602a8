import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bpeTokenizerFromTrained, trainBpe, type TrainedBpe } from '../../src/tokenizer/bpe-train.js';
import { hfTokenizerJsonString, tiktokenRanksString } from '../../src/tokenizer/bpe-save.js';
import { CHAR_TO_BYTE } from '../../src/tokenizer/bytes-to-unicode.js';
import { preTokenize, type SplitPattern } from '../../src/tokenizer/pretokenize.js';
import { LlmError } from '../../src/util/errors.js';
import { sharedDataPath } from '../helpers/shared-data.js';

/**
 * Reference encoder: split with the pattern, then in every chunk apply the merges one after
 * another in the order they were learned (minbpe's training-order semantics, written plainly).
 */
function referenceEncode(bpe: TrainedBpe, text: string): number[] {
  const out: number[] = [];
  for (const chunk of preTokenize(text, bpe.pattern)) {
    let ids = [...Buffer.from(chunk, 'utf8')];
    for (const { pair: [a, b], id } of bpe.merges) {
      if (ids.length < 2) break;
      const next: number[] = [];
      for (let i = 0; i < ids.length; ) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          next.push(id);
          i += 2;
        } else next.push(ids[i++]);
      }
      ids = next;
    }
    out.push(...ids);
  }
  return out;
}

function referenceDecode(bpe: TrainedBpe, ids: number[]): string {
  return Buffer.concat(ids.map((id) => bpe.tokenBytes[id])).toString('utf8');
}

/** Naive trainer: full recount per merge, most frequent pair, ties to the smallest (a, b). */
function naiveMerges(text: string, vocabSize: number, pattern: SplitPattern): Array<[number, number]> {
  let chunks = preTokenize(text, pattern).map((c) => [...Buffer.from(c, 'utf8')]);
  const merges: Array<[number, number]> = [];
  for (let id = 256; id < vocabSize; id++) {
    const counts = new Map<string, number>();
    for (const c of chunks) for (let i = 0; i + 1 < c.length; i++) counts.set(`${c[i]},${c[i + 1]}`, (counts.get(`${c[i]},${c[i + 1]}`) ?? 0) + 1);
    let best: [number, number] | null = null;
    let bestCount = 0;
    for (const [k, n] of counts) {
      const [a, b] = k.split(',').map(Number);
      if (n > bestCount || (n === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestCount = n;
      }
    }
    if (!best) break;
    merges.push(best);
    const [a, b] = best;
    chunks = chunks.map((c) => {
      const next: number[] = [];
      for (let i = 0; i < c.length; ) {
        if (i + 1 < c.length && c[i] === a && c[i + 1] === b) {
          next.push(id);
          i += 2;
        } else next.push(c[i++]);
      }
      return next;
    });
  }
  return merges;
}

function shakespeare(t: { skip: (m: string) => void }): string | null {
  const p = sharedDataPath('tinyshakespeare/input.txt');
  if (p === null) {
    t.skip('shared data not available (tinyshakespeare/input.txt)');
    return null;
  }
  return readFileSync(p, 'utf8');
}

test('first merges on a small text match the hand-computed ones (ties: smallest pair of ids)', () => {
  // 'aaabdaaabac' is one chunk. Pair counts: aa 4 (overlapping pairs count), ab 2, others 1.
  //   1. (a,a)=256 x4   -> [aa a b d aa a b a c]
  //   2. tie (aa,a) 2 vs (a,b) 2: smaller first id 97 wins -> (a,b)=257 -> [aa ab d aa ab a c]
  //   3. (aa,ab)=258 x2 -> [aab d aab a c]
  //   4. all pairs once; the smallest first id is a=97: (a,c)=259
  //   5. pairs (258,100) (100,258) (258,259): smallest first id is d=100: (d,aab)=260
  const bpe = trainBpe('aaabdaaabac', { vocabSize: 261, pattern: 'gpt2' });
  assert.deepEqual(bpe.merges.map((m) => [...m.pair, m.id, m.count]), [
    [97, 97, 256, 4],
    [97, 98, 257, 2],
    [256, 257, 258, 2],
    [97, 99, 259, 1],
    [100, 258, 260, 1],
  ]);
  assert.equal(Buffer.from(bpe.tokenBytes[260]).toString(), 'daaab');
  assert.equal(bpe.vocabSize, 261);
  assert.equal(bpe.stats.stoppedEarly, undefined);
  assert.deepEqual(referenceEncode(bpe, 'aaabdaaabac'), [258, 260, 259]);
  assert.equal(referenceDecode(bpe, referenceEncode(bpe, 'aaabdaaabac')), 'aaabdaaabac');
});

test('merges never cross chunk boundaries and follow the pattern', () => {
  // gpt2 splits "ab ab" into 'ab', ' ab': the pair ('b', ' ') never occurs
  const bpe = trainBpe('ab ab ab', { vocabSize: 300, pattern: 'gpt2' });
  for (const m of bpe.merges) assert.notDeepEqual(m.pair, [98, 32]);
  assert.deepEqual(bpe.merges[0].pair, [97, 98]);
  assert.equal(bpe.pattern, 'gpt2');
  assert.match(bpe.stats.stoppedEarly ?? '', /no adjacent pair is left/);
});

test('incremental counting gives exactly the merges of a naive full-recount trainer', (t) => {
  const full = shakespeare(t);
  const text = full ? full.slice(0, 12_000) : 'the quick brown fox jumps over the lazy dog; '.repeat(200) + 'aaaa bbbb abab baba\n'.repeat(50);
  for (const pattern of ['gpt2', 'cl100k'] as const) {
    const bpe = trainBpe(text, { vocabSize: 400, pattern });
    assert.deepEqual(bpe.merges.map((m) => m.pair), naiveMerges(text, 256 + bpe.merges.length, pattern), pattern);
    bpe.merges.forEach((m, i) => assert.equal(m.id, 256 + i));
  }
});

test('trains a 4096-token vocabulary on Tiny Shakespeare quickly; encode round-trips and compresses', (t) => {
  const text = shakespeare(t);
  if (text === null) return;
  const t0 = performance.now();
  const bpe = trainBpe(text, { vocabSize: 4096, pattern: 'gpt2', specialTokens: ['<|endoftext|>'] });
  const seconds = (performance.now() - t0) / 1000;
  t.diagnostic(`trained 4096 tokens on ${bpe.stats.textBytes} bytes (${bpe.stats.uniqueChunks} distinct chunks) in ${seconds.toFixed(2)} s`);
  assert.ok(seconds < 30, `training took ${seconds.toFixed(1)} s`);
  assert.equal(bpe.vocabSize, 4096);
  assert.equal(bpe.tokenBytes.length, 4095);
  assert.deepEqual(bpe.specialTokens, { '<|endoftext|>': 4095 });
  // distinct token bytes (needed by tiktoken and tokenizer.json)
  assert.equal(new Set(bpe.tokenBytes.map((b) => Buffer.from(b).toString('latin1'))).size, bpe.tokenBytes.length);
  // counts never increase from one merge to the next
  for (let i = 1; i < bpe.merges.length; i++) assert.ok(bpe.merges[i].count <= bpe.merges[i - 1].count);

  const sample = text.slice(0, 30_000);
  const ids = referenceEncode(bpe, sample);
  assert.equal(referenceDecode(bpe, ids), sample);
  const bytes = Buffer.byteLength(sample);
  t.diagnostic(`${bytes} bytes -> ${ids.length} tokens (${(bytes / ids.length).toFixed(2)} bytes/token)`);
  assert.ok(ids.length < bytes / 2.5, `only ${(bytes / ids.length).toFixed(2)} bytes per token`);

  // the library encoder built from the result: merge-list mode gives the reference ids,
  // tiktoken-rank mode round-trips with about as many tokens
  const tok = bpeTokenizerFromTrained(bpe);
  assert.equal(tok.vocabSize, 4096);
  assert.deepEqual(tok.encode(sample), ids);
  assert.equal(tok.decode(ids), sample);
  assert.deepEqual(tok.encode('<|endoftext|>', { allowedSpecial: 'all' }), [4095]);
  const ranked = bpeTokenizerFromTrained(bpe, { ranks: true });
  const rankedIds = ranked.encode(text);
  assert.equal(ranked.decode(rankedIds), text);
  const mergedIds = tok.encode(text);
  t.diagnostic(`whole text: ${mergedIds.length} tokens by merge list, ${rankedIds.length} by tiktoken ranks`);
  assert.ok(Math.abs(rankedIds.length - mergedIds.length) < mergedIds.length * 0.01);
});

test('training is deterministic', (t) => {
  const full = shakespeare(t);
  const text = full ? full.slice(0, 200_000) : 'to be or not to be, that is the question\n'.repeat(100);
  const a = trainBpe(text, { vocabSize: 1000, pattern: 'cl100k' });
  const b = trainBpe(text, { vocabSize: 1000, pattern: 'cl100k' });
  assert.deepEqual(a.merges, b.merges);
  assert.equal(tiktokenRanksString(a), tiktokenRanksString(b));
  assert.equal(hfTokenizerJsonString(a), hfTokenizerJsonString(b));
});

test('minFrequency stops training when the best pair is rarer', () => {
  const text = 'hello hello hello world';
  const all = trainBpe(text, { vocabSize: 300, pattern: 'gpt2' });
  const some = trainBpe(text, { vocabSize: 300, pattern: 'gpt2', minFrequency: 2 });
  assert.ok(some.merges.length > 0);
  assert.ok(some.merges.length < all.merges.length);
  for (const m of some.merges) assert.ok(m.count >= 2);
  assert.deepEqual(some.merges, all.merges.slice(0, some.merges.length));
  assert.match(some.stats.stoppedEarly ?? '', /fewer than min frequency 2/);
  assert.equal(some.vocabSize, 256 + some.merges.length);
});

test('special tokens get the ids after the merges and take no part in training', () => {
  const text = 'abc<|endoftext|>abc<|endoftext|>abc<|endoftext|><|pad|>';
  const bpe = trainBpe(text, { vocabSize: 260, pattern: 'gpt2', specialTokens: ['<|endoftext|>', '<|pad|>'] });
  assert.deepEqual(bpe.merges.map((m) => m.pair), [[97, 98], [256, 99]]); // 'ab', 'abc'
  assert.deepEqual(bpe.specialTokens, { '<|endoftext|>': 258, '<|pad|>': 259 });
  assert.equal(bpe.vocabSize, 260);
  // no token learned from the special text
  for (const b of bpe.tokenBytes) assert.ok(!/[<|>]/.test(Buffer.from(b).toString('latin1')) || b.length === 1);
  const hf = JSON.parse(hfTokenizerJsonString(bpe));
  assert.deepEqual(hf.added_tokens.map((x: { id: number; content: string }) => [x.id, x.content]), [[258, '<|endoftext|>'], [259, '<|pad|>']]);
});

test('option errors are LlmErrors', () => {
  assert.throws(() => trainBpe('abc', { vocabSize: 255 }), (e: unknown) => e instanceof LlmError && /vocab size 255/.test(e.message));
  assert.throws(() => trainBpe('abc', { vocabSize: 256, specialTokens: ['<s>'] }), /from 257/);
  assert.throws(() => trainBpe('abc', { vocabSize: 300, minFrequency: 0 }), LlmError);
  assert.throws(() => trainBpe('abc', { vocabSize: 300, pattern: 'bert' as SplitPattern }), /unknown split pattern 'bert'/);
  assert.throws(() => trainBpe('abc', { vocabSize: 300, specialTokens: ['x', 'x'] }), /listed twice/);
});

test('tokenizer.json and tiktoken files describe the same vocabulary', () => {
  const text = 'Hello world! Hello there, world.\n\tTabs and\nnewlines ünïcödé 123456\n'.repeat(20);
  const bpe = trainBpe(text, { vocabSize: 320, pattern: 'cl100k', specialTokens: ['<|endoftext|>'] });
  const hf = JSON.parse(hfTokenizerJsonString(bpe));
  assert.equal(hf.model.type, 'BPE');
  assert.equal(hf.model.byte_fallback, false);
  assert.equal(hf.pre_tokenizer.pretokenizers[0].pattern.Regex, bpe.regex);
  assert.equal(hf.pre_tokenizer.pretokenizers[1].use_regex, false);
  assert.equal(hf.decoder.type, 'ByteLevel');
  assert.equal(Object.keys(hf.model.vocab).length, bpe.vocabSize);
  assert.equal(hf.model.merges.length, bpe.merges.length);
  const textToBytes = (s: string): number[] => [...s].map((c) => CHAR_TO_BYTE.get(c)!);
  for (const [tokenText, id] of Object.entries(hf.model.vocab as Record<string, number>)) {
    if (id >= bpe.tokenBytes.length) {
      assert.equal(bpe.specialTokens[tokenText], id);
      continue;
    }
    assert.deepEqual(textToBytes(tokenText), [...bpe.tokenBytes[id]]);
  }
  hf.model.merges.forEach((m: string, i: number) => {
    const [l, r] = m.split(' ');
    assert.deepEqual([hf.model.vocab[l], hf.model.vocab[r]], bpe.merges[i].pair);
    assert.equal(hf.model.vocab[l + r], bpe.merges[i].id);
  });
  const lines = tiktokenRanksString(bpe).trimEnd().split('\n');
  assert.equal(lines.length, bpe.tokenBytes.length);
  lines.forEach((line, rank) => {
    const [b64, r] = line.split(' ');
    assert.equal(Number(r), rank);
    assert.deepEqual([...Buffer.from(b64, 'base64')], [...bpe.tokenBytes[rank]]);
  });
});
