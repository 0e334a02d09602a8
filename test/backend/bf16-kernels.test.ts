/**
 * The bf16 kernels: roundBf16/toBf16 against an independent float64 oracle (nearest bf16 by
 * distance, ties to even) and native against reference bit for bit (ties, NaN, Inf, denormals,
 * -0, lengths that end mid-vector, threaded lengths); gemmBf16 of the reference against float64
 * sums of the rounded operands, and the native driver (through its C emulations of vdpbf16ps and
 * tdpbf16ps, on the packed layouts the fast kernels use) against the reference.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nativeFunction, referenceBackend, type Backend } from '../../src/backend/index.js';
import { native, nativeSkipReason } from '../helpers/native-under-test.js';
import { Rng } from '../../src/util/rng.js';

const ref = referenceBackend;

function fromBits(bits: number[]): Float32Array {
  return new Float32Array(new Uint32Array(bits).buffer);
}

function bitsOf(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

/** The nearest bf16 to a float32 pattern by float64 distance (ties to the even pattern); NaN -> quiet NaN. */
function oracleBf16(bits: number): number {
  const f = fromBits([bits])[0];
  if (Number.isNaN(f)) return ((bits | 0x00400000) >>> 16) & 0xffff;
  const lo = bits >>> 16; // truncated: toward zero
  if (!Number.isFinite(f)) return lo;
  const hi = lo + 1; // one bf16 step away from zero
  const value = (h: number): number => fromBits([(h << 16) >>> 0])[0];
  // the step above the largest finite bf16 is Inf: measure it as the next power of two, 2^128
  const hiValue = (hi & 0x7fff) === 0x7f80 ? (hi & 0x8000 ? -1 : 1) * 2 ** 128 : value(hi);
  const dLo = Math.abs(f - value(lo));
  const dHi = Math.abs(f - hiValue);
  if (dLo < dHi) return lo;
  if (dHi < dLo) return hi;
  return (lo & 1) === 0 ? lo : hi;
}

const f32Bits = (x: number): number => bitsOf(new Float32Array([x]))[0];

/** Special patterns: ties either way, carries into the exponent, overflow, Inf, NaN, denormals, zeros. */
const SPECIAL: number[] = [
  0x00000000, 0x80000000, 0x3f800000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x3fffffff, 0x3fff8000, 0x3f7f8000,
  0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,
  0x7fbfffff, 0x7fffffff, 0xffffffff, 0x00000001, 0x80000001, 0x00008000, 0x00018000, 0x00007fff, 0x007fffff, 0x807fffff,
  0x007f8000, 0x00800000, 0x80800000, f32Bits(-1.5), f32Bits(Math.PI), f32Bits(-Math.E), f32Bits(65504), f32Bits(1e-40),
];

/** patterns spread over every class: uniform 32-bit, plus values near round numbers */
function randomPatterns(n: number, seed: number): number[] {
  const rng = new Rng(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const u = Math.floor(rng.uniform() * 2 ** 32) >>> 0;
    out.push(i % 4 === 0 ? ((u & 0xffff0000) | 0x8000) >>> 0 : u); // every 4th an exact tie
  }
  return out;
}

