/**
 * Reference activation kernels.
 *
 * GELU (tanh approximation, as GPT-2 and PyTorch's approximate='tanh'):
 *   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 * SiLU: silu(x) = x * sigmoid(x).  SwiGLU: silu(gate) * up.
 */
const GELU_K = Math.sqrt(2 / Math.PI);

export function geluForward(x: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    out[i] = 0.5 * v * (1 + Math.tanh(GELU_K * (v + 0.044715 * v * v * v)));
  }
}

export function geluBackward(x: Float32Array, dout: Float32Array, dx: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    const u = GELU_K * (v + 0.044715 * v * v * v);
    const t = Math.tanh(u);
    const du = GELU_K * (1 + 3 * 0.044715 * v * v);
    const grad = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du;
    dx[i] += grad * dout[i];
  }
}

function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

export function siluForward(x: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = x[i] * sigmoid(x[i]);
}

export function siluBackward(x: Float32Array, dout: Float32Array, dx: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const s = sigmoid(x[i]);
    dx[i] += dout[i] * s * (1 + x[i] * (1 - s));
  }
}

export function swigluForward(gate: Float32Array, up: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

export function swigluBackward(
  gate: Float32Array, up: Float32Array, dout: Float32Array,
  dgate: Float32Array | null, dup: Float32Array | null, n: number,
): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    const s = sigmoid(g);
    if (dup) dup[i] += dout[i] * g * s;
    if (dgate) dgate[i] += dout[i] * up[i] * s * (1 + g * (1 - s));
  }
}
