/**
 * The native fused attention kernels against the reference backend: forward (out, lse) and
 * backward (dq, dk, dv accumulated into pre-filled buffers, some of them null) on awkward shapes,
 * for the SIMD level this machine picks and, in child processes, for LLMTS_SIMD=portable and
 * LLMTS_SIMD=avx2. Also: bit-identical results across runs and thread counts, argument checks.
 *
 * The file doubles as its own child process: LLMTS_ATTN_TEST_CHILD=check runs the accuracy
 * tests only, LLMTS_ATTN_TEST_CHILD=hash prints a hash of the outputs of a few shapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { nativeBackend, nativeBackendInfo, nativeLoadError, referenceBackend } from '../../src/backend/index.js';
import type { AttentionShape, Backend } from '../../src/backend/index.js';

const CHILD = process.env.LLMTS_ATTN_TEST_CHILD;
const TOL = 1e-4;

const native = nativeBackend();
const skipReason = native === null && process.platform !== 'linux' ? `native backend not available: ${nativeLoadError()}` : false;

function nb(): Backend {
  if (native === null) assert.fail(`the native backend did not load: ${nativeLoadError()}`);
  return native;
}

/** deterministic uniform numbers in [-amp, amp) */
function random(n: number, seed: number, amp = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * amp;
  }
  return out;
}

/**
 * max |got - want| / max |want - base| (base: the values an accumulating kernel started from).
 * The denominator is floored at 0.01: with T = 1 the exact dq and dk increments are zero, and
 * float rounding leaves ~1e-7 there. Inputs are O(1), so real increments are far above the floor.
 */
function relErr(got: Float32Array, want: Float32Array, base?: Float32Array): number {
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= diff)) diff = d; // NaN propagates
    ref = Math.max(ref, Math.abs(want[i] - (base ? base[i] : 0)));
  }
  return diff / Math.max(ref, 0.01);
}

interface Inputs {
  s: AttentionShape;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
}

function makeInputs(B: number, T: number, nHead: number, nKvHead: number, headDim: number, seed: number): Inputs {
  const nq = B * T * nHead * headDim;
  const nkv = B * T * nKvHead * headDim;
  return {
    s: { B, T, nHead, nKvHead, headDim, scale: 1 / Math.sqrt(headDim) },
    // amplitude 2 makes the softmax peaky enough to exercise the running max
    q: random(nq, seed, 2),
    k: random(nkv, seed + 1, 2),
    v: random(nkv, seed + 2),
    dout: random(nq, seed + 3),
  };
}

/** B x T x heads x hs combinations covering every T and every head size, MHA and GQA, B 1 and 3 */
function shapes(): [number, number, number, number, number][] {
  const heads: [number, number][] = [[2, 2], [6, 2], [4, 1]];
  const list: [number, number, number, number, number][] = [];
  let i = 0;
  for (const T of [1, 7, 63, 65, 257]) {
    for (const hs of [3, 16, 48, 64]) {
      const [nHead, nKvHead] = heads[i % 3];
      const B = T === 257 && hs >= 48 ? 1 : [1, 3][(i >> 1) % 2];
      list.push([B, T, nHead, nKvHead, hs]);
      i++;
    }
  }
  list.push([3, 65, 6, 2, 48], [2, 130, 4, 1, 72], [1, 129, 3, 3, 17]);
  return list;
}

const NULL_SETS: [boolean, boolean, boolean][] = [
  [true, false, false], [false, true, true], [false, false, true], [false, true, false],
];

