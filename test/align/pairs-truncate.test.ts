/**
 * renderPreferencePairs with truncatePrompt: a pair longer than maxLength keeps its answers whole
 * and the most recent end of its prompt (the same tokens on both sides, a BOS kept) instead of
 * being left out; a pair whose answer alone does not fit is still left out.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { renderPreferencePairs, type RenderedAnswer } from '../../src/align/pairs.js';
import { chatTemplate } from '../../src/chat/index.js';
import type { PreferenceExample } from '../../src/data/preference-examples.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';

const tok = CharTokenizer.fromText('QA: \nabcdefghijklmnopqrstuvwxyz0123456789.,');
const qa = chatTemplate('qa');
const long: PreferenceExample = {
  prompt: [{ role: 'user', content: 'first question' }, { role: 'assistant', content: 'first answer' }, { role: 'user', content: 'now the second one' }],
  chosen: 'yes.', rejected: 'no, never.',
};
const short: PreferenceExample = { prompt: [{ role: 'user', content: 'hi' }], chosen: 'a', rejected: 'b' };

const text = (r: RenderedAnswer): string => tok.decode([...r.ids]);
const answer = (r: RenderedAnswer): string => tok.decode([...r.ids].filter((_, i) => r.answerMask[i] === 1));

describe('renderPreferencePairs --truncate-prompt', () => {
  const full = renderPreferencePairs([long, short], [1, 2], tok, qa, { maxLength: 1000 }).pairs[0];
  const n = full.rejected.ids.length; // the longer side
  const maxLength = n - 20;

  it('without it the long pair is left out; with it the pair is kept, cut from the left to maxLength', () => {
    const off = renderPreferencePairs([long, short], [1, 2], tok, qa, { maxLength });
    assert.deepEqual(off.tooLong, [1]);
    assert.equal(off.pairs.length, 1);
    const on = renderPreferencePairs([long, short], [1, 2], tok, qa, { maxLength, truncatePrompt: true });
    assert.deepEqual(on.tooLong, []);
    assert.deepEqual(on.truncated, [1]);
    const [pair, untouched] = on.pairs;
    assert.equal(pair.rejected.ids.length, maxLength);
    assert.equal(pair.chosen.ids.length, full.chosen.ids.length - 20);
    for (const side of ['chosen', 'rejected'] as const) {
      assert.ok(text(full[side]).endsWith(text(pair[side])), `${side} keeps the end of its rendering`);
      assert.equal(answer(pair[side]), answer(full[side]), `${side} answer whole`);
    }
    const prompt = (r: RenderedAnswer): string => tok.decode([...r.ids].filter((_, i) => r.answerMask[i] === 0));
    assert.equal(prompt(pair.chosen), prompt(pair.rejected), 'both sides keep the same prompt tokens');
    assert.deepEqual(untouched, renderPreferencePairs([short], [2], tok, qa, { maxLength }).pairs[0]);
  });

  it('keeps a leading BOS (llama2 template); leaves out a pair whose answer alone is too long', () => {
    const chars = CharTokenizer.fromText('[INST]<<SYS>>/ \nabcdefghijklmnopqrstuvwxyz0123456789.,');
    const BOS = chars.vocabSize, EOS = chars.vocabSize + 1;
    const withBos = { encode: chars.encode.bind(chars), specialTokens: undefined, bosId: BOS, eosId: EOS };
    const llama2 = chatTemplate('llama2');
    const whole = renderPreferencePairs([long], [1], withBos, llama2, { maxLength: 1000 }).pairs[0];
    assert.equal(whole.chosen.ids[0], BOS);
    const m = whole.rejected.ids.length - 15;
    const cut = renderPreferencePairs([long], [1], withBos, llama2, { maxLength: m, truncatePrompt: true }).pairs[0];
    assert.equal(cut.rejected.ids.length, m);
    for (const side of ['chosen', 'rejected'] as const) {
      assert.equal(cut[side].ids[0], BOS);
      assert.deepEqual([...cut[side].ids.subarray(1)], [...whole[side].ids.subarray(16)]);
      assert.deepEqual([...cut[side].answerMask.subarray(1)], [...whole[side].answerMask.subarray(16)]);
    }

    const answerLength = full.rejected.answerMask.reduce((s, v) => s + v, 0);
    const tight = renderPreferencePairs([long], [1], tok, qa, { maxLength: answerLength - 1, truncatePrompt: true });
    assert.deepEqual(tight.tooLong, [1]);
    const fits = renderPreferencePairs([long], [1], tok, qa, { maxLength: answerLength, truncatePrompt: true }).pairs[0];
    assert.equal(fits.rejected.ids.length, answerLength);
    assert.equal(answer(fits.rejected), answer(full.rejected));
  });
});
