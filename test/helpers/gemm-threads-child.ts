/**
 * Child process for native-gemm.test: runs training-sized products (several depth blocks, every
 * transpose, beta 0 and 1, ragged edges) with the thread count given by LLMTS_THREADS and prints
 * the thread count and a digest of every output bit as JSON. (Does nothing when run without
 * LLMTS_GEMM_THREADS_CHILD, e.g. when the test runner loads every file under test/.)
 */
import { createHash } from 'node:crypto';
import { nativeBackend, nativeBackendInfo } from '../../src/backend/index.js';
import { Rng } from '../../src/util/rng.js';

if (process.env.LLMTS_GEMM_THREADS_CHILD) {
  const native = nativeBackend();
  if (!native) throw new Error('native backend not available');
  const rng = new Rng(18);
  const hash = createHash('sha256');
  for (const [M, N, K] of [[1030, 388, 1537], [385, 1153, 770], [96, 1600, 4100], [33, 200, 300]]) {
    for (const transA of [false, true]) for (const transB of [false, true]) {
      const a = Float32Array.from({ length: M * K }, () => rng.normal());
      const b = Float32Array.from({ length: K * N }, () => rng.normal());
      const c = Float32Array.from({ length: M * N }, () => rng.normal());
      native.gemm({ M, N, K, a, b, c, transA, transB, beta: transA ? 1 : 0 });
      hash.update(new Uint8Array(c.buffer));
    }
  }
  process.stdout.write(JSON.stringify({ threads: nativeBackendInfo()!.threads, digest: hash.digest('hex') }));
}
