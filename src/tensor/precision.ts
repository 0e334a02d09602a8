/**
 * The dtype of the linear layers' products (torch.autocast for CPUs, limited to them): inside
 * `withMatmulDtype('bf16', fn)` every linear() -- the model's projections, MLP and LM head --
 * multiplies bfloat16 operands with float32 sums (ops/bf16-gemm.ts); everything else (attention,
 * norms, softmax, cross-entropy, the optimizer, the weights themselves) stays float32. An op
 * records the dtype it ran in, so its backward pass uses the same one wherever backward() is called.
 *
 *   withMatmulDtype('bf16', () => {
 *     const loss = model.forward(x, B, T, y).loss!;
 *     loss.backward();
 *   });
 *   opt.step(lr);   // float32 master weights; their bf16 copies refresh at the next product
 *
 * Whether bf16 products actually run depends on the CPU (backend/bf16.ts): without AVX512-BF16 or
 * AMX, and without LLMTS_BF16=portable, they stay float32 (said once on stderr).
 */
export type MatmulDtype = 'float32' | 'bf16';

export const MATMUL_DTYPES: readonly MatmulDtype[] = ['float32', 'bf16'];

let current: MatmulDtype = 'float32';

/** Run fn with the linear layers' products in `dtype`; the previous dtype is restored after. */
export function withMatmulDtype<T>(dtype: MatmulDtype, fn: () => T): T {
  const prev = current;
  current = dtype;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/** The dtype linear() multiplies in now. */
export function matmulDtype(): MatmulDtype {
  return current;
}
