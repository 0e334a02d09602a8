/**
 * linear() in bf16 mixed precision (withMatmulDtype('bf16')): forward, dx and dW against float64
 * products of the bf16-rounded operands, on every path (reference and native backends, portable
 * rounding and the gemmBf16 kernel path); weights converted once per update, not per product; a
 * checkpointed block recomputes in the dtype of its forward pass.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { referenceBackend, setBackend, backend, type Backend } from '../../src/backend/index.js';
import { setBf16Choice, type Bf16Choice } from '../../src/backend/bf16.js';
import { Tensor, linear, withMatmulDtype, type WeightLayout } from '../../src/tensor/index.js';
import { bf16WeightConversions } from '../../src/tensor/ops/bf16-gemm.js';
import { Transformer } from '../../src/model/transformer.js';
import { AdamW } from '../../src/train/adamw.js';
import { Rng } from '../../src/util/rng.js';
import { native } from '../helpers/native-under-test.js';
import { tinyConfig } from '../helpers/tiny-run.js';

const initial = backend();
after(() => {
  setBackend(initial);
  setBf16Choice(null);
});

const PORTABLE: Bf16Choice = { path: 'portable', kernel: null, reason: 'test' };
const KERNEL: Bf16Choice = { path: 'kernel', kernel: 'test', reason: 'test' };

/** (label, backend, path) for every way bf16 products run here */
function paths(): [string, Backend, Bf16Choice][] {
  const out: [string, Backend, Bf16Choice][] = [['reference, portable', referenceBackend, PORTABLE], ['reference, kernel', referenceBackend, KERNEL]];
  if (native) out.push(['native, portable', native, PORTABLE], ['native, kernel (emulate)', native, KERNEL]);
  return out;
}

/** select a path (the native kernel path runs the addon's current kernel: its C emulation unless a fast one was chosen) */
function use(be: Backend, choice: Bf16Choice): void {
  setBackend(be);
  setBf16Choice(choice);
}

function random(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

function rounded(x: Float32Array): Float64Array {
  const out = new Float32Array(x.length);
  referenceBackend.roundBf16(x, out, x.length);
  return Float64Array.from(out);
}

/** out[i,j] = sum_k A(i,k) B(k,j) in float64, with the sum of |terms| for the tolerance */
function product(M: number, N: number, K: number, A: (i: number, k: number) => number, B: (k: number, j: number) => number): { v: Float64Array; mag: Float64Array } {
  const v = new Float64Array(M * N), mag = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0, m = 0;
    for (let k = 0; k < K; k++) {
      const p = A(i, k) * B(k, j);
      s += p;
      m += Math.abs(p);
    }
    v[i * N + j] = s;
    mag[i * N + j] = m;
  }
  return { v, mag };
}

function assertClose(got: Float32Array, want: { v: Float64Array; mag: Float64Array }, label: string, offset?: Float64Array): void {
  for (let i = 0; i < got.length; i++) {
    const w = want.v[i] + (offset ? offset[i] : 0);
    const tol = 1e-5 * (want.mag[i] + Math.abs(offset ? offset[i] : 0)) + 1e-30;
    assert.ok(Math.abs(got[i] - w) <= tol, `${label}[${i}]: ${got[i]} vs ${w} (tol ${tol})`);
  }
}

