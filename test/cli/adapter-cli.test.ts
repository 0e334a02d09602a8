/**
 * Adapters on the command line: `llmts run|chat MODEL --adapter DIR` give exactly what the model
 * `llmts merge` writes gives; merge writes llm.ts, Hugging Face and GGUF models that load back with
 * the adapter's logits and unmerge to the base's weights; bad adapters are one-line errors. And
 * the model's own chat template survives fine-tuning: `llmts sft` on a model whose files carry one
 * (HF tokenizer_config.json, GGUF tokenizer.chat_template) keeps it in its checkpoint, the LoRA
 * run's merged model and `llmts merge` outputs, and `llmts chat` on the result renders it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeHfTokenizer } from '../../src/cli/convert.js';
import { loadCheckpoint, saveCheckpoint } from '../../src/formats/checkpoint.js';
import { readGguf } from '../../src/formats/gguf.js';
import { exportGgufModel } from '../../src/formats/gguf-model.js';
import { exportHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { loadLoraAdapter, saveLoraAdapter } from '../../src/formats/peft.js';
import type { ModelConfig } from '../../src/model/config.js';
import { LORA_MODULES, loraLayers, loraLinears, unmergeLora } from '../../src/model/lora.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad, Tensor } from '../../src/tensor/index.js';
import { CharTokenizer } from '../../src/tokenizer/char.js';
import { Rng } from '../../src/util/rng.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { maxAbsDiff } from '../helpers/lora-cases.js';
import { scaledModel, tinyGpt2, tinyLlama } from '../helpers/tiny-model.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('adapter-cli');
const TEXT = 'abcdefgh reverse:\nuserasint<>|QA';
const tok = CharTokenizer.fromText(TEXT);
const LLAMA = tinyLlama({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64 });
const GPT2 = tinyGpt2({ vocabSize: tok.vocabSize, blockSize: 64, nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 32, hiddenDim: 128 });

function copyParams(params: Map<string, Tensor>): Map<string, Tensor> {
  return new Map([...params].map(([k, t]) => [k, new Tensor(Float32Array.from(t.data), t.shape)]));
}

/** A base checkpoint and a LoRA adapter on all its linear modules (random B), both on disk; the unmerged LoRA model. */
function setup(cfg: ModelConfig) {
  const base = scaledModel(cfg, { seed: cfg.family === 'llama' ? 5 : 6, gain: 3, jitter: 0.2 });
  const baseFile = join(dir, `${cfg.family}-base.safetensors`);
  saveCheckpoint(baseFile, { config: cfg, params: base.params, tokenizer: tok.toJSON(), trainer: {} });
  const lora = new Transformer(cfg, copyParams(base.params), {
    layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: [...LORA_MODULES[cfg.family]], rslora: cfg.family === 'gpt2', rng: new Rng(2) }),
  });
  const rng = new Rng(8);
  for (const l of loraLinears(lora)) for (let i = 0; i < l.B.size; i++) l.B.data[i] = (2 * rng.uniform() - 1) * 0.5;
  lora.eval();
  const adapter = join(dir, `${cfg.family}-adapter`);
  saveLoraAdapter(adapter, lora);
  return { base, baseFile, lora, adapter };
}

const ids = (r: { code: number | null; stdout: string; stderr: string }): number[] => {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as number[];
};
const GREEDY = ['--prompt-ids', '1,2,3', '--output', 'ids', '-n', '24', '--temperature', '0'];

