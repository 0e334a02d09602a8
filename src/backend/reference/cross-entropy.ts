/**
 * Reference fused cross-entropy from logits: loss_r = logsumexp(logits_r) - logits_r[target_r].
 * The backward recomputes the softmax from the logits instead of storing probabilities; it
 * scales row r by scale * rowScales[r] (per-token losses) and skips rows whose scale is 0.
 */

export function crossEntropyForward(
  logits: Float32Array, targets: Int32Array, losses: Float32Array, rows: number, vocab: number, ignoreIndex: number,
): number {
  let count = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) {
      losses[r] = 0;
      continue;
    }
    const o = r * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[o + j] - max);
    losses[r] = max + Math.log(sum) - logits[o + t];
    count++;
  }
  return count;
}

/** Forward, then the gradient scale · (softmax - onehot) written over each row's logits (0 on ignored rows). */
export function crossEntropyFused(
  logits: Float32Array, targets: Int32Array, losses: Float32Array, rows: number, vocab: number, ignoreIndex: number, scale: number,
): number {
  const count = crossEntropyForward(logits, targets, losses, rows, vocab, ignoreIndex);
  const grad = new (logits.constructor as Float32ArrayConstructor)(vocab); // float64 inside gradient checks
  const one = new Int32Array(1);
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    grad.fill(0);
    one[0] = targets[r];
    crossEntropyBackward(row, one, grad, 1, vocab, ignoreIndex, scale);
    row.set(grad);
  }
  return count;
}

export function crossEntropyBackward(
  logits: Float32Array, targets: Int32Array, dlogits: Float32Array, rows: number, vocab: number,
  ignoreIndex: number, scale: number, rowScales?: Float32Array | null,
): void {
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    const c = rowScales ? scale * rowScales[r] : scale;
    if (c === 0) continue;
    const o = r * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[o + j] - max);
    const inv = 1 / sum;
    for (let j = 0; j < vocab; j++) dlogits[o + j] += c * Math.exp(logits[o + j] - max) * inv;
    dlogits[o + t] -= c;
  }
}
