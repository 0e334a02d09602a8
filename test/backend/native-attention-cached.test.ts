/**
 * The native attentionCached kernel (queries over a KV cache) against the reference backend on
 * awkward shapes: head sizes that are not multiples of the vector width, decode (Tq = 1) and
 * prefill blocks at various cache offsets, MHA and GQA; for the SIMD level this machine picks
 * and, in child processes, LLMTS_SIMD=portable and avx2. Also: argument checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nativeBackendInfo, referenceBackend } from '../../src/backend/index.js';
import type { Backend, CachedAttentionShape } from '../../src/backend/index.js';
import { lcgRandom, nativeOrFail, nativeSkipReason } from '../helpers/native-under-test.js';

const CHILD = process.env.LLMTS_CATTN_TEST_CHILD;
const TOL = 1e-5;
const skipReason = nativeSkipReason;
const nb = nativeOrFail;
const random = lcgRandom;

/** worst max|native - reference| over all shapes (outputs are convex combinations of v in [-1, 1]) */
function checkAll(): number {
  const be = nb();
  let worst = 0;
  let seed = 1;
  for (const [nHead, nKvHead] of [[1, 1], [3, 3], [6, 2], [4, 1]]) {
    for (const hs of [1, 3, 8, 17, 48, 64, 80]) {
      for (const [Tq, pos] of [[1, 0], [1, 1], [1, 63], [1, 64], [1, 130], [5, 0], [7, 60], [33, 0], [17, 100]]) {
        const maxT = pos + Tq + 3; // rows past pos+Tq-1 hold garbage that must not be read
        const s: CachedAttentionShape = { Tq, pos, nHead, nKvHead, headDim: hs, scale: 1 / Math.sqrt(hs) };
        const q = random(Tq * nHead * hs, seed++, 3);
        const k = random(maxT * nKvHead * hs, seed++, 3);
        const v = random(maxT * nKvHead * hs, seed++);
        k.fill(1e30, (pos + Tq) * nKvHead * hs);
        v.fill(Number.NaN, (pos + Tq) * nKvHead * hs);
        const want = new Float32Array(q.length);
        const got = new Float32Array(q.length).fill(7);
        referenceBackend.attentionCached(q, k, v, want, s);
        be.attentionCached(q, k, v, got, s);
        for (let i = 0; i < want.length; i++) {
          const d = Math.abs(got[i] - want[i]);
          if (!(d <= TOL)) assert.fail(`${JSON.stringify(s)}: element ${i}: native ${got[i]} vs reference ${want[i]}`);
          worst = Math.max(worst, d);
        }
      }
    }
  }
  return worst;
}

function runChild(env: Record<string, string>): { out: string; status: number | null } {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env: childEnv, encoding: 'utf8' });
  return { out: `${r.stdout ?? ''}${r.stderr ?? ''}`, status: r.status };
}

test('attentionCached is native', { skip: skipReason }, () => {
  nb();
  assert.ok(nativeBackendInfo()?.nativeKernels.includes('attentionCached'));
  if (CHILD && process.env.LLMTS_SIMD) assert.equal(nativeBackendInfo()?.simd, process.env.LLMTS_SIMD);
});

test('native attentionCached matches the reference', { skip: skipReason }, (t) => {
  const line = `CATTN_MAXERR simd=${nativeBackendInfo()?.simd} ${checkAll()}`;
  if (CHILD) process.stdout.write(`${line}\n`);
  else t.diagnostic(line);
});

test('native attentionCached rejects bad arguments with a TypeError', { skip: skipReason }, () => {
  const be = nb();
  const s: CachedAttentionShape = { Tq: 2, pos: 3, nHead: 4, nKvHead: 2, headDim: 8, scale: 0.3 };
  const q = random(2 * 32, 1);
  const k = random(5 * 16, 2);
  const v = random(5 * 16, 3);
  const out = new Float32Array(64);
  be.attentionCached(q, k, v, out, s);
  assert.throws(() => be.attentionCached(q, k.subarray(1), v, out, s), TypeError);
  assert.throws(() => be.attentionCached(q, k, v, out.subarray(1), s), TypeError);
  assert.throws(() => be.attentionCached(q, k, v, out, { ...s, nKvHead: 3 }), TypeError);
  assert.throws(() => be.attentionCached(q, k, v, out, { ...s, pos: 4 }), TypeError);
});

if (!CHILD) {
  for (const level of ['portable', 'avx2']) {
    test(`native attentionCached matches the reference with LLMTS_SIMD=${level}`, { skip: skipReason }, (t) => {
      nb();
      const simd = nativeBackendInfo()?.simd;
      if (level === 'avx2' && simd !== 'avx2' && simd !== 'avx512') {
        t.skip(`this CPU has no AVX2 (${simd})`);
        return;
      }
      const r = runChild({ LLMTS_SIMD: level, LLMTS_CATTN_TEST_CHILD: 'check' });
      assert.equal(r.status, 0, `the LLMTS_SIMD=${level} child failed:\n${r.out.slice(-4000)}`);
      const line = /CATTN_MAXERR .*/.exec(r.out);
      assert.ok(line, r.out.slice(-2000));
      t.diagnostic(line[0]);
    });
  }
}
