/**
 * llmts ppo, run as a user would, against a JavaScript reward the test can check (the share of
 * the letter 'a' in the answer) on a tiny model: the held-out reward rises with PPO and GRPO, a
 * stopped and resumed PPO run (mid-rollout) ends bit-identical to an uninterrupted one, a reward
 * model directory works as the reward, and bad rewards stop with a one-line error.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PPO } from '../../src/cli/ppo.js';
import { allFlags, flagLabel } from '../../src/cli/flags.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { Transformer } from '../../src/model/transformer.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { Rng } from '../../src/util/rng.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('ppo-cli');
const base = join(dir, 'base.safetensors');
const prompts = join(dir, 'prompts.jsonl');
const rewardJs = join(dir, 'a-share.mjs');

{
  const tok = CharTokenizer.fromText('QA: \nabcdefghsy');
  const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 4, nEmbd: 64, hiddenDim: 128 });
  const m = new Transformer(cfg, new Rng(1));
  saveCheckpoint(base, { config: cfg, params: new Map(m.namedParameters().map((p) => [p.name, p.tensor])), tokenizer: tok.toJSON(), trainer: {} });
  const L = 'abcdefgh';
  writeFileSync(prompts, Array.from({ length: 60 }, (_, i) => JSON.stringify({ prompt: `say ${L[i % 8]}${L[(i * 3) % 8]}`, id: i })).join('\n') + '\n');
  writeFileSync(rewardJs, "export function reward(prompt, completion) { return [...completion].filter((c) => c === 'a').length / Math.max(1, completion.length); }\n");
}

const COMMON = ['-m', base, '--prompts', prompts, '--reward', rewardJs, '--max-new-tokens', '8', '--temperature', '1', '--lr', '3e-3', '-t', '2'];
const strip = (path: string) => readMetrics(path).map(({ rss: _r, time: _t, tokensPerSec: _s, ...rest }) => rest);

describe('llmts ppo', () => {
  it('--help lists every flag', () => {
    const r = runCli(['ppo', '--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const f of allFlags(PPO.spec)) assert.ok(r.stdout.includes(flagLabel(f)), `--help lacks ${flagLabel(f)}`);
  });

  for (const algo of ['ppo', 'grpo'] as const) {
    it(`${algo}: the held-out reward rises well above the first rollout's`, (t) => {
      const out = join(dir, algo);
      const extra = algo === 'grpo' ? ['--algo', 'grpo', '--rollout-prompts', '4'] : [];
      const r = runCli(['ppo', ...COMMON, ...extra, '-o', out, '--max-iters', '40', '--eval-interval', '40']);
      assert.equal(r.code, 0, r.stderr);
      const m = readMetrics(join(out, 'metrics.jsonl'));
      const first = m.find((x) => x.type === 'train' && x['objective/scores'] !== undefined)!['objective/scores'] as number;
      assert.equal(m.find((x) => x.type === 'train')!.lr, 3e-3, 'no warmup unless --warmup-iters is given (the default the help shows)');
      const last = m.filter((x) => x.type === 'eval').at(-1)!.reward as number;
      t.diagnostic(`${algo}: first rollout score ${first.toFixed(3)} -> held-out reward ${last.toFixed(3)}`);
      // measured: ppo 0.13 -> 0.37, grpo 0.13 -> 0.95 (a random tiny model; 'a' is 1 of 15 characters)
      assert.ok(last > first + 0.15, `reward ${first} -> ${last}`);
    });
  }

  it('a stopped and resumed run (in the middle of a rollout) ends bit-identical to an uninterrupted one', () => {
    const flags = [...COMMON, '--eval-interval', '6', '--eval-iters', '1', '--rollout-prompts', '8', '--ppo-epochs', '2', '-b', '4', '--decay-iters', '12', '--warmup-iters', '0'];
    const whole = join(dir, 'whole'), parts = join(dir, 'parts');
    assert.equal(runCli(['ppo', ...flags, '-o', whole, '--max-iters', '12']).code, 0);
    assert.equal(runCli(['ppo', ...flags, '-o', parts, '--max-iters', '6']).code, 0); // 6 = 1.5 rollouts of 4 minibatches
    const resumed = runCli(['ppo', '-o', parts, '--resume', '--max-iters', '12']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(strip(join(parts, 'metrics.jsonl')), strip(join(whole, 'metrics.jsonl')));
    const a = loadCheckpoint(join(whole, 'ckpt.safetensors')), b = loadCheckpoint(join(parts, 'ckpt.safetensors'));
    for (const [name, t] of [...a.params, ...a.extras]) assert.deepEqual((b.params.get(name) ?? b.extras.get(name))!.data, t.data, name);
    assert.ok(a.extras.has('value_head.weight'));
  });

  it('bad rewards: a module that throws, one that returns NaN, a missing reward', () => {
    const throws = join(dir, 'throws.mjs'), nan = join(dir, 'nan.mjs');
    writeFileSync(throws, "export function reward() { throw new Error('boom'); }\n");
    writeFileSync(nan, 'export default function () { return NaN; }\n');
    assertOneLineError(runCli(['ppo', ...COMMON.map((a) => (a === rewardJs ? throws : a)), '-o', join(dir, 'x1'), '--max-iters', '2']), /reward '.*throws\.mjs' threw on completion 1: boom/);
    assertOneLineError(runCli(['ppo', ...COMMON.map((a) => (a === rewardJs ? nan : a)), '-o', join(dir, 'x2'), '--max-iters', '2']), /gave NaN for completion 1 .*must be a finite number/);
    assertOneLineError(runCli(['ppo', '-m', base, '--prompts', prompts, '-o', join(dir, 'x3')]), /give a reward: --reward/);
  });
});
