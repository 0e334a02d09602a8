/**
 * Child process for native-gemm.test: runs the gemm cases on the SIMD level named by
 * LLMTS_SIMD and prints the worst case as JSON. (Does nothing when run without LLMTS_SIMD,
 * e.g. when the test runner loads every file under test/.)
 */
import { nativeBackend, nativeBackendInfo } from '../../src/backend/index.js';
import { gemmCases } from './gemm-cases.js';

if (process.env.LLMTS_SIMD) {
  const native = nativeBackend();
  if (!native) throw new Error('native backend not available');
  let worst: [string, number] = ['', 0];
  for (const c of gemmCases(native)) if (c[1] >= worst[1]) worst = c;
  process.stdout.write(JSON.stringify({ simd: nativeBackendInfo()!.simd, worst }));
}
