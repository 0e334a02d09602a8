/**
 * Child process of native-worker.test.ts: the native addon loaded in a worker thread, its thread
 * pool run (a GEMM big enough to be split), the worker terminated, then the same in a second
 * worker; prints one JSON line of results. Before the addon was linked with -z nodelete, the
 * worker's exit unloaded the library under the pool's threads and the process died (SIGSEGV).
 */
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

if (isMainThread) {
  const results: string[] = [];
  for (let round = 0; round < 2; round++) {
    const w = new Worker(new URL(import.meta.url));
    results.push(await new Promise<string>((resolve, reject) => {
      w.once('message', (m: string) => resolve(m));
      w.once('error', reject);
    }));
    await w.terminate();
  }
  process.stdout.write(JSON.stringify(results) + '\n');
} else {
  const { describeBackend, nativeBackend } = await import('../../src/backend/index.js');
  const be = nativeBackend();
  if (!be) throw new Error('the native backend did not load in the worker');
  const M = 64, K = 96, N = 80;
  const a = Float32Array.from({ length: M * K }, (_, i) => ((i * 7) % 13) - 6);
  const b = Float32Array.from({ length: K * N }, (_, i) => ((i * 5) % 11) - 5);
  const c = new Float32Array(M * N);
  be.gemm({ a, b, c, M, K, N });
  let want = 0;
  for (let k = 0; k < K; k++) want += a[(M - 1) * K + k] * b[k * N + (N - 1)];
  parentPort!.postMessage(`${describeBackend()} ${c[M * N - 1] === want ? 'ok' : `wrong: ${c[M * N - 1]} != ${want}`}`);
}