function checkAll(): Record<string, number> {
  const be = nb();
  const worst: Record<string, number> = { out: 0, lse: 0, dq: 0, dk: 0, dv: 0 };
  let seed = 1000;
  for (const [B, T, nHead, nKvHead, hs] of shapes()) {
    const x = makeInputs(B, T, nHead, nKvHead, hs, (seed += 10));
    const { s } = x;
    const label = `B=${B} T=${T} heads=${nHead}/${nKvHead} hs=${hs}`;
    const nq = x.q.length;
    const nkv = x.k.length;
    const outR = new Float32Array(nq);
    const lseR = new Float32Array(B * nHead * T);
    referenceBackend.attentionForward(x.q, x.k, x.v, outR, lseR, s);
    const outN = new Float32Array(nq).fill(NaN);
    const lseN = new Float32Array(B * nHead * T).fill(NaN);
    be.attentionForward(x.q, x.k, x.v, outN, lseN, s);
    const eo = relErr(outN, outR);
    const el = relErr(lseN, lseR);
    assert.ok(eo < TOL, `${label}: forward out relative error ${eo}`);
    assert.ok(el < TOL, `${label}: forward lse relative error ${el}`);
    worst.out = Math.max(worst.out, eo);
    worst.lse = Math.max(worst.lse, el);

    // backward from the reference forward's out/lse, into pre-filled gradients
    const dq0 = random(nq, seed + 5);
    const dk0 = random(nkv, seed + 6);
    const dv0 = random(nkv, seed + 7);
    const dqR = dq0.slice();
    const dkR = dk0.slice();
    const dvR = dv0.slice();
    referenceBackend.attentionBackward(x.q, x.k, x.v, outR, lseR, x.dout, dqR, dkR, dvR, s);
    const dqN = dq0.slice();
    const dkN = dk0.slice();
    const dvN = dv0.slice();
    be.attentionBackward(x.q, x.k, x.v, outR, lseR, x.dout, dqN, dkN, dvN, s);
    for (const [name, got, want, base] of [
      ['dq', dqN, dqR, dq0], ['dk', dkN, dkR, dk0], ['dv', dvN, dvR, dv0],
    ] as const) {
      const e = relErr(got, want, base);
      assert.ok(e < TOL, `${label}: ${name} relative error ${e}`);
      // (T = 1: dq and dk are exactly zero, the error is only measured against the floor)
      if (T > 1 || name === 'dv') worst[name] = Math.max(worst[name], e);
    }
    // with some gradients not wanted: the others are unchanged
    for (const [wq, wk, wv] of NULL_SETS) {
      const dq = wq ? dq0.slice() : null;
      const dk = wk ? dk0.slice() : null;
      const dv = wv ? dv0.slice() : null;
      be.attentionBackward(x.q, x.k, x.v, outR, lseR, x.dout, dq, dk, dv, s);
      const which = `${wq ? 'dq' : ''}${wk ? 'dk' : ''}${wv ? 'dv' : ''}`;
      if (dq) assert.ok(relErr(dq, dqR, dq0) < TOL, `${label} (${which} only): dq`);
      if (dk) assert.ok(relErr(dk, dkR, dk0) < TOL, `${label} (${which} only): dk`);
      if (dv) assert.ok(relErr(dv, dvR, dv0) < TOL, `${label} (${which} only): dv`);
    }
  }
  return worst;
}

/** sha256 of native forward and backward outputs for shapes that take both backward modes */
function outputsHash(): string {
  const be = nb();
  const hash = createHash('sha256');
  const cases: [number, number, number, number, number][] = [[3, 257, 6, 2, 48], [1, 200, 4, 1, 64], [12, 64, 4, 4, 32]];
  let seed = 7;
  for (const [B, T, nHead, nKvHead, hs] of cases) {
    const x = makeInputs(B, T, nHead, nKvHead, hs, (seed += 10));
    const out = new Float32Array(x.q.length);
    const lse = new Float32Array(B * nHead * T);
    be.attentionForward(x.q, x.k, x.v, out, lse, x.s);
    const dq = random(x.q.length, seed + 5);
    const dk = random(x.k.length, seed + 6);
    const dv = random(x.v.length, seed + 7);
    be.attentionBackward(x.q, x.k, x.v, out, lse, x.dout, dq, dk, dv, x.s);
    for (const a of [out, lse, dq, dk, dv]) hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return hash.digest('hex');
}

function runChild(env: Record<string, string>): { out: string; status: number | null } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT; // run the child's tests on their own, not as part of this runner
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env: childEnv, encoding: 'utf8' });
  return { out: `${r.stdout ?? ''}${r.stderr ?? ''}`, status: r.status };
}

