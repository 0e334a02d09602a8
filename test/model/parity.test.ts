/**
 * Parity with PyTorch: for a small GPT-2 and a small Llama, the same initial weights and batch
 * give the same logits, loss and gradients as a plain PyTorch implementation, and the same
 * parameters after 3 AdamW steps (with global-norm clipping).
 *
 * The fixtures in test/fixtures/parity/ are made by scripts/make_parity_fixtures.py (torch is
 * needed only to regenerate them; see the README there). The reference runs in float64 from
 * float32 initial weights, so the errors measured here are our float32 rounding alone.
 * Errors are max |ours - theirs| / max |theirs| per tensor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadSafetensors, type LoadedTensor } from '../../src/formats/safetensors.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import { Tensor } from '../../src/tensor/index.js';
import { AdamW, clipGradNorm } from '../../src/train/adamw.js';

const repoRoot = new URL('../../../', import.meta.url); // dist/test/model/ -> repo root
const fixturePath = (family: string): string => fileURLToPath(new URL(`test/fixtures/parity/${family}.safetensors`, repoRoot));

const LOGITS_TOL = 1e-4;
const LOSS_TOL = 1e-5;
const GRAD_TOL = 1e-4;
const PARAM_TOL = 1e-4;

interface OptimizerSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clipGradNorm: number;
  steps: number;
}

interface Fixture {
  config: ModelConfig;
  optimizer: OptimizerSettings;
  tensors: Map<string, LoadedTensor>;
}

function loadFixture(family: string): Fixture {
  const { tensors, metadata } = loadSafetensors(fixturePath(family));
  return {
    config: JSON.parse(metadata.config) as ModelConfig,
    optimizer: JSON.parse(metadata.optimizer) as OptimizerSettings,
    tensors,
  };
}

function floats(fx: Fixture, name: string): { shape: number[]; data: Float32Array } {
  const t = fx.tensors.get(name);
  assert.ok(t, `fixture has no tensor '${name}'`);
  assert.equal(t.dtype, 'F32', `fixture tensor '${name}' should be F32`);
  return { shape: t.shape, data: t.data as Float32Array };
}

function ints(fx: Fixture, name: string): { shape: number[]; data: Int32Array } {
  const t = fx.tensors.get(name);
  assert.ok(t, `fixture has no tensor '${name}'`);
  assert.equal(t.dtype, 'I32', `fixture tensor '${name}' should be I32`);
  return { shape: t.shape, data: t.data as Int32Array };
}

/** max |ours - theirs| / max |theirs| */
function relError(ours: Float32Array, theirs: Float32Array): number {
  assert.equal(ours.length, theirs.length, 'compared arrays differ in length');
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < theirs.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(ours[i] - theirs[i]));
    maxRef = Math.max(maxRef, Math.abs(theirs[i]));
  }
  if (Number.isNaN(maxDiff) || ours.some((v) => !Number.isFinite(v))) return Infinity;
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** Names after `prefix.` of the fixture tensors under that prefix. */
function namesUnder(fx: Fixture, prefix: string): string[] {
  return [...fx.tensors.keys()].filter((k) => k.startsWith(`${prefix}.`)).map((k) => k.slice(prefix.length + 1)).sort();
}

function buildModel(fx: Fixture): Transformer {
  const params = new Map<string, Tensor>();
  for (const name of namesUnder(fx, 'param')) {
    const { shape, data } = floats(fx, `param.${name}`);
    params.set(name, new Tensor(data.slice(), shape, true));
  }
  return new Transformer(fx.config, params);
}

/**
 * Compare each model parameter's `field` (gradient or weights) with the fixture's `prefix.<name>`;
 * the fixture and the model must name the same parameters. Returns the worst error.
 */
