/**
 * Does the int8 activation quantization of the native quantized forward (matmulQuantized
 * quantizes x to Q8_0 blocks) hurt QLoRA training? Three runs of the same LoRA training (same
 * base, adapter init, batches and optimizer) differ only in the base's forward:
 *
 *   f32 base            the pretrained float weights (plain LoRA)
 *   q4_0, float x       the base in Q4_0; the forward is x · Wᵀ on the dequantized weights (what a
 *                       float-activation kernel computes; done here with the float GEMM on a
 *                       dequantized copy, for this measurement only)
 *   q4_0, int8 x        the base in Q4_0; the native kernel (int8 activations, integer dots)
 *
 * A small char-level Llama is first pretrained on tinyshakespeare (first half of the text), then
 * LoRA r=8 on every projection trains on the next 40%; the last 10% is held out. Reported: the
 * held-out loss before and after LoRA, and, for the adapters the float-x run ends with, how far
 * each base's adapter gradient on a held-out batch is from the float-x one (relative L2 and cosine).
 *
 *   node dist/bench/qlora-forward.js [--pretrain-steps 300] [--lora-steps 150] [--seed 1]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { backend, nativeBackend, setBackend, type Backend } from '../src/backend/index.js';
import { dequantizeQ4_0, dequantizeQ8_0 } from '../src/formats/quant.js';
import type { ModelConfig } from '../src/model/config.js';
import { loraLayers } from '../src/model/lora.js';
import { quantizeBlockLinears, type QuantizedWeight } from '../src/model/quantized.js';
import { Transformer } from '../src/model/transformer.js';
import { noGrad, withBufferScope, type Tensor } from '../src/tensor/index.js';
import { CharTokenizer } from '../src/tokenizer/char.js';
import { AdamW, clipGradNorm } from '../src/train/adamw.js';
import { Rng } from '../src/util/rng.js';
import { sharedDataPath } from '../test/helpers/shared-data.js';

const { values } = parseArgs({ options: { 'pretrain-steps': { type: 'string' }, 'lora-steps': { type: 'string' }, seed: { type: 'string' } } });
const pretrainSteps = Number(values['pretrain-steps'] ?? 300);
const loraSteps = Number(values['lora-steps'] ?? 150);
const seed = Number(values.seed ?? 1);
const B = 16, T = 64;

const native = nativeBackend();
if (!native) throw new Error('this measurement needs the native backend');
setBackend(native);

const textPath = sharedDataPath('tinyshakespeare/input.txt');
if (!textPath) throw new Error('tinyshakespeare is missing from the shared data (../shared/data)');
const text = readFileSync(textPath, 'utf8');
const tok = CharTokenizer.fromText(text);
const ids = Int32Array.from(tok.encode(text));
const pretrainIds = ids.subarray(0, Math.floor(ids.length * 0.5));
const loraIds = ids.subarray(Math.floor(ids.length * 0.5), Math.floor(ids.length * 0.9));
const heldIds = ids.subarray(Math.floor(ids.length * 0.9));

const cfg: ModelConfig = {
  family: 'llama', vocabSize: tok.vocabSize, blockSize: T, nLayer: 4, nHead: 4, nKvHead: 4, nEmbd: 128, hiddenDim: 384,
  normEps: 1e-5, ropeTheta: 10000, dropout: 0, bias: false, tiedEmbeddings: false,
};

function batch(data: Int32Array, rng: Rng): { x: Int32Array; y: Int32Array } {
  const x = new Int32Array(B * T), y = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const o = rng.int(data.length - T - 1);
    x.set(data.subarray(o, o + T), b * T);
    y.set(data.subarray(o + 1, o + T + 1), b * T);
  }
  return { x, y };
}

function train(model: Transformer, data: Int32Array, steps: number, lr: number, rngSeed: number): void {
  const params = model.namedParameters().filter((p) => p.trainable);
  const opt = new AdamW(params.map((p) => ({ name: p.name, tensor: p.tensor, decay: p.decay })), { weightDecay: 0 });
  const rng = new Rng(rngSeed);
  for (let s = 0; s < steps; s++) {
    const { x, y } = batch(data, rng);
    withBufferScope(() => {
      for (const p of params) p.tensor.grad = null;
      model.forward(x, B, T, y).loss!.backward();
      clipGradNorm(opt.tensors, 1);
      opt.step(lr * Math.min(1, (s + 1) / 20));
    });
  }
}

const held = Array.from({ length: 20 }, (_, i) => batch(heldIds, new Rng(1000 + i)));
function heldLoss(model: Transformer): number {
  return noGrad(() => held.reduce((s, b) => s + model.forward(b.x, B, T, b.y).loss!.item(), 0) / held.length);
}

/** The native backend with a float-activation quantized forward: x · Wᵀ on a dequantized copy (cached per weight). */
function floatActivations(be: Backend): Backend {
  const widened = new WeakMap<Uint8Array, Float32Array>();
  return {
    ...be,
    name: 'native, float-x quantized forward',
    matmulQuantized(x, w, type, out, M, N, K) {
      let wf = widened.get(w);
      if (!wf) widened.set(w, (wf = type === 'q8_0' ? dequantizeQ8_0(w, N * K) : dequantizeQ4_0(w, N * K)));
      be.gemm({ M, N, K, a: x, b: wf, c: out, transB: true });
    },
  };
}

