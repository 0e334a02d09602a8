/**
 * The RLHF learning recipe, end to end: do PPO against a learned reward, and DPO, teach the SFT
 * model of the SFT recipe (bench/sft-learn.ts) a preference it was never shown? Prints one
 * markdown table.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/rlhf-learn.js [--dir out/rlhf-learn] [--sft-dir out/sft-learn] [--threads 2] [--fresh]
 *
 * The known rule: an answer is preferred when its first word is "The" (/^\s*The\b/). The Alpaca
 * SFT model starts about one answer in four or five that way (Alpaca Libre's answers: one in six).
 *
 * 0. the SFT model: `sft-alpaca` of the SFT recipe in --sft-dir (run with
 *    `node dist/bench/sft-learn.js --dir SFT_DIR` first when it is not there), with its Alpaca
 *    Libre train and held-out prompts (`data/alpaca-train.jsonl`, `data/alpaca-heldout.jsonl`);
 * 1. preference pairs sampled from the SFT model itself: K answers to every train prompt
 *    (temperature 0.8, top-k 40, top-p 0.95, the SFT recipe's sampling), answers that ended;
 *    chosen = one that follows the rule, rejected = one that does not (up to 2 pairs per prompt).
 *    The same from the held-out prompts gives held-out pairs;
 * 2. a reward model: `llmts reward train` from the SFT model on the pairs, its pairwise accuracy on
 *    the held-out pairs by `llmts reward eval`;
 * 3. PPO: `llmts ppo` from the SFT model against that reward model, on the train prompts, with a
 *    KL target;
 * 4. DPO: `llmts dpo` from the SFT model on the same pairs;
 * 5. scores on the held-out prompts, S answers each, for the SFT, PPO and DPO models:
 *    - sampled as the rollouts are (temperature only, so they are samples of the policy itself):
 *      the reward model's mean score and its standard deviation, the rule's rate, the KL to the
 *      SFT model (Σ over the answer of log π - log π_SFT, at the sampling temperature, mean over
 *      answers), the perplexity of the answers' text under the SFT model (src/eval/perplexity.ts),
 *      the mean length and the share that ended;
 *    - sampled as the SFT recipe samples (temperature 0.8, top-k 40, top-p 0.95): the rule's rate.
 *
 * Each step's command is printed (stderr) as it starts; a step whose output is in --dir from the
 * same command on the same inputs is reused (the time column says so); --fresh redoes them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hashFile, loadForScoring, runStep, type Step } from './recipe-steps.js';
import { describeBackend } from '../src/backend/index.js';
import { chatStopTokens, chatTemplate, encodeChat, type ChatMessage } from '../src/chat/index.js';
import { loadPromptRows } from '../src/data/prompt-rows.js';
import { chatContinuations, continuationNll, perplexity } from '../src/eval/perplexity.js';
import { loadRewardModel, scoreAnswers } from '../src/align/reward-model.js';
import { makeResponseBatch, responseOutputs, sampleRollouts, type Rollout } from '../src/align/rollout.js';
import { Transformer } from '../src/model/transformer.js';
import { noGrad } from '../src/tensor/index.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SFT_LEARN = fileURLToPath(new URL('./sft-learn.js', import.meta.url));

/** The rule the preference pairs follow and the scores check. */
const RULE = { text: 'the answer\'s first word is "The"', test: (answer: string): boolean => /^\s*The\b/.test(answer) };

/** Every setting of the recipe: change one here and the affected steps rerun. */
const RECIPE = {
  /** pair sampling: K answers per prompt, the SFT recipe's sampling, answers capped at maxNewTokens */
  pairs: { samples: 8, pairsPerPrompt: 2, maxNewTokens: 64, temperature: 0.8, topK: 40, topP: 0.95, seed: 11 },
  reward: ['--max-iters', '150', '-b', '16', '--lr', '1e-3', '--eval-interval', '50', '--eval-iters', '10', '--eval-split', '0.05'],
  ppo: ['--max-iters', '120', '-b', '8', '--rollout-prompts', '16', '--ppo-epochs', '2', '--lr', '1e-4', '--kl-coef', '0.05', '--target-kl', '6',
    '--missing-eos-penalty', '5', '--max-new-tokens', '64', '--temperature', '0.8', '--eval-interval', '40', '--eval-iters', '4'],
  ppoRule: ['--max-iters', '120', '-b', '8', '--rollout-prompts', '16', '--ppo-epochs', '2', '--lr', '1e-4', '--kl-coef', '0.05', '--target-kl', '6',
    '--max-new-tokens', '64', '--temperature', '0.8', '--eval-interval', '40', '--eval-iters', '4'],
  dpo: ['--max-iters', '120', '-b', '8', '--lr', '1e-4', '--beta', '0.1', '--eval-interval', '40', '--eval-iters', '4'],
  /** held-out scoring: S answers per held-out prompt */
  score: { samples: 4, maxNewTokens: 64, temperature: 0.8, seed: 1001 },
  scoreSftSampling: { topK: 40, topP: 0.95 },
};

