/**
 * llmts sft end to end: a randomly initialised tiny Llama with a char tokenizer, fine-tuned on
 * generated "reverse abc" -> "cba" rows (alpaca rows, qa template), learns the task: the
 * held-out response loss falls by far more than half and greedy answers to held-out words are
 * mostly exact. Bad rows are reported with their line; a stopped and resumed run ends
 * bit-identical to an uninterrupted one; the run directory loads in llmts run; --help lists
 * every flag. With --lora only the adapters train (base weights bit-equal to the input), the PEFT
 * adapter and the merged checkpoint reproduce the run's model, and --resume is bit-exact too.
 * QLoRA: --lora --quantize-base q4_0 keeps the base's linear weights as Q4_0 blocks (saved in the
 * checkpoint, bit-exact on --resume), the loss falls, the merged model is the dequantized base plus
 * the adapter; a Q4_0 GGUF base trains as it is; bad combinations are one-line errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chatTemplate, encodeChat } from '../../src/chat/index.js';
import { SFT } from '../../src/cli/sft.js';
import { allFlags, flagLabel } from '../../src/cli/flags.js';
import { loadSftExamples, type SftExample } from '../../src/data/sft-examples.js';
import { splitTrainEval } from '../../src/data/split.js';
import { meanLoss, renderSftExamples } from '../../src/finetune/sft.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { exportGgufModel } from '../../src/formats/gguf-model.js';
import { dequantizeToParameter, quantizeBlockLinears } from '../../src/model/quantized.js';
import { Tensor } from '../../src/tensor/index.js';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { loadLoraAdapter } from '../../src/formats/peft.js';
import { generateTokens } from '../../src/generate/generate.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { readMetrics } from '../../src/train/metrics-log.js';
import { Rng } from '../../src/util/rng.js';
import { runCli } from '../helpers/cli.js';
import { tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('sft-cli');
const LETTERS = 'abcdefgh';
const BAD_LINE = 5;

/** 200 alpaca rows "reverse xyz" -> "zyx" (words of 3 of 8 letters), with a line that is not JSON at BAD_LINE. */
function writeData(path: string): void {
  const rng = new Rng(7);
  const lines: string[] = [];
  for (let i = 0; i < 200; i++) {
    let w = '';
    for (let k = 0; k < 3; k++) w += LETTERS[rng.int(LETTERS.length)];
    lines.push(JSON.stringify({ instruction: `reverse ${w}`, output: [...w].reverse().join('') }));
  }
  lines.splice(BAD_LINE - 1, 0, 'this line is not JSON');
  writeFileSync(path, lines.join('\n') + '\n');
}

/** A random (untrained) tiny Llama with a char tokenizer, saved as an llm.ts checkpoint. */
function writeBase(path: string): void {
  const tok = CharTokenizer.fromText(`QA: \n${LETTERS}reverse`);
  const cfg = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nKvHead: 4, nEmbd: 64, hiddenDim: 128 });
  const m = new Transformer(cfg, new Rng(1));
  saveCheckpoint(path, { config: cfg, params: new Map(m.namedParameters().map((p) => [p.name, p.tensor])), tokenizer: tok.toJSON(), trainer: {} });
}

const data = join(dir, 'reverse.jsonl');
const base = join(dir, 'base.safetensors');
writeData(data);
writeBase(base);

const COMMON = ['-m', base, '--data', data, '--template', 'qa', '--lr', '3e-3', '-b', '16', '--eval-split', '0.1', '-t', '2'];

async function loadModel(path: string): Promise<{ model: Transformer; tokenizer: Tokenizer }> {
  const l = await loadAnyModel(path);
  const model = new Transformer(l.config, l.params);
  model.eval();
  return { model, tokenizer: l.tokenizer! };
}

