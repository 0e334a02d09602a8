/**
 * Prompt caching in ChatSession: a chat that keeps its KV cache between turns gives exactly the
 * tokens and text of the same chat recomputing every prompt (greedy and seeded sampling, GPT-2
 * with a trained BPE and chatml, Llama with a char tokenizer and qa, Llama with a BPE and
 * llama2), prefills only what follows the common prefix, and still matches when turns are
 * dropped to fit the context, after /reset and /system, and after an aborted answer.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChatSession, type ChatReply, type ChatSessionOptions } from '../../src/generate/chat-session.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { bpeTokenizerFromTrained, trainBpe } from '../../src/tokenizer/bpe-train.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';

const CORPUS = 'hello there, how are you today? i am fine and you? tell me a story about the sea and the ship. '.repeat(4);

const makeModel = (cfg: ModelConfig): Transformer => scaledModel(cfg, { seed: 7, gain: 4 });

const sizes = { nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 64, blockSize: 256 };
const chatmlBpe = bpeTokenizerFromTrained(trainBpe(CORPUS, { vocabSize: 320, specialTokens: ['<|im_start|>', '<|im_end|>'] }));
const llama2Bpe = bpeTokenizerFromTrained(trainBpe(CORPUS, { vocabSize: 320, specialTokens: ['<s>', '</s>'] }));
const chars = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz ,.!?\nQA:');

interface Setup {
  name: string;
  model: Transformer;
  tokenizer: Tokenizer;
  template: 'chatml' | 'qa' | 'llama2';
}

const SETUPS: Setup[] = [
  {
    name: 'gpt2, BPE, chatml', tokenizer: chatmlBpe, template: 'chatml',
    model: makeModel(tinyGpt2({ ...sizes, vocabSize: chatmlBpe.vocabSize })),
  },
  {
    name: 'llama (GQA), char, qa', tokenizer: chars, template: 'qa',
    model: makeModel(tinyLlama({ ...sizes, vocabSize: chars.vocabSize, nHead: 4 })),
  },
  {
    name: 'llama, BPE, llama2', tokenizer: llama2Bpe, template: 'llama2',
    model: makeModel(tinyLlama({ ...sizes, vocabSize: llama2Bpe.vocabSize })),
  },
];

const MESSAGES = ['hello there', 'how are you today?', 'tell me a story', 'about the sea', 'and the ship?'];

interface Turn {
  text: string;
  ids: number[];
  finishReason: string | null;
  promptIds: readonly number[];
  /** the session's cached tokens before this turn was sent */
  cachedBefore: number[];
  reply: ChatReply;
}

type Step = string | ((chat: ChatSession) => void);