describe('roundBf16 / toBf16', () => {
  it('the reference rounds to the nearest bf16, ties to even (float64 oracle)', () => {
    const bits = [...SPECIAL, ...randomPatterns(20000, 1)];
    const x = fromBits(bits);
    const rounded = new Float32Array(x.length);
    const packed = new Uint16Array(x.length);
    ref.roundBf16(x, rounded, x.length);
    ref.toBf16(x, packed, x.length);
    const got = bitsOf(rounded);
    for (let i = 0; i < bits.length; i++) {
      const want = oracleBf16(bits[i]);
      assert.equal(packed[i], want, `toBf16 of 0x${bits[i].toString(16)}: 0x${packed[i].toString(16)}, want 0x${want.toString(16)}`);
      assert.equal(got[i], (want << 16) >>> 0, `roundBf16 of 0x${bits[i].toString(16)}`);
    }
  });

  it('keeps the cases that matter: ties to even, -0, Inf, NaN, overflow, denormals', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -8, 1], // tie, even below
      [1 + 3 * 2 ** -8, 1 + 2 ** -6], // tie, even above
      [-0, -0],
      [Infinity, Infinity],
      [3.4028234663852886e38, Infinity], // the largest float32 rounds up past the largest bf16
      [2 ** -149, 0],
      [-(2 ** -149), -0],
    ];
    const x = new Float32Array(cases.map((c) => c[0]));
    const out = new Float32Array(x.length);
    ref.roundBf16(x, out, x.length);
    cases.forEach(([, want], i) => assert.ok(Object.is(out[i], want), `${cases[i][0]} -> ${out[i]}, want ${want}`));
    ref.roundBf16(new Float32Array([NaN]), out, 1);
    assert.ok(Number.isNaN(out[0]));
  });

  it('native equals the reference bit for bit (all lengths, threaded sizes, in place)', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const be = native as Backend;
    for (const n of [0, 1, 7, 8, 15, 16, 17, 31, SPECIAL.length, 1000, 65536 + 13, 300001]) {
      const bits = n <= SPECIAL.length ? SPECIAL.slice(0, n) : [...SPECIAL, ...randomPatterns(n - SPECIAL.length, n)];
      const x = fromBits(bits);
      const r1 = new Float32Array(n), r2 = new Float32Array(n);
      const p1 = new Uint16Array(n), p2 = new Uint16Array(n);
      ref.roundBf16(x, r1, n);
      be.roundBf16(x, r2, n);
      ref.toBf16(x, p1, n);
      be.toBf16(x, p2, n);
      assert.deepEqual(bitsOf(r2), bitsOf(r1), `roundBf16, n ${n}`);
      assert.deepEqual(p2, p1, `toBf16, n ${n}`);
      const inPlace = x.slice();
      be.roundBf16(inPlace, inPlace, n);
      assert.deepEqual(bitsOf(inPlace), bitsOf(r1), `roundBf16 in place, n ${n}`);
    }
  });

  for (const simd of ['portable', 'avx2']) {
    it(`native on the ${simd} path equals the reference bit for bit (child process, threads as configured)`, (t) => {
      if (nativeSkipReason) return t.skip(nativeSkipReason);
      const script = fileURLToPath(new URL('../helpers/bf16-round-child.js', import.meta.url));
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, LLMTS_SIMD: simd, LLMTS_BF16_ROUND_SIMD: simd } });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { simd: string; native: string; reference: string };
      if (simd === 'avx2' && out.simd !== 'avx2') return t.skip(`this CPU has no AVX2 (ran ${out.simd})`);
      assert.equal(out.simd, simd);
      assert.equal(out.native, out.reference);
    });
  }

  it('native rejects a short array or a wrong type instead of writing out of bounds', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const be = native as Backend;
    assert.throws(() => be.roundBf16(new Float32Array(4), new Float32Array(3), 4), /shorter/);
    assert.throws(() => be.toBf16(new Float32Array(4), new Int16Array(4) as unknown as Uint16Array, 4), /Uint16Array/);
  });
});

// ---- gemmBf16 ------------------------------------------------------------------------------------

interface Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  beta: 0 | 1;
  /** which operands are given as bf16 bits */
  aBits: boolean;
  bBits: boolean;
}

function operands(c: Case, seed: number): { a: Float32Array | Uint16Array; b: Float32Array | Uint16Array; c0: Float32Array } {
  const rng = new Rng(seed);
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal());
  const asBits = (x: Float32Array): Uint16Array => {
    const out = new Uint16Array(x.length);
    ref.toBf16(x, out, x.length);
    return out;
  };
  const a = rand(c.M * c.K), b = rand(c.K * c.N);
  return { a: c.aBits ? asBits(a) : a, b: c.bBits ? asBits(b) : b, c0: rand(c.M * c.N) };
}

/** float64 sums of the operands rounded to bf16 (the definition of the product) */
function float64Product(c: Case, a: Float32Array | Uint16Array, b: Float32Array | Uint16Array, c0: Float32Array): { sum: Float64Array; mag: Float64Array } {
  const widen = (x: Float32Array | Uint16Array): Float32Array => {
    const out = new Float32Array(x.length);
    if (x instanceof Uint16Array) x.forEach((h, i) => (bitsOf(out)[i] = (h << 16) >>> 0));
    else ref.roundBf16(x, out, x.length);
    return out;
  };
  const A = widen(a), B = widen(b);
  const sum = new Float64Array(c.M * c.N), mag = new Float64Array(c.M * c.N);
  for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) {
    let s = c.beta ? c0[i * c.N + j] : 0, m = 0;
    for (let k = 0; k < c.K; k++) {
      const p = A[c.transA ? k * c.M + i : i * c.K + k] * B[c.transB ? j * c.K + k : k * c.N + j];
      s += p;
      m += Math.abs(p);
    }
    sum[i * c.N + j] = s;
    mag[i * c.N + j] = m + (c.beta ? Math.abs(c0[i * c.N + j]) : 0);
  }
  return { sum, mag };
}

