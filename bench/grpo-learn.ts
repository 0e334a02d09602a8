/**
 * The GRPO learning recipe, end to end: does reinforcement learning with an exact-match reward
 * raise the held-out accuracy of an SFT model on a checkable task? Prints one markdown table.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/grpo-learn.js [--dir out/grpo-learn] [--threads 2] [--fresh]
 *
 * 1. tokenizer and base: the SFT recipe's (bench/sft-learn.ts: a 512-token BPE with ChatML's
 *    tokens trained on Tiny Shakespeare; a 4-layer Llama, dim 128, 0.98M parameters, pretrained on
 *    minbpe's Wikipedia article then Tiny Shakespeare), the same commands;
 * 2. data: two-digit addition from src/eval/tasks.ts ("What is 23 + 45?" -> "68"), the SFT
 *    recipe's split: 500 held-out questions (seed 1), the other 7,600 to train on;
 * 3. a deliberately short SFT: `llmts sft` for a few steps on the training questions, so the SFT
 *    model is right on part of the held-out questions, not all (the SFT recipe's 3 epochs make it
 *    100% right, leaving RL nothing to show), and samples right answers to many prompts some of the
 *    time: GRPO learns only from groups whose samples differ in reward;
 * 4. GRPO: `llmts ppo --algo grpo` from the short SFT model on the training questions as prompts
 *    ({"prompt", "answer"} rows), reward recipes/rewards/exact-match.mjs (1 when the answer,
 *    trimmed, equals the row's "answer"), K samples per prompt, group-relative advantages;
 * 5. scores: held-out exact match with greedy decoding (src/eval/exact-match.ts) of the short SFT
 *    model and of the GRPO model; also one sampled answer per held-out question at the rollouts'
 *    temperature; and a timed rollout of the GRPO shape (prompts x samples, batched on the
 *    BatchDecoder as llmts ppo samples them) for rollout tokens/s, next to the seconds per GRPO
 *    iteration (rollout + update) read from the run's metrics.jsonl.
 *
 * Each step's command is printed (stderr) as it starts, with the commands' own progress; the
 * table (stdout) gives each model's scores and each step's time. A step whose output is in --dir
 * from the same command on the same input files is reused (the time column says so); --fresh
 * redoes every step.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadForScoring, recipeOptions, runStep, type Step } from './recipe-steps.js';
import { describeBackend } from '../src/backend/index.js';
import { sampleRollouts } from '../src/align/rollout.js';
import { chatStopTokens, chatTemplate, encodeChat, type ChatMessage } from '../src/chat/index.js';
import { additionTask, alpacaJsonl, type TaskItem } from '../src/eval/tasks.js';
import { answerPrompts, exactMatch } from '../src/eval/exact-match.js';
import { noGrad } from '../src/tensor/index.js';
import { readMetrics } from '../src/train/metrics-log.js';

const REWARD = fileURLToPath(new URL('../../recipes/rewards/exact-match.mjs', import.meta.url));

/** Every setting of the recipe: change one here and the affected steps rerun. */
const RECIPE = {
  // the SFT recipe's tokenizer and base (bench/sft-learn.ts), unchanged
  tokenizer: ['--vocab-size', '512', '--special', '<|im_start|>', '--special', '<|im_end|>'],
  base: ['--preset', 'llama-15m', '--n-layer', '4', '--n-head', '4', '--n-kv-head', '4', '--n-embd', '128', '--hidden-dim', '384', '-c', '256',
    '-b', '16', '--lr', '2e-3', '--warmup-iters', '30', '--max-iters', '600', '--eval-interval', '200', '--eval-iters', '10', '--final-eval-iters', '20', '--sample-tokens', '0'],
  arithmetic: { heldOut: 500, seed: 1 },
  /** the short SFT: 400 steps of 32, 1.8 epochs of the 7,233 examples it trains on (the SFT recipe's 3 epochs are 679 steps and reach 100%) */
  sftShort: ['--max-iters', '400', '-b', '32', '--lr', '1e-3', '--warmup-iters', '10', '--eval-interval', '200', '--eval-iters', '4'],
  grpo: ['--algo', 'grpo', '--samples', '8', '--rollout-prompts', '8', '-b', '64', '--temperature', '1', '--max-new-tokens', '8',
    '--lr', '1e-4', '--warmup-iters', '0', '--max-iters', '300', '--eval-interval', '100', '--eval-iters', '4'],
  /** the sampled score: one answer per held-out question at the rollouts' temperature */
  sampled: { maxTokens: 8, temperature: 1, seed: 1 },
};