/** Run the steps (a message, or an action on the session) and record every answer. */
async function runChat(setup: Setup, opts: Omit<ChatSessionOptions, 'template'>, steps: Step[]): Promise<Turn[]> {
  const chat = new ChatSession(setup.model, setup.tokenizer, { template: setup.template, ...opts });
  const turns: Turn[] = [];
  for (const step of steps) {
    if (typeof step !== 'string') {
      step(chat);
      continue;
    }
    const cachedBefore = chat.cachedTokens();
    const reply = chat.send(step);
    const text = await reply.collect();
    turns.push({ text, ids: reply.tokens.map((t) => t.id), finishReason: reply.finishReason, promptIds: reply.promptIds, cachedBefore, reply });
    // the cache holds the prompt and the answer tokens fed back (all but the last one sampled), nothing else
    assert.deepEqual(chat.cachedTokens(), [...reply.promptIds, ...turns[turns.length - 1].ids.slice(0, -1)]);
  }
  return turns;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** The two runs agree on every turn: same tokens, same text, same prompt. */
function assertSameChat(cached: Turn[], plain: Turn[]): void {
  assert.equal(cached.length, plain.length);
  cached.forEach((c, i) => {
    const p = plain[i];
    assert.deepEqual(c.promptIds, p.promptIds, `turn ${i + 1}: prompt`);
    assert.deepEqual(c.ids, p.ids, `turn ${i + 1}: tokens`);
    assert.equal(c.text, p.text, `turn ${i + 1}: text`);
    assert.equal(c.finishReason, p.finishReason, `turn ${i + 1}: finish reason`);
    assert.equal(p.reply.stats.reusedTokens, 0, `turn ${i + 1}: the run without prompt caching reuses nothing`);
  });
}

/** Reused = the common prefix of the cached tokens and the new prompt (at most all but its last token). */
function assertPrefillCounts(turns: Turn[]): void {
  for (const t of turns) {
    const reused = Math.min(commonPrefix(t.cachedBefore, t.promptIds), t.promptIds.length - 1);
    assert.equal(t.reply.stats.promptTokens, t.promptIds.length);
    assert.equal(t.reply.stats.reusedTokens, reused);
    assert.equal(t.reply.stats.promptTokens - t.reply.stats.reusedTokens, t.promptIds.length - reused);
  }
}

for (const setup of SETUPS) {
  describe(`chat prompt cache: ${setup.name}`, () => {
    for (const [mode, sampling] of [['greedy', { temperature: 0, topK: 0 }], ['seeded sampling', { temperature: 0.9, topK: 0, topP: 0.95, seed: 11 }]] as const) {
      it(`${MESSAGES.length} turns, ${mode}: same tokens and text as without the cache; only the new suffix is prefilled`, async () => {
        const opts = { maxTokens: 10, seed: 1, ...sampling };
        const cached = await runChat(setup, { ...opts, system: 'you are nice' }, MESSAGES);
        const plain = await runChat(setup, { ...opts, system: 'you are nice', cachePrompt: false }, MESSAGES);
        assertSameChat(cached, plain);
        assertPrefillCounts(cached);
        assert.equal(cached[0].reply.stats.reusedTokens, 0);
        for (let i = 1; i < cached.length; i++) {
          // the previous prompt is re-rendered unchanged at the start of this one
          const prev = cached[i - 1].promptIds.length;
          assert.ok(cached[i].reply.stats.reusedTokens >= prev - 1,
            `turn ${i + 1}: reused ${cached[i].reply.stats.reusedTokens} of ${cached[i].promptIds.length}, the previous prompt had ${prev}`);
        }
      });
    }

    it('turns dropped to fit a small context, /reset and /system: still the same chat', async () => {
      const smallSetup = { ...setup, model: makeModel({ ...setup.model.config, blockSize: 64 }) };
      const steps: Step[] = [
        ...MESSAGES,
        (c) => c.setSystem('be brief'),
        'one more', 'and another one',
        (c) => c.reset(),
        'hello again', 'how are you?', 'tell me a story about the ship',
      ];
      const opts = { maxTokens: 8, reserve: 8, temperature: 0.8, topK: 0, seed: 3 };
      const drops: number[] = [];
      const cached = await runChat(smallSetup, { ...opts, onDrop: (d) => drops.push(d.turns) }, steps);
      const plain = await runChat(smallSetup, { ...opts, cachePrompt: false }, steps);
      assertSameChat(cached, plain);
      assertPrefillCounts(cached);
      assert.ok(drops.length > 0, 'the history should have outgrown the 64-token context');
      // a dropped turn changes the prompt near its start: most of it is prefilled again
      const dropTurn = cached.find((t) => t.reply.droppedTurns > 0)!;
      assert.ok(dropTurn.reply.stats.reusedTokens < dropTurn.promptIds.length / 2, `reused ${dropTurn.reply.stats.reusedTokens} of ${dropTurn.promptIds.length}`);
      // setSystem and reset empty the cache
      assert.deepEqual(cached[MESSAGES.length].cachedBefore, []);
      assert.deepEqual(cached[MESSAGES.length + 2].cachedBefore, []);
    });
  });
}

describe('chat prompt cache: an aborted answer', () => {
  it('the partial answer joins the history; the next turn reuses only verified tokens and matches the uncached chat', async () => {
    const setup = SETUPS[1];
    const run = async (cachePrompt: boolean): Promise<{ texts: string[]; reused: number[] }> => {
      const chat = new ChatSession(setup.model, setup.tokenizer, { template: setup.template, maxTokens: 12, temperature: 0.9, topK: 0, seed: 5, stop: [], cachePrompt });
      const ctl = new AbortController();
      const first = chat.send('hello there', { signal: ctl.signal });
      let n = 0;
      for await (const _ of first) if (++n === 3) ctl.abort();
      assert.equal(first.finishReason, 'aborted');
      const texts = [first.text];
      const reused = [first.stats.reusedTokens];
      for (const m of ['how are you', 'tell me more']) {
        const before = chat.cachedTokens();
        const r = chat.send(m);
        texts.push(await r.collect());
        reused.push(r.stats.reusedTokens);
        assert.equal(r.stats.reusedTokens, cachePrompt ? Math.min(commonPrefix(before, r.promptIds), r.promptIds.length - 1) : 0);
      }
      return { texts, reused };
    };
    const cached = await run(true);
    const plain = await run(false);
    assert.deepEqual(cached.texts, plain.texts);
    assert.ok(cached.reused[1] > 0 && cached.reused[2] > 0);
  });
});
