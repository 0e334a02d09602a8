/**
 * The native sgemm against the reference on awkward shapes: every transpose combination,
 * alpha/beta, offsets, leading dimensions, batches with shared operands, matrix-vector
 * shapes, and each SIMD path (portable, AVX2, AVX-512) in child processes; bit-identical results
 * with 1 and 3 threads.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nativeBackend, nativeLoadError } from '../../src/backend/index.js';
import { gemmCases } from '../helpers/gemm-cases.js';

describe('native gemm', () => {
  const native = nativeBackend();
  it('is built (Linux)', (t) => {
    if (native) return;
    if (process.platform === 'linux') assert.fail(nativeLoadError() ?? 'native backend missing');
    t.skip(nativeLoadError() ?? '');
  });

  it('matches the reference on every shape and transpose (rel err < 1e-5)', (t) => {
    if (!native) return t.skip('native backend not available');
    for (const [label, err] of gemmCases(native)) assert.ok(err < 1e-5, `${label}: rel err ${err}`);
  });

  for (const simd of ['portable', 'avx2']) {
    it(`the ${simd} path matches too`, (t) => {
      if (!native) return t.skip('native backend not available');
      const script = fileURLToPath(new URL('../helpers/gemm-simd-child.js', import.meta.url));
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, LLMTS_SIMD: simd } });
      assert.equal(r.status, 0, r.stderr);
      const { simd: used, worst } = JSON.parse(r.stdout) as { simd: string; worst: [string, number] };
      assert.equal(used, simd, 'the child ran the requested SIMD path');
      assert.ok(worst[1] < 1e-5, `${simd}: ${worst[0]}: rel err ${worst[1]}`);
    });
  }

  it('gives bit-identical results with 1 and 3 threads (no reduction depends on the thread count)', (t) => {
    if (!native) return t.skip('native backend not available');
    const script = fileURLToPath(new URL('../helpers/gemm-threads-child.js', import.meta.url));
    const run = (threads: string): { threads: number; digest: string } => {
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, LLMTS_THREADS: threads, LLMTS_GEMM_THREADS_CHILD: '1' } });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { threads: number; digest: string };
    };
    const one = run('1'), three = run('3');
    assert.equal(one.threads, 1);
    assert.equal(three.threads, 3);
    assert.equal(three.digest, one.digest);
  });

  it('survives 20,000 back-to-back threaded calls (thread-pool hand-over)', (t) => {
    if (!native) return t.skip('native backend not available');
    const [M, N, K] = [200, 300, 50];
    const a = new Float32Array(M * K).fill(0.5), b = new Float32Array(K * N).fill(0.25), c = new Float32Array(M * N);
    for (let i = 0; i < 20000; i++) {
      native.gemm({ M, N, K, a, b, c, transB: i % 2 === 1, beta: 0 });
      native.gemm({ M: 1, N, K, a, b, c, beta: 0 });
    }
    native.gemm({ M, N, K, a, b, c });
    assert.equal(c[M * N - 1], 50 * 0.125);
  });

  it('rejects arrays too short for the shape instead of reading out of bounds', (t) => {
    if (!native) return t.skip('native backend not available');
    assert.throws(() => native.gemm({ M: 4, N: 4, K: 4, a: new Float32Array(15), b: new Float32Array(16), c: new Float32Array(16) }),
      /argument 0 is shorter/);
  });
});