const USAGE = `usage: node dist/bench/grpo-learn.js [--dir DIR] [--shared DIR] [--threads N] [--fresh]

  --dir DIR      where the runs go (default out/grpo-learn); steps already there are reused
  --shared DIR   the shared data folder (default ../shared/data beside the repository)
  --threads N    threads for every step (default 2)
  --fresh        redo every step`;

interface Scores {
  greedy: { correct: number; total: number };
  sampled: { correct: number; total: number };
  evalSeconds: number;
}

async function main(): Promise<void> {
  const values = recipeOptions('out/grpo-learn');
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const { dir, threads } = values;
  const SHARED = values.shared;
  const shakespeare = join(SHARED, 'tinyshakespeare', 'input.txt');
  const wikipedia = join(SHARED, 'minbpe', 'taylorswift.txt');
  for (const f of [shakespeare, wikipedia]) if (!existsSync(f)) throw new Error(`${f} is missing: this recipe reads ../shared/data (see README)`);
  mkdirSync(join(dir, 'data'), { recursive: true });
  const loadAtStart = loadavg()[0];
  const steps: Step[] = [];
  const run = (name: string, output: string, args: string[], withThreads = true): void => {
    steps.push(runStep(dir, name, output, withThreads ? [...args, '-t', threads] : args, values.fresh ?? false));
  };

  const tokenizerPath = join(dir, 'tokenizer', 'tokenizer.json');
  run('tokenizer', tokenizerPath, ['tokenizer', 'train', '--data', shakespeare, ...RECIPE.tokenizer, '-o', join(dir, 'tokenizer')], false);
  const pretrainText = join(dir, 'data', 'pretrain.txt');
  writeFileSync(pretrainText, readFileSync(wikipedia, 'utf8') + '\n\n' + readFileSync(shakespeare, 'utf8'));
  const base = join(dir, 'base');
  run('base', join(base, 'ckpt.safetensors'), ['train', '--data', pretrainText, '--tokenizer', tokenizerPath, ...RECIPE.base, '-o', base, '--overwrite']);

  const task = additionTask(RECIPE.arithmetic);
  const arithTrain = join(dir, 'data', 'arithmetic-train.jsonl');
  const grpoPrompts = join(dir, 'data', 'arithmetic-prompts.jsonl');
  writeFileSync(arithTrain, alpacaJsonl(task.train));
  writeFileSync(grpoPrompts, task.train.map((it) => JSON.stringify({ prompt: it.question, answer: it.answer }) + '\n').join(''));
  process.stderr.write(`data: ${task.train.length} addition questions to train on (SFT examples and GRPO prompts), ${task.heldOut.length} held out\n`);

  const sft = join(dir, 'sft-short');
  run('short SFT', join(sft, 'ckpt.safetensors'), ['sft', '-m', base, '--data', arithTrain, ...RECIPE.sftShort, '-o', sft, '--overwrite']);
  const grpo = join(dir, 'grpo');
  run('GRPO', join(grpo, 'ckpt.safetensors'), ['ppo', '-m', sft, '--prompts', grpoPrompts, '--reward', REWARD, ...RECIPE.grpo, '-o', grpo, '--overwrite']);

  // scores
  const chatml = chatTemplate('chatml');
  const questions = task.heldOut.map((it): ChatMessage[] => [{ role: 'user', content: it.question }]);
  const references = task.heldOut.map((it) => it.answer);
  const score = async (what: string, path: string): Promise<Scores> => {
    process.stderr.write(`scoring ${what}...\n`);
    const t0 = performance.now();
    const { model, tok } = await loadForScoring(path);
    const greedy = exactMatch(noGrad(() => answerPrompts(model, tok, chatml, questions, { maxTokens: RECIPE.sampled.maxTokens })), references);
    const sampled = exactMatch(noGrad(() => answerPrompts(model, tok, chatml, questions, RECIPE.sampled)), references);
    return { greedy, sampled, evalSeconds: (performance.now() - t0) / 1000 };
  };
  const before = await score('the short SFT model', sft);
  const after = await score('the GRPO model', grpo);
  const rollout = await timeRollout(grpo, task.train, chatml);
  const iteration = iterationSeconds(join(grpo, 'metrics.jsonl'), flagValue(RECIPE.grpo, '-b'), flagValue(RECIPE.grpo, '--samples') * flagValue(RECIPE.grpo, '--rollout-prompts'));

  const pct = (s: { correct: number; total: number }): string => `${(100 * s.correct / s.total).toFixed(1)}% (${s.correct}/${s.total})`;
  const time = (name: string): string => {
    const st = steps.find((x) => x.name === name)!;
    return st.reused ? 'reused' : `${st.seconds!.toFixed(0)} s`;
  };
  console.log(`| model | addition exact match (${task.heldOut.length} held out, greedy) | one sampled answer each (temperature ${RECIPE.sampled.temperature}) | training time | scoring time |`);
  console.log('| --- | --- | --- | --- | --- |');
  console.log(`| short SFT (${flagValue(RECIPE.sftShort, '--max-iters')} steps of ${flagValue(RECIPE.sftShort, '-b')}) | ${pct(before.greedy)} | ${pct(before.sampled)} | ${time('short SFT')} | ${before.evalSeconds.toFixed(0)} s |`);
  console.log(`| + GRPO (${flagValue(RECIPE.grpo, '--max-iters')} iterations, exact-match reward) | ${pct(after.greedy)} | ${pct(after.sampled)} | ${time('GRPO')} | ${after.evalSeconds.toFixed(0)} s |`);
  console.log('');
  console.log(`GRPO: ${(100 * (after.greedy.correct - before.greedy.correct) / before.greedy.total).toFixed(1)} points of greedy held-out exact match. ` +
    `Rollout of ${rollout.sequences} answers (${flagValue(RECIPE.grpo, '--rollout-prompts')} prompts x ${flagValue(RECIPE.grpo, '--samples')} samples, batched): ` +
    `${rollout.seconds.toFixed(2)} s, ${rollout.tokens} new tokens, ${(rollout.tokens / rollout.seconds).toFixed(0)} new tokens/s; ` +
    `a GRPO iteration (rollout, scoring, reference pass, update) ${iteration.median.toFixed(2)} s median over ${iteration.count} iterations.`);
  console.log(`steps (threads ${threads}; ${describeBackend()}; ${availableParallelism()} cores; load average ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end):`);
  for (const st of steps) console.log(`- ${st.name} (${st.reused ? 'reused' : `${st.seconds!.toFixed(1)} s`}): \`llmts ${st.command}\``);
}