describe('llmts run|chat --adapter and llmts merge', () => {
  for (const cfg of [LLAMA, GPT2]) {
    it(`${cfg.family}: run --adapter equals run on the merged model; merge round-trips; hf and gguf exports give the adapter's logits`, async () => {
      const { base, baseFile, lora, adapter } = setup(cfg);
      const merged = join(dir, `${cfg.family}-merged`);
      const m = runCli(['merge', baseFile, '--adapter', adapter, '-o', merged]);
      assert.equal(m.code, 0, m.stderr);
      assert.match(m.stdout, new RegExp(`LoRA r 4, alpha 8${cfg.family === 'gpt2' ? ' \\(rsLoRA\\)' : ''} on ${loraLinears(lora).length} layers`));
      assert.ok(existsSync(join(merged, 'ckpt.safetensors')));

      const baseBytes = readFileSync(baseFile);
      const withAdapter = ids(runCli(['run', baseFile, '--adapter', adapter, ...GREEDY]));
      assert.ok(readFileSync(baseFile).equals(baseBytes), 'merging into the mapped weights leaves the file as it was');
      assert.deepEqual(ids(runCli(['run', merged, ...GREEDY])), withAdapter);
      assert.notDeepEqual(ids(runCli(['run', baseFile, ...GREEDY])), withAdapter, 'the adapter changes the greedy text');
      // chat too (piped, greedy): the same answers
      const chat = (args: string[]) => runCli(['chat', ...args, '--template', 'qa', '--temperature', '0', '-n', '12'], 'abc\nhg\n');
      const a = chat([baseFile, '--adapter', adapter]);
      const b = chat([merged]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(a.stdout, b.stdout);
      assert.ok(a.stdout.trim().length > 0);

      // merge, then unmerge with the same adapter: the base's weights back
      const ck = loadCheckpoint(join(merged, 'ckpt.safetensors'));
      const again = loadLoraAdapter(adapter, cfg, ck.params);
      for (const l of loraLinears(again)) l.setMerged(true);
      unmergeLora(again);
      let worst = 0;
      for (const [name, t] of base.params) worst = Math.max(worst, maxAbsDiff(ck.params.get(name)!.data, t.data));
      assert.ok(worst < 1e-5, `unmerged weights differ from the base by ${worst}`);
      assert.ok(maxAbsDiff(loadCheckpoint(join(merged, 'ckpt.safetensors')).params.get(loraLinears(lora)[0].name + '.weight')!.data,
        base.params.get(loraLinears(lora)[0].name + '.weight')!.data) > 1e-3, 'the merged weights differ from the base');

      // Hugging Face and GGUF exports: the logits of the unmerged adapter model
      const x = Int32Array.from([1, 4, 2, 7, 3, 9, 5]);
      const want = noGrad(() => lora.forward(x, 1, x.length).logits.data);
      const scale = Math.max(1, ...want.map(Math.abs));
      for (const to of ['hf', 'gguf']) {
        const out = join(dir, `${cfg.family}-merged-${to}${to === 'gguf' ? '.gguf' : ''}`);
        const r = runCli(['merge', baseFile, '--adapter', adapter, '--to', to, '-o', out]);
        assert.equal(r.code, 0, r.stderr);
        const l = await loadAnyModel(out);
        assert.equal(l.format, to);
        assert.ok(l.tokenizer, `${to}: the tokenizer goes with the merged model`);
        const got = noGrad(() => new Transformer(l.config, l.params, { quantized: l.quantized }).forward(x, 1, x.length).logits.data);
        assert.ok(maxAbsDiff(got, want) < 1e-4 * scale, `${to}: ${maxAbsDiff(got, want)}`);
      }
    });
  }

  it('bad adapters and merge usage are one-line errors that say what to do', () => {
    const llamaBase = join(dir, 'llama-base.safetensors');
    const gpt2Adapter = join(dir, 'gpt2-adapter');
    if (!existsSync(llamaBase) || !existsSync(gpt2Adapter)) {
      setup(LLAMA);
      setup(GPT2);
    }
    assertOneLineError(runCli(['run', llamaBase, '--adapter', join(dir, 'nowhere'), ...GREEDY]), /nowhere has no adapter_config\.json/);
    assertOneLineError(runCli(['run', llamaBase, '--adapter', gpt2Adapter, ...GREEDY]),
      /adapter_config\.json: target module 'c_attn' is not a linear module of a llama model .*the adapter is for a gpt2 model; apply it to the model it was trained on/);
    assertOneLineError(runCli(['chat', llamaBase, '--adapter', gpt2Adapter], 'hi\n'), /the adapter is for a gpt2 model/);
    assertOneLineError(runCli(['merge', llamaBase, '-o', join(dir, 'x')]), /give the adapter: llmts merge MODEL --adapter DIR --out PATH/);
    assertOneLineError(runCli(['merge', llamaBase, '--adapter', gpt2Adapter]), /give --out PATH/);
    assertOneLineError(runCli(['merge', llamaBase, '--adapter', gpt2Adapter, '-o', join(dir, 'x'), '--quant', 'q8_0']), /--quant applies to --to gguf only/);
    assertOneLineError(runCli(['merge', llamaBase, '--adapter', join(dir, 'llama-adapter'), '-o', join(dir, 'x'), '--to', 'onnx']), /--to onnx: must be one of llmts, hf, gguf/);
    // a rank mismatch between adapter_config.json and the tensors
    const bad = join(dir, 'rank-mismatch');
    saveLoraAdapter(bad, (() => {
      const m = new Transformer(LLAMA, copyParams(scaledModel(LLAMA).params), { layers: loraLayers({ r: 4, alpha: 8, dropout: 0, targets: ['q_proj'], rng: new Rng(1) }) });
      return m;
    })());
    const cfgPath = join(bad, 'adapter_config.json');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), r: 2 }));
    assertOneLineError(runCli(['merge', llamaBase, '--adapter', bad, '-o', join(dir, 'x')]), /adapter_model\.safetensors: tensor '.*q_proj\.lora_A\.weight' has shape \[4, 32\], the model needs \[2, 32\] \(rank 4, adapter_config\.json says r 2\): set "r": 4 in adapter_config\.json$/);
  });
});

