/**
 * The ops the post-training losses are built from: crossEntropy with every reduction,
 * logSoftmax / logSoftmaxGather, exp, log, logsigmoid, clamp, minimum, maximum, where.
 *
 * Each op is checked three ways: float64 central differences (gradcheck), PyTorch's float64
 * values and gradients (test/fixtures/post-training-ops.json, made by
 * scripts/make_post_training_ops_fixture.py; includes exact ties and values on clamp's bounds),
 * and exact values at the kinks and at non-finite inputs, where the conventions are PyTorch's.
 * The (rows, V) ops also run on the native backend against the reference.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  Tensor, addScalar, clamp, crossEntropy, exp, log, logSoftmax, logSoftmaxGather, logsigmoid, maximum, mean, minimum, mul,
  scale, sub, sum, where, withFloat64Storage, noGrad, reshape,
} from '../../src/tensor/index.js';
import type { CrossEntropyReduction } from '../../src/tensor/index.js';
import { backend, nativeBackend, referenceBackend, setBackend, type Backend } from '../../src/backend/index.js';
import { Rng } from '../../src/util/rng.js';
import { gradcheck, param } from '../helpers/gradcheck.js';

const IGNORE = -100;

/** Run fn on the given backend, restoring the previous one. */
function onBackend<T>(be: Backend, fn: () => T): T {
  const previous = backend();
  setBackend(be);
  try {
    return fn();
  } finally {
    setBackend(previous);
  }
}

/** Run fn on the reference backend with float64 storage (exact to ~1e-15). */
function float64<T>(fn: () => T): T {
  return onBackend(referenceBackend, () => withFloat64Storage(fn));
}

/** max |got - want| / max(1, max |want|) */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let diff = 0;
  let ref = 1;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    ref = Math.max(ref, Math.abs(want[i]));
  }
  return diff / ref;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, label: string): void {
  const e = relErr(got, want);
  const head = (a: ArrayLike<number>): string => Array.from(a).slice(0, 8).join(', ');
  assert.ok(e <= tol, `${label}: rel err ${e.toExponential(2)} > ${tol} (got [${head(got)}], want [${head(want)}])`);
}

/** out and the gradients of sum(out * R) for leaves xs */
interface ValueAndGrads {
  out: number[];
  grads: (number[] | null)[];
}

function valueAndGrads(xs: Tensor[], f: () => Tensor, R?: ArrayLike<number>): ValueAndGrads {
  const out = f();
  const seed = out.data.slice();
  for (let i = 0; i < seed.length; i++) seed[i] = R ? R[i] : 1;
  out.backward(seed);
  return { out: [...out.data], grads: xs.map((x) => (x.grad ? [...x.grad] : null)) };
}

/** Fill the inputs' values away from a kink: |x - k| >= gap for every k in kinks. */
function avoid(t: Tensor, kinks: number[], gap = 0.05): Tensor {
  for (let i = 0; i < t.size; i++) {
    for (const k of kinks) if (Math.abs(t.data[i] - k) < gap) t.data[i] = k + (t.data[i] >= k ? gap : -gap);
  }
  return t;
}

// ---- the PyTorch fixture -------------------------------------------------------------------

interface FixtureArray {
  shape: number[];
  data: number[];
}
interface FixtureCase {
  name: string;
  inputs: Record<string, FixtureArray>;
  R: number[];
  out: FixtureArray;
  grads: Record<string, number[]>;
  reduction?: CrossEntropyReduction;
  min?: number;
  max?: number;
  beta?: number;
  eps?: number;
}
const fixture = JSON.parse(
  readFileSync(new URL('../../../test/fixtures/post-training-ops.json', import.meta.url), 'utf8'),
) as { torch: string; cases: FixtureCase[] };

