/**
 * llmts ppo: reinforcement learning of a policy against a reward (InstructGPT's third stage):
 * PPO with a KL penalty to the frozen starting model and a value head, or GRPO / RLOO with
 * group-relative advantages (--algo). Rewards come from reward models (llmts reward train runs),
 * JavaScript modules, or both combined.
 *
 *   llmts ppo -m out/sft --reward out/rm --prompts prompts.jsonl -o out/ppo
 *   llmts ppo -m out/sft --reward exact.mjs --prompts math.jsonl -o out/grpo --algo grpo --samples 8
 *   llmts ppo -m out/sft --reward helpful=out/rm-h --reward safety=out/rm-s --combine llama2 --prompts p.jsonl -o out/rl
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { describeBackend } from '../backend/index.js';
import { encodeChat, chatStopTokens, renderPromptCompletion, type ChatTemplate } from '../chat/index.js';
import { RL_ALGORITHMS, RlObjective, type RlAlgorithm, type RlEval, type RlMinibatch, type RlOptions, type RlPrompt } from '../align/rl.js';
import { llama2Combination, moduleSource, rewardModelSource, weightedSum, type RewardSource } from '../align/rewards.js';
import { loadRewardModel } from '../align/reward-model.js';
import { loadPromptRows } from '../data/prompt-rows.js';
import { badRowsReport, ON_BAD_ROW_CHOICES, parseOnBadRow, type OnBadRow } from '../data/rows.js';
import { parseEvalSplit, splitTrainEval } from '../data/split.js';
import type { RunLoraOptions } from '../finetune/lora-model.js';
import { addScalarHead, type ScalarHead } from '../model/heads.js';
import { trainableParameterCount } from '../model/lora.js';
import { countParameters } from '../model/parameters.js';
import { Transformer } from '../model/transformer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { TrainingLoop, type EvalRecord, type StepRecord, type TrainResult } from '../train/loop.js';
import type { TrainOptions } from '../train/trainer.js';
import { LlmError } from '../util/errors.js';
import type { CommandModule } from './commands.js';
import type { CommandSpec, Flags } from './flags.js';
import { CHAT_TEMPLATE_NAMES } from '../chat/index.js';
import { dataFile, loraFlagDefs, resumePolicyRun, startPolicyRun, writeLoraOutputs, type PolicySetup } from './finetune-setup.js';
import { runLoopInTerminal } from './loop-progress.js';
import { THREADS_FLAG } from './shared-flags.js';
import { trainLoopFlags, trainLoopOptions } from './train-flags.js';

export interface PpoRunOptions extends TrainOptions, Omit<RlOptions, 'padId' | 'seed' | 'stopTokens'> {
  objective: 'rl';
  model: string;
  prompts: string;
  onBadRow: OnBadRow;
  evalSplit: number;
  rewards: string[];
  combine: 'sum' | 'llama2';
  template: string;
  templateSource?: string;
  lora?: RunLoraOptions;
}

const D = 'Data and output';
const R = 'Reinforcement learning';
const RUN_FILES = ['ckpt.safetensors', 'metrics.jsonl', 'loss.svg', 'adapter', 'merged'];
const RESUME_FLAGS = new Set(['resume', 'out', 'max-iters', 'threads', 'debug', 'dtype']);
const VALUE_HEAD = 'value_head.weight';

const PPO_SPEC: CommandSpec = {
  name: 'ppo',
  usage: '-m MODEL --reward RM|MODULE --prompts FILE -o DIR [flags]',
  summary: `Reinforcement learning from a reward: sample answers to --prompts with the policy (MODEL,
usually an SFT model), score them, and update the policy. PPO (default): per-token KL penalty to the
frozen starting model, the score on the answer's last token, GAE over a value head, clipped
policy and value losses (TRL's PPO). GRPO / RLOO: K samples per prompt, advantages relative to the
prompt's group, no value model. Rewards: a reward model (a llmts reward train run), a JavaScript
module exporting reward(prompt, completion, meta) -> number, or several (--combine). Answers are
scored as text, so a reward model with another tokenizer works (answers are re-tokenized).`,
  flags: [
    { name: 'model', short: 'm', kind: 'string', value: 'PATH', help: 'the policy to start from (or give it as the positional MODEL)', group: D },
    { name: 'prompts', kind: 'string', value: 'PATH', help: 'JSONL prompts: {"prompt": ...} or {"messages": [...]} (other fields reach the reward as meta) (required)', group: D },
    { name: 'reward', kind: 'strings', value: '[NAME=]PATH', help: 'a reward model run directory or a .js/.mjs module; repeat to combine (required)', group: D },
    { name: 'combine', kind: 'string', choices: ['sum', 'llama2'], default: 'sum', help: "sum: the rewards added; llama2: rewards named helpful and safety, safety where sigmoid(safety) < 0.15 or the prompt's meta has unsafe: true, whitened", group: D },
    { name: 'on-bad-row', kind: 'string', choices: ON_BAD_ROW_CHOICES, default: 'skip', help: 'a prompt row that does not fit: skip it (reported) or stop', group: D },
    { name: 'template', kind: 'string', choices: CHAT_TEMPLATE_NAMES, defaultText: "the model's own, else chatml / qa", help: 'chat template that renders the prompts', group: D },
    { name: 'eval-split', kind: 'string', value: 'FRACTION', default: '0.1', help: 'share of the prompts held out for the evaluation reward', group: D },
    { name: 'out', short: 'o', kind: 'string', value: 'DIR', help: 'run directory (required)', group: D },
    { name: 'resume', kind: 'boolean', help: 'continue the run in --out from its checkpoint', group: D },
    { name: 'overwrite', kind: 'boolean', help: 'replace the run already in --out', group: D },
    { name: 'algo', kind: 'string', choices: RL_ALGORITHMS, default: 'ppo', help: 'ppo (value head, GAE), grpo or rloo (group baselines)', group: R },
    { name: 'samples', kind: 'integer', min: 1, defaultText: '1 for ppo, 4 for grpo/rloo', help: 'answers sampled per prompt', group: R },
    { name: 'rollout-prompts', kind: 'integer', min: 1, default: 8, help: 'prompts per rollout phase', group: R },
    { name: 'ppo-epochs', kind: 'integer', min: 1, defaultText: '4 for ppo, 1 for grpo/rloo', help: 'passes over each rollout (-b answers per step)', group: R },
    { name: 'kl-coef', kind: 'number', min: 0, defaultText: '0.05 for ppo, 0 for grpo/rloo', help: 'beta of the KL penalty to the starting model', group: R },
    { name: 'target-kl', kind: 'number', above: 0, help: 'adapt beta towards this KL per answer (ppo)', group: R },
    { name: 'clip', kind: 'number', above: 0, default: 0.2, help: 'clip range of the probability ratio', group: R },
    { name: 'clip-value', kind: 'number', above: 0, default: 0.2, help: 'clip range of the value update (ppo)', group: R },
    { name: 'vf-coef', kind: 'number', min: 0, default: 0.1, help: 'weight of the value loss (ppo)', group: R },
    { name: 'gamma', kind: 'number', min: 0, max: 1, default: 1, help: 'discount (ppo)', group: R },
    { name: 'lambda', kind: 'number', min: 0, max: 1, default: 0.95, help: 'GAE lambda (ppo)', group: R },
    { name: 'max-new-tokens', kind: 'integer', min: 1, default: 53, help: 'answer length at most', group: R },
    { name: 'temperature', kind: 'number', above: 0, default: 0.7, help: 'sampling temperature of the rollouts', group: R },
    { name: 'missing-eos-penalty', kind: 'number', min: 0, default: 0, help: 'subtracted from the score of an answer that never ends', group: R },
    ...loraFlagDefs('; also writes DIR/adapter (PEFT) and DIR/merged'),
    ...trainLoopFlags({ maxIters: 100, batchSize: 8, lr: 3e-6, weightDecay: 0, evalInterval: 20, evalIters: 2, warmupIters: 0 }),
    THREADS_FLAG,
  ],
  notes: `Each rollout phase samples --samples answers to each of --rollout-prompts prompts; each step
then updates on -b of those answers; after --ppo-epochs passes the next rollout starts. Logged:
objective/scores, objective/kl, objective/rlhf_reward, policy/clipfrac, policy/approxkl,
loss/policy, loss/value, val/clipfrac, val/response_length; evaluations sample one answer per
held-out prompt (fixed seeds) and log its mean reward and KL to the start.

  llmts ppo -m out/sft --reward out/rm --prompts prompts.jsonl -o out/ppo --max-iters 200 --lr 1e-5
  llmts ppo -m out/sft --reward rewards/exact.mjs --prompts math.jsonl -o out/grpo --algo grpo --samples 8`,
};

export const PPO: CommandModule = { spec: PPO_SPEC, run: ppoCommand };

const log = (s: string): void => void process.stdout.write(s + '\n');

/** The reward of the run from its --reward specs. */
async function rewardFrom(specs: readonly string[], combine: 'sum' | 'llama2', policyTokenizer: Tokenizer): Promise<{ source: RewardSource; notes: string[] }> {
  if (specs.length === 0) throw new LlmError('give a reward: --reward RM_DIR (a llmts reward train run) or --reward MODULE.js');
  const notes: string[] = [];
  const named: { name: string; source: RewardSource }[] = [];
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const name = eq > 0 ? spec.slice(0, eq) : '';
    const path = eq > 0 ? spec.slice(eq + 1) : spec;
    if (!existsSync(path)) throw new LlmError(`--reward ${spec}: ${path} not found (give a reward model run directory or a .js/.mjs module)`);
    const ext = extname(path);
    if (statSync(path).isFile() && (ext === '.js' || ext === '.mjs')) {
      named.push({ name: name || path, source: await moduleSource(path) });
      notes.push(`${name || path}: JavaScript module`);
    } else {
      const rm = loadRewardModel(path);
      named.push({ name: name || path, source: rewardModelSource(name || path, rm) });
      const same = JSON.stringify(rm.tokenizer.toJSON()) === JSON.stringify(policyTokenizer.toJSON());
      notes.push(`${name || path}: reward model${same ? '' : ' (another tokenizer: answers are re-tokenized as text)'}`);
    }
  }
  if (combine === 'llama2') {
    const h = named.find((n) => n.name === 'helpful'), s = named.find((n) => n.name === 'safety');
    if (!h || !s || named.length !== 2) throw new LlmError('--combine llama2 takes two rewards named helpful and safety: --reward helpful=DIR --reward safety=DIR');
    return { source: llama2Combination(h.source, s.source), notes };
  }
  return { source: named.length === 1 ? named[0].source : weightedSum(named.map((n) => ({ source: n.source, weight: 1 }))), notes };
}

