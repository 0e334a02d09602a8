/**
 * The SFT learning recipe, end to end: does fine-tuning teach a model pretrained here something
 * its pretraining text never showed? Prints one markdown table.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/sft-learn.js [--dir out/sft-learn] [--threads 2] [--fresh]
 *
 * 1. tokenizer: `llmts tokenizer train` on Tiny Shakespeare (byte-level BPE, 512 tokens, with
 *    ChatML's <|im_start|> / <|im_end|>, so llmts sft renders chats as ChatML and <|im_end|> is
 *    the end-of-turn token). Shakespeare has no numbers, so every digit stays a token of its own;
 * 2. base: `llmts train` (a 4-layer Llama, dim 128, context 256) on minbpe's Wikipedia article
 *    followed by Tiny Shakespeare: text with numbers (dates, counts: every digit is a token the
 *    base has learned to write) but no sums and no instructions. Tiny Shakespeare alone would
 *    leave the digits untrained, and LoRA, which cannot change the embeddings or the output
 *    layer, could then never write them (measured: held-out loss stuck at 3.9, answers "13");
 * 3. data: two-digit addition (src/eval/tasks.ts: "What is 23 + 45?" -> "68"; 500 held-out
 *    questions, the other 7,600 to train on) and Alpaca Libre (the rows marked "ok" of
 *    ../shared/data/alpaca-libre, trimmed, deduplicated, those whose ChatML rendering fits the
 *    context; 100 held out);
 * 4. `llmts sft` on the addition questions (every weight), `llmts sft --lora --lora-r 8` on
 *    them, and `llmts sft` on Alpaca Libre, each from the same base;
 * 5. scores: held-out exact match with greedy decoding (src/eval/exact-match.ts), the held-out
 *    Alpaca response loss (mean over the answer tokens and their <|im_end|>), and the share of
 *    sampled Alpaca answers (temperature 0.8, top-k 40, top-p 0.95, at most 200 new tokens) that
 *    the model ends with <|im_end|>.
 *
 * Each step's command is printed (stderr) as it starts, with the commands' own progress; the
 * table (stdout) gives each model's scores and each step's time. A step whose output is in --dir
 * from the same command on the same input files is reused (the time column says so); --fresh
 * redoes every step.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { loadForScoring, recipeOptions, runStep, type Step } from './recipe-steps.js';
import { describeBackend } from '../src/backend/index.js';
import { chatTemplate, type ChatMessage } from '../src/chat/index.js';
import { loadSftExamples, sftExamplesFromRow, type SftExample } from '../src/data/sft-examples.js';
import { additionTask, alpacaJsonl } from '../src/eval/tasks.js';
import { answerPrompts, endOfTurnRate, exactMatch } from '../src/eval/exact-match.js';
import { meanLoss, renderSftExamples } from '../src/finetune/sft.js';
import { noGrad } from '../src/tensor/index.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { loadTokenizer } from '../src/tokenizer/load.js';
import { Rng } from '../src/util/rng.js';


/** Every setting of the recipe: change one here and the affected steps rerun. */
const RECIPE = {
  tokenizer: ['--vocab-size', '512', '--special', '<|im_start|>', '--special', '<|im_end|>'],
  base: ['--preset', 'llama-15m', '--n-layer', '4', '--n-head', '4', '--n-kv-head', '4', '--n-embd', '128', '--hidden-dim', '384', '-c', '256',
    '-b', '16', '--lr', '2e-3', '--warmup-iters', '30', '--max-iters', '600', '--eval-interval', '200', '--eval-iters', '10', '--final-eval-iters', '20', '--sample-tokens', '0'],
  arithmetic: { heldOut: 500, seed: 1 },
  sftArithmetic: ['--epochs', '3', '-b', '32', '--lr', '1e-3', '--eval-interval', '100', '--eval-iters', '4'],
  loraArithmetic: ['--lora', '--lora-r', '8', '--epochs', '6', '-b', '32', '--lr', '3e-3', '--eval-interval', '100', '--eval-iters', '4'],
  alpaca: { heldOut: 100, seed: 1 },
  sftAlpaca: ['--epochs', '3', '-b', '16', '--lr', '1e-3', '--eval-interval', '50', '--eval-iters', '4'],
  /** the end-of-turn measurement: sampled answers to the held-out Alpaca prompts */
  eotSampling: { maxTokens: 200, temperature: 0.8, topK: 40, topP: 0.95, seed: 1 },
};

const USAGE = `usage: node dist/bench/sft-learn.js [--dir DIR] [--shared DIR] [--threads N] [--fresh]

  --dir DIR      where the runs go (default out/sft-learn); steps already there are reused
  --shared DIR   the shared data folder (default ../shared/data beside the repository)
  --threads N    threads for every step (default 2)
  --fresh        redo every step`;

interface Scores {
  exact?: { correct: number; total: number };
  alpacaLoss?: number;
  eot?: { ended: number; total: number };
  evalSeconds: number;
}