/** Our version of each fixture case; `t` gives the inputs as leaf tensors, `ids` as Int32Array. */
type Inputs = { t: (name: string) => Tensor; ids: (name: string) => Int32Array; mask: (name: string) => Uint8Array };
const OURS: Record<string, (c: FixtureCase, i: Inputs) => Tensor> = {
  'crossEntropy mean': (c, i) => crossEntropy(i.t('logits'), i.ids('targets'), { reduction: c.reduction }),
  'crossEntropy sum': (c, i) => crossEntropy(i.t('logits'), i.ids('targets'), { reduction: c.reduction }),
  'crossEntropy none': (c, i) => crossEntropy(i.t('logits'), i.ids('targets'), { reduction: c.reduction }),
  logSoftmaxGather: (_, i) => logSoftmaxGather(i.t('logits'), i.ids('targets')),
  logSoftmax: (_, i) => logSoftmax(i.t('x')),
  exp: (_, i) => exp(i.t('x')),
  log: (_, i) => log(i.t('x')),
  logsigmoid: (_, i) => logsigmoid(i.t('x')),
  'clamp both': (c, i) => clamp(i.t('x'), c.min, c.max),
  'clamp min': (c, i) => clamp(i.t('x'), c.min),
  'clamp max': (c, i) => clamp(i.t('x'), undefined, c.max),
  minimum: (_, i) => minimum(i.t('a'), i.t('b')),
  maximum: (_, i) => maximum(i.t('a'), i.t('b')),
  where: (_, i) => where(i.mask('cond'), i.t('a'), i.t('b')),
  dpo: (c, i) => dpoLoss(i.t('pol'), i.t('ref'), i.ids('tgt'), c.beta!),
  ppo: (c, i) => ppoLoss(i.t('logp'), i.t('logp_old'), i.t('adv'), i.mask('mask'), c.eps!),
};

/** -mean(logsigmoid(beta * margin)); rows 0, 2 chosen and 1, 3 rejected; the reference is frozen */
function dpoLoss(pol: Tensor, ref: Tensor, targets: Int32Array, beta: number): Tensor {
  const seqLogp = (logits: Tensor): Tensor => sum(logSoftmaxGather(logits, targets), [1]); // (4,)
  const lp = reshape(seqLogp(pol), [2, 2]); // (pair, chosen|rejected)
  const lr = reshape(seqLogp(ref.detach()), [2, 2]);
  const d = sub(lp, lr); // (2, 2)
  const margin = sum(mul(d, Tensor.fromArray([1, -1], [2])), [1]); // (2,)
  return scale(mean(logsigmoid(scale(margin, beta))), -1);
}

/** -sum(mask * minimum(ratio * adv, clamp(ratio, 1-eps, 1+eps) * adv)) / sum(mask) */
function ppoLoss(logp: Tensor, logpOld: Tensor, adv: Tensor, mask: Uint8Array, eps: number): Tensor {
  const ratio = exp(sub(logp, logpOld.detach()));
  const a = adv.detach();
  const surrogate = minimum(mul(ratio, a), mul(clamp(ratio, 1 - eps, 1 + eps), a));
  const count = mask.reduce((s, m) => s + m, 0);
  return scale(sum(where(mask, surrogate, 0)), -1 / count);
}

function runFixtureCase(c: FixtureCase): { out: number[]; grads: Record<string, number[] | null> } {
  const leaves = new Map<string, Tensor>();
  const inputs: Inputs = {
    t: (name) => {
      if (!leaves.has(name)) {
        const a = c.inputs[name];
        leaves.set(name, Tensor.fromArray(a.data, a.shape, name in c.grads));
      }
      return leaves.get(name)!;
    },
    ids: (name) => Int32Array.from(c.inputs[name].data),
    mask: (name) => Uint8Array.from(c.inputs[name].data),
  };
  const out = OURS[c.name](c, inputs);
  assert.deepEqual(out.shape, c.out.shape, `${c.name}: shape`);
  const names = Object.keys(c.grads);
  const r = valueAndGrads(names.map((n) => inputs.t(n)), () => out, c.R);
  return { out: r.out, grads: Object.fromEntries(names.map((n, k) => [n, r.grads[k]])) };
}