function renderPrompts(rows: ReturnType<typeof loadPromptRows>, tokenizer: Tokenizer, template: ChatTemplate, context: number, maxNew: number): { prompts: RlPrompt[]; tooLong: number[] } {
  const prompts: RlPrompt[] = [];
  const tooLong: number[] = [];
  rows.rows.forEach((r, i) => {
    const ids = encodeChat(tokenizer, template, r.messages);
    if (ids.length + Math.min(maxNew, 1) > context) {
      tooLong.push(rows.lines[i]);
      return;
    }
    prompts.push({ ids: Int32Array.from(ids), messages: r.messages, meta: r.meta });
  });
  return { prompts, tooLong };
}


/**
 * Tokens that end an answer: the template's stop tokens and EOS (chatStopTokens), and the last
 * token SFT trained after an answer (its end of turn: '<|im_end|>', EOS, or qa's '\n' for a
 * tokenizer without EOS), so a policy fine-tuned with that template can end its answers.
 */
function answerStopTokens(tokenizer: Tokenizer, template: ChatTemplate, sample: RlPrompt | undefined): number[] {
  const ids = new Set(chatStopTokens(tokenizer, template));
  if (!sample) return [...ids];
  // an answer made of the prompt's own text, which the tokenizer can encode
  const text = sample.messages[sample.messages.length - 1].content;
  const { ids: rendered, lossMask } = renderPromptCompletion(tokenizer, template, sample.messages, text);
  for (let i = rendered.length - 1; i >= 0; i--) {
    if (lossMask[i] === 1) {
      ids.add(rendered[i]);
      break;
    }
  }
  return [...ids];
}