if (CHILD === 'hash') {
  process.stdout.write(`ATTN_HASH ${outputsHash()}\n`);
} else {
  test('native attention kernels are exported', { skip: skipReason }, () => {
    nb();
    const info = nativeBackendInfo();
    assert.ok(info?.nativeKernels.includes('attentionForward'), 'attentionForward is native');
    assert.ok(info?.nativeKernels.includes('attentionBackward'), 'attentionBackward is native');
    const want = process.env.LLMTS_SIMD;
    if (CHILD === 'check' && want) assert.equal(info?.simd, want, 'the child runs the requested SIMD level');
  });

  test('native attention matches the reference (forward, backward, null gradients)', { skip: skipReason }, (t) => {
    const worst = checkAll();
    const line = `ATTN_MAXERR simd=${nativeBackendInfo()?.simd} ${JSON.stringify(worst)}`;
    if (CHILD) process.stdout.write(`${line}\n`);
    else t.diagnostic(line);
  });

  test('native attention is deterministic', { skip: skipReason }, () => {
    assert.equal(outputsHash(), outputsHash());
  });

  test('native attention rejects bad arguments with a TypeError', { skip: skipReason }, () => {
    const be = nb();
    const x = makeInputs(2, 5, 4, 2, 8, 1);
    const lse = new Float32Array(2 * 4 * 5);
    const out = new Float32Array(x.q.length);
    be.attentionForward(x.q, x.k, x.v, out, lse, x.s);
    assert.throws(() => be.attentionForward(x.q, x.k, x.v, out, lse.subarray(1), x.s), TypeError);
    assert.throws(() => be.attentionForward(x.q, x.k.subarray(8), x.v, out, lse, x.s), TypeError);
    assert.throws(() => be.attentionForward(x.q, x.k, x.v, out, lse, { ...x.s, nKvHead: 3 }), TypeError);
    assert.throws(
      () => be.attentionForward(x.q, x.k, x.v, new Float64Array(out.length) as unknown as Float32Array, lse, x.s),
      TypeError,
    );
    const dk = new Float32Array(x.k.length);
    assert.throws(
      () => be.attentionBackward(x.q, x.k, x.v, out, lse, x.dout, null, dk.subarray(1), null, x.s), TypeError,
    );
    assert.throws(
      () => be.attentionBackward(x.q, x.k, x.v, out, lse, x.dout.subarray(1), null, dk, null, x.s), TypeError,
    );
  });

  if (!CHILD) {
    for (const level of ['portable', 'avx2']) {
      test(`native attention matches the reference with LLMTS_SIMD=${level}`, { skip: skipReason }, (t) => {
        nb();
        const simd = nativeBackendInfo()?.simd;
        if (level === 'avx2' && simd !== 'avx2' && simd !== 'avx512') {
          t.skip(`this CPU has no AVX2 (${simd})`);
          return;
        }
        const r = runChild({ LLMTS_SIMD: level, LLMTS_ATTN_TEST_CHILD: 'check' });
        assert.equal(r.status, 0, `the LLMTS_SIMD=${level} child failed:\n${r.out.slice(-4000)}`);
        const line = /ATTN_MAXERR .*/.exec(r.out);
        assert.ok(line, `no ATTN_MAXERR line from the child:\n${r.out.slice(-2000)}`);
        t.diagnostic(line[0]);
      });
    }

    test('native attention gives bit-identical results with 1 thread', { skip: skipReason }, (t) => {
      nb();
      if ((nativeBackendInfo()?.threads ?? 1) < 2) {
        t.skip('the pool has one thread already');
        return;
      }
      const r = runChild({ LLMTS_THREADS: '1', LLMTS_ATTN_TEST_CHILD: 'hash' });
      assert.equal(r.status, 0, r.out);
      const m = /ATTN_HASH ([0-9a-f]+)/.exec(r.out);
      assert.ok(m, r.out);
      assert.equal(m[1], outputsHash());
    });
  }
}