const USAGE = `usage: node dist/bench/rlhf-learn.js [--dir DIR] [--sft-dir DIR] [--threads N] [--fresh]

  --dir DIR       where the runs go (default out/rlhf-learn); steps already there are reused
  --sft-dir DIR   the SFT recipe's directory (default out/sft-learn); run there first if it lacks sft-alpaca
  --threads N     threads for every step (default 2)
  --fresh         redo every step`;

interface Scores {
  reward: { mean: number; std: number };
  rule: number;
  ruleSftSampling: number;
  kl: number;
  perplexity: number;
  length: number;
  ended: number;
  answers: number;
  seconds: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, 'sft-dir': { type: 'string' }, threads: { type: 'string' }, fresh: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const dir = resolve(values.dir ?? 'out/rlhf-learn');
  const sftDir = resolve(values['sft-dir'] ?? 'out/sft-learn');
  const threads = values.threads ?? '2';
  const fresh = values.fresh ?? false;
  mkdirSync(join(dir, 'data'), { recursive: true });
  const loadAtStart = loadavg()[0];
  const steps: Step[] = [];
  const run = (name: string, output: string, args: string[]): void => {
    steps.push(runStep(dir, name, output, [...args, '-t', threads], fresh));
  };

  // 0. the SFT model and its prompts
  const sft = join(sftDir, 'sft-alpaca');
  if (!existsSync(join(sft, 'ckpt.safetensors'))) {
    process.stderr.write(`${sft} is missing: running the SFT recipe first: node ${SFT_LEARN} --dir ${sftDir} --threads ${threads}\n`);
    const r = spawnSync(process.execPath, [SFT_LEARN, '--dir', sftDir, '--threads', threads], { stdio: ['ignore', 2, 2] });
    if (r.status !== 0) throw new Error(`the SFT recipe failed (exit ${r.status})`);
  }
  const trainPrompts = join(sftDir, 'data', 'alpaca-train.jsonl');
  const heldPrompts = join(sftDir, 'data', 'alpaca-heldout.jsonl');
  const sftModel = await loadForScoring(sft);
  const chatml = chatTemplate('chatml');
  const stopTokens = chatStopTokens(sftModel.tok, chatml);

  // 1. preference pairs sampled from the SFT model
  const pairsTrain = join(dir, 'data', 'pairs-train.jsonl');
  const pairsHeld = join(dir, 'data', 'pairs-heldout.jsonl');
  const pairRecord = [JSON.stringify(RECIPE.pairs), RULE.test.toString(), hashFile(join(sft, 'ckpt.safetensors')), hashFile(trainPrompts), hashFile(heldPrompts)].join('\n');
  const pairRecordPath = join(dir, 'pairs.step');
  let pairStats = '';
  if (!fresh && existsSync(pairsTrain) && existsSync(pairsHeld) && existsSync(pairRecordPath) && readFileSync(pairRecordPath, 'utf8') === pairRecord) {
    process.stderr.write(`pairs: reusing ${pairsTrain}\n`);
    steps.push({ name: 'pairs', seconds: null, reused: true, command: '' });
  } else {
    process.stderr.write(`pairs: sampling ${RECIPE.pairs.samples} answers to every prompt from ${sft}...\n`);
    const t0 = performance.now();
    const a = samplePairs(sftModel, promptsOf(trainPrompts), RECIPE.pairs.seed, stopTokens);
    const b = samplePairs(sftModel, promptsOf(heldPrompts), RECIPE.pairs.seed + 1, stopTokens);
    writeFileSync(pairsTrain, a.lines.join(''));
    writeFileSync(pairsHeld, b.lines.join(''));
    writeFileSync(pairRecordPath, pairRecord);
    steps.push({ name: 'pairs', seconds: (performance.now() - t0) / 1000, reused: false, command: '' });
    pairStats = `train prompts: ${a.stats}; held-out prompts: ${b.stats}`;
    process.stderr.write(`pairs: ${pairStats}\n`);
  }
  const pairCount = (f: string): number => readFileSync(f, 'utf8').split('\n').filter((l) => l.trim() !== '').length;

