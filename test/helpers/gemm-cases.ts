/** Shared gemm comparison cases (native vs reference) for native-gemm.test and its SIMD and thread-count child processes. */
import { referenceBackend, type Backend, type GemmArgs } from '../../src/backend/index.js';
import { Rng } from '../../src/util/rng.js';

function random(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

/** max |native - reference| / max |reference| over the whole C buffer */
export function gemmError(native: Backend, args: Omit<GemmArgs, 'a' | 'b' | 'c'>, sizes: [number, number, number], seed: number): number {
  const rng = new Rng(seed);
  const a = random(sizes[0], rng);
  const b = random(sizes[1], rng);
  const c0 = random(sizes[2], rng);
  const cRef = c0.slice();
  const cNat = c0.slice();
  referenceBackend.gemm({ ...args, a, b, c: cRef });
  native.gemm({ ...args, a, b, c: cNat });
  let err = 0;
  let ref = 1e-6;
  for (let i = 0; i < cRef.length; i++) {
    err = Math.max(err, Math.abs(cRef[i] - cNat[i]));
    ref = Math.max(ref, Math.abs(cRef[i]));
  }
  return err / ref;
}

/** The shape matrix; returns [label, relative error] per case. */
export function gemmCases(native: Backend): [string, number][] {
  const out: [string, number][] = [];
  const dims = [1, 7, 63, 65, 257];
  let seed = 1;
  for (const M of dims) for (const N of [1, 17, 65]) for (const K of [1, 7, 63, 300]) {
    for (const transA of [false, true]) for (const transB of [false, true]) {
      const beta = (M + N + K) % 2 === 0 ? 0 : 0.5;
      out.push([`M${M} N${N} K${K} tA${+transA} tB${+transB} beta${beta}`,
        gemmError(native, { M, N, K, transA, transB, alpha: 1.25, beta }, [M * K, K * N, M * N], seed++)]);
    }
  }
  // large enough for the threaded blocked path, with ragged edges in every dimension
  for (const [M, N, K] of [[257, 1031, 517], [768, 384, 128], [130, 4100, 40]]) {
    for (const transA of [false, true]) for (const transB of [false, true]) {
      out.push([`big M${M} N${N} K${K} tA${+transA} tB${+transB}`,
        gemmError(native, { M, N, K, transA, transB, beta: 1 }, [M * K, K * N, M * N], seed++)]);
    }
  }
  // the blocked driver's edges: depth cut into equal blocks (K 385 and 769: 2 and 3 blocks of
  // 193/192 and 257/256), several op(B) panels (K 4100: 11 depth blocks, panels of 31 slivers for
  // AVX2), few rows split into column groups, rows and columns that are not tile multiples; beta 0 and 1
  for (const [M, N, K] of [[13, 37, 385], [70, 1100, 769], [7, 600, 4100], [20, 300, 200]]) {
    for (const transA of [false, true]) for (const transB of [false, true]) {
      const beta = transA === transB ? 1 : 0;
      out.push([`blocks M${M} N${N} K${K} tA${+transA} tB${+transB} beta${beta}`,
        gemmError(native, { M, N, K, transA, transB, alpha: 0.75, beta }, [M * K, K * N, M * N], seed++)]);
    }
  }
  // offsets, leading dimensions, batches (one shared operand), matrix-vector with big K
  out.push(['offsets+ld', gemmError(native, { M: 9, N: 11, K: 13, aOffset: 3, bOffset: 5, cOffset: 7, lda: 20, ldb: 15, ldc: 12 },
    [3 + 9 * 20, 5 + 13 * 15, 7 + 9 * 12], seed++)]);
  out.push(['batched shared B', gemmError(native, { M: 33, N: 18, K: 20, batch: 3, strideB: 0 }, [3 * 33 * 20, 20 * 18, 3 * 33 * 18], seed++)]);
  out.push(['batched transA', gemmError(native, { M: 12, N: 70, K: 5, batch: 4, transA: true }, [4 * 60, 4 * 350, 4 * 12 * 70], seed++)]);
  for (const transB of [false, true]) {
    out.push([`gemv M1 tB${+transB}`, gemmError(native, { M: 1, N: 3000, K: 700, transB }, [700, 3000 * 700, 3000], seed++)]);
    out.push([`gemv N1 tA0 tB${+transB}`, gemmError(native, { M: 2000, N: 1, K: 515, transB }, [2000 * 515, 515, 2000], seed++)]);
  }
  out.push(['gemv M1 tA1', gemmError(native, { M: 1, N: 40, K: 33, transA: true, lda: 3 }, [33 * 3, 33 * 40, 40], seed++)]);
  out.push(['K = 0 scales C', gemmError(native, { M: 5, N: 6, K: 0, beta: 0.5 }, [0, 0, 30], seed++)]);
  return out;
}

