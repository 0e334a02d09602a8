/**
 * Parity with PEFT in both directions (issue 15, acceptance 1), against fixtures from
 * scripts/make_peft_fixture.py (PEFT 0.21, transformers 5, torch 2.13; never run by npm test):
 *
 * - grad/: a tiny Llama and GPT-2 (matrices halved) with LoRA on EVERY linear module, a padded batch of three
 *   examples with the prompt tokens and padding masked (-100): the SFT objective's masked loss and
 *   the gradient of every adapter tensor equal PEFT's (float64 reference; relative error < 1e-4).
 * - ours/: an adapter saved by llm.ts (test/helpers/peft-ours.ts), loaded by
 *   PeftModel.from_pretrained, gave PEFT's logits: our saver still writes those very tensors and
 *   config, and our logits for it equal PEFT's.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backend } from '../../src/backend/index.js';
import { makeSftBatch, SftObjective, type RenderedExample } from '../../src/finetune/sft.js';
import { importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, loadLoraAdapter, peftKey } from '../../src/formats/peft.js';
import { loadSafetensors } from '../../src/formats/safetensors.js';
import { LORA_MODULES, loraLinears } from '../../src/model/lora.js';
import { IGNORE_INDEX, noGrad } from '../../src/tensor/index.js';
import { maxAbsDiff } from '../helpers/lora-cases.js';
import { ourFixtureLoraModel, PEFT_FIXTURES, saveOurFixtureAdapter } from '../helpers/peft-ours.js';
import { tmpDir } from '../helpers/tmp.js';
import { Rng } from '../../src/util/rng.js';

interface GradBatch { input_ids: number[][]; labels: number[][]; lengths: number[]; loss: number; base_scale: number }

/** ||a - b|| / ||b|| */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

describe(`parity with PEFT (${backend().name} backend)`, () => {
  for (const family of ['llama', 'gpt2'] as const) {
    const gradDir = join(PEFT_FIXTURES, family, 'grad');
    it(`${family}: LoRA on all targets: the masked loss and every adapter gradient equal PEFT's (rel. error < 1e-4)`, { skip: !existsSync(join(gradDir, 'batch.json')) && 'no fixture' }, () => {
      const batchJson = JSON.parse(readFileSync(join(gradDir, 'batch.json'), 'utf8')) as GradBatch;
      const { config, params } = importHfCheckpoint(join(PEFT_FIXTURES, family, 'base'));
      // as the script: the base's matrices times base_scale (0.5, exact), so float32 is well conditioned
      for (const t of params.values()) if (t.shape.length >= 2) for (let i = 0; i < t.size; i++) t.data[i] *= batchJson.base_scale;
      const model = loadLoraAdapter(join(gradDir, 'adapter'), config, params);
      model.train(new Rng(0)); // dropout 0: as PEFT's train mode
      const layers = loraLinears(model);
      // every linear module of the family is adapted (GPT-2's c_proj twice a layer: attention and MLP)
      assert.deepEqual([...new Set(layers.map((l) => l.name.slice(l.name.lastIndexOf('.') + 1)))].sort(), [...LORA_MODULES[family]].sort());
      assert.equal(layers.length, config.nLayer * (family === 'llama' ? 7 : 4));

      // the fixture's rows as rendered examples: trained where the label is not -100
      const examples: RenderedExample[] = batchJson.input_ids.map((row, b) => {
        const n = batchJson.lengths[b];
        return {
          ids: Int32Array.from(row.slice(0, n)),
          lossMask: Uint8Array.from(batchJson.labels[b].slice(0, n), (l) => (l === IGNORE_INDEX ? 0 : 1)),
          line: b + 1, key: String(b),
        };
      });
      const batch = makeSftBatch(examples, 0);
      // HF shifts the labels: position 0's label is never a target
      assert.equal(batch.targetTokens, batchJson.labels.reduce((n, row) => n + row.slice(1).filter((l) => l !== IGNORE_INDEX).length, 0));
      const objective = new SftObjective(examples, [], { batchSize: examples.length, seed: 1, padId: 0 });
      const { loss } = objective.loss(model, batch);
      loss.backward();
      const lossErr = Math.abs(loss.item() - batchJson.loss) / Math.abs(batchJson.loss);
      assert.ok(lossErr < 1e-4, `loss ${loss.item()} vs PEFT ${batchJson.loss} (rel. ${lossErr})`);

      const grads = loadSafetensors(join(gradDir, 'grads.safetensors')).tensors;
      assert.equal(grads.size, 2 * layers.length);
      for (const l of layers) {
        for (const which of ['A', 'B'] as const) {
          const key = peftKey(l.name, which);
          const want = grads.get(key);
          assert.ok(want, `grads.safetensors lacks ${key}`);
          const t = which === 'A' ? l.A : l.B;
          assert.deepEqual(want.shape, t.shape, key);
          assert.ok(t.grad, `${key}: no gradient`);
          const err = relativeError(t.grad, want.data as Float32Array);
          assert.ok(err < 1e-4, `${key}: relative error ${err}`);
        }
      }
      // the base got no gradient (frozen)
      for (const [name, p] of model.params) assert.equal(p.grad, null, name);
    });

    const oursDir = join(PEFT_FIXTURES, family, 'ours');
    it(`${family}: an adapter saved by llm.ts loads in PEFT with our logits; our saver still writes those tensors`, { skip: !existsSync(join(oursDir, 'logits.json')) && 'no fixture' }, () => {
      const committed = join(oursDir, 'adapter');
      const out = tmpDir('peft-ours');
      saveOurFixtureAdapter(family, out);
      // the same tensors, bit for bit, and the same config
      const mine = loadSafetensors(join(out, ADAPTER_WEIGHTS));
      const theirs = loadSafetensors(join(committed, ADAPTER_WEIGHTS));
      assert.deepEqual(mine.metadata, theirs.metadata);
      assert.deepEqual([...mine.tensors.keys()].sort(), [...theirs.tensors.keys()].sort());
      for (const [k, t] of theirs.tensors) {
        const m = mine.tensors.get(k)!;
        assert.deepEqual(m.shape, t.shape, k);
        assert.equal(m.dtype, 'F32', k);
        assert.deepEqual(Buffer.from((m.data as Float32Array).buffer, (m.data as Float32Array).byteOffset, m.data.byteLength),
          Buffer.from((t.data as Float32Array).buffer, (t.data as Float32Array).byteOffset, t.data.byteLength), k);
      }
      assert.deepEqual(JSON.parse(readFileSync(join(out, ADAPTER_CONFIG), 'utf8')), JSON.parse(readFileSync(join(committed, ADAPTER_CONFIG), 'utf8')));

      // our logits for the committed adapter (and for the model that made it) equal PEFT's
      const fixture = JSON.parse(readFileSync(join(oursDir, 'logits.json'), 'utf8')) as { ids: number[]; logits: number[] };
      const ids = Int32Array.from(fixture.ids);
      const { config, params } = importHfCheckpoint(join(PEFT_FIXTURES, family, 'base'));
      const loaded = loadLoraAdapter(committed, config, params);
      const scale = Math.max(...fixture.logits.map(Math.abs));
      const ours = noGrad(() => loaded.forward(ids, 1, ids.length).logits.data);
      const d = maxAbsDiff(ours, fixture.logits);
      assert.ok(d < 1e-4 * Math.max(1, scale), `max abs diff ${d} (logits up to ${scale})`);
      const maker = ourFixtureLoraModel(family);
      assert.deepEqual(noGrad(() => maker.forward(ids, 1, ids.length).logits.data), ours);
    });
  }
});