async function main(): Promise<void> {
  const values = recipeOptions('out/sft-learn');
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const { dir, threads } = values;
  const SHARED = values.shared;
  const shakespeare = join(SHARED, 'tinyshakespeare', 'input.txt');
  const wikipedia = join(SHARED, 'minbpe', 'taylorswift.txt');
  const alpacaFiles = ['alpaca_libre_tasks_v1.jsonl', 'alpaca_libre_tasks_v3.jsonl'].map((f) => join(SHARED, 'alpaca-libre', f));
  for (const f of [shakespeare, wikipedia, ...alpacaFiles]) if (!existsSync(f)) throw new Error(`${f} is missing: this recipe reads ../shared/data (see README)`);
  mkdirSync(join(dir, 'data'), { recursive: true });
  const loadAtStart = loadavg()[0];
  const steps: Step[] = [];
  const run = (name: string, output: string, args: string[], withThreads = true): void => {
    steps.push(runStep(dir, name, output, withThreads ? [...args, '-t', threads] : args, values.fresh ?? false));
  };

  const tokenizerPath = join(dir, 'tokenizer', 'tokenizer.json');
  run('tokenizer', tokenizerPath, ['tokenizer', 'train', '--data', shakespeare, ...RECIPE.tokenizer, '-o', join(dir, 'tokenizer')], false);
  const pretrainText = join(dir, 'data', 'pretrain.txt');
  writeFileSync(pretrainText, readFileSync(wikipedia, 'utf8') + '\n\n' + readFileSync(shakespeare, 'utf8')); // the validation split is Shakespeare's end
  const base = join(dir, 'base');
  run('base', join(base, 'ckpt.safetensors'), ['train', '--data', pretrainText, '--tokenizer', tokenizerPath, ...RECIPE.base, '-o', base, '--overwrite']);

  // the data, written by this script from the task generator and the shared Alpaca Libre files
  const tokenizer = await loadTokenizer(tokenizerPath);
  const chatml = chatTemplate('chatml');
  const task = additionTask(RECIPE.arithmetic);
  const arithTrain = join(dir, 'data', 'arithmetic-train.jsonl');
  const arithHeld = join(dir, 'data', 'arithmetic-heldout.jsonl');
  writeFileSync(arithTrain, alpacaJsonl(task.train));
  writeFileSync(arithHeld, alpacaJsonl(task.heldOut));
  const alpaca = alpacaLibre(alpacaFiles, tokenizer, 256, RECIPE.alpaca);
  const alpacaTrain = join(dir, 'data', 'alpaca-train.jsonl');
  const alpacaHeld = join(dir, 'data', 'alpaca-heldout.jsonl');
  writeFileSync(alpacaTrain, alpaca.train.join(''));
  writeFileSync(alpacaHeld, alpaca.heldOut.join(''));
  process.stderr.write(`data: ${task.train.length} addition questions to train on, ${task.heldOut.length} held out; Alpaca Libre: ${alpaca.kept} of ${alpaca.rows} rows kept (${alpaca.why}), ${alpaca.train.length} train, ${alpaca.heldOut.length} held out\n`);

  const sftArith = join(dir, 'sft-arithmetic');
  run('SFT arithmetic', join(sftArith, 'ckpt.safetensors'), ['sft', '-m', base, '--data', arithTrain, ...RECIPE.sftArithmetic, '-o', sftArith, '--overwrite']);
  const loraArith = join(dir, 'lora-arithmetic');
  run('LoRA arithmetic', join(loraArith, 'merged', 'ckpt.safetensors'), ['sft', '-m', base, '--data', arithTrain, ...RECIPE.loraArithmetic, '-o', loraArith, '--overwrite']);
  const sftAlpaca = join(dir, 'sft-alpaca');
  run('SFT alpaca', join(sftAlpaca, 'ckpt.safetensors'), ['sft', '-m', base, '--data', alpacaTrain, ...RECIPE.sftAlpaca, '-o', sftAlpaca, '--overwrite']);

  // scores
  const arithHeldExamples = chatExamples(arithHeld);
  const alpacaHeldExamples = chatExamples(alpacaHeld);
  const scoreArith = async (path: string, s: Scores): Promise<void> => {
    const { model, tok } = await loadForScoring(path);
    const answers = noGrad(() => answerPrompts(model, tok, chatml, arithHeldExamples.map(promptOf), { maxTokens: 8 }));
    s.exact = exactMatch(answers, arithHeldExamples.map(answerOf));
  };
  const scoreAlpaca = async (path: string, s: Scores): Promise<void> => {
    const { model, tok } = await loadForScoring(path);
    const { rendered } = renderSftExamples(alpacaHeldExamples, alpacaHeldExamples.map((_, i) => i + 1), tok, chatml, { maxLength: model.config.blockSize });
    s.alpacaLoss = noGrad(() => meanLoss(model, rendered, 16, tok.eosId ?? 0));
    s.eot = endOfTurnRate(noGrad(() => answerPrompts(model, tok, chatml, alpacaHeldExamples.map(promptOf), RECIPE.eotSampling)));
  };
  const timed = async (what: string, f: (s: Scores) => Promise<void>): Promise<Scores> => {
    process.stderr.write(`scoring ${what}...\n`);
    const s: Scores = { evalSeconds: 0 };
    const t0 = performance.now();
    await f(s);
    s.evalSeconds = (performance.now() - t0) / 1000;
    return s;
  };
  const rows: [string, Scores, string][] = [
    ['base (pretrained on a Wikipedia article + Tiny Shakespeare)', await timed('the base', async (s) => { await scoreArith(base, s); await scoreAlpaca(base, s); }), 'base'],
    ['full SFT on addition', await timed('full SFT', (s) => scoreArith(sftArith, s)), 'SFT arithmetic'],
    ['LoRA r=8 SFT on addition (merged)', await timed('LoRA', (s) => scoreArith(join(loraArith, 'merged'), s)), 'LoRA arithmetic'],
    ['full SFT on Alpaca Libre', await timed('Alpaca SFT', (s) => scoreAlpaca(sftAlpaca, s)), 'SFT alpaca'],
  ];

  const pct = (n: number, d: number): string => `${(100 * n / d).toFixed(1)}% (${n}/${d})`;
  const time = (name: string): string => {
    const st = steps.find((x) => x.name === name)!;
    return st.reused ? 'reused' : `${st.seconds!.toFixed(0)} s`;
  };
  console.log(`| model | addition exact match (${RECIPE.arithmetic.heldOut} held out, greedy) | Alpaca held-out response loss | Alpaca answers ended by <\\|im_end\\|> (${alpaca.heldOut.length} sampled, cap ${RECIPE.eotSampling.maxTokens}) | training time | scoring time |`);
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [label, s, step] of rows) {
    console.log(`| ${label} | ${s.exact ? pct(s.exact.correct, s.exact.total) : ''} | ${s.alpacaLoss !== undefined ? s.alpacaLoss.toFixed(3) : ''} | ${s.eot ? pct(s.eot.ended, s.eot.total) : ''} | ${time(step)} | ${s.evalSeconds.toFixed(0)} s |`);
  }
  console.log('');
  console.log(`steps (threads ${threads}; ${describeBackend()}; ${availableParallelism()} cores; load average ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end):`);
  for (const st of steps) console.log(`- ${st.name} (${st.reused ? 'reused' : `${st.seconds!.toFixed(1)} s`}): \`llmts ${st.command}\``);
}