  // 2. the reward model, and its held-out accuracy
  const rm = join(dir, 'rm');
  run('reward model', join(rm, 'ckpt.safetensors'), ['reward', 'train', '-m', sft, '--data', pairsTrain, ...RECIPE.reward, '-o', rm, '--overwrite']);
  const evalRm = spawnSync(process.execPath, [CLI, 'reward', 'eval', '-m', rm, '--data', pairsHeld], { encoding: 'utf8', stdio: ['ignore', 'pipe', 2] });
  if (evalRm.status !== 0) throw new Error(`llmts reward eval failed (exit ${evalRm.status})`);
  const rmAccuracy = Number(/accuracy ([\d.]+)\s*$/.exec(evalRm.stdout)?.[1]);

  // 3. PPO against the reward model, and against the rule itself (a JavaScript reward); 4. DPO on the pairs
  const ppo = join(dir, 'ppo');
  run('PPO', join(ppo, 'ckpt.safetensors'), ['ppo', '-m', sft, '--reward', rm, '--prompts', trainPrompts, ...RECIPE.ppo, '-o', ppo, '--overwrite']);
  const ruleModule = join(dir, 'data', 'rule-reward.mjs');
  writeFileSync(ruleModule, `// 1 when ${RULE.text}, else 0 (written by bench/rlhf-learn.ts)\nexport function reward(prompt, completion) {\n  return (${RULE.test.toString()})(completion) ? 1 : 0;\n}\n`);
  const ppoRule = join(dir, 'ppo-rule');
  run('PPO rule', join(ppoRule, 'ckpt.safetensors'), ['ppo', '-m', sft, '--reward', ruleModule, '--prompts', trainPrompts, ...RECIPE.ppoRule, '-o', ppoRule, '--overwrite']);
  const dpo = join(dir, 'dpo');
  run('DPO', join(dpo, 'ckpt.safetensors'), ['dpo', '-m', sft, '--data', pairsTrain, ...RECIPE.dpo, '-o', dpo, '--overwrite']);

  // 5. scores on the held-out prompts
  const reward = loadRewardModel(rm);
  const held = promptsOf(heldPrompts);
  const score = async (path: string): Promise<Scores> => {
    process.stderr.write(`scoring ${path}...\n`);
    const t0 = performance.now();
    const m = path === sft ? sftModel : await loadForScoring(path);
    const s = scoreModel(m, sftModel, reward, held, stopTokens);
    s.seconds = (performance.now() - t0) / 1000;
    return s;
  };
  const rows: [string, Scores, string][] = [
    ['SFT (Alpaca Libre)', await score(sft), ''],
    ['PPO against the reward model', await score(ppo), 'PPO'],
    ['PPO against the rule (JavaScript reward)', await score(ppoRule), 'PPO rule'],
    ['DPO on the pairs', await score(dpo), 'DPO'],
  ];

