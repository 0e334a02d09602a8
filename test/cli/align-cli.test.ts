/**
 * llmts reward train|eval|score and llmts dpo, run as a user would, on preference pairs with a
 * known rule (the chosen answer is made of the letters a-d, the rejected one of e-h): a reward
 * model learns the rule (held-out pairwise accuracy), DPO raises the chosen answers' likelihood
 * over the rejected ones against its reference, both resume bit for bit, and bad input gets a
 * one-line error or a counted skip.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REWARD } from '../../src/cli/reward.js';
import { DPO } from '../../src/cli/dpo.js';
import { allFlags, flagLabel } from '../../src/cli/flags.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { Transformer } from '../../src/model/transformer.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { Rng } from '../../src/util/rng.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('align-cli');
const data = join(dir, 'pairs.jsonl');
const base = join(dir, 'base.safetensors');

function word(rng: Rng, letters: string, n: number): string {
  let w = '';
  for (let k = 0; k < n; k++) w += letters[rng.int(letters.length)];
  return w;
}

/** 300 pairs: prompt 'say xyz', chosen from a-d, rejected from e-h; line 3 is an identical pair (bad). */
function writePairs(path: string): void {
  const rng = new Rng(3);
  const lines: string[] = [];
  for (let i = 0; i < 300; i++) {
    lines.push(JSON.stringify({ prompt: `say ${word(rng, 'abcdefgh', 3)}`, chosen: word(rng, 'abcd', 2 + rng.int(3)), rejected: word(rng, 'efgh', 2 + rng.int(3)) }));
  }
  lines.splice(2, 0, JSON.stringify({ prompt: 'say abc', chosen: 'ab', rejected: 'ab' }));
  writeFileSync(path, lines.join('\n') + '\n');
}

function writeBase(path: string): void {
  const tok = CharTokenizer.fromText('QA: \nabcdefghsy');
  const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 4, nEmbd: 64, hiddenDim: 128 });
  const m = new Transformer(cfg, new Rng(1));
  saveCheckpoint(path, { config: cfg, params: new Map(m.namedParameters().map((p) => [p.name, p.tensor])), tokenizer: tok.toJSON(), trainer: {} });
}

writePairs(data);
writeBase(base);
const COMMON = ['-m', base, '--data', data, '--eval-split', '0.1', '-t', '2', '--eval-iters', '4'];
const strip = (path: string) => readMetrics(path).map(({ rss: _r, time: _t, tokensPerSec: _s, ...rest }) => rest);

describe('llmts reward', () => {
  it('--help lists every flag of every subcommand', () => {
    for (const [name, sub] of Object.entries(REWARD.subcommands)) {
      const r = runCli(['reward', name, '--help']);
      assert.equal(r.code, 0, r.stderr);
      for (const f of allFlags(sub.spec)) assert.ok(r.stdout.includes(flagLabel(f)), `reward ${name} --help lacks ${flagLabel(f)}`);
    }
  });

  it('learns the rule: held-out accuracy; eval prints accuracy last; score ranks answers; the identical pair is reported', () => {
    const out = join(dir, 'rm');
    const r = runCli(['reward', 'train', ...COMMON, '-o', out, '--max-iters', '40', '--lr', '1e-3', '--eval-interval', '20']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /left out 1 bad row of 301: line 3: .*same/);
    assert.match(r.stdout, /300 pairs: \d+ train \/ \d+ eval/);
    const acc = Number(/^accuracy (\d\.\d{4})$/m.exec(r.stdout)![1]);
    assert.ok(acc >= 0.95, `held-out accuracy ${acc}`);
    const evals = readMetrics(join(out, 'metrics.jsonl')).filter((m) => m.type === 'eval');
    assert.equal(evals.length, 2);
    assert.ok((evals[1].accuracy as number) >= 0.95);

    const e = runCli(['reward', 'eval', '-m', out, '--data', data]);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /300 pairs evaluated; \d+ longer than \d+ tokens left out/);
    assert.doesNotMatch(e.stdout, /train \//);
    assert.match(e.stdout.trim().split('\n').at(-1)!, /^accuracy (0\.9\d{3}|1\.0000)$/);

    const s = runCli(['reward', 'score', '-m', out], '{"prompt": "say abc", "completion": "abca"}\n{"prompt": "say abc", "completion": "hgef"}\n');
    assert.equal(s.code, 0, s.stderr);
    const [good, bad] = s.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { score: number }).score);
    assert.ok(good > bad, `scores ${good} vs ${bad}`);
  });

  it('a stopped and resumed run (full and LoRA) ends bit-identical to an uninterrupted one', () => {
    for (const extra of [[], ['--lora', '--lora-r', '4']]) {
      const flags = [...COMMON, ...extra, '--lr', '1e-3', '--eval-interval', '5', '--decay-iters', '20', '--warmup-iters', '2', '-b', '4'];
      const tag = extra.length ? 'lora' : 'full';
      const whole = join(dir, `rm-whole-${tag}`), parts = join(dir, `rm-parts-${tag}`);
      assert.equal(runCli(['reward', 'train', ...flags, '-o', whole, '--max-iters', '20']).code, 0);
      assert.equal(runCli(['reward', 'train', ...flags, '-o', parts, '--max-iters', '10']).code, 0);
      const resumed = runCli(['reward', 'train', '-o', parts, '--resume', '--max-iters', '20']);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stdout, /resuming from step 10/);
      assert.deepEqual(strip(join(parts, 'metrics.jsonl')), strip(join(whole, 'metrics.jsonl')));
      const a = loadCheckpoint(join(whole, 'ckpt.safetensors')), b = loadCheckpoint(join(parts, 'ckpt.safetensors'));
      for (const [name, t] of [...a.params, ...a.extras]) assert.deepEqual((b.params.get(name) ?? b.extras.get(name))!.data, t.data, `${tag} ${name}`);
      assert.ok(a.extras.has('score.weight'));
    }
  });

  it('bad input: one-line errors', () => {
    assertOneLineError(runCli(['reward', 'train', '-m', base, '-o', join(dir, 'x')]), /give the preference pairs: --data FILE/);
    assertOneLineError(runCli(['reward', 'eval', '-m', base, '--data', data]), /is not a reward model/);
    assertOneLineError(runCli(['reward', 'score', '-m', join(dir, 'rm')], 'not json\n'), /stdin:1: not a JSON object/);
    assertOneLineError(runCli(['reward', 'train', ...COMMON, '-o', join(dir, 'y'), '--max-length', '64']), /the model's context holds 32 tokens/);
  });
});