function compareParams(
  fx: Fixture, model: Transformer, prefix: string, field: (t: Tensor) => Float32Array | null, tol: number, what: string,
): { worst: number; worstName: string } {
  const modelNames = model.specs.map((s) => s.name).sort();
  assert.deepEqual(namesUnder(fx, prefix), modelNames, `the fixture's ${prefix}.* tensors and the model's parameters differ`);
  const failures: string[] = [];
  let worst = 0;
  let worstName = '';
  for (const spec of model.specs) {
    const ref = floats(fx, `${prefix}.${spec.name}`);
    const t = model.params.get(spec.name)!;
    assert.deepEqual([...t.shape], ref.shape, `${what} of ${spec.name}: shape`);
    const ours = field(t);
    assert.ok(ours, `${what} of ${spec.name}: missing`);
    const err = relError(ours, ref.data);
    if (err > worst || worstName === '') {
      worst = err;
      worstName = spec.name;
    }
    if (!(err < tol)) failures.push(`${spec.name}: relative error ${err.toExponential(3)}`);
  }
  assert.equal(failures.length, 0, `${what} differ from PyTorch (tolerance ${tol}):\n  ${failures.join('\n  ')}`);
  return { worst, worstName };
}

for (const family of ['gpt2', 'llama']) {
  test(`${family}: logits, loss, gradients and 3 AdamW steps match PyTorch`, (t) => {
    const fx = loadFixture(family);
    assert.equal(fx.config.family, family);
    const model = buildModel(fx);
    const tokens = ints(fx, 'tokens');
    const targets = ints(fx, 'targets');
    const [B, T] = tokens.shape;

    // forward at the initial weights
    const { logits, loss } = model.forward(tokens.data, B, T, targets.data);
    assert.ok(loss);
    const refLogits = floats(fx, 'logits');
    assert.deepEqual([...logits.shape], refLogits.shape, 'logits shape');
    const logitsErr = relError(logits.data, refLogits.data);
    assert.ok(logitsErr < LOGITS_TOL, `logits: relative error ${logitsErr.toExponential(3)} (tolerance ${LOGITS_TOL})`);
    const refLoss = floats(fx, 'loss').data[0];
    const lossErr = Math.abs(loss.item() - refLoss) / Math.abs(refLoss);
    assert.ok(lossErr < LOSS_TOL, `loss: ours ${loss.item()} vs PyTorch ${refLoss}, relative error ${lossErr.toExponential(3)}`);

    // gradients at the initial weights (before clipping)
    loss.backward();
    const grads = compareParams(fx, model, 'grad', (p) => p.grad, GRAD_TOL, 'gradients');

    // 3 training steps on the same batch, starting again from the initial weights
    const trained = buildModel(fx);
    const o = fx.optimizer;
    const params = trained.parameters();
    const opt = new AdamW(params.map((p, i) => ({ tensor: p, decay: trained.specs[i].decay })), {
      beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay,
    });
    const refLosses = floats(fx, 'losses').data;
    assert.equal(refLosses.length, o.steps);
    for (let step = 0; step < o.steps; step++) {
      opt.zeroGrad();
      const r = trained.forward(tokens.data, B, T, targets.data);
      r.loss!.backward();
      clipGradNorm(params, o.clipGradNorm);
      opt.step(o.lr);
      const err = Math.abs(r.loss!.item() - refLosses[step]) / Math.abs(refLosses[step]);
      assert.ok(err < LOSS_TOL, `loss at step ${step}: ours ${r.loss!.item()} vs PyTorch ${refLosses[step]}, relative error ${err.toExponential(3)}`);
    }
    const after = compareParams(fx, trained, 'after3', (p) => p.data, PARAM_TOL, `parameters after ${o.steps} AdamW steps`);

    t.diagnostic(
      `${family}: loss ${lossErr.toExponential(2)}, logits ${logitsErr.toExponential(2)}, ` +
        `worst grad ${grads.worst.toExponential(2)} (${grads.worstName}), ` +
        `worst param after ${o.steps} steps ${after.worst.toExponential(2)} (${after.worstName})`,
    );
  });
}