  const time = (name: string): string => {
    const st = steps.find((x) => x.name === name);
    return !st ? '' : st.reused ? 'reused' : `${st.seconds!.toFixed(0)} s`;
  };
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  const n = rows[0][1].answers;
  console.log(`| model | reward, mean (std) | rule: "The" first (T ${RECIPE.score.temperature}) | rule, top-k ${RECIPE.scoreSftSampling.topK} top-p ${RECIPE.scoreSftSampling.topP} | KL to SFT | perplexity under SFT | length (tokens) | ended | training time | scoring time |`);
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const [label, s, step] of rows) {
    console.log(`| ${label} | ${s.reward.mean.toFixed(3)} (${s.reward.std.toFixed(3)}) | ${pct(s.rule)} | ${pct(s.ruleSftSampling)} | ${s.kl.toFixed(3)} | ${s.perplexity.toFixed(2)} | ${s.length.toFixed(1)} | ${pct(s.ended)} | ${time(step)} | ${s.seconds.toFixed(0)} s |`);
  }
  const [before, afterPpo, afterRule, afterDpo] = rows.map((r) => r[1]);
  const targetKl = (flags: string[]): number => Number(flags[flags.indexOf('--target-kl') + 1]);
  const ruleStd = Math.sqrt(before.rule * (1 - before.rule));
  console.log('');
  console.log(`rule: ${RULE.text}; ${held.length} held-out prompts x ${RECIPE.score.samples} answers = ${n} per model, at most ${RECIPE.score.maxNewTokens} new tokens`);
  console.log(`pairs: ${pairCount(pairsTrain)} train, ${pairCount(pairsHeld)} held out${pairStats ? ` (${pairStats})` : ''}; reward model held-out pairwise accuracy ${rmAccuracy.toFixed(4)}`);
  console.log(`PPO: reward ${before.reward.mean.toFixed(3)} -> ${afterPpo.reward.mean.toFixed(3)}: +${((afterPpo.reward.mean - before.reward.mean) / before.reward.std).toFixed(2)} std of the SFT rewards (goal >= 1); ` +
    `KL ${afterPpo.kl.toFixed(3)} (target ${targetKl(RECIPE.ppo)}); perplexity under SFT x${(afterPpo.perplexity / before.perplexity).toFixed(2)} of the SFT answers' (goal <= 2)`);
  console.log(`PPO against the rule: reward (the rule's rate) ${pct(before.rule)} -> ${pct(afterRule.rule)}: +${((afterRule.rule - before.rule) / ruleStd).toFixed(2)} std of the SFT rewards (goal >= 1); ` +
    `KL ${afterRule.kl.toFixed(3)} (target ${targetKl(RECIPE.ppoRule)}); perplexity under SFT x${(afterRule.perplexity / before.perplexity).toFixed(2)} (goal <= 2)`);
  console.log(`DPO: rule rate ${pct(before.ruleSftSampling)} -> ${pct(afterDpo.ruleSftSampling)} (${((afterDpo.ruleSftSampling - before.ruleSftSampling) * 100).toFixed(1)} points; goal >= 20) with the SFT recipe's sampling`);
  console.log('');
  console.log(`steps (threads ${threads}; ${describeBackend()}; ${availableParallelism()} cores; load average ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end):`);
  for (const st of steps) console.log(`- ${st.name} (${st.reused ? 'reused' : `${st.seconds!.toFixed(1)} s`})${st.command ? `: \`llmts ${st.command}\`` : ': sampled in this script'}`);
}

interface Loaded {
  model: Transformer;
  tok: Tokenizer;
}



/** The user turns of a prompt file (Alpaca rows: instruction + input), as llmts ppo reads them. */
function promptsOf(path: string): ChatMessage[][] {
  return loadPromptRows(path, { onBadRow: 'error' }).rows.map((r) => r.messages);
}

/** S answers to each prompt (answer i of prompt p seeded seed·1e6 + p·S + i), with the text of each. */
function sampleAnswers(m: Loaded, prompts: readonly ChatMessage[][], S: number, opts: { maxNewTokens: number; temperature: number; topK?: number; topP?: number }, seed: number, stopTokens: number[]) {
  const chatml = chatTemplate('chatml');
  const picked = prompts.flatMap((messages, p) => {
    const ids = Int32Array.from(encodeChat(m.tok, chatml, messages));
    return Array.from({ length: S }, () => ({ index: p, ids }));
  });
  const rollouts = noGrad(() => sampleRollouts(m.model, picked, { ...opts, stopTokens }, picked.map((_, i) => seed * 1000003 + i)));
  const text = rollouts.map((r) => m.tok.decode(Array.from(r.ended ? r.response.subarray(0, r.response.length - 1) : r.response)));
  return { rollouts, text };
}

/**
 * Pairs among the ended answers sampled from the model, as JSONL: for each prompt, answers that
 * follow the rule (chosen) against answers that do not (rejected), rejected answers that have
 * "The" further on first (the hard negatives: a reward model that only looks for "The" anywhere
 * gets them wrong), each chosen paired with the rejected answer closest to it in length (so length
 * does not predict the preference); then, for one chosen answer per prompt, a minimal pair: the
 * same answer with its first word swapped for a rejected answer's first word.
 */
function samplePairs(m: Loaded, prompts: readonly ChatMessage[][], seed: number, stopTokens: number[]) {
  const o = RECIPE.pairs;
  const { rollouts, text } = sampleAnswers(m, prompts, o.samples, o, seed, stopTokens);
  const lines: string[] = [];
  let follows = 0, ended = 0, hard = 0, minimal = 0;
  const laterThe = (t: string): boolean => /\bThe\b/.test(t);
  for (let p = 0; p < prompts.length; p++) {
    const yes: string[] = [], no: string[] = [];
    for (let i = p * o.samples; i < (p + 1) * o.samples; i++) {
      if (!rollouts[i].ended) continue;
      ended++;
      const t = text[i].trim();
      if (t === '') continue;
      if (RULE.test(t)) {
        follows++;
        if (!yes.includes(t)) yes.push(t);
      } else if (!no.includes(t)) no.push(t);
    }
    if (yes.length === 0 || no.length === 0) continue;
    const pair = (chosen: string, rejected: string): void => void lines.push(JSON.stringify({ prompt: prompts[p], chosen, rejected }) + '\n');
    const pool = [...no];
    for (const chosen of yes.slice(0, o.pairsPerPrompt)) {
      if (pool.length === 0) break;
      const hardOnes = pool.filter(laterThe);
      const from = hardOnes.length > 0 ? hardOnes : pool;
      const rejected = from.reduce((best, r) => (Math.abs(r.length - chosen.length) < Math.abs(best.length - chosen.length) ? r : best));
      pool.splice(pool.indexOf(rejected), 1);
      if (laterThe(rejected)) hard++;
      pair(chosen, rejected);
    }
    const firstWord = no[0].split(/\s+/)[0];
    const swapped = yes[0].replace(/^The\b/, firstWord);
    if (swapped !== yes[0] && !RULE.test(swapped)) {
      minimal++;
      pair(yes[0], swapped);
    }
  }
  const total = prompts.length * o.samples;
  return { lines, stats: `${total} answers, ${ended} ended, ${follows} of those follow the rule (${(100 * follows / Math.max(1, ended)).toFixed(1)}%); ${lines.length} pairs (${hard} with "The" later in the rejected answer, ${minimal} minimal)` };
}

function scoreModel(m: Loaded, ref: Loaded, rm: ReturnType<typeof loadRewardModel>, prompts: readonly ChatMessage[][], stopTokens: number[]): Scores {
  const o = RECIPE.score;
  const { rollouts, text } = sampleAnswers(m, prompts, o.samples, o, o.seed, stopTokens);
  const asked = rollouts.map((r) => prompts[r.promptIndex]);
  const rewards = scoreAnswers(rm, asked.map((prompt, i) => ({ prompt, answer: text[i] })), 16);
  const kl = klPerAnswer(m.model, ref.model, rollouts, o.temperature, m.tok.eosId ?? 0);
  const ppl = perplexity(continuationNll(ref.model, chatContinuations(ref.tok, chatTemplate('chatml'), asked, text)));
  const sftSampled = sampleAnswers(m, prompts, o.samples, { ...o, ...RECIPE.scoreSftSampling }, o.seed + 1, stopTokens);
  const mean = (xs: ArrayLike<number>): number => Array.from(xs).reduce((a, b) => a + b, 0) / xs.length;
  const rMean = mean(rewards);
  return {
    reward: { mean: rMean, std: Math.sqrt(mean(Array.from(rewards, (r) => (r - rMean) ** 2))) },
    rule: mean(text.map((t) => (RULE.test(t) ? 1 : 0))),
    ruleSftSampling: mean(sftSampled.text.map((t) => (RULE.test(t) ? 1 : 0))),
    kl: mean(kl),
    perplexity: ppl.perplexity,
    length: mean(rollouts.map((r) => r.response.length)),
    ended: mean(rollouts.map((r) => (r.ended ? 1 : 0))),
    answers: rollouts.length,
    seconds: 0,
  };
}

/** Σ over each answer's tokens of log π(token) - log π_ref(token) at the sampling temperature: the k1 estimate of KL(π || π_ref) per answer. */
function klPerAnswer(policy: Transformer, reference: Transformer, rollouts: readonly Rollout[], temperature: number, padId: number): Float64Array {
  const out = new Float64Array(rollouts.length);
  const B = 16;
  noGrad(() => {
    for (let s = 0; s < rollouts.length; s += B) {
      const batch = makeResponseBatch(rollouts.slice(s, s + B), padId);
      const pol = responseOutputs(policy, batch, temperature).logp.data;
      const ref = responseOutputs(reference, batch, temperature).logp.data;
      for (let b = 0; b < batch.R; b++) for (let j = 0; j < batch.L; j++) if (batch.mask[b * batch.L + j]) out[s + b] += pol[b * batch.L + j] - ref[b * batch.L + j];
    }
  });
  return out;
}


main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