/** worst |got - float64| / (sum |a b| + |c0|) */
function worstError(be: Backend, c: Case, seed: number): number {
  const { a, b, c0 } = operands(c, seed);
  const out = c0.slice();
  be.gemmBf16({ M: c.M, N: c.N, K: c.K, a, b, c: out, transA: c.transA, transB: c.transB, beta: c.beta });
  const { sum, mag } = float64Product(c, a, b, c0);
  let worst = 0;
  for (let i = 0; i < out.length; i++) worst = Math.max(worst, Math.abs(out[i] - sum[i]) / (mag[i] + 1e-30));
  return worst;
}

function cases(): Case[] {
  const out: Case[] = [];
  let n = 0;
  for (const [M, N, K] of [[1, 1, 1], [1, 33, 17], [45, 1, 530], [13, 31, 7], [29, 45, 75], [37, 70, 300], [64, 64, 64], [300, 40, 33], [3, 4100, 5], [2, 3, 0]]) {
    for (const transA of [false, true]) for (const transB of [false, true]) {
      n++;
      out.push({ M, N, K, transA, transB, beta: (n % 2) as 0 | 1, aBits: n % 3 === 0, bBits: n % 3 !== 1 });
    }
  }
  return out;
}

describe('gemmBf16', () => {
  it('the reference equals float64 sums of the bf16-rounded operands (to float32 rounding)', () => {
    let seed = 1;
    for (const c of cases()) {
      const err = worstError(ref, c, seed++);
      assert.ok(err < 1e-6, `${JSON.stringify(c)}: ${err}`);
    }
  });

  // the emulations run everywhere; a fast kernel where the CPU has it (and its self-check passed)
  for (const kernel of ['emulate', 'emulate-amx', 'avx512bf16', 'amx']) {
    it(`the native driver with the ${kernel} kernel agrees (summation order only: < 1e-6 K)`, (t) => {
      if (nativeSkipReason) return t.skip(nativeSkipReason);
      const select = nativeFunction<(r: string) => { kernel: string; warning: string | null; avx512bf16: boolean; amx: boolean }>('bf16Kernel')!;
      try {
        const report = select(kernel);
        if (!kernel.startsWith('emulate') && !(kernel === 'amx' ? report.amx : report.avx512bf16)) return t.skip(`this CPU has no ${kernel}`);
        assert.equal(report.kernel, kernel, report.warning ?? '');
        let seed = 1;
        for (const c of cases()) {
          const err = worstError(native as Backend, c, seed++);
          assert.ok(err < 1e-6 * Math.max(c.K, 1), `${kernel} ${JSON.stringify(c)}: ${err}`);
        }
      } finally {
        select('auto'); // back to what this CPU has
      }
    });
  }

  it('native gemmBf16 refuses a short operand or a beta other than 0 and 1', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const be = native as Backend;
    assert.throws(() => be.gemmBf16({ M: 2, N: 2, K: 2, a: new Float32Array(3), b: new Uint16Array(4), c: new Float32Array(4) }), /shorter/);
    assert.throws(() => be.gemmBf16({ M: 2, N: 2, K: 2, a: new Float32Array(4), b: new Uint16Array(4), c: new Float32Array(4), beta: 0.5 as 0 }), /beta/);
  });

  it('a fast kernel forced onto its first run is used only if it passes; a CPU without it raises SIGILL, caught', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const select = nativeFunction<(r: string) => { kernel: string; warning: string | null; avx512bf16: boolean; amx: boolean }>('bf16Kernel')!;
    try {
      for (const kernel of ['avx512bf16', 'amx']) {
        const r = select(`force-${kernel}`);
        const has = kernel === 'amx' ? r.amx : r.avx512bf16;
        if (has) {
          assert.equal(r.kernel, kernel, r.warning ?? '');
          assert.equal(r.warning, null);
        } else {
          assert.equal(r.kernel, 'none');
          // without the instructions (or, for AMX, the tile permission) the first tile or vdpbf16ps faults
          assert.match(r.warning ?? '', new RegExp(`the ${kernel} kernel (faulted \\(SIGILL\\)|disagrees)`));
        }
      }
    } finally {
      select('auto');
    }
  });

  it('bf16Kernel reports what this CPU has and never picks a kernel it lacks', (t) => {
    if (nativeSkipReason) return t.skip(nativeSkipReason);
    const select = nativeFunction<(r: string) => { kernel: string; warning: string | null; avx512bf16: boolean; amx: boolean }>('bf16Kernel')!;
    const r = select('auto');
    if (!r.avx512bf16 && !r.amx) assert.equal(r.kernel, 'none');
    else assert.ok(['amx', 'avx512bf16', 'none'].includes(r.kernel), r.kernel);
    if (r.kernel === 'none' && (r.avx512bf16 || r.amx)) assert.ok(r.warning, 'a kernel the CPU has was dropped without a warning');
  });
});