type Chat = Extract<SftExample, { kind: 'chat' }>;

function chatExamples(path: string): Chat[] {
  const l = loadSftExamples(path, { onBadRow: 'error' });
  return l.examples.map((e) => {
    if (e.kind !== 'chat') throw new Error(`${path}: expected chat examples`);
    return e;
  });
}

const promptOf = (e: Chat): ChatMessage[] => e.messages.slice(0, -1);
const answerOf = (e: Chat): string => e.messages.at(-1)!.content;

/**
 * Alpaca Libre as SFT data: the rows its generator kept (status "ok"), fields trimmed (its
 * outputs end in blank lines), duplicates (same instruction and input) and rows whose ChatML
 * rendering exceeds `context` tokens left out, so that every answer ends inside the context;
 * then a seeded shuffle holds out `heldOut` rows. Returns JSONL lines.
 */
function alpacaLibre(files: string[], tokenizer: Tokenizer, context: number, opts: { heldOut: number; seed: number }) {
  const chatml = chatTemplate('chatml');
  const seen = new Set<string>();
  const kept: string[] = [];
  let rows = 0;
  let notOk = 0;
  let dup = 0;
  let long = 0;
  for (const file of files) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      rows++;
      const r = JSON.parse(line) as { status: string; instruction: string; input: string; output: string };
      const row = { instruction: r.instruction.trim(), input: r.input.trim(), output: r.output.trim() };
      if (r.status !== 'ok' || row.instruction === '' || row.output === '') {
        notOk++;
        continue;
      }
      const key = `${row.instruction}\n${row.input}`;
      if (seen.has(key)) {
        dup++;
        continue;
      }
      seen.add(key);
      const [ex] = sftExamplesFromRow(row, 'alpaca'); // as llmts sft will read the row
      if (renderSftExamples([ex], [1], tokenizer, chatml, { maxLength: 1e9 }).rendered[0].ids.length > context) {
        long++;
        continue;
      }
      kept.push(JSON.stringify(row) + '\n');
    }
  }
  const rng = new Rng(opts.seed);
  for (let i = kept.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [kept[i], kept[j]] = [kept[j], kept[i]];
  }
  return {
    rows, kept: kept.length, heldOut: kept.slice(0, opts.heldOut), train: kept.slice(opts.heldOut),
    why: `${notOk} not "ok" or empty, ${dup} duplicates, ${long} longer than ${context} tokens left out`,
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
