/**
 * Reference AdamW update with PyTorch's semantics (torch.optim.AdamW):
 *   g = gradScale * grad (rounded to float32: gradient clipping folded into the update)
 *   p *= 1 - lr*wd
 *   m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 */
export function adamw(
  param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, n: number,
  lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale = 1,
): void {
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const stepSize = lr / bc1;
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < n; i++) {
    const g = gradScale === 1 ? grad[i] : Math.fround(gradScale * grad[i]);
    const mi = beta1 * m[i] + (1 - beta1) * g;
    const vi = beta2 * v[i] + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - stepSize * mi / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
}
