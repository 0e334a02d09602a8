import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportHfCheckpoint, importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { LlmError } from '../../src/util/errors.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { Rng } from '../../src/util/rng.js';
import { tmpDir } from '../helpers/tmp.js';
import { tinyConfig } from '../helpers/tiny-run.js';

describe('Hugging Face checkpoints', () => {
  for (const family of ['gpt2', 'llama'] as const) {
    it(`${family}: export then import gives the same model (same logits)`, () => {
      const cfg = tinyConfig(family, 50);
      const model = new Transformer(cfg, new Rng(9));
      const dir = tmpDir(`hf-${family}`);
      exportHfCheckpoint(dir, cfg, model.params, { bosTokenId: 1, eosTokenId: 2 });
      const json = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      assert.deepEqual(json.architectures, [family === 'gpt2' ? 'GPT2LMHeadModel' : 'LlamaForCausalLM']);
      const names = [...loadSafetensors(join(dir, 'model.safetensors')).tensors.keys()];
      assert.ok(names.includes(family === 'gpt2' ? 'transformer.h.1.attn.c_attn.weight' : 'model.layers.1.self_attn.k_proj.weight'));
      const back = importHfCheckpoint(dir);
      assert.deepEqual(back.config, cfg);
      const ids = Int32Array.from({ length: 10 }, (_, i) => (i * 7) % 50);
      const a = noGrad(() => model.forward(ids, 1, 10).logits.data);
      const b = noGrad(() => new Transformer(back.config, back.params).forward(ids, 1, 10).logits.data);
      assert.deepEqual(b, a);
    });
  }

  it('GPT-2 without biases exports zero biases (GPT2LMHeadModel always has them)', () => {
    const cfg = tinyConfig('gpt2', 30, { bias: false });
    const model = new Transformer(cfg, new Rng(3));
    const dir = tmpDir('hf-nobias');
    exportHfCheckpoint(dir, cfg, model.params);
    const back = importHfCheckpoint(dir);
    assert.equal(back.config.bias, true);
    const ids = Int32Array.from([1, 2, 3, 4]);
    const a = noGrad(() => model.forward(ids, 1, 4).logits.data);
    const b = noGrad(() => new Transformer(back.config, back.params).forward(ids, 1, 4).logits.data);
    assert.deepEqual(b, a);
  });

  it('names what is wrong with a bad directory', () => {
    const dir = tmpDir('hf-bad');
    assert.throws(() => importHfCheckpoint(dir), /has no config.json/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'mistral' }));
    assert.throws(() => importHfCheckpoint(dir), /model_type 'mistral' is not supported/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 32 }));
    assert.throws(() => importHfCheckpoint(dir), /no numeric 'num_attention_heads'/);
  });

  /** A fresh exported llama dir (2 layers) whose config.json is edited by `edit`. */
  const llamaDir = (name: string, edit: (c: Record<string, unknown>) => void = () => undefined): string => {
    const cfg = tinyConfig('llama', 40);
    const dir = tmpDir(`hf-${name}`);
    exportHfCheckpoint(dir, cfg, new Transformer(cfg, new Rng(1)).params);
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit(c);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
    return dir;
  };
  const expectLlmError = (fn: () => unknown, re: RegExp): void => {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof LlmError, `expected an LlmError, got ${String(e)}`);
      assert.match(e.message, re);
      assert.ok(e.message.length < 400, `short message: ${e.message}`);
      return true;
    });
  };

  it('config.json that is not an object, not JSON or a directory is an error in its terms', () => {
    for (const [text, re] of [
      ['null', /config\.json: config\.json must be a JSON object, got null/],
      ['[1, 2]', /must be a JSON object, got \[1, 2\]/],
      ['5', /must be a JSON object, got 5/],
      ['{"model_type": "llama",', /config\.json is not valid JSON/],
      ['{"model_type": "llama", "model_type": "gpt2"}', /has the key "model_type" twice/],
    ] as const) {
      const dir = llamaDir('cfg-shape');
      writeFileSync(join(dir, 'config.json'), text);
      expectLlmError(() => importHfCheckpoint(dir), re);
    }
    const dir = llamaDir('cfg-dir');
    rmSync(join(dir, 'config.json'));
    mkdirSync(join(dir, 'config.json'));
    expectLlmError(() => importHfCheckpoint(dir), /config\.json is a directory, not a config file/);
  });

  it('absurd or mistyped hyperparameters are rejected in config.json key names before anything is built', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ num_hidden_layers: 1e308 }, /num_hidden_layers = 1e\+308 must be a positive integer/],
      [{ num_hidden_layers: 1e9 }, /num_hidden_layers = 1000000000 is more than the 10000 supported/],
      [{ num_hidden_layers: 2 ** 53 }, /num_hidden_layers = 9007199254740992 must be a positive integer/],
      [{ num_hidden_layers: 1.5 }, /num_hidden_layers = 1\.5 must be a positive integer/],
      [{ num_hidden_layers: '2' }, /'num_hidden_layers' is '2', not a number/],
      [{ max_position_embeddings: 2 ** 32 - 1 }, /max_position_embeddings = 4294967295 is more than the 16777216 supported/],
      [{ max_position_embeddings: 1e8 }, /max_position_embeddings = 100000000 is more than/],
      [{ rope_theta: 0 }, /rope_theta 0 must be in \[1, 1000000000000\]/],
      [{ rope_theta: -1 }, /rope_theta -1 must be in/],
      [{ rope_theta: 1e308 }, /rope_theta 1e\+308 must be in/],
      [{ rms_norm_eps: 3 }, /rms_norm_eps 3 must be in \(0, 0\.01\]/],
      [{ rms_norm_eps: 2 ** 40 }, /rms_norm_eps 1099511627776 must be in/],
      [{ rms_norm_eps: 0 }, /rms_norm_eps 0 must be in/],
      [{ tie_word_embeddings: 'yes' }, /'tie_word_embeddings' is 'yes', not true or false/],
      [{ model_type: 'x'.repeat(100_000) }, /model_type 'x{40}\.\.\.' is not supported/],
      [{ num_hidden_layers: 5000 }, /num_hidden_layers is 5000 but the weights hold 2 layers/],
      [{ num_hidden_layers: 1 }, /num_hidden_layers is 1 but the weights hold more layers \(tensor 'model\.layers\.1\./],
    ];
    for (const [edit, re] of cases) expectLlmError(() => importHfCheckpoint(llamaDir('absurd', (c) => Object.assign(c, edit))), re);
    // GPT-2 names its own keys
    const cfg = tinyConfig('gpt2', 40);
    const dir = tmpDir('hf-gpt2-absurd');
    exportHfCheckpoint(dir, cfg, new Transformer(cfg, new Rng(1)).params);
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [edit, re] of [
      [{ n_layer: 1e9 }, /n_layer = 1000000000 is more than/],
      [{ n_positions: 2 ** 32 - 1 }, /n_positions = 4294967295 is more than/],
      [{ layer_norm_epsilon: 3 }, /layer_norm_epsilon 3 must be in/],
      [{ n_inner: '32' }, /'n_inner' is '32', not a number or null/],
      [{ n_layer: 3 }, /n_layer is 3 but the weights hold 2 layers/],
    ] as const) {
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...c, ...edit }));
      expectLlmError(() => importHfCheckpoint(dir), re);
    }
  });

  it('a weight of an integer dtype is named as such, not as missing', () => {
    const dir = llamaDir('i32');
    const st = loadSafetensors(join(dir, 'model.safetensors'));
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, t] of st.tensors) tensors[name] = { dtype: 'F32', shape: t.shape, data: t.data as Float32Array };
    const norm = tensors['model.norm.weight'];
    tensors['model.norm.weight'] = { dtype: 'I32', shape: norm.shape, data: new Int32Array(norm.data.length) };
    saveSafetensors(join(dir, 'model.safetensors'), tensors);
    expectLlmError(() => importHfCheckpoint(dir), /tensor 'model\.norm\.weight' has dtype I32; weights must be F32, F16, BF16/);
  });

  it('sharded: the index is shape-checked, shards must be plain files in the directory, a tensor in two shards is an error', () => {
    const dir = llamaDir('shards');
    const st = loadSafetensors(join(dir, 'model.safetensors'));
    const names = [...st.tensors.keys()];
    const half = (from: number, to: number): Record<string, TensorToWrite> =>
      Object.fromEntries(names.slice(from, to).map((n) => [n, { dtype: 'F32', shape: st.tensors.get(n)!.shape, data: st.tensors.get(n)!.data as Float32Array }]));
    saveSafetensors(join(dir, 'a.safetensors'), half(0, 10));
    saveSafetensors(join(dir, 'b.safetensors'), half(10, names.length));
    rmSync(join(dir, 'model.safetensors'));
    const index = join(dir, 'model.safetensors.index.json');
    const map = Object.fromEntries(names.map((n, i) => [n, i < 10 ? 'a.safetensors' : 'b.safetensors']));
    writeFileSync(index, JSON.stringify({ metadata: {}, weight_map: map }));
    const good = importHfCheckpoint(dir);
    assert.equal(good.params.size, names.length);
    for (const [text, re] of [
      ['not json', /shard index file .* is not valid JSON/],
      ['null', /must be a JSON object with a "weight_map" object .*got null/],
      ['{"weight_map": null}', /got weight_map null/],
      ['{"weight_map": {"x": 5}}', /weight_map names 5 as the shard of 'x'/],
      ['{"weight_map": {"x": "../a.safetensors"}}', /weight_map names "\.\.\/a\.safetensors" as the shard of 'x'; expected a file name inside/],
      ['{"weight_map": {"x": "/etc/passwd"}}', /expected a file name inside/],
      ['{"weight_map": {}}', /weight_map names no shard files/],
    ] as const) {
      writeFileSync(index, text);
      expectLlmError(() => importHfCheckpoint(dir), re);
    }
    saveSafetensors(join(dir, 'b.safetensors'), half(9, names.length)); // tensor 9 in both
    writeFileSync(index, JSON.stringify({ weight_map: map }));
    expectLlmError(() => importHfCheckpoint(dir), new RegExp(`tensor '${names[9].replace(/\./g, '\\.')}' is in both`));
  });
});

