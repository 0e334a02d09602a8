/**
 * Fused attention over packed rows (AttentionShape.segmentStart: several examples share a row and
 * never attend to each other): the reference equals running every example on its own, the native
 * kernels (this machine's SIMD level, and in child processes LLMTS_SIMD=portable / avx2 and one
 * thread, which takes the other backward mode) match the reference, segment starts of 0 change
 * nothing, and bad segment starts are refused. Native RoPE with per-token positions matches the
 * reference too.
 *
 * The file doubles as its own child process: LLMTS_SEG_TEST_CHILD=check runs the accuracy checks,
 * LLMTS_SEG_TEST_CHILD=hash prints a hash of the native outputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { nativeBackendInfo, referenceBackend, type AttentionShape } from '../../src/backend/index.js';
import { lcgRandom, nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

const CHILD = process.env.LLMTS_SEG_TEST_CHILD;
const TOL = 1e-4;

/** Segment lengths of one row of T tokens: a fixed list cycled (ends cut at T). */
function segmentStarts(B: number, T: number, lengths: number[][]): Int32Array {
  const seg = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const lens = lengths[b % lengths.length];
    let start = 0;
    let k = 0;
    for (let t = 0; t < T; t++) {
      if (t - start >= lens[k % lens.length]) {
        start = t;
        k++;
      }
      seg[b * T + t] = start;
    }
  }
  return seg;
}

interface Case {
  label: string;
  s: AttentionShape;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
}

/** Rows of examples that cross 64-row tiles, start on a tile edge, are 1 token long, fill a row. */
const LENGTHS: number[][] = [[5, 70, 1, 64, 30], [64, 64, 3], [200], [1, 1, 130, 9], [17, 47, 2, 100]];

function makeCase(B: number, T: number, nHead: number, nKvHead: number, hs: number, seed: number): Case {
  const nq = B * T * nHead * hs;
  const nkv = B * T * nKvHead * hs;
  const s: AttentionShape = { B, T, nHead, nKvHead, headDim: hs, scale: 1 / Math.sqrt(hs), segmentStart: segmentStarts(B, T, LENGTHS.slice(seed % 3)) };
  return {
    label: `B=${B} T=${T} heads=${nHead}/${nKvHead} hs=${hs}`, s,
    q: lcgRandom(nq, seed, 2), k: lcgRandom(nkv, seed + 1, 2), v: lcgRandom(nkv, seed + 2), dout: lcgRandom(nq, seed + 3),
  };
}

const CASES: [number, number, number, number, number][] = [
  [1, 7, 2, 2, 16], [3, 65, 6, 2, 48], [2, 130, 4, 1, 64], [1, 257, 4, 4, 3], [5, 200, 2, 1, 72], [1, 320, 3, 3, 17],
];

/** max |got - want| / max(max |want - base|, 0.01) (see native-attention.test.ts) */
function relErr(got: Float32Array, want: Float32Array, base?: Float32Array): number {
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= diff)) diff = d;
    ref = Math.max(ref, Math.abs(want[i] - (base ? base[i] : 0)));
  }
  return diff / Math.max(ref, 0.01);
}

/** Forward and backward (into gradients pre-filled with `base`) on one backend. */
function run(be: typeof referenceBackend, c: Case, base: boolean): { out: Float32Array; lse: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const { B, T, nHead } = c.s;
  const out = new Float32Array(c.q.length).fill(NaN);
  const lse = new Float32Array(B * nHead * T).fill(NaN);
  be.attentionForward(c.q, c.k, c.v, out, lse, c.s);
  const dq = base ? lcgRandom(c.q.length, 91) : new Float32Array(c.q.length);
  const dk = base ? lcgRandom(c.k.length, 92) : new Float32Array(c.k.length);
  const dv = base ? lcgRandom(c.v.length, 93) : new Float32Array(c.v.length);
  be.attentionBackward(c.q, c.k, c.v, out, lse, c.dout, dq, dk, dv, c.s);
  return { out, lse, dq, dk, dv };
}

function checkNativeMatches(): number {
  const be = nativeOrFail();
  let worst = 0;
  let seed = 300;
  for (const [B, T, nHead, nKvHead, hs] of CASES) {
    const c = makeCase(B, T, nHead, nKvHead, hs, (seed += 7));
    const r = run(referenceBackend, c, true);
    const n = run(be, c, true);
    const dq0 = lcgRandom(c.q.length, 91);
    const dk0 = lcgRandom(c.k.length, 92);
    const dv0 = lcgRandom(c.v.length, 93);
    for (const [name, got, want, base] of [
      ['out', n.out, r.out, undefined], ['lse', n.lse, r.lse, undefined],
      ['dq', n.dq, r.dq, dq0], ['dk', n.dk, r.dk, dk0], ['dv', n.dv, r.dv, dv0],
    ] as const) {
      const e = relErr(got, want, base);
      assert.ok(e < TOL, `${c.label}: ${name} relative error ${e}`);
      worst = Math.max(worst, e);
    }
  }
  return worst;
}