describe('llmts dpo', () => {
  it('--help lists every flag', () => {
    const r = runCli(['dpo', '--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const f of allFlags(DPO.spec)) assert.ok(r.stdout.includes(flagLabel(f)), `--help lacks ${flagLabel(f)}`);
  });

  it('prefers the chosen answers on held-out pairs; resumes bit for bit; --lora keeps the base and writes adapter and merged', () => {
    const flags = [...COMMON, '--lr', '1e-3', '--eval-interval', '10', '--decay-iters', '30', '--warmup-iters', '2', '-b', '8'];
    const whole = join(dir, 'dpo-whole'), parts = join(dir, 'dpo-parts');
    const r = runCli(['dpo', ...flags, '-o', whole, '--max-iters', '30']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /reference: a frozen copy of the model/);
    const m = readMetrics(join(whole, 'metrics.jsonl'));
    const first = m.find((x) => x.type === 'train')!;
    const last = m.filter((x) => x.type === 'eval').at(-1)!;
    // the first step's policy is the reference: DPO starts at log 2 with zero rewards
    assert.ok(Math.abs((first.loss as number) - Math.LN2) < 1e-4, `first loss ${first.loss}`);
    assert.ok((last['eval_rewards/accuracies'] as number) >= 0.9, `held-out rewards/accuracies ${last['eval_rewards/accuracies']}`);
    assert.ok((last['eval_rewards/margins'] as number) > 0.3, `held-out margins ${last['eval_rewards/margins']}`);
    assert.ok((last.valLoss as number) < 0.5, `held-out loss ${last.valLoss}`);

    assert.equal(runCli(['dpo', ...flags, '-o', parts, '--max-iters', '15']).code, 0);
    const resumed = runCli(['dpo', '-o', parts, '--resume', '--max-iters', '30']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(strip(join(parts, 'metrics.jsonl')).filter((x) => !(x.type === 'eval' && x.step === 15)), strip(join(whole, 'metrics.jsonl')));

    const lora = join(dir, 'dpo-lora');
    const l = runCli(['dpo', ...flags, '--lora', '--lr', '3e-3', '-o', lora, '--max-iters', '20']);
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /reference: the base without adapters/);
    const input = loadCheckpoint(base), ck = loadCheckpoint(join(lora, 'ckpt.safetensors'));
    for (const [name, t] of input.params) assert.deepEqual(ck.params.get(name)!.data, t.data, name);
    assert.ok(existsSync(join(lora, 'adapter', 'adapter_model.safetensors')) && existsSync(join(lora, 'merged', 'ckpt.safetensors')));
    const le = readMetrics(join(lora, 'metrics.jsonl')).filter((x) => x.type === 'eval').at(-1)!;
    assert.ok((le['eval_rewards/accuracies'] as number) >= 0.8, `LoRA held-out rewards/accuracies ${le['eval_rewards/accuracies']}`);
  });
});