/** A Jinja template that is none of the named ones (no ChatML, [INST] or ### Instruction markers). */
const TEMPLATE = "{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}";

describe("the model's own chat template survives llmts sft, its merged model and llmts merge", () => {
  const data = join(dir, 'reverse.jsonl');
  const rng = new Rng(3);
  const rows: string[] = [];
  for (let i = 0; i < 24; i++) {
    const w = Array.from({ length: 3 }, () => 'abcdefgh'[rng.int(8)]).join('');
    rows.push(JSON.stringify({ messages: [{ role: 'user', content: `reverse ${w}` }, { role: 'assistant', content: [...w].reverse().join('') }] }));
  }
  writeFileSync(data, rows.join('\n') + '\n');
  const SFT = ['--data', data, '--max-iters', '2', '-b', '4', '--eval-split', '0', '--lr', '1e-3', '-t', '1'];
  const jinjaNotice = /template jinja: the model's own chat template \(Jinja\)/;

  it('from a Hugging Face directory (tokenizer_config.json): full SFT checkpoint, LoRA merged model, llmts merge --to hf|gguf|llmts', () => {
    const hf = join(dir, 'hf-with-template');
    const base = scaledModel(LLAMA, { seed: 7, gain: 2 });
    exportHfCheckpoint(hf, LLAMA, base.params, { chatTemplate: TEMPLATE });
    assert.equal(writeHfTokenizer(hf, tok), ', tokenizer.json');
    const r = runCli(['chat', hf, '--temperature', '0', '-n', '4'], 'abc\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, jinjaNotice);

    // full SFT: the checkpoint keeps it, and llmts chat on the run renders it
    const full = join(dir, 'sft-full');
    let s = runCli(['sft', '-m', hf, ...SFT, '-o', full]);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /template: jinja: the model's own chat template \(Jinja\)/);
    assert.equal(loadCheckpoint(join(full, 'ckpt.safetensors')).chatTemplate, TEMPLATE);
    const c = runCli(['chat', full, '--temperature', '0', '-n', '4'], 'abc\n');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stderr, jinjaNotice);
    // --resume keeps it too
    s = runCli(['sft', '-o', full, '--resume', '--max-iters', '3']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(loadCheckpoint(join(full, 'ckpt.safetensors')).chatTemplate, TEMPLATE);

    // LoRA SFT: the run and its merged model keep it
    const lora = join(dir, 'sft-lora');
    s = runCli(['sft', '-m', hf, ...SFT, '--lora', '--lora-r', '2', '-o', lora]);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(loadCheckpoint(join(lora, 'ckpt.safetensors')).chatTemplate, TEMPLATE);
    assert.equal(loadCheckpoint(join(lora, 'merged', 'ckpt.safetensors')).chatTemplate, TEMPLATE);
    const cm = runCli(['chat', join(lora, 'merged'), '--temperature', '0', '-n', '4'], 'abc\n');
    assert.equal(cm.code, 0, cm.stderr);
    assert.match(cm.stderr, jinjaNotice);
    // chat on the base with the run's adapter renders the base's template, and answers as the merged model does
    const ca = runCli(['chat', hf, '--adapter', join(lora, 'adapter'), '--temperature', '0', '-n', '4'], 'abc\n');
    assert.equal(ca.code, 0, ca.stderr);
    assert.match(ca.stderr, jinjaNotice);
    assert.equal(ca.stdout, cm.stdout);

    // DPO with --lora: its checkpoint and merged model keep the template as well
    const pairs = join(dir, 'pairs.jsonl');
    writeFileSync(pairs, ['abc', 'bad', 'fed', 'hag'].map((w) => JSON.stringify({ prompt: `reverse ${w}`, chosen: [...w].reverse().join(''), rejected: w })).join('\n') + '\n');
    const dpo = join(dir, 'dpo-lora');
    s = runCli(['dpo', '-m', hf, '--data', pairs, '--max-iters', '2', '-b', '2', '--eval-split', '0', '--lora', '--lora-r', '2', '-t', '1', '-o', dpo]);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(loadCheckpoint(join(dpo, 'ckpt.safetensors')).chatTemplate, TEMPLATE);
    assert.equal(loadCheckpoint(join(dpo, 'merged', 'ckpt.safetensors')).chatTemplate, TEMPLATE);

    // llmts merge of the run's adapter onto the HF base, in each format
    const outs = { llmts: join(dir, 'm-llmts'), hf: join(dir, 'm-hf'), gguf: join(dir, 'm.gguf') };
    for (const [to, out] of Object.entries(outs)) {
      const m = runCli(['merge', hf, '--adapter', join(lora, 'adapter'), '--to', to, '-o', out]);
      assert.equal(m.code, 0, m.stderr);
      const cc = runCli(['chat', out, '--temperature', '0', '-n', '4'], 'abc\n');
      assert.equal(cc.code, 0, cc.stderr);
      assert.match(cc.stderr, jinjaNotice, to);
      assert.equal(cc.stdout, cm.stdout, `${to}: the merged model answers as the run's merged model`);
    }
    assert.equal(JSON.parse(readFileSync(join(outs.hf, 'tokenizer_config.json'), 'utf8')).chat_template, TEMPLATE);
    assert.equal(readGguf(outs.gguf).metadata.get('tokenizer.chat_template'), TEMPLATE);
  });

  it('from a GGUF file (tokenizer.chat_template): the SFT checkpoint keeps it', () => {
    const gguf = join(dir, 'with-template.gguf');
    exportGgufModel(gguf, LLAMA, scaledModel(LLAMA, { seed: 8, gain: 2 }).params, { tokenizer: tok, chatTemplate: TEMPLATE });
    const out = join(dir, 'sft-gguf');
    const s = runCli(['sft', '-m', gguf, ...SFT, '-o', out]);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(loadCheckpoint(join(out, 'ckpt.safetensors')).chatTemplate, TEMPLATE);
    const c = runCli(['chat', out, '--temperature', '0', '-n', '4'], 'abc\n');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stderr, jinjaNotice);
  });
});
