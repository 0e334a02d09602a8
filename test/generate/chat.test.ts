/**
 * Chat templates (exact prompt strings, 1 and 2 turns, with and without a system prompt),
 * special-token encoding, and ChatSession: history growth, dropping the oldest turns (the
 * system prompt stays), reset, abort.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chatStopTokens, chatTemplate, encodeChatPrompt, type ChatMessage } from '../../src/generate/chat-template.js';
import { ChatSession, type DropInfo } from '../../src/generate/chat-session.js';
import { generate } from '../../src/generate/generate.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { LlmError } from '../../src/util/errors.js';
import { scaledModel, tinyLlama } from '../helpers/tiny-model.js';

const sys: ChatMessage = { role: 'system', content: 'Be brief.' };
const one: ChatMessage[] = [{ role: 'user', content: 'Hi' }];
const two: ChatMessage[] = [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: 'Bye' }];

describe('chat templates', () => {
  it('chatml', () => {
    const t = chatTemplate('chatml');
    assert.equal(t.render(one), '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(t.render([sys, ...one]), '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(t.render(two), '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(t.render([sys, ...two]),
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n');
    assert.ok(t.stop.includes('<|im_end|>'));
  });

  it('llama2 (Meta format)', () => {
    const t = chatTemplate('llama2');
    assert.equal(t.render(one), '<s>[INST] Hi [/INST]');
    assert.equal(t.render([sys, ...one]), '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]');
    assert.equal(t.render(two), '<s>[INST] Hi [/INST] Hello! </s><s>[INST] Bye [/INST]');
    assert.equal(t.render([sys, ...two]), '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]');
    // contents are stripped, as Meta's chat_completion does
    assert.equal(t.render([{ role: 'user', content: '  Hi \n' }]), '<s>[INST] Hi [/INST]');
    assert.ok(t.stop.includes('</s>'));
  });

  it('alpaca', () => {
    const t = chatTemplate('alpaca');
    assert.equal(t.render(one), '### Instruction:\nHi\n\n### Response:\n');
    assert.equal(t.render([sys, ...one]), 'Be brief.\n\n### Instruction:\nHi\n\n### Response:\n');
    assert.equal(t.render(two), '### Instruction:\nHi\n\n### Response:\nHello!\n\n### Instruction:\nBye\n\n### Response:\n');
    assert.equal(t.render([sys, ...two]), 'Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!\n\n### Instruction:\nBye\n\n### Response:\n');
    assert.ok(t.stop.includes('### Instruction'));
  });

  it('qa', () => {
    const t = chatTemplate('qa');
    assert.equal(t.render(one), 'Q: Hi\nA:');
    assert.equal(t.render([sys, ...one]), 'Be brief.\n\nQ: Hi\nA:');
    assert.equal(t.render(two), 'Q: Hi\nA: Hello!\nQ: Bye\nA:');
    assert.equal(t.render([sys, ...two]), 'Be brief.\n\nQ: Hi\nA: Hello!\nQ: Bye\nA:');
    assert.deepEqual(t.stop, ['\nQ:']);
  });

  it('rejects bad conversations and names', () => {
    const t = chatTemplate('chatml');
    assert.throws(() => t.render([]), LlmError);
    assert.throws(() => t.render([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }]), /end with a user message/);
    assert.throws(() => t.render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }]), /role 'user' but 'assistant'/);
    assert.throws(() => chatTemplate('vicuna'), /unknown chat template 'vicuna'.*chatml/);
  });

  it('encodes template specials as single ids; user text is never parsed for specials', () => {
    const base = CharTokenizer.fromText('<|>_imstartendu\n/[]INSTabc ');
    const SPECIAL: Record<string, number> = { '<|im_start|>': 100, '<|im_end|>': 101 };
    const tok = {
      specialTokens: SPECIAL, bosId: undefined, eosId: 102,
      encode: (s: string) => base.encode(s),
    };
    const t = chatTemplate('chatml');
    const ids = encodeChatPrompt(tok, t, t.render([{ role: 'user', content: 'abc' }]));
    assert.deepEqual(ids, [100, ...base.encode('user\nabc'), 101, ...base.encode('\n'), 100, ...base.encode('assistant\n')]);
    assert.deepEqual(chatStopTokens(tok, t).sort(), [100, 101, 102]);
    // llama2: <s> / </s> become bosId / eosId when the tokenizer has no special of that text
    const l2 = chatTemplate('llama2');
    const tok2 = { specialTokens: {}, bosId: 1, eosId: 2, encode: (s: string) => base.encode(s) };
    const ids2 = encodeChatPrompt(tok2, l2, l2.render([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }]));
    assert.deepEqual(ids2, [1, ...base.encode('[INST] a [/INST] b '), 2, 1, ...base.encode('[INST] c [/INST]')]);
    // a tokenizer that has no such token and cannot spell it: a one-line error
    const tok3 = { encode: (s: string) => CharTokenizer.fromText('abc ').encode(s) };
    assert.throws(() => encodeChatPrompt(tok3, l2, '<s>a'), /neither encode nor has a token.*'<s>'/);
  });
});

const tok = CharTokenizer.fromText('abcdefghijklmnopqrstuvwxyz ,.!?\nQA:');
const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nKvHead: 1, nEmbd: 16, hiddenDim: 32 });
const model = scaledModel(cfg, { seed: 3, gain: 4 });

describe('ChatSession', () => {
  it('streams the same answer as generate() on the rendered prompt, and the history grows', async () => {
    const opts = { maxTokens: 8, temperature: 0, topK: 0, seed: 1 };
    const chat = new ChatSession(model, tok, { ...opts, template: 'qa', system: 'be nice' });
    const reply = chat.send('hi');
    const pieces: string[] = [];
    for await (const p of reply) pieces.push(p);
    const want = await generate(model, tok, 'be nice\n\nQ: hi\nA:', { ...opts, stop: ['\nQ:'] }).collect();
    assert.equal(pieces.join(''), want);
    assert.equal(reply.text, want);
    assert.ok(reply.finishReason === 'length' || reply.finishReason === 'stop');
    assert.equal(chat.turns, 1);
    const a1 = want.trim();
    assert.deepEqual(chat.messages(), [{ role: 'system', content: 'be nice' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: a1 }]);
    // the previous answer is part of the next prompt
    assert.equal(chat.renderPrompt('how'), `be nice\n\nQ: hi\nA: ${a1}\nQ: how\nA:`);
    await chat.send('how').collect();
    assert.equal(chat.turns, 2);
    assert.equal(chat.messages().length, 5);
  });

  it('drops the oldest turns to fit the context and keeps the system prompt', async () => {
    const drops: DropInfo[] = [];
    // context 64, reserve 10: each turn costs ~ 'Q: xxxxxxxxxx\nA: <=6 chars\n' = up to 27 tokens
    const chat = new ChatSession(model, tok, { maxTokens: 6, reserve: 10, temperature: 0, topK: 0, seed: 1, template: 'qa', system: 'sys', onDrop: (d) => drops.push(d) });
    const msgs = ['aaaaaaaaaa', 'bbbbbbbbbb', 'cccccccccc', 'dddddddddd'];
    const replies = [];
    for (const m of msgs) {
      const r = chat.send(m);
      await r.collect();
      replies.push(r);
    }
    assert.ok(drops.length > 0, 'some turns should have been dropped');
    const total = drops.reduce((n, d) => n + d.turns, 0);
    assert.equal(total, replies.reduce((n, r) => n + r.droppedTurns, 0));
    for (const d of drops) {
      assert.equal(d.contextSize, 64);
      assert.ok(d.promptTokens + 10 <= 64);
    }
    const m = chat.messages();
    assert.deepEqual(m[0], { role: 'system', content: 'sys' });
    assert.equal(chat.turns, msgs.length - total);
    // what is left is the newest turns, in order
    const users = m.filter((x) => x.role === 'user').map((x) => x.content);
    assert.deepEqual(users, msgs.slice(total));
    assert.equal(m[m.length - 2].content, 'dddddddddd');
    // a message that cannot fit even alone is an error, and changes nothing
    assert.throws(() => chat.send('a'.repeat(70)), /makes a \d+-token prompt but the model's context holds 64/);
    assert.equal(chat.turns, msgs.length - total);
  });

  it('reset and setSystem', async () => {
    const chat = new ChatSession(model, tok, { maxTokens: 4, temperature: 0, topK: 0, seed: 1, template: 'qa' });
    await chat.send('hi').collect();
    assert.equal(chat.turns, 1);
    chat.setSystem('be kind');
    assert.match(chat.renderPrompt('x'), /^be kind\n\nQ: hi\nA:/);
    chat.reset();
    assert.equal(chat.turns, 0);
    assert.deepEqual(chat.messages(), [{ role: 'system', content: 'be kind' }]);
    assert.equal(chat.renderPrompt('x'), 'be kind\n\nQ: x\nA:');
    chat.setSystem('');
    assert.equal(chat.systemPrompt, undefined);
    assert.equal(chat.renderPrompt('x'), 'Q: x\nA:');
  });

  it('an aborted answer stops early and keeps the partial text; one answer at a time', async () => {
    const chat = new ChatSession(model, tok, { maxTokens: 20, temperature: 1, topK: 0, seed: 5, template: 'qa', stop: [] });
    const ctl = new AbortController();
    const reply = chat.send('hi', { signal: ctl.signal });
    let n = 0;
    for await (const _ of reply) {
      if (++n === 1) {
        assert.throws(() => chat.send('again'), /still being generated/);
        ctl.abort();
      }
    }
    assert.equal(reply.finishReason, 'aborted');
    assert.equal(n, 1);
    assert.equal(chat.turns, 1);
    assert.equal(chat.messages()[1].content, reply.text.trim());
  });
});
