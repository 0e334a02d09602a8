/**
 * A loss curve as a self-contained SVG (no scripts, fonts or external files), so it
 * can be opened in any browser or embedded in a README.
 *
 *   const svg = renderLossCurveSvg(
 *     [{ step: 0, trainLoss: 4.2 }, { step: 100, trainLoss: 2.6, valLoss: 2.7 }, { step: 200, trainLoss: 2.1, valLoss: 2.3 }],
 *     { title: 'shakespeare-char' },
 *   );
 *   // '<svg xmlns="http://www.w3.org/2000/svg" width="800" height="450" ...'
 *   writeLossCurve('runs/a/metrics.jsonl', 'runs/a/loss.svg');
 *
 * Train loss is drawn as a line, validation loss as a line with dots. Non-finite
 * values are skipped. More than `maxPoints` train points are averaged in
 * consecutive groups, which keeps the file small and smooths the noise.
 */
import { writeFileAtomic } from '../util/atomic-write.js';
import { readMetrics } from './metrics-log.js';

export interface LossPoint {
  step: number;
  trainLoss?: number;
  valLoss?: number;
}

export interface LossCurveOptions {
  title?: string;
  /** Train points kept after averaging (default 2000). */
  maxPoints?: number;
}

const W = 800;
const H = 450;
const M = { left: 70, right: 24, top: 44, bottom: 56 };
const TRAIN_COLOR = '#1f77b4';
const VAL_COLOR = '#d62728';