function loraModel(params: Map<string, Tensor>, quantized?: Map<string, QuantizedWeight>): Transformer {
  const targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const m = new Transformer(cfg, params, { quantized, layers: loraLayers({ r: 8, alpha: 16, dropout: 0, targets, rng: new Rng(seed + 7) }) });
  m.freeze((n) => !n.includes('.lora_'));
  return m;
}

function adapterGradient(model: Transformer, b: { x: Int32Array; y: Int32Array }): Float64Array {
  const params = model.namedParameters().filter((p) => p.trainable);
  for (const p of params) p.tensor.grad = null;
  model.forward(b.x, B, T, b.y).loss!.backward();
  const out: number[] = [];
  for (const p of params) for (const g of p.tensor.grad!) out.push(g);
  return Float64Array.from(out);
}

const t0 = performance.now();
const base = new Transformer(cfg, new Rng(seed));
train(base, pretrainIds, pretrainSteps, 3e-3, seed);
process.stderr.write(`pretrained ${pretrainSteps} steps in ${((performance.now() - t0) / 1000).toFixed(0)} s, held-out loss ${heldLoss(base).toFixed(4)}\n`);
base.freeze();
const { params: rest, quantized } = quantizeBlockLinears(cfg, base.params, 'q4_0');

const runs: { name: string; be: Backend; model: Transformer }[] = [
  { name: 'f32 base', be: native, model: loraModel(base.params) },
  { name: 'q4_0, float x', be: floatActivations(native), model: loraModel(rest, quantized) },
  { name: 'q4_0, int8 x (native kernel)', be: native, model: loraModel(rest, quantized) },
];
const rows: string[] = [];
for (const r of runs) {
  setBackend(r.be);
  const before = heldLoss(r.model);
  const t1 = performance.now();
  train(r.model, loraIds, loraSteps, 3e-3, seed + 1);
  const seconds = (performance.now() - t1) / 1000;
  rows.push(`| ${r.name} | ${before.toFixed(4)} | ${heldLoss(r.model).toFixed(4)} | ${seconds.toFixed(0)} |`);
  process.stderr.write(`${rows[rows.length - 1]}\n`);
}

// the float-x run's adapters in every base: how far is each gradient from the float-x one?
const floatRun = runs[1].model;
const adapters = floatRun.namedParameters().filter((p) => p.trainable);
const grads = runs.map((r) => {
  for (const p of r.model.namedParameters()) if (p.trainable) p.tensor.data.set(adapters.find((a) => a.name === p.name)!.tensor.data);
  setBackend(r.be);
  return adapterGradient(r.model, held[0]);
});
setBackend(native);
const norm = (a: Float64Array): number => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
const ref = grads[1];
console.log(`LoRA r=8 on every projection of a ${cfg.nLayer}-layer char Llama (dim ${cfg.nEmbd}, ${pretrainSteps} pretraining steps), ${loraSteps} LoRA steps, batch ${B} x ${T}\n`);
console.log('| base | held-out loss before LoRA | after | seconds |');
console.log('| --- | ---: | ---: | ---: |');
for (const r of rows) console.log(r);
console.log('\nadapter gradient on a held-out batch, same adapters (those of the float-x run), against the q4_0 float-x one:\n');
console.log('| base | relative L2 difference | cosine |');
console.log('| --- | ---: | ---: |');
runs.forEach((r, i) => {
  const g = grads[i];
  let d = 0, dot = 0;
  for (let k = 0; k < g.length; k++) {
    d += (g[k] - ref[k]) ** 2;
    dot += g[k] * ref[k];
  }
  console.log(`| ${r.name} | ${(Math.sqrt(d) / norm(ref)).toExponential(2)} | ${(dot / (norm(g) * norm(ref))).toFixed(5)} |`);
});
console.log(`\n${backend().name}, seed ${seed}`);