function outputsHash(): string {
  const be = nativeOrFail();
  const hash = createHash('sha256');
  for (const [B, T, nHead, nKvHead, hs, seed] of [[1, 200, 4, 1, 64, 5], [3, 257, 6, 2, 48, 6], [12, 64, 4, 4, 32, 7]]) {
    const n = run(be, makeCase(B, T, nHead, nKvHead, hs, seed), true);
    for (const a of [n.out, n.lse, n.dq, n.dk, n.dv]) hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return hash.digest('hex');
}

function runChild(env: Record<string, string>): { out: string; status: number | null } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env: childEnv, encoding: 'utf8' });
  return { out: `${r.stdout ?? ''}${r.stderr ?? ''}`, status: r.status };
}

if (CHILD === 'hash') {
  process.stdout.write(`SEG_HASH ${outputsHash()}\n`);
} else {
  test('reference: a packed row gives every example what it gets on its own', () => {
    const [nHead, nKvHead, hs] = [4, 2, 8];
    const c = makeCase(2, 150, nHead, nKvHead, hs, 11);
    const packed = run(referenceBackend, c, false);
    const { T } = c.s;
    const seg = c.s.segmentStart!;
    let examples = 0;
    for (let b = 0; b < 2; b++) {
      for (let t0 = 0; t0 < T;) {
        let t1 = t0 + 1;
        while (t1 < T && seg[b * T + t1] === t0) t1++;
        const L = t1 - t0;
        const qw = nHead * hs;
        const kw = nKvHead * hs;
        const slice = (a: Float32Array, w: number) => a.slice((b * T + t0) * w, (b * T + t1) * w);
        const one: Case = {
          label: 'one', s: { B: 1, T: L, nHead, nKvHead, headDim: hs, scale: c.s.scale },
          q: slice(c.q, qw), k: slice(c.k, kw), v: slice(c.v, kw), dout: slice(c.dout, qw),
        };
        const alone = run(referenceBackend, one, false);
        const lsePacked = new Float32Array(nHead * L);
        for (let h = 0; h < nHead; h++) lsePacked.set(packed.lse.subarray((b * nHead + h) * T + t0, (b * nHead + h) * T + t1), h * L);
        for (const [name, got, want] of [
          ['out', slice(packed.out, qw), alone.out], ['lse', lsePacked, alone.lse],
          ['dq', slice(packed.dq, qw), alone.dq], ['dk', slice(packed.dk, kw), alone.dk], ['dv', slice(packed.dv, kw), alone.dv],
        ] as const) {
          assert.ok(relErr(got, want) < 1e-6, `row ${b} example at ${t0} (${L} tokens): ${name} differs from the example alone (${relErr(got, want)})`);
        }
        examples++;
        t0 = t1;
      }
    }
    assert.ok(examples >= 8, `the rows hold ${examples} examples`);
  });

  test('reference attention refuses segment starts outside [0, t]', () => {
    const c = makeCase(1, 10, 2, 2, 4, 3);
    const out = new Float32Array(c.q.length);
    const lse = new Float32Array(2 * 10);
    const bad = new Int32Array(10);
    bad[4] = 5;
    assert.throws(() => referenceBackend.attentionForward(c.q, c.k, c.v, out, lse, { ...c.s, segmentStart: bad }), /segmentStart\[4\] = 5/);
    assert.throws(() => referenceBackend.attentionForward(c.q, c.k, c.v, out, lse, { ...c.s, segmentStart: new Int32Array(9) }), /9 entries/);
  });

  test('native attention over packed rows matches the reference', { skip: nativeSkipReason }, (t) => {
    const worst = checkNativeMatches();
    const line = `SEG_MAXERR simd=${nativeBackendInfo()?.simd} ${worst}`;
    if (CHILD) process.stdout.write(`${line}\n`);
    else t.diagnostic(line);
  });

  test('native attention: segment starts of 0 are plain causal attention, bit for bit', { skip: nativeSkipReason }, () => {
    const be = nativeOrFail();
    for (const [B, T, nHead, nKvHead, hs] of [[3, 130, 4, 2, 32], [1, 70, 2, 1, 64]]) {
      const c = makeCase(B, T, nHead, nKvHead, hs, 17);
      const causal = run(be, { ...c, s: { ...c.s, segmentStart: null } }, true);
      const zeros = run(be, { ...c, s: { ...c.s, segmentStart: new Int32Array(B * T) } }, true);
      for (const k of ['out', 'lse', 'dq', 'dk', 'dv'] as const) assert.deepEqual(zeros[k], causal[k], `${c.label}: ${k}`);
    }
  });

  test('native attention refuses bad segment starts', { skip: nativeSkipReason }, () => {
    const be = nativeOrFail();
    const c = makeCase(2, 9, 2, 1, 4, 5);
    const out = new Float32Array(c.q.length);
    const lse = new Float32Array(2 * 2 * 9);
    const bad = new Int32Array(18);
    bad[9 + 3] = 4; // row 1, token 3: start after itself
    assert.throws(() => be.attentionForward(c.q, c.k, c.v, out, lse, { ...c.s, segmentStart: bad }), /segmentStart\[12\] = 4/);
    bad[12] = -1;
    assert.throws(() => be.attentionBackward(c.q, c.k, c.v, out, lse, c.dout, out.slice(), null, null, { ...c.s, segmentStart: bad }), RangeError);
    assert.throws(() => be.attentionForward(c.q, c.k, c.v, out, lse, { ...c.s, segmentStart: new Int32Array(17) }), TypeError);
  });

  test('native rope with per-token positions matches the reference', { skip: nativeSkipReason }, () => {
    const be = nativeOrFail();
    for (const [B, T, nHeads, headDim] of [[2, 37, 3, 8], [1, 130, 2, 64], [3, 5, 4, 34]]) {
      const half = headDim / 2;
      const maxPos = 200;
      const cos = lcgRandom(maxPos * half, 1);
      const sin = lcgRandom(maxPos * half, 2);
      const positions = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 41);
      const x = lcgRandom(B * T * nHeads * headDim, 3);
      for (const inverse of [false, true]) {
        const want = new Float32Array(x.length);
        referenceBackend.rope(x, want, cos, sin, B, T, nHeads, headDim, 0, inverse, positions);
        const got = new Float32Array(x.length);
        be.rope(x, got, cos, sin, B, T, nHeads, headDim, 0, inverse, positions);
        assert.ok(relErr(got, want) < 1e-5, `rope B=${B} T=${T}: ${relErr(got, want)}`);
        // positions 0..T-1 in every row are posOffset 0
        const plain = new Float32Array(x.length);
        be.rope(x, plain, cos, sin, B, T, nHeads, headDim, 0, inverse);
        const seq = new Float32Array(x.length);
        be.rope(x, seq, cos, sin, B, T, nHeads, headDim, 0, inverse, Int32Array.from({ length: B * T }, (_, i) => i % T));
        assert.deepEqual(seq, plain);
      }
      const top = Math.max(...positions); // tables one position short:
      assert.throws(() => be.rope(x, x.slice(), cos.subarray(0, top * half), sin, B, T, nHeads, headDim, 0, false, positions), TypeError);
      assert.throws(() => be.rope(x, x.slice(), cos, sin, B, T, nHeads, headDim, 0, false, new Int32Array(B * T).fill(-1)), RangeError);
    }
  });

  if (!CHILD) {
    for (const level of ['portable', 'avx2']) {
      test(`native attention over packed rows matches the reference with LLMTS_SIMD=${level}`, { skip: nativeSkipReason }, (t) => {
        nativeOrFail();
        const simd = nativeBackendInfo()?.simd;
        if (level === 'avx2' && simd !== 'avx2' && simd !== 'avx512') {
          t.skip(`this CPU has no AVX2 (${simd})`);
          return;
        }
        const r = runChild({ LLMTS_SIMD: level, LLMTS_SEG_TEST_CHILD: 'check' });
        assert.equal(r.status, 0, `the LLMTS_SIMD=${level} child failed:\n${r.out.slice(-4000)}`);
        const line = /SEG_MAXERR .*/.exec(r.out);
        assert.ok(line, `no SEG_MAXERR line from the child:\n${r.out.slice(-2000)}`);
        t.diagnostic(line[0]);
      });
    }

    test('native attention over packed rows is bit-identical with 1 thread (the other backward mode)', { skip: nativeSkipReason }, (t) => {
      nativeOrFail();
      if ((nativeBackendInfo()?.threads ?? 1) < 2) {
        t.skip('the pool has one thread already');
        return;
      }
      const r = runChild({ LLMTS_THREADS: '1', LLMTS_SEG_TEST_CHILD: 'hash' });
      assert.equal(r.status, 0, r.out);
      const m = /SEG_HASH ([0-9a-f]+)/.exec(r.out);
      assert.ok(m, r.out);
      assert.equal(m[1], outputsHash());
    });
  }
}
