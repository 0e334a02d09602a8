/**
 * The SFT learning recipe in small (bench/sft-learn.ts runs the full one, with two-digit addition
 * and Alpaca Libre; README "Does fine-tuning teach?"). A BPE tokenizer and a base trained here
 * (minbpe's Wikipedia article and part of Tiny Shakespeare: numbers, but no instructions) cannot
 * answer held-out "Reverse the digits of 472." questions; after llmts sft on 800 others it answers
 * most of them exactly with greedy decoding and ends them with <|im_end|> (measured: 96/100, held-out
 * response loss 5.47 -> 0.10). LoRA r=8 on this small base learns the answers' form in 100 steps
 * (digits, then <|im_end|>: loss 5.47 -> 3.10, every answer ended) but not the copying (0/100;
 * 150 steps gave the same loss): exact answers from LoRA are the bench's (500/500 held-out sums on
 * its 4-layer base after 1,357 steps). Two-digit addition is too slow to learn for npm test: this
 * 2-layer model reached 5% after 253 full-SFT steps.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chatTemplate } from '../../src/chat/index.js';
import type { SftExample } from '../../src/data/sft-examples.js';
import { answerPrompts, endOfTurnRate, exactMatch } from '../../src/eval/exact-match.js';
import { alpacaJsonl, reversalTask, type TaskItem } from '../../src/eval/tasks.js';
import { meanLoss, renderSftExamples } from '../../src/finetune/sft.js';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { runCli } from '../helpers/cli.js';
import { sharedDataPath } from '../helpers/shared-data.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('sft-learns');
const chatml = chatTemplate('chatml');

/** Greedy exact match and end-of-turn rate on the items, and the mean response loss over them. */
async function score(path: string, items: readonly TaskItem[]): Promise<{ exact: number; ended: number; loss: number }> {
  const l = await loadAnyModel(path);
  const model = new Transformer(l.config, l.params);
  model.eval();
  const tok = l.tokenizer!;
  const answers = noGrad(() => answerPrompts(model, tok, chatml, items.map((q) => [{ role: 'user', content: q.question }]), { maxTokens: 6 }));
  const chats: SftExample[] = items.map((q) => ({ kind: 'chat', messages: [{ role: 'user', content: q.question }, { role: 'assistant', content: q.answer }] }));
  const { rendered } = renderSftExamples(chats, chats.map((_, i) => i + 1), tok, chatml, { maxLength: l.config.blockSize });
  const loss = noGrad(() => meanLoss(model, rendered, 25, 0));
  return { exact: exactMatch(answers, items.map((q) => q.answer)).rate, ended: endOfTurnRate(answers).rate, loss };
}

/** Run llmts on 2 threads (the tokenizer trainer takes no -t); the seconds it took. */
function cli(args: string[], threads = true): number {
  const t0 = performance.now();
  const r = runCli(threads ? [...args, '-t', '2'] : args);
  assert.equal(r.code, 0, `llmts ${args.join(' ')}\n${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

describe('SFT learns (the recipe in small)', () => {
  it('a base pretrained here learns a held-out task with full SFT; LoRA r=8 learns the answer form', async (t) => {
    const shakespeare = sharedDataPath('tinyshakespeare/input.txt');
    const wikipedia = sharedDataPath('minbpe/taylorswift.txt');
    if (shakespeare === null || wikipedia === null) return t.skip('needs ../shared/data (tinyshakespeare, minbpe)');
    // the tokenizer learns Shakespeare (no numbers: every digit stays a token); the base reads numbers too
    const plays = join(dir, 'plays.txt');
    writeFileSync(plays, readFileSync(shakespeare, 'utf8').slice(0, 300_000));
    const text = join(dir, 'text.txt');
    writeFileSync(text, readFileSync(wikipedia, 'utf8') + '\n\n' + readFileSync(plays, 'utf8'));
    const tok = join(dir, 'tok');
    const tTok = cli(['tokenizer', 'train', '--data', plays, '--vocab-size', '320', '--special', '<|im_start|>', '--special', '<|im_end|>', '-o', tok], false);
    const base = join(dir, 'base');
    const tBase = cli(['train', '--data', text, '--tokenizer', join(tok, 'tokenizer.json'), '--preset', 'llama-15m', '--n-layer', '2', '--n-head', '4', '--n-kv-head', '4',
      '--n-embd', '64', '--hidden-dim', '192', '-c', '64', '-b', '16', '--lr', '3e-3', '--warmup-iters', '10', '--max-iters', '100', '--eval-interval', '100', '--eval-iters', '2',
      '--final-eval-iters', '2', '--sample-tokens', '0', '-o', base]);

    const task = reversalTask({ heldOut: 100, digits: 3, seed: 3 });
    const data = join(dir, 'reverse.jsonl');
    writeFileSync(data, alpacaJsonl(task.train));
    const before = await score(base, task.heldOut);
    const sft = join(dir, 'sft');
    const tSft = cli(['sft', '-m', base, '--data', data, '--epochs', '6', '-b', '16', '--lr', '3e-3', '--eval-split', '0', '--eval-interval', '1000', '-o', sft]);
    const full = await score(sft, task.heldOut);
    const lora = join(dir, 'lora');
    const tLora = cli(['sft', '-m', base, '--data', data, '--lora', '--epochs', '2', '-b', '16', '--lr', '5e-3', '--eval-split', '0', '--eval-interval', '1000', '-o', lora]);
    const adapted = await score(join(lora, 'merged'), task.heldOut);

    const f = (s: { exact: number; ended: number; loss: number }): string => `exact ${s.exact.toFixed(2)}, ended ${s.ended.toFixed(2)}, loss ${s.loss.toFixed(3)}`;
    t.diagnostic(`held-out: base ${f(before)}; full SFT ${f(full)}; LoRA r=8 ${f(adapted)}; ` +
      `seconds: tokenizer ${tTok.toFixed(1)}, base ${tBase.toFixed(1)}, SFT ${tSft.toFixed(1)}, LoRA ${tLora.toFixed(1)}`);
    assert.ok(before.exact <= 0.02, `the base answers ${before.exact} of the held-out questions`);
    assert.ok(full.exact >= 0.6, `full SFT: exact match ${full.exact}`);
    assert.ok(full.ended >= 0.95, `full SFT: answers ended ${full.ended}`);
    assert.ok(full.loss < 0.25 * before.loss, `full SFT: held-out loss ${before.loss} -> ${full.loss}`);
    assert.ok(adapted.loss < 0.65 * before.loss, `LoRA: held-out loss ${before.loss} -> ${adapted.loss}`);
    assert.ok(adapted.ended >= 0.9, `LoRA: answers ended ${adapted.ended}`);
  });
});