describe('post-training ops', () => {
  describe(`agree with PyTorch ${fixture.torch} (float64 fixture)`, () => {
    for (const c of fixture.cases) {
      it(c.name, () => {
        assert.ok(OURS[c.name], `no implementation for fixture case ${c.name}`);
        const r64 = float64(() => runFixtureCase(c));
        assertClose(r64.out, c.out.data, 1e-12, `${c.name} value (float64)`);
        for (const [n, g] of Object.entries(c.grads)) assertClose(r64.grads[n]!, g, 1e-12, `${c.name} d/d${n} (float64)`);
        // float32 on the active backend (native when built): rounding only
        const r32 = runFixtureCase(c);
        assertClose(r32.out, c.out.data, 2e-6, `${c.name} value (float32, ${backend().name})`);
        for (const [n, g] of Object.entries(c.grads)) {
          assertClose(r32.grads[n]!, g, 2e-6, `${c.name} d/d${n} (float32, ${backend().name})`);
        }
      });
    }
  });

  describe('crossEntropy reductions', () => {
    const targets = Int32Array.from([2, IGNORE, 0, 4, 4, IGNORE]);
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      it(`gradcheck, reduction '${reduction}', with ignored rows`, () => {
        gradcheck(`crossEntropy ${reduction}`, (r) => [param(r, [2, 3, 5], 2)],
          ([x]) => crossEntropy(x, targets, { reduction }));
      });
    }

    it("'none' gives one loss per row (leading dims kept), 0 at ignored rows; 'sum' and 'mean' reduce it", () => {
      float64(() => {
        const x = Tensor.randn([2, 3, 5], new Rng(1), 2);
        const none = crossEntropy(x, targets, { reduction: 'none' });
        assert.deepEqual(none.shape, [2, 3]);
        for (let r = 0; r < 6; r++) {
          if (targets[r] === IGNORE) {
            assert.ok(Object.is(none.data[r], 0), `ignored row ${r} gives +0`);
            continue;
          }
          const row = [...x.data.subarray(r * 5, r * 5 + 5)];
          const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
          assert.ok(Math.abs(none.data[r] - (lse - row[targets[r]])) < 1e-13);
        }
        const total = [...none.data].reduce((s, v) => s + v, 0);
        assert.ok(Math.abs(crossEntropy(x, targets, { reduction: 'sum' }).item() - total) < 1e-13);
        assert.ok(Math.abs(crossEntropy(x, targets).item() - total / 4) < 1e-13);
        assert.ok(Math.abs(crossEntropy(x, targets, { reduction: 'mean' }).item() - total / 4) < 1e-13);
      });
    });

    it('2-D logits give (rows,); all rows ignored: zeros, 0 for sum and mean, no gradient', () => {
      const x = Tensor.randn([3, 4], new Rng(2), 1, true);
      const none = crossEntropy(x, Int32Array.from([1, 0, 3]), { reduction: 'none' });
      assert.deepEqual(none.shape, [3]);
      const ignored = Int32Array.from([IGNORE, IGNORE, IGNORE]);
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        const y = crossEntropy(x, ignored, { reduction });
        assert.deepEqual([...y.data], reduction === 'none' ? [0, 0, 0] : [0]);
        y.backward(new Float32Array(y.size).fill(1));
        assert.ok(x.grad === null || x.grad.every((v) => v === 0), reduction);
      }
    });

    it('rejects bad targets and reductions naming the op', () => {
      const x = Tensor.zeros([2, 3]);
      assert.throws(() => crossEntropy(x, Int32Array.from([0, 3]), { reduction: 'none' }), /^Error: crossEntropy: target 3 at row 1/);
      assert.throws(() => crossEntropy(x, Int32Array.from([0]), { reduction: 'sum' }), /crossEntropy: 1 targets for 2 rows/);
      assert.throws(() => crossEntropy(x, Int32Array.from([0, 1]), { reduction: 'avg' as CrossEntropyReduction }),
        /crossEntropy: reduction must be 'mean', 'sum' or 'none'/);
      assert.throws(() => logSoftmaxGather(x, Int32Array.from([-1, 0])), /logSoftmaxGather: target -1 at row 0/);
    });
  });

  describe('logSoftmax and logSoftmaxGather', () => {
    const targets = Int32Array.from([3, IGNORE, 0, 6, IGNORE, 1]);

    it('gradchecks (gather with ignored rows; logSoftmax on 2-D and 3-D)', () => {
      gradcheck('logSoftmaxGather', (r) => [param(r, [2, 3, 7], 2)], ([x]) => logSoftmaxGather(x, targets));
      gradcheck('logSoftmax 2-D', (r) => [param(r, [4, 9], 2)], ([x]) => logSoftmax(x));
      gradcheck('logSoftmax 3-D', (r) => [param(r, [2, 3, 5], 3)], ([x]) => logSoftmax(x));
    });

    it('logSoftmax matches a direct computation, also for logits of 1000 (no overflow)', () => {
      float64(() => {
        const x = Tensor.randn([3, 6], new Rng(3), 3);
        x.data[7] = 1000;
        x.data[8] = 999;
        const y = logSoftmax(x);
        for (let r = 0; r < 3; r++) {
          const row = [...x.data.subarray(r * 6, r * 6 + 6)];
          const m = Math.max(...row);
          const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
          for (let j = 0; j < 6; j++) assert.ok(Math.abs(y.data[r * 6 + j] - (row[j] - lse)) < 1e-12);
        }
        assert.ok(Math.abs(y.data[7] - -Math.log1p(Math.exp(-1))) < 1e-12);
      });
    });

    it('logSoftmaxGather is log-softmax gathered at the targets, and -crossEntropy(none); 0 at ignored rows', () => {
      float64(() => {
        const x = Tensor.randn([2, 3, 7], new Rng(4), 2);
        const g = logSoftmaxGather(x, targets);
        assert.deepEqual(g.shape, [2, 3]);
        const full = logSoftmax(x);
        const ce = crossEntropy(x, targets, { reduction: 'none' });
        for (let r = 0; r < 6; r++) {
          if (targets[r] === IGNORE) {
            assert.ok(Object.is(g.data[r], 0), `ignored row ${r} gives +0`);
            continue;
          }
          assert.ok(Math.abs(g.data[r] - full.data[r * 7 + targets[r]]) < 1e-13);
          assert.equal(g.data[r], -ce.data[r]);
        }
      });
    });

    it('non-finite rows: -Infinity entries stay -Infinity; rows with +Infinity, NaN or only -Infinity are NaN', () => {
      const inf = Infinity;
      const y = logSoftmax(Tensor.fromArray([-inf, 0, 0, inf, 0, 0, NaN, 1, 2, -inf, -inf, -inf], [4, 3]));
      assert.equal(y.data[0], -Infinity);
      assert.ok(Math.abs(y.data[1] - Math.log(0.5)) < 1e-6);
      for (let i = 3; i < 12; i++) assert.ok(Number.isNaN(y.data[i]), `element ${i}`);
    });

    it('rows whose upstream gradient is 0 get no gradient (the kernel skips them)', () => {
      for (const be of [referenceBackend, nativeBackend()].filter((b): b is Backend => b !== null)) {
        onBackend(be, () => {
          const x = Tensor.randn([4, 5], new Rng(5), 1, true);
          const g = logSoftmaxGather(x, Int32Array.from([0, 1, 2, 3]));
          g.backward(Float32Array.from([0, 1, 0, -2]));
          assert.deepEqual([...x.grad!.subarray(0, 5)], [0, 0, 0, 0, 0], be.name);
          assert.deepEqual([...x.grad!.subarray(10, 15)], [0, 0, 0, 0, 0], be.name);
          assert.ok(x.grad!.subarray(5, 10).some((v) => v !== 0), be.name);
        });
      }
    });

    it('native kernels agree with the reference on (rows, V) logits, values and gradients', (t) => {
      const native = nativeBackend();
      if (!native) return t.skip('native backend not available');
      const rng = new Rng(6);
      for (const [rows, V] of [[1, 1], [7, 63], [64, 257], [40, 5003]] as const) {
        const logits = Tensor.randn([rows, V], rng, 3);
        const ids = new Int32Array(rows);
        for (let r = 0; r < rows; r++) ids[r] = rows > 1 && rng.uniform() < 0.2 ? IGNORE : rng.int(V);
        const R = new Float32Array(rows);
        for (let r = 0; r < rows; r++) R[r] = rng.uniform() < 0.2 ? 0 : rng.normal();
        for (const op of ['gather', 'none', 'sum'] as const) {
          const run = (be: Backend): { out: number[]; grad: number[] } => onBackend(be, () => {
            const x = new Tensor(logits.data.slice(), logits.shape, true);
            const y = op === 'gather' ? logSoftmaxGather(x, ids) : crossEntropy(x, ids, { reduction: op });
            y.backward(op === 'sum' ? Float32Array.from([0.7]) : R);
            return { out: [...y.data], grad: [...x.grad!] };
          });
          const ref = run(referenceBackend);
          const got = run(native);
          assertClose(got.out, ref.out, 1e-5, `${op} ${rows}x${V} values`);
          assertClose(got.grad, ref.grad, 1e-5, `${op} ${rows}x${V} gradients`);
        }
      }
    });
  });

  describe('exp, log, logsigmoid', () => {
    it('gradchecks', () => {
      gradcheck('exp', (r) => [param(r, [3, 4], 2)], ([x]) => exp(x));
      gradcheck('log', (r) => {
        const x = param(r, [3, 4]);
        for (let i = 0; i < x.size; i++) x.data[i] = 0.2 + Math.abs(x.data[i]); // keep away from 0
        return [x];
      }, ([x]) => log(x));
      gradcheck('logsigmoid', (r) => [param(r, [4, 5], 4)], ([x]) => logsigmoid(x));
      gradcheck('logsigmoid large |x|', () => [Tensor.fromArray([-40, -15, 15, 40], [4], true)], ([x]) => logsigmoid(x));
    });

    it('logsigmoid does not overflow at x = ±100, ±1000 (values and gradients)', () => {
      for (const f64 of [false, true]) {
        const run = (): ValueAndGrads => {
          const x = Tensor.fromArray([-1000, -100, 0, 100, 1000], [5], true);
          return valueAndGrads([x], () => logsigmoid(x));
        };
        const { out, grads } = f64 ? float64(run) : run();
        const tol = f64 ? 0 : 1e-7;
        assert.equal(out[0], -1000);
        assert.equal(out[1], -100);
        assert.ok(Math.abs(out[2] - Math.log(0.5)) <= tol + 1e-16);
        assert.ok(out[3] <= 0 && out[3] > -1e-43, `logsigmoid(100) = ${out[3]}`);
        assert.ok(Object.is(out[4], 0), `logsigmoid(1000) = ${out[4]}`);
        const g = grads[0]!;
        assert.equal(g[0], 1);
        assert.equal(g[1], 1);
        assert.equal(g[2], 0.5);
        assert.ok(g[3] >= 0 && g[3] < 1e-43);
        assert.equal(g[4], 0);
        for (const v of [...out, ...g]) assert.ok(Number.isFinite(v));
      }
    });

    it('non-finite inputs follow IEEE arithmetic as PyTorch does', () => {
      const l = log(Tensor.fromArray([0, -1, Infinity, NaN], [4]));
      assert.equal(l.data[0], -Infinity);
      assert.ok(Number.isNaN(l.data[1]));
      assert.equal(l.data[2], Infinity);
      assert.ok(Number.isNaN(l.data[3]));
      const e = exp(Tensor.fromArray([-Infinity, 89, Infinity, NaN], [4]));
      assert.deepEqual([...e.data.subarray(0, 3)], [0, Infinity, Infinity]); // float32 overflows above ~88.72
      assert.ok(Number.isNaN(e.data[3]));
      const s = logsigmoid(Tensor.fromArray([-Infinity, Infinity, NaN], [3]));
      assert.equal(s.data[0], -Infinity);
      assert.equal(s.data[1], 0);
      assert.ok(Number.isNaN(s.data[2]));
      // log's gradient at 0 is dy / 0: Infinity, or NaN when dy = 0 (mask log's input, not only its output)
      const x = Tensor.fromArray([0, 0, 2], [3], true);
      log(x).backward(Float32Array.from([1, 0, 1]));
      assert.equal(x.grad![0], Infinity);
      assert.ok(Number.isNaN(x.grad![1]));
      assert.equal(x.grad![2], 0.5);
    });
  });

  describe('clamp', () => {
    it('gradchecks with inputs away from the bounds (both bounds, min only, max only)', () => {
      gradcheck('clamp both', (r) => [avoid(param(r, [4, 6], 1.5), [-0.5, 0.8])], ([x]) => clamp(x, -0.5, 0.8));
      gradcheck('clamp min', (r) => [avoid(param(r, [4, 6], 1.5), [0.1])], ([x]) => clamp(x, 0.1));
      gradcheck('clamp max', (r) => [avoid(param(r, [4, 6], 1.5), [-0.2])], ([x]) => clamp(x, undefined, -0.2));
    });

    it('at the bounds the gradient passes (PyTorch), outside it is 0; NaN stays NaN with gradient 0', () => {
      for (const f64 of [false, true]) {
        const run = (): ValueAndGrads => {
          const x = Tensor.fromArray([0.8, 1.2, 0.8 - 1e-3, 1.2 + 1e-3, 1, -5, NaN], [7], true);
          return valueAndGrads([x], () => clamp(x, 0.8, 1.2));
        };
        const { out, grads } = f64 ? float64(run) : run();
        const f = f64 ? (v: number): number => v : Math.fround;
        assert.deepEqual(out.slice(0, 6), [f(0.8), f(1.2), f(0.8), f(1.2), 1, f(0.8)]);
        assert.ok(Number.isNaN(out[6]));
        // float32 x holds fround(1.2) > 1.2: the bound is rounded the same way, so it still counts as on the bound
        assert.deepEqual(grads[0], [1, 1, 0, 0, 1, 0, 0]);
      }
    });

    it('min > max gives max everywhere with no gradient (torch.clamp); no bound at all is an error', () => {
      const x = Tensor.fromArray([0, 1.5, 3], [3], true);
      const { out, grads } = valueAndGrads([x], () => clamp(x, 2, 1));
      assert.deepEqual(out, [1, 1, 1]);
      assert.deepEqual(grads[0], [0, 0, 0]);
      assert.throws(() => clamp(x), /^Error: clamp: give at least one of min and max/);
    });
  });

  describe('minimum and maximum', () => {
    const shapes: [number[], number[]][] = [[[3, 4], [3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [[5], [1]], [[], [2, 3]]];
    for (const [sa, sb] of shapes) {
      it(`gradcheck ${JSON.stringify(sa)} with ${JSON.stringify(sb)} (random values: no ties)`, () => {
        gradcheck(`minimum ${sa} ${sb}`, (r) => [param(r, sa), param(r, sb)], ([a, b]) => minimum(a, b));
        gradcheck(`maximum ${sa} ${sb}`, (r) => [param(r, sa), param(r, sb)], ([a, b]) => maximum(a, b));
      });
    }

    it('ties split the gradient evenly (PyTorch); NaN propagates and both inputs get the whole gradient', () => {
      for (const op of [minimum, maximum]) {
        const a = Tensor.fromArray([1, 2, 3, NaN, 5, -0], [6], true);
        const b = Tensor.fromArray([1, 1, 4, 0, NaN, 0], [6], true);
        const { out, grads } = valueAndGrads([a, b], () => op(a, b), [2, 2, 2, 2, 2, 2]);
        const isMin = op === minimum;
        assert.deepEqual(out.slice(0, 3), isMin ? [1, 1, 3] : [1, 2, 4]);
        assert.ok(Number.isNaN(out[3]) && Number.isNaN(out[4]));
        assert.deepEqual(grads[0], isMin ? [1, 0, 2, 2, 2, 1] : [1, 2, 0, 2, 2, 1]);
        assert.deepEqual(grads[1], isMin ? [1, 2, 0, 2, 2, 1] : [1, 0, 2, 2, 2, 1]);
      }
    });

    it('broadcast ties accumulate half shares; a number operand is a constant', () => {
      const a = Tensor.fromArray([1, 1, 1, 2, 0, 1], [2, 3], true);
      const b = Tensor.fromArray([1], [1], true);
      const { grads } = valueAndGrads([a, b], () => maximum(a, b));
      assert.deepEqual(grads[0], [0.5, 0.5, 0.5, 1, 0, 0.5]);
      assert.deepEqual(grads[1], [3]); // four ties at 1/2, one loss, one win
      const x = Tensor.fromArray([-1, 0.5, 2], [3], true);
      const relu = valueAndGrads([x], () => maximum(x, 0));
      assert.deepEqual(relu.out, [0, 0.5, 2]);
      assert.deepEqual(relu.grads[0], [0, 1, 1]);
      assert.throws(() => minimum(Tensor.zeros([2, 3]), Tensor.zeros([4])),
        /^Error: minimum: shapes \[2, 3\] and \[4\] do not broadcast/);
    });
  });

  describe('where', () => {
    it('gradchecks: Uint8Array mask, broadcast Tensor condition, number operand', () => {
      const mask = Uint8Array.from([1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0]);
      gradcheck('where mask', (r) => [param(r, [3, 4]), param(r, [4])], ([a, b]) => where(mask, a, b));
      const cond = Tensor.fromArray([1, 0, 2], [3, 1]);
      gradcheck('where tensor cond', (r) => [param(r, [4]), param(r, [3, 4])], ([a, b]) => where(cond, a, b));
      gradcheck('where number', (r) => [param(r, [2, 6])], ([a]) => where(mask, a, 0));
    });

    it('the unselected side gets exactly 0, even where it holds NaN or Infinity', () => {
      const a = Tensor.fromArray([1, NaN, 3, Infinity], [4], true);
      const b = Tensor.fromArray([-1, -2, NaN, -4], [4], true);
      const { out, grads } = valueAndGrads([a, b], () => where(Uint8Array.from([1, 0, 1, 0]), a, b), [5, 6, 7, 8]);
      assert.deepEqual(out, [1, -2, 3, -4]);
      assert.deepEqual(grads[0], [5, 0, 7, 0]);
      assert.deepEqual(grads[1], [0, 6, 0, 8]);
    });

    it('the condition broadcasts to the output shape; shape errors name the op', () => {
      const y = where(Tensor.fromArray([0, 1], [2, 1]), Tensor.fromArray([1, 2, 3], [3]), -1);
      assert.deepEqual(y.shape, [2, 3]);
      assert.deepEqual([...y.data], [-1, -1, -1, 1, 2, 3]);
      assert.throws(() => where(new Uint8Array(5), Tensor.zeros([2, 3]), 0),
        /^Error: where: a mask of 5 entries for values of shape \[2, 3\]/);
      assert.throws(() => where(Tensor.zeros([4]), Tensor.zeros([2, 3]), 0),
        /^Error: where: shapes \[4\] and \[2, 3\] do not broadcast/);
    });
  });

  describe('losses built from them', () => {
    it('reward-model loss -logsigmoid(r_chosen - r_rejected) and a DPO loss gradcheck end to end', () => {
      gradcheck('reward pair loss', (r) => [param(r, [6]), param(r, [6])],
        ([rc, rr]) => scale(mean(logsigmoid(sub(rc, rr))), -1));
      const tgt = Int32Array.from([IGNORE, 1, 5, 2, IGNORE, IGNORE, 0, 3, IGNORE, 4, 4, 1, IGNORE, 2, IGNORE, 5]);
      // the reference model is frozen: a constant input, not a parameter
      gradcheck('dpo', (r) => [param(r, [4, 4, 6], 1.5), Tensor.randn([4, 4, 6], r, 1.5)],
        ([pol, ref]) => dpoLoss(pol, ref, tgt, 0.5));
    });

    it('the PPO clipped objective gradchecks with ratios away from the clip edges', () => {
      const mask = Uint8Array.from([1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
      gradcheck('ppo', (r) => {
        const logp = param(r, [2, 5], 0.3);
        const old = Tensor.randn([2, 5], r, 0.3);
        // keep log(ratio) away from log(0.8) and log(1.2), the clip's kinks
        for (let i = 0; i < 10; i++) {
          const d = avoid(Tensor.fromArray([logp.data[i] - old.data[i]], [1]), [Math.log(0.8), Math.log(1.2), 0], 0.03);
          logp.data[i] = old.data[i] + d.data[0];
        }
        return [logp, old, Tensor.randn([2, 5], r)];
      }, ([logp, old, adv]) => ppoLoss(logp, old, adv, mask, 0.2));
    });

    it('KL estimator exp(r) - 1 - r with r = logp_ref - logp is >= 0 and its gradient checks', () => {
      gradcheck('k3', (r) => [param(r, [3, 4], 0.5), param(r, [3, 4], 0.5)], ([lp, lref]) => {
        const d = sub(lref, lp);
        return sum(sub(addScalar(exp(d), -1), d));
      });
      noGrad(() => {
        const d = Tensor.randn([50], new Rng(9), 2);
        const k3 = sub(addScalar(exp(d), -1), d);
        for (const v of k3.data) assert.ok(v >= 0);
      });
    });
  });
});
