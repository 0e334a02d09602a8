/**
 * Reference sgemm: C = alpha * op(A) · op(B) + beta * C, batched and strided.
 *
 * Readable first, but not naive: the core is a 4x4 register tile that keeps 16 sums in
 * local variables and reads 4 values of op(A) and 4 of op(B) per k, so it does 16
 * multiply-adds per 8 loads. Transposes only change the two strides used to walk A and B.
 * Sums are carried in double precision (JavaScript numbers) and rounded once into C.
 */
import type { GemmArgs } from '../backend.js';

export function gemm(args: GemmArgs): void {
  const { M, N, K, a, b, c } = args;
  const transA = args.transA ?? false;
  const transB = args.transB ?? false;
  const alpha = args.alpha ?? 1;
  const beta = args.beta ?? 0;
  const batch = args.batch ?? 1;
  const lda = args.lda ?? (transA ? M : K);
  const ldb = args.ldb ?? (transB ? K : N);
  const ldc = args.ldc ?? N;
  const strideA = args.strideA ?? (transA ? K * lda : M * lda);
  const strideB = args.strideB ?? (transB ? N * ldb : K * ldb);
  const strideC = args.strideC ?? M * ldc;
  // op(A)[i, k] = a[i * ais + k * aks];  op(B)[k, j] = b[k * bks + j * bjs]
  const ais = transA ? 1 : lda;
  const aks = transA ? lda : 1;
  const bks = transB ? 1 : ldb;
  const bjs = transB ? ldb : 1;
  for (let bi = 0; bi < batch; bi++) {
    const aOff = (args.aOffset ?? 0) + bi * strideA;
    const bOff = (args.bOffset ?? 0) + bi * strideB;
    const cOff = (args.cOffset ?? 0) + bi * strideC;
    gemmOne(M, N, K, a, aOff, ais, aks, b, bOff, bks, bjs, c, cOff, ldc, alpha, beta);
  }
}

function gemmOne(
  M: number, N: number, K: number,
  a: Float32Array, aOff: number, ais: number, aks: number,
  b: Float32Array, bOff: number, bks: number, bjs: number,
  c: Float32Array, cOff: number, ldc: number, alpha: number, beta: number,
): void {
  const M4 = M - (M % 4);
  const N4 = N - (N % 4);
  for (let j = 0; j < N4; j += 4) {
    for (let i = 0; i < M4; i += 4) {
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
      let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
      let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      let pa = aOff + i * ais;
      let pb = bOff + j * bjs;
      for (let k = 0; k < K; k++) {
        const a0 = a[pa], a1 = a[pa + ais], a2 = a[pa + 2 * ais], a3 = a[pa + 3 * ais];
        const b0 = b[pb], b1 = b[pb + bjs], b2 = b[pb + 2 * bjs], b3 = b[pb + 3 * bjs];
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
        pa += aks;
        pb += bks;
      }
      let pc = cOff + i * ldc + j;
      store4(c, pc, c00, c01, c02, c03, alpha, beta); pc += ldc;
      store4(c, pc, c10, c11, c12, c13, alpha, beta); pc += ldc;
      store4(c, pc, c20, c21, c22, c23, alpha, beta); pc += ldc;
      store4(c, pc, c30, c31, c32, c33, alpha, beta);
    }
  }
  // Edges: the rows below M4 (all columns) and the columns right of N4 (rows above M4).
  if (M4 < M) gemmEdge(M4, M, 0, N, K, a, aOff, ais, aks, b, bOff, bks, bjs, c, cOff, ldc, alpha, beta);
  if (N4 < N) gemmEdge(0, M4, N4, N, K, a, aOff, ais, aks, b, bOff, bks, bjs, c, cOff, ldc, alpha, beta);
}

function store4(
  c: Float32Array, p: number, v0: number, v1: number, v2: number, v3: number, alpha: number, beta: number,
): void {
  if (beta === 0) {
    c[p] = alpha * v0; c[p + 1] = alpha * v1; c[p + 2] = alpha * v2; c[p + 3] = alpha * v3;
  } else {
    c[p] = alpha * v0 + beta * c[p];
    c[p + 1] = alpha * v1 + beta * c[p + 1];
    c[p + 2] = alpha * v2 + beta * c[p + 2];
    c[p + 3] = alpha * v3 + beta * c[p + 3];
  }
}

/** Plain dot-product loop for the ragged edge of the tile grid. */
function gemmEdge(
  i0: number, i1: number, j0: number, j1: number, K: number,
  a: Float32Array, aOff: number, ais: number, aks: number,
  b: Float32Array, bOff: number, bks: number, bjs: number,
  c: Float32Array, cOff: number, ldc: number, alpha: number, beta: number,
): void {
  for (let i = i0; i < i1; i++) {
    for (let j = j0; j < j1; j++) {
      let sum = 0;
      let pa = aOff + i * ais;
      let pb = bOff + j * bjs;
      for (let k = 0; k < K; k++) {
        sum += a[pa] * b[pb];
        pa += aks;
        pb += bks;
      }
      const p = cOff + i * ldc + j;
      c[p] = beta === 0 ? alpha * sum : alpha * sum + beta * c[p];
    }
  }
}
