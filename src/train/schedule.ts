/**
 * Learning-rate schedule: linear warmup, then cosine decay to minLr (nanoGPT's get_lr).
 *
 *   lrAt(step, { lr: 1e-3, minLr: 1e-4, warmupIters: 100, decayIters: 2000 })
 *     step 0 -> 1e-5 ... step 99 -> 1e-3 ... step 2000 and later -> 1e-4
 */
export interface LrSchedule {
  lr: number;
  minLr: number;
  warmupIters: number;
  /** cosine reaches minLr here; 0 means constant lr after warmup */
  decayIters: number;
}

export function lrAt(step: number, s: LrSchedule): number {
  if (step < s.warmupIters) return (s.lr * (step + 1)) / (s.warmupIters + 1);
  if (s.decayIters <= 0) return s.lr;
  if (step >= s.decayIters) return s.minLr;
  const ratio = (step - s.warmupIters) / Math.max(1, s.decayIters - s.warmupIters);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return s.minLr + coeff * (s.lr - s.minLr);
}