/** Render the curve; see the file comment. */
export function renderLossCurveSvg(records: LossPoint[], opts: LossCurveOptions = {}): string {
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  let train = records.filter((r) => finite(r.step) && finite(r.trainLoss)).map((r) => [r.step, r.trainLoss!] as const);
  const val = records.filter((r) => finite(r.step) && finite(r.valLoss)).map((r) => [r.step, r.valLoss!] as const);
  train = downsample(train, opts.maxPoints ?? 2000);

  const all = [...train, ...val];
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(opts.title ?? 'Training loss')}</text>`);

  const px0 = M.left;
  const px1 = W - M.right;
  const py0 = H - M.bottom;
  const py1 = M.top;
  if (all.length === 0) {
    out.push(`<rect x="${px0}" y="${py1}" width="${px1 - px0}" height="${py0 - py1}" fill="none" stroke="#333"/>`);
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#666">no data yet</text>`);
    out.push('</svg>');
    return out.join('\n') + '\n';
  }

  const [xMin, xMax] = extent(all, 0);
  const [yMin, yMax] = extent(all, 1);
  const xs = niceTicks(xMin, xMax, 8, true);
  const ys = niceTicks(yMin, yMax, 6, false);
  const sx = (v: number) => px0 + ((v - xs.lo) / (xs.hi - xs.lo)) * (px1 - px0);
  const sy = (v: number) => py0 - ((v - ys.lo) / (ys.hi - ys.lo)) * (py0 - py1);

  // Grid and tick labels.
  out.push('<g stroke="#e5e5e5" stroke-width="1">');
  for (const t of xs.ticks) out.push(`<line x1="${n(sx(t))}" y1="${py1}" x2="${n(sx(t))}" y2="${py0}"/>`);
  for (const t of ys.ticks) out.push(`<line x1="${px0}" y1="${n(sy(t))}" x2="${px1}" y2="${n(sy(t))}"/>`);
  out.push('</g>');
  out.push('<g fill="#333">');
  for (const t of xs.ticks) out.push(`<text x="${n(sx(t))}" y="${py0 + 18}" text-anchor="middle">${formatTick(t, xs.step)}</text>`);
  for (const t of ys.ticks) out.push(`<text x="${px0 - 8}" y="${n(sy(t) + 4)}" text-anchor="end">${formatTick(t, ys.step)}</text>`);
  out.push('</g>');
  out.push(`<rect x="${px0}" y="${py1}" width="${px1 - px0}" height="${py0 - py1}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(px0 + px1) / 2}" y="${H - 14}" text-anchor="middle">step</text>`);
  out.push(`<text x="18" y="${(py0 + py1) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(py0 + py1) / 2})">loss</text>`);

  // Series.
  const pts = (ps: readonly (readonly [number, number])[]) => ps.map(([x, y]) => `${n(sx(x))},${n(sy(y))}`).join(' ');
  if (train.length > 0) {
    out.push(`<polyline class="train" fill="none" stroke="${TRAIN_COLOR}" stroke-width="1.5" points="${pts(train)}"/>`);
    if (train.length === 1) out.push(`<circle class="train" cx="${n(sx(train[0][0]))}" cy="${n(sy(train[0][1]))}" r="3" fill="${TRAIN_COLOR}"/>`);
  }
  if (val.length > 0) {
    out.push(`<polyline class="val" fill="none" stroke="${VAL_COLOR}" stroke-width="2" points="${pts(val)}"/>`);
    out.push(`<g class="val-dots" fill="${VAL_COLOR}">`);
    for (const [x, y] of val) out.push(`<circle cx="${n(sx(x))}" cy="${n(sy(y))}" r="3.5"/>`);
    out.push('</g>');
  }

  // Legend (top right, inside the plot).
  const items: [string, string, boolean][] = [];
  if (train.length > 0) items.push(['train loss', TRAIN_COLOR, false]);
  if (val.length > 0) items.push(['val loss', VAL_COLOR, true]);
  const lx = px1 - 120;
  out.push(`<rect x="${lx - 10}" y="${py1 + 8}" width="122" height="${items.length * 20 + 8}" fill="#ffffff" fill-opacity="0.85" stroke="#ccc"/>`);
  items.forEach(([label, color, dot], i) => {
    const y = py1 + 22 + i * 20;
    out.push(`<line x1="${lx}" y1="${y}" x2="${lx + 24}" y2="${y}" stroke="${color}" stroke-width="2"/>`);
    if (dot) out.push(`<circle cx="${lx + 12}" cy="${y}" r="3.5" fill="${color}"/>`);
    out.push(`<text x="${lx + 32}" y="${y + 4}">${label}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Read a metrics JSONL file (records `{type: 'train', step, loss}` and
 * `{type: 'eval', step, valLoss}`) and write its loss curve to `svgPath` atomically.
 */
export function writeLossCurve(metricsPath: string, svgPath: string, opts: LossCurveOptions = {}): void {
  const points: LossPoint[] = [];
  for (const r of readMetrics(metricsPath)) {
    if (typeof r.step !== 'number') continue;
    if (r.type === 'train' && typeof r.loss === 'number') points.push({ step: r.step, trainLoss: r.loss });
    if (r.type === 'eval' && typeof r.valLoss === 'number') points.push({ step: r.step, valLoss: r.valLoss });
  }
  writeFileAtomic(svgPath, renderLossCurveSvg(points, opts));
}

function extent(ps: readonly (readonly [number, number])[], k: 0 | 1): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of ps) {
    lo = Math.min(lo, p[k]);
    hi = Math.max(hi, p[k]);
  }
  return [lo, hi];
}

/** Average consecutive groups so that at most `max` points remain. */
function downsample(ps: (readonly [number, number])[], max: number): (readonly [number, number])[] {
  if (ps.length <= max || max < 1) return ps;
  const group = Math.ceil(ps.length / max);
  const out: (readonly [number, number])[] = [];
  for (let i = 0; i < ps.length; i += group) {
    const g = ps.slice(i, i + group);
    out.push([g.reduce((s, p) => s + p[0], 0) / g.length, g.reduce((s, p) => s + p[1], 0) / g.length]);
  }
  return out;
}

/** Round axis bounds outward to a 1/2/5 x 10^k step giving about `target` intervals. */
function niceTicks(min: number, max: number, target: number, integer: boolean): { lo: number; hi: number; step: number; ticks: number[] } {
  if (min === max) {
    const pad = integer ? 1 : Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  let step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  if (integer) step = Math.max(1, step);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) ticks.push(lo + i * step);
  return { lo, hi, step, ticks };
}

function formatTick(v: number, step: number): string {
  if (Math.abs(v) >= 1000 && step >= 1000 && v % 1000 === 0) return `${v / 1000}k`;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(decimals);
}

function n(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}