describe('llmts sft', () => {
  it('--help lists every flag', () => {
    const r = runCli(['sft', '--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const f of allFlags(SFT.spec)) assert.ok(r.stdout.includes(flagLabel(f)), `--help lacks ${flagLabel(f)}`);
  });

  it('learns to reverse held-out words; reports the bad row by line; the run loads in llmts run', async (t) => {
    const out = join(dir, 'learn');
    const r = runCli(['sft', ...COMMON, '-o', out, '--max-iters', '150', '--eval-interval', '50', '--eval-iters', '4']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /data: .*alpaca, 201 rows, 1 bad; 200 examples: \d+ train \/ \d+ eval; 0 truncated/);
    assert.match(r.stderr, new RegExp(`left out 1 bad row of 201: line ${BAD_LINE}: `));
    assert.match(r.stdout, /final: step 150, .*response val loss \d/);

    // the held-out split, as the command makes it
    const tpl = chatTemplate('qa');
    const before = await loadModel(base);
    const loaded = loadSftExamples(data);
    const { rendered } = renderSftExamples(loaded.examples, loaded.lines, before.tokenizer, tpl, { maxLength: 32 });
    const held = splitTrainEval(rendered, { fraction: 0.1, key: (e) => e.key }).eval;
    assert.ok(held.length >= 10, `${held.length} held-out examples`);
    const after = await loadModel(out);
    const lossBefore = noGrad(() => meanLoss(before.model, held, 16, 0));
    const lossAfter = noGrad(() => meanLoss(after.model, held, 16, 0));
    const evals = readMetrics(join(out, 'metrics.jsonl')).filter((m) => m.type === 'eval');
    assert.equal(evals.length, 3);
    assert.ok(Math.abs((evals.at(-1)!.valLoss as number) - lossAfter) < 1e-5, 'the logged val loss is the held-out response loss');

    // greedy answers to the held-out words
    const newline = after.tokenizer.encode('\n')[0];
    let exact = 0;
    for (const e of held) {
      const ex = JSON.parse(e.key) as Extract<SftExample, { kind: 'chat' }>;
      const prompt = encodeChat(after.tokenizer, tpl, ex.messages.slice(0, 1));
      const ids: number[] = [];
      for (const id of generateTokens(after.model, prompt, { maxTokens: 6, temperature: 0, topK: 0, seed: 1 })) {
        if (id === newline) break;
        ids.push(id);
      }
      if (after.tokenizer.decode(ids) === ` ${ex.messages[1].content}`) exact++;
    }
    // measured (2 layers, dim 64, 150 steps of 16): held-out loss 2.72 -> 0.0096, exact match 25/25
    t.diagnostic(`held-out response loss ${lossBefore.toFixed(4)} -> ${lossAfter.toFixed(4)}; exact match ${exact}/${held.length}`);
    assert.ok(lossAfter < 0.5 * lossBefore, `held-out loss ${lossBefore} -> ${lossAfter}`);
    assert.ok(lossAfter < 0.2, `held-out loss after ${lossAfter}`);
    assert.ok(exact >= 0.8 * held.length, `exact match ${exact}/${held.length}`);

    const run = runCli(['run', out, '-p', 'Q: reverse abc\nA:', '-n', '4', '--temperature', '0']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim().slice(0, 3), 'cba');
  });

  it('a stopped and resumed run ends bit-identical to an uninterrupted one', () => {
    const schedule = ['--decay-iters', '30', '--warmup-iters', '3', '--eval-interval', '10', '--eval-iters', '2', '-b', '8'];
    const whole = join(dir, 'whole');
    const parts = join(dir, 'parts');
    assert.equal(runCli(['sft', ...COMMON, ...schedule, '-o', whole, '--max-iters', '30']).code, 0);
    const first = runCli(['sft', ...COMMON, ...schedule, '-o', parts, '--max-iters', '15']);
    assert.equal(first.code, 0, first.stderr);
    const bad = runCli(['sft', '-o', parts, '--resume', '--lr', '1']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--lr cannot change/);
    const resumed = runCli(['sft', '-o', parts, '--resume', '--max-iters', '30', '-t', '2']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming from step 15/);
    const strip = (path: string) => readMetrics(path).map(({ rss: _r, time: _t, tokensPerSec: _s, ...rest }) => rest);
    // the first part's run also evaluated at its last step (15); everything else is the same
    const partsLog = strip(join(parts, 'metrics.jsonl')).filter((m) => !(m.type === 'eval' && m.step === 15));
    assert.deepEqual(partsLog, strip(join(whole, 'metrics.jsonl')));
    const a = loadCheckpoint(join(whole, 'ckpt.safetensors'));
    const b = loadCheckpoint(join(parts, 'ckpt.safetensors'));
    for (const [name, t] of a.params) assert.deepEqual(b.params.get(name)!.data, t.data, name);
    assert.deepEqual((b.trainer as { objectiveState: unknown }).objectiveState, (a.trainer as { objectiveState: unknown }).objectiveState);
    assert.ok(readFileSync(join(parts, 'loss.svg'), 'utf8').includes('<svg'));
  });

  it('--lora trains only the adapters; adapter/ and merged/ reproduce the model; --resume is bit-exact', async (t) => {
    const lora = ['--lora', '--lora-r', '8', '--lr', '1e-2', '--eval-interval', '10', '--eval-iters', '2', '-b', '8', '--decay-iters', '20', '--warmup-iters', '2'];
    const COMMON_LORA = COMMON.filter((_, i) => COMMON[i] !== '--lr' && COMMON[i - 1] !== '--lr');
    const whole = join(dir, 'lora-whole');
    const r = runCli(['sft', ...COMMON_LORA, ...lora, '-o', whole, '--max-iters', '20']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /LoRA r 8, alpha 16, dropout 0\.05 on q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj: \d+ of \d+ parameters trained \(\d+\.\d+%\)/);
    assert.match(r.stdout, /adapter \(PEFT\): .*adapter; merged model: .*merged/);
    const strayFlag = runCli(['sft', ...COMMON_LORA, '--lora-r', '4', '-o', join(dir, 'lora-stray')]);
    assert.notEqual(strayFlag.code, 0);
    assert.match(strayFlag.stderr, /--lora-r sets up LoRA training: give --lora too/);

    // base weights untouched, adapters trained
    const input = loadCheckpoint(base);
    const ck = loadCheckpoint(join(whole, 'ckpt.safetensors'));
    for (const [name, tensor] of input.params) assert.deepEqual(ck.params.get(name)!.data, tensor.data, name);
    const loraNames = [...ck.extras.keys()];
    assert.equal(loraNames.length, 2 * 2 * 7);
    assert.ok(loraNames.every((n) => n.includes('.lora_')));
    assert.ok(loraNames.some((n) => n.endsWith('lora_B.weight') && ck.extras.get(n)!.data.some((x) => x !== 0)), 'lora_B trained');
    const evals = readMetrics(join(whole, 'metrics.jsonl')).filter((m) => m.type === 'eval');
    t.diagnostic(`LoRA val loss by eval: ${evals.map((e) => (e.valLoss as number).toFixed(4)).join(' -> ')}`);
    assert.ok((evals.at(-1)!.valLoss as number) < (readMetrics(join(whole, 'metrics.jsonl'))[0].loss as number), 'the loss falls');

    // the PEFT adapter on the input base = the merged checkpoint
    const ids = new Int32Array(2 * 7).map((_, i) => (i * 5 + 1) % input.config.vocabSize);
    const adapted = loadLoraAdapter(join(whole, 'adapter'), input.config, input.params);
    const want = noGrad(() => adapted.forward(ids, 2, 7).logits.data);
    const merged = await loadModel(join(whole, 'merged'));
    const got = noGrad(() => merged.model.forward(ids, 2, 7).logits.data);
    let diff = 0;
    for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(want[i] - got[i]));
    assert.ok(diff < 1e-4, `merged vs base + adapter: max |diff| ${diff}`);
    const plain = noGrad(() => new Transformer(input.config, input.params).forward(ids, 2, 7).logits.data);
    assert.notDeepEqual(plain, want, 'the adapter changes the model');

    // stop at 10, resume to 20: the same run
    const parts = join(dir, 'lora-parts');
    assert.equal(runCli(['sft', ...COMMON_LORA, ...lora, '-o', parts, '--max-iters', '10']).code, 0);
    const resumed = runCli(['sft', '-o', parts, '--resume', '--max-iters', '20', '-t', '2']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming from step 10/);
    const b = loadCheckpoint(join(parts, 'ckpt.safetensors'));
    for (const [name, tensor] of ck.extras) assert.deepEqual(b.extras.get(name)!.data, tensor.data, name);
    for (const [name, tensor] of ck.params) assert.deepEqual(b.params.get(name)!.data, tensor.data, name);
    assert.ok(existsSync(join(parts, 'adapter', 'adapter_model.safetensors')));
  });
  it('QLoRA: --quantize-base q4_0 trains adapters on Q4_0 blocks; the loss falls; merged = dequantized base + adapter; --resume is bit-exact', async (t) => {
    const qlora = ['--lora', '--quantize-base', 'q4_0', '--lr', '1e-2', '--eval-interval', '10', '--eval-iters', '2', '-b', '8', '--decay-iters', '20', '--warmup-iters', '2'];
    const COMMON_LORA = COMMON.filter((_, i) => COMMON[i] !== '--lr' && COMMON[i - 1] !== '--lr');
    const whole = join(dir, 'qlora-whole');
    const r = runCli(['sft', ...COMMON_LORA, ...qlora, '-o', whole, '--max-iters', '20']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /parameters trained \(\d+\.\d+%\); base: 14 weights kept in q4_0 \(frozen\)/);
    assert.match(r.stdout, /activations recomputed in the backward pass \(--gradient-checkpointing\)/); // auto: on for a quantized base
    assert.match(r.stdout, /merged model: .*merged\/ckpt\.safetensors \(float32: the dequantized base plus the adapter\)/);

    // the checkpoint holds the very blocks of the quantized input, the float rest unchanged, and the adapters
    const input = loadCheckpoint(base);
    const want = quantizeBlockLinears(input.config, input.params, 'q4_0');
    const ck = loadCheckpoint(join(whole, 'ckpt.safetensors'));
    assert.equal(ck.quantized?.size, 14);
    for (const [name, w] of want.quantized) assert.deepEqual(ck.quantized!.get(name)!.blocks, w.blocks, name);
    for (const [name, tensor] of want.params) assert.deepEqual(ck.params.get(name)!.data, tensor.data, name);
    assert.equal(ck.extras.size, 2 * 2 * 7);
    const metrics = readMetrics(join(whole, 'metrics.jsonl'));
    const evals = metrics.filter((m) => m.type === 'eval');
    t.diagnostic(`QLoRA train loss ${(metrics[0].loss as number).toFixed(4)}; val loss by eval: ${evals.map((e) => (e.valLoss as number).toFixed(4)).join(' -> ')}`);
    assert.ok((evals.at(-1)!.valLoss as number) < (metrics[0].loss as number) - 0.3, 'the loss falls');

    // merged = the dequantized base with the PEFT adapter applied (float32 throughout)
    const dequantized = new Map(want.params);
    for (const [name, w] of want.quantized) dequantized.set(name, new Tensor(dequantizeToParameter(input.config, name, w), input.params.get(name)!.shape));
    const ids = new Int32Array(2 * 7).map((_, i) => (i * 5 + 1) % input.config.vocabSize);
    const adapted = loadLoraAdapter(join(whole, 'adapter'), input.config, dequantized);
    const wantLogits = noGrad(() => adapted.forward(ids, 2, 7).logits.data);
    const merged = await loadModel(join(whole, 'merged'));
    assert.equal((await loadAnyModel(join(whole, 'merged'))).quantized, undefined);
    const got = noGrad(() => merged.model.forward(ids, 2, 7).logits.data);
    let diff = 0;
    for (let i = 0; i < wantLogits.length; i++) diff = Math.max(diff, Math.abs(wantLogits[i] - got[i]));
    assert.ok(diff < 1e-4, `merged vs dequantized base + adapter: max |diff| ${diff}`);
    // the run directory itself loads with its base quantized (llmts run DIR runs the base)
    const run = await loadAnyModel(whole);
    assert.equal(run.quantized?.size, 14);
    new Transformer(run.config, run.params, { quantized: run.quantized });
    const widened = await loadAnyModel(whole, { keepQuantized: false }); // what llmts convert reads: the dequantized base
    assert.equal(widened.quantized, undefined);
    for (const [name, tensor] of dequantized) assert.deepEqual(widened.params.get(name)!.data, tensor.data, name);

    // stop at 10, resume to 20: the same run
    const parts = join(dir, 'qlora-parts');
    assert.equal(runCli(['sft', ...COMMON_LORA, ...qlora, '-o', parts, '--max-iters', '10']).code, 0);
    // (resumed without activation checkpointing: it changes nothing in the results)
    const resumed = runCli(['sft', '-o', parts, '--resume', '--max-iters', '20', '-t', '2', '--gradient-checkpointing', 'off']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming from step 10/);
    assert.match(resumed.stdout, /base: 14 weights kept in q4_0/);
    assert.doesNotMatch(resumed.stdout, /activations recomputed/);
    const b = loadCheckpoint(join(parts, 'ckpt.safetensors'));
    for (const [name, tensor] of ck.extras) assert.deepEqual(b.extras.get(name)!.data, tensor.data, name);
    for (const [name, w] of ck.quantized!) assert.deepEqual(b.quantized!.get(name)!.blocks, w.blocks, name);
  });

  it('QLoRA on a Q4_0 GGUF base trains on its blocks as they are; bad --quantize-base uses are one-line errors', () => {
    const input = loadCheckpoint(base);
    const tok = CharTokenizer.fromText(`QA: \n${LETTERS}reverse`);
    const gguf = join(dir, 'base.q4_0.gguf');
    exportGgufModel(gguf, input.config, input.params, { quant: 'q4_0', tokenizer: tok });
    const COMMON_GGUF = COMMON.map((a) => (a === base ? gguf : a)).filter((_, i) => COMMON[i] !== '--lr' && COMMON[i - 1] !== '--lr');
    const out = join(dir, 'qlora-gguf');
    const r = runCli(['sft', ...COMMON_GGUF, '--lora', '--lr', '1e-2', '-b', '8', '--eval-interval', '8', '--eval-iters', '2', '-o', out, '--max-iters', '8']);
    assert.equal(r.code, 0, r.stderr);
    // 14 linear weights, the token embedding and lm_head: all Q4_0 in this GGUF
    assert.match(r.stdout, /base: 16 weights kept in q4_0 \(frozen\)/);
    const metrics = readMetrics(join(out, 'metrics.jsonl')).filter((m) => m.type === 'train');
    assert.ok((metrics.at(-1)!.loss as number) < (metrics[0].loss as number), 'the loss falls');

    const oneLine = (res: { code: number | null; stderr: string }, pattern: RegExp): void => {
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, pattern);
      assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
    };
    oneLine(runCli(['sft', ...COMMON, '--quantize-base', 'q4_0', '-o', join(dir, 'q-no-lora')]), /--quantize-base q4_0 keeps the base quantized and frozen.*give --lora too/);
    oneLine(runCli(['sft', ...COMMON_GGUF, '--lora', '--quantize-base', 'q8_0', '-o', join(dir, 'q-twice')]), /already quantized \(q4_0\).*drop --quantize-base/);
    // a base whose MLP has 48 hidden features: down_proj's input is no multiple of 32
    const odd = join(dir, 'odd.safetensors');
    const oddCfg = { ...input.config, hiddenDim: 48 };
    const m = new Transformer(oddCfg, new Rng(2));
    saveCheckpoint(odd, { config: oddCfg, params: new Map(m.namedParameters().map((p) => [p.name, p.tensor])), tokenizer: tok.toJSON(), trainer: {} });
    oneLine(runCli(['sft', ...COMMON.map((a) => (a === base ? odd : a)), '--lora', '--quantize-base', 'q4_0', '-o', join(dir, 'q-odd')]),
      /'model\.layers\.0\.mlp\.down_proj\.weight' has 48 input features, not a multiple of 32, so it has no quantized kernel path; drop --quantize-base/);
  });

  it('with nothing given, says the whole command', () => {
    const r = runCli(['sft']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "llmts sft: error: give -m MODEL, --data FILE, -o DIR: llmts sft -m MODEL --data FILE -o DIR (see 'llmts sft --help')\n");
  });
});
