import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportHfCheckpoint, importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { loadSafetensors } from '../../src/formats/safetensors.js';
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
});