function flagValue(args: readonly string[], name: string): number {
  const i = args.indexOf(name);
  if (i < 0) throw new Error(`the recipe sets no ${name}`);
  return Number(args[i + 1]);
}

/** One rollout of the GRPO shape with the trained policy, as llmts ppo samples it (sampleRollouts: the batched decoder). */
async function timeRollout(path: string, train: readonly TaskItem[], template: ReturnType<typeof chatTemplate>) {
  const { model, tok } = await loadForScoring(path);
  const P = flagValue(RECIPE.grpo, '--rollout-prompts'), K = flagValue(RECIPE.grpo, '--samples');
  const picked: { index: number; ids: Int32Array }[] = [];
  for (let p = 0; p < P; p++) {
    const ids = Int32Array.from(encodeChat(tok, template, [{ role: 'user', content: train[p].question }]));
    for (let k = 0; k < K; k++) picked.push({ index: p, ids });
  }
  const opts = { maxNewTokens: flagValue(RECIPE.grpo, '--max-new-tokens'), temperature: flagValue(RECIPE.grpo, '--temperature'), stopTokens: chatStopTokens(tok, template) };
  noGrad(() => sampleRollouts(model, picked.slice(0, K), opts, picked.slice(0, K).map((_, i) => 1000 + i))); // warm-up
  const t0 = performance.now();
  const rollouts = noGrad(() => sampleRollouts(model, picked, opts, picked.map((_, i) => i + 1)));
  const seconds = (performance.now() - t0) / 1000;
  let tokens = 0;
  for (const r of rollouts) tokens += r.response.length;
  return { sequences: rollouts.length, tokens, seconds };
}

/**
 * Seconds per GRPO iteration from the run's metrics.jsonl: the time between the records of
 * consecutive rollouts' first steps (a rollout is steps/iteration loop steps), leaving out
 * intervals with an evaluation in them. The median, so a busy moment on a shared machine weighs little.
 */
function iterationSeconds(metricsPath: string, batch: number, rolloutRows: number): { median: number; count: number } {
  const records = readMetrics(metricsPath);
  const perRollout = Math.floor(rolloutRows / batch);
  const starts = records.filter((r) => r.type === 'train' && ((r.step as number) - 1) % perRollout === 0);
  const evalSteps = new Set(records.filter((r) => r.type === 'eval').map((r) => r.step as number));
  const gaps: number[] = [];
  for (let i = 1; i < starts.length; i++) {
    const a = starts[i - 1].step as number, b = starts[i].step as number;
    let evaluated = false;
    for (let s = a; s < b; s++) if (evalSteps.has(s)) evaluated = true;
    if (!evaluated) gaps.push(((starts[i].time as number) - (starts[i - 1].time as number)) / 1000);
  }
  gaps.sort((x, y) => x - y);
  return { median: gaps.length > 0 ? gaps[Math.floor(gaps.length / 2)] : NaN, count: gaps.length };
}



main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
