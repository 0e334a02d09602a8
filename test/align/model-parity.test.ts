/**
 * A tiny Llama as reward model and as DPO policy, against transformers + TRL in float64
 * (test/fixtures/alignment/llama/, made by scripts/make_alignment_fixture.py): the same weights
 * and pairs give the same scores (LlamaForSequenceClassification reads the last non-pad token),
 * Bradley-Terry loss, per-answer log-probabilities (TRL's selective_log_softmax + masked sum), DPO
 * loss, and gradients of the score head and trunk tensors, to a relative error < 1e-4 (we compute
 * in float32).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportHfSequenceClassifier } from '../../src/formats/hf-checkpoint.js';
import { tmpDir } from '../helpers/tmp.js';
import { importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { loadSafetensors } from '../../src/formats/safetensors.js';
import { Transformer } from '../../src/model/transformer.js';
import { addScalarHead } from '../../src/model/heads.js';
import { Tensor } from '../../src/tensor/index.js';
import { makePairBatch, chosenAndRejected, type RenderedPair } from '../../src/align/pairs.js';
import { pairLoss, sequenceRewards } from '../../src/align/reward.js';
import { answerLogProbs } from '../../src/align/log-probs.js';
import { dpoLoss } from '../../src/align/losses.js';

const DIR = new URL('../../../test/fixtures/alignment/llama/', import.meta.url).pathname;
const CASES = JSON.parse(readFileSync(DIR + 'cases.json', 'utf8'));

function loadModel(): Transformer {
  const { config, params } = importHfCheckpoint(DIR + 'base');
  return new Transformer(config, params);
}

/** The fixture's pairs as rendered pairs: prompt ids then answer ids, answer mask 1 on the answer. */
function fixturePairs(): RenderedPair[] {
  return (CASES.pairs as number[][][]).map(([prompt, chosen, rejected], i) => {
    const side = (answer: number[]) => ({
      ids: Int32Array.from([...prompt, ...answer]),
      answerMask: Uint8Array.from([...prompt.map(() => 0), ...answer.map(() => 1)]),
    });
    return { chosen: side(chosen), rejected: side(rejected), line: i + 1, key: String(i) };
  });
}

/** max |got - want| / max |want| */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let d = 0, m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / m;
}

function gradOf(model: Transformer, name: string): Float32Array {
  const p = model.namedParameters().find((q) => q.name === name);
  assert.ok(p?.tensor.grad, `no gradient for ${name}`);
  return p.tensor.grad;
}

describe('alignment on a tiny Llama equals transformers + TRL (fixture)', () => {
  it('reward model: scores at the last token, Bradley-Terry loss, gradients of the head and the trunk', () => {
    const model = loadModel();
    const score = loadSafetensors(DIR + 'score.safetensors').tensors.get('score.weight')!;
    const head = addScalarHead(model, { weight: new Tensor(Float32Array.from(score.data as Float32Array), score.shape, true) });
    const batch = makePairBatch(fixturePairs(), CASES.pad);
    const scores = sequenceRewards(model, head, batch);
    assert.ok(relErr(scores.data, CASES.reward.scores) < 1e-5, `scores ${relErr(scores.data, CASES.reward.scores)}`);
    const { loss } = pairLoss(model, head, batch);
    assert.ok(Math.abs(loss.item() - CASES.reward.loss) / CASES.reward.loss < 1e-5);
    loss.backward();
    for (const [name, want] of Object.entries(CASES.reward.grads as Record<string, number[]>)) {
      const e = relErr(gradOf(model, name), want);
      assert.ok(e < 1e-4, `${name}: relative error ${e}`);
    }
  });

  it('exported as LlamaForSequenceClassification: the tensors transformers expects, the same weights', () => {
    const model = loadModel();
    const score = loadSafetensors(DIR + 'score.safetensors').tensors.get('score.weight')!;
    const weight = new Tensor(Float32Array.from(score.data as Float32Array), score.shape, true);
    const out = tmpDir('rm-export');
    exportHfSequenceClassifier(out, model.config, model.params, weight, { padTokenId: CASES.pad });
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(config.architectures, ['LlamaForSequenceClassification']);
    assert.deepEqual(config.id2label, { 0: 'LABEL_0' });
    assert.equal(config.pad_token_id, CASES.pad);
    const saved = loadSafetensors(join(out, 'model.safetensors')).tensors;
    assert.deepEqual([...saved.keys()].sort(), CASES.reward.state_dict_keys);
    assert.deepEqual(saved.get('score.weight')!.data, weight.data);
    assert.deepEqual(saved.get('model.layers.1.mlp.down_proj.weight')!.data, model.params.get('model.layers.1.mlp.down_proj.weight')!.data);
  });

  it('DPO: answer log-probabilities, the sigmoid loss, gradients of the trunk and the LM head', () => {
    const model = loadModel();
    const batch = makePairBatch(fixturePairs(), CASES.pad);
    const lp = answerLogProbs(model, batch);
    assert.ok(relErr(lp.data, CASES.dpo.logps) < 1e-5, `logps ${relErr(lp.data, CASES.dpo.logps)}`);
    const P = batch.P;
    const ref = CASES.dpo.ref_logps as number[];
    const [chosen, rejected] = chosenAndRejected(lp, P);
    const { loss } = dpoLoss(chosen, rejected, ref.slice(0, P), ref.slice(P), { beta: CASES.dpo.beta });
    assert.ok(Math.abs(loss.item() - CASES.dpo.loss) / CASES.dpo.loss < 1e-5);
    loss.backward();
    for (const [name, want] of Object.entries(CASES.dpo.grads as Record<string, number[]>)) {
      const e = relErr(gradOf(model, name), want);
      assert.ok(e < 1e-4, `${name}: relative error ${e}`);
    }
  });
});