async function ppoCommand(f: Flags): Promise<void> {
  const outDir = f.string('out');
  if (outDir === undefined) throw new LlmError(`give ${f.bool('resume') ? '' : '-m MODEL, --reward RM, --prompts FILE, '}-o DIR: llmts ppo -m MODEL --reward RM --prompts FILE -o DIR (see 'llmts ppo --help')`);
  let options: PpoRunOptions;
  let setup: PolicySetup;
  let replace: string[] = [];
  let resume;
  let valueHead: ScalarHead | null = null;
  const addValueHead = (model: Transformer, algo: RlAlgorithm): void => {
    if (algo === 'ppo') valueHead = addScalarHead(model, { init: 'zeros', name: VALUE_HEAD });
  };
  if (f.bool('resume')) {
    const r = await resumePolicyRun<PpoRunOptions>(f, outDir, 'ppo', RESUME_FLAGS, (o) => o?.objective === 'rl', (m, o) => addValueHead(m, o.algo));
    ({ options } = r);
    setup = r;
    resume = r.checkpoint;
  } else {
    const prompts = dataFile(f.string('prompts'), 'prompts');
    if (f.strings('reward').length === 0) throw new LlmError('give a reward: --reward RM_DIR (a llmts reward train run) or --reward MODULE.js');
    const algo = f.string('algo') as RlAlgorithm;
    const s = await startPolicyRun(f, outDir, 'llmts ppo -m MODEL --reward RM --prompts FILE -o DIR', RUN_FILES, (m) => addValueHead(m, algo));
    setup = s;
    replace = s.replace;
    const group = algo !== 'ppo';
    options = {
      ...trainLoopOptions(f, s.model.config.blockSize, outDir), objective: 'rl', model: s.path, prompts,
      warmupIters: f.number('warmup-iters') ?? 0, // the flag table's default (trainLoopOptions would take pretraining's, 100 capped at max-iters/10)
      onBadRow: parseOnBadRow(f.string('on-bad-row')!), evalSplit: parseEvalSplit(f.string('eval-split')!),
      rewards: f.strings('reward'), combine: f.string('combine') as 'sum' | 'llama2', template: s.chosen.name, templateSource: s.chosen.source,
      algo, samplesPerPrompt: f.number('samples') ?? (group ? 4 : 1), promptsPerRollout: f.number('rollout-prompts')!,
      ppoEpochs: f.number('ppo-epochs') ?? (group ? 1 : 4), minibatchSize: f.number('batch-size')!,
      klCoef: f.number('kl-coef') ?? (group ? 0 : 0.05), clipRange: f.number('clip')!, clipRangeValue: f.number('clip-value')!,
      vfCoef: f.number('vf-coef')!, gamma: f.number('gamma')!, lam: f.number('lambda')!, maxNewTokens: f.number('max-new-tokens')!,
      temperature: f.number('temperature')!, missingEosPenalty: f.number('missing-eos-penalty')!,
    };
    if (f.has('target-kl')) options.targetKl = f.number('target-kl')!;
    if (s.lora) options.lora = s.lora;
  }
  const { model: policy, tokenizer, template, note } = setup;
  const reference = setup.reference;
  const { source: reward, notes } = await rewardFrom(options.rewards, options.combine, tokenizer);
  const rows = loadPromptRows(options.prompts, { onBadRow: options.onBadRow });
  const report = badRowsReport(options.prompts, { bad: rows.bad, rows: rows.total });
  const { prompts, tooLong } = renderPrompts(rows, tokenizer, template, policy.config.blockSize, options.maxNewTokens);
  const split = splitTrainEval(prompts, { fraction: options.evalSplit, key: (p) => JSON.stringify(p.messages) });
  const stopTokens = answerStopTokens(tokenizer, template, prompts[0]);
  if (stopTokens.length === 0) throw new LlmError(`answers could never end: the tokenizer has no end-of-text token and the ${options.template} template no end-of-turn token`);
  const objective = new RlObjective(reference, valueHead, split.train, split.eval, reward, tokenizer, {
    ...options, stopTokens, padId: tokenizer.eosId ?? 0, seed: options.seed,
  });
  const loop = new TrainingLoop<RlMinibatch, PpoRunOptions, RlEval>(policy, objective, options, { tokenizer, resume, curveTitle: `${policy.config.family} ${options.algo.toUpperCase()} loss`, chatTemplate: setup.chatTemplate });
  for (const name of replace) rmSync(join(outDir, name), { force: true, recursive: true });
  if (loop.step >= options.maxIters) {
    log(`nothing to do: the run in ${outDir} finished at step ${loop.step} of ${options.maxIters}; raise --max-iters to train it further, e.g. --max-iters ${loop.step * 2}`);
    return;
  }
  const cfg = policy.config;
  const counts = trainableParameterCount(policy);
  log(`policy: ${options.model}: ${cfg.family} ${cfg.nLayer} layers, dim ${cfg.nEmbd}: ${(countParameters(cfg) / 1e6).toFixed(2)}M parameters; ` +
    `${options.lora ? `LoRA r ${options.lora.r}, ` : ''}${counts.trainable} trained (${(100 * counts.fraction).toFixed(2)}%); reference: ${options.lora ? 'the base without adapters' : 'a frozen copy of the start'}`);
  log(`reward: ${notes.join('; ')}${options.rewards.length > 1 ? ` (combined: ${options.combine})` : ''}`);
  log(`prompts: ${options.prompts}: ${rows.format}, ${rows.total} rows, ${rows.bad.length} bad, ${tooLong.length} too long for the context; ${split.train.length} train / ${split.eval.length} eval`);
  if (report) process.stderr.write(`llmts ppo: ${report}\n`);
  if (tooLong.length > 0) process.stderr.write(`llmts ppo: left out ${tooLong.length} prompts that leave no room for an answer in the ${cfg.blockSize}-token context (lines ${tooLong.slice(0, 5).join(', ')})\n`);
  log(`${options.algo}: ${options.samplesPerPrompt} sample(s) x ${options.promptsPerRollout} prompts per rollout, ${options.ppoEpochs} epoch(s) of -b ${options.minibatchSize}, ` +
    `beta ${options.klCoef}${options.targetKl ? ` (target KL ${options.targetKl})` : ''}; template: ${note}; backend: ${describeBackend()}; run dir: ${outDir}`);
  if (loop.step > 0) log(`resuming from step ${loop.step}`);
  const latest = { score: NaN, kl: NaN };
  const result = await runLoopInTerminal<StepRecord, EvalRecord<RlEval>, TrainResult<EvalRecord<RlEval>>>({
    command: 'ppo', outDir, maxIters: options.maxIters, initialStep: loop.step, metricsPath: loop.metricsPath,
    run: (hooks) => loop.run(hooks),
    stepFields: (r) => {
      // score and KL come with a rollout's first step: the steps between show the latest
      latest.score = r.metrics?.['objective/scores'] ?? latest.score;
      latest.kl = r.metrics?.['objective/kl'] ?? latest.kl;
      return { loss: r.loss.toFixed(4), score: latest.score.toFixed(3), kl: Number.isNaN(latest.kl) ? '-' : latest.kl.toFixed(3), lr: r.lr.toExponential(2) };
    },
    evalLine: (e) => `step ${e.step}: held-out reward ${e.reward.toFixed(4)}, KL to start ${e.kl.toFixed(3)}, length ${e.length.toFixed(1)}, ended ${(100 * e.ended).toFixed(0)}%`,
  });
  if (result.interrupted) return;
  if (options.lora) {
    const { adapterDir, mergedPath } = writeLoraOutputs(policy, tokenizer, outDir, options.model, 'ppo', setup.chatTemplate);
    log(`adapter (PEFT): ${adapterDir}; merged model: ${mergedPath}`);
    log(`try it: llmts chat ${join(outDir, 'merged')}`);
    return;
  }
  log(`try it: llmts chat ${outDir}`);
}