describe('linear in bf16', () => {
  for (const layout of ['out_in', 'in_out'] as WeightLayout[]) {
    it(`${layout}: y, dx and dW equal float64 products of the bf16-rounded operands, on every path`, () => {
      const [rows, inDim, outDim] = [37, 45, 29];
      const rng = new Rng(3);
      const xData = random(rows * inDim, rng), wData = random(inDim * outDim, rng, 0.2), bData = random(outDim, rng), dy = random(rows * outDim, rng);
      const X = rounded(xData), W = rounded(wData), DY = rounded(dy);
      // op(W)(k, j) with k over in, j over out
      const w = (k: number, j: number): number => (layout === 'out_in' ? W[j * inDim + k] : W[k * outDim + j]);
      const yWant = product(rows, outDim, inDim, (i, k) => X[i * inDim + k], w);
      const dxWant = product(rows, inDim, outDim, (i, j) => DY[i * outDim + j], (j, k) => w(k, j));
      // dW in the weight's own layout
      const dwWant = layout === 'out_in'
        ? product(outDim, inDim, rows, (j, r) => DY[r * outDim + j], (r, k) => X[r * inDim + k])
        : product(inDim, outDim, rows, (k, r) => X[r * inDim + k], (r, j) => DY[r * outDim + j]);
      const bias = Float64Array.from({ length: rows * outDim }, (_, i) => bData[i % outDim]);
      let float32y: Float32Array | null = null;
      for (const [label, be, choice] of paths()) {
        use(be, choice);
        const x = new Tensor(xData.slice(), [rows, inDim], true);
        const weight = new Tensor(wData.slice(), layout === 'out_in' ? [outDim, inDim] : [inDim, outDim], true);
        const b = new Tensor(bData.slice(), [outDim], true);
        const y = withMatmulDtype('bf16', () => linear(x, weight, b, layout));
        y.backward(dy); // outside the scope: the op keeps the dtype it ran in
        assertClose(y.data, yWant, `${label} y`, bias);
        assertClose(x.grad!, dxWant, `${label} dx`);
        assertClose(weight.grad!, dwWant, `${label} dW`);
        float32y ??= linear(new Tensor(xData, [rows, inDim]), new Tensor(wData, weight.shape), new Tensor(bData, [outDim]), layout).data;
      }
      // and the rounding is real: float32 products differ by far more than the tolerance
      let worst = 0;
      for (let i = 0; i < float32y!.length; i++) worst = Math.max(worst, Math.abs(float32y![i] - (yWant.v[i] + bias[i])) / (yWant.mag[i] + 1e-30));
      assert.ok(worst > 1e-4, `float32 and bf16 products should differ (worst ${worst})`);
    });
  }

  it('outside withMatmulDtype, or with bf16 off, linear is the float32 product bit for bit', () => {
    const rng = new Rng(4);
    const x = new Tensor(random(12 * 8, rng), [12, 8]), w = new Tensor(random(6 * 8, rng), [6, 8]);
    setBackend(native ?? referenceBackend);
    const plain = linear(x, w, null).data.slice();
    setBf16Choice({ path: 'off', kernel: null, reason: 'test' });
    assert.deepEqual(withMatmulDtype('bf16', () => linear(x, w, null)).data, plain);
    setBf16Choice(PORTABLE);
    assert.notDeepEqual(withMatmulDtype('bf16', () => linear(x, w, null)).data, plain);
    assert.deepEqual(linear(x, w, null).data, plain);
  });

  for (const [label, be, choice] of [['portable', native ?? referenceBackend, PORTABLE], ['kernel', native ?? referenceBackend, KERNEL]] as const) {
    it(`${label}: every weight is converted once per optimizer step, not per product`, () => {
      use(be, choice);
      const model = new Transformer(tinyConfig('llama', 50), new Rng(1));
      const opt = new AdamW(model.namedParameters().map((p) => ({ name: p.name, tensor: p.tensor, decay: p.decay })));
      const tokens = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7) % 50);
      // q, k, v, o, gate, up, down per layer, and the LM head
      const weights = 7 * model.config.nLayer + 1;
      const step = (): void => withMatmulDtype('bf16', () => {
        const loss = model.forward(tokens.subarray(0, 30), 2, 15, tokens.subarray(2, 32)).loss!;
        loss.backward();
      });
      const c0 = bf16WeightConversions();
      step();
      assert.equal(bf16WeightConversions() - c0, weights, 'first step: each weight once (3 products each)');
      step();
      assert.equal(bf16WeightConversions() - c0, weights, 'no update: no conversion');
      opt.step(1e-3);
      step();
      assert.equal(bf16WeightConversions() - c0, 2 * weights, 'after an update: each weight once more');
    });
  }

  it('a checkpointed block recomputes in bf16 when its forward pass ran in bf16 (same gradients as without)', () => {
    setBackend(native ?? referenceBackend);
    setBf16Choice(PORTABLE);
    const cfg = tinyConfig('gpt2', 40);
    const tokens = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 5 + 3) % 40);
    const grads = (checkpointing: boolean, dtype: 'bf16' | 'float32'): Float32Array[] => {
      const model = new Transformer(cfg, new Rng(2));
      model.gradientCheckpointing = checkpointing;
      const loss = withMatmulDtype(dtype, () => model.forward(tokens.subarray(0, 30), 2, 15, tokens.subarray(2, 32)).loss!);
      loss.backward(); // outside the scope, as a user might
      return model.parameters().map((p) => p.grad!.slice());
    };
    const plain = grads(false, 'bf16');
    assert.deepEqual(grads(true, 'bf16'), plain);
    assert.notDeepEqual(grads(false, 'float32'), plain);
  });
});
