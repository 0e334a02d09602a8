/**
 * Progress reporting for long loops (training, downloads).
 *
 *   formatDuration(45);     // '45s'
 *   formatDuration(65);     // '1m05s'
 *   formatDuration(7380);   // '2h03m'
 *
 *   const p = new ProgressLine(5000, { label: 'train' });
 *   for (let step = 1; step <= 5000; step++) { ...; p.update(step, { loss: 2.3145, 'tok/s': 41234 }); }
 *   p.done('trained 5000 steps');
 *
 * On a TTY the line is rewritten in place with '\r':
 *   train [#########...........]  45% 2250/5000 loss=2.315 tok/s=41234 ETA 1m05s
 * Elsewhere (CI logs, files) a plain line is printed at most every `intervalSec`
 * seconds (default 10) or whenever another 10% is done.
 */

/** '45s', '1m05s', '2h03m'; '?' for negative or non-finite input. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** '512B', '1.5KB', '12.3MB', '1.20GB' (powers of 1024). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1)}${units[i]}`;
}

/** Integers as they are, other numbers to 4 significant digits: `loss=2.315 lr=0.0003 step=12`. */
export function formatFields(fields: Record<string, string | number>): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v}`)
    .join(' ');
}

/** '[#####.....]' for fraction 0.5 and width 10 (fraction clamped to [0, 1]). */
export function formatBar(fraction: number, width = 20): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export interface ProgressState {
  label?: string;
  done: number;
  /** <= 0 or non-finite means unknown: no bar, percentage or ETA. */
  total: number;
  fields?: Record<string, string | number>;
  elapsedSec: number;
  /** Formats done/total (e.g. formatBytes); default String. */
  format?: (n: number) => string;
  /** Whether to draw the bar (TTY only). */
  bar?: boolean;
  /** Units already done when timing started (a resumed run); excluded from the rate. */
  initial?: number;
}

/** One progress line, e.g. 'train [####......]  40% 40/100 loss=2.3 ETA 1m30s'. */
export function formatProgressLine(s: ProgressState): string {
  const fmt = s.format ?? String;
  const known = Number.isFinite(s.total) && s.total > 0;
  const parts: string[] = [];
  if (s.label) parts.push(s.label);
  if (known) {
    const frac = s.done / s.total;
    if (s.bar) parts.push(formatBar(frac));
    parts.push(`${Math.floor(Math.min(1, Math.max(0, frac)) * 100).toString().padStart(3)}%`);
    parts.push(`${fmt(s.done)}/${fmt(s.total)}`);
  } else {
    parts.push(fmt(s.done));
  }
  if (s.fields && Object.keys(s.fields).length > 0) parts.push(formatFields(s.fields));
  const timed = s.done - (s.initial ?? 0);
  if (known && timed > 0 && s.done < s.total) {
    parts.push(`ETA ${formatDuration((s.elapsedSec / timed) * (s.total - s.done))}`);
  } else if (s.done >= s.total || !known) {
    parts.push(formatDuration(s.elapsedSec));
  }
  return parts.join(' ');
}

/** What ProgressLine writes to; process.stderr (the default) fits. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressLineOptions {
  stream?: ProgressStream;
  label?: string;
  /** Not a TTY: print at least this many seconds apart unless another 10% is done (default 10). */
  intervalSec?: number;
  /** Formats done/total, e.g. formatBytes for downloads. */
  format?: (n: number) => string;
  /** Units already done before this line started (a resumed run), for the ETA. */
  initial?: number;
  /** Clock in milliseconds (for tests); default Date.now. */
  now?: () => number;
}

/** A progress line for a loop of `total` units; see the file comment. */
export class ProgressLine {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly start: number;
  private lastPrint = -Infinity;
  private lastDecile = 0;
  private lastDone = 0;
  private lastFields: Record<string, string | number> = {};
  /** not a TTY: the state of the last line printed, so done() does not print it again */
  private printedDone = -1;
  private printedFields: Record<string, string | number> | null = null;
  private finished = false;

  constructor(
    readonly total: number,
    private readonly opts: ProgressLineOptions = {},
  ) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    this.now = opts.now ?? Date.now;
    this.start = this.now();
  }

  /** Report that `done` of `total` units are finished, with extra fields such as the loss. */
  update(done: number, fields: Record<string, string | number> = {}): void {
    if (this.finished) return;
    this.lastDone = done;
    this.lastFields = fields;
    const t = this.now();
    if (this.tty) {
      if (t - this.lastPrint < 100 && done < this.total) return; // at most 10 redraws a second
      this.lastPrint = t;
      this.stream.write(`\r${this.fit(this.line(done, fields, t))}\x1b[K`);
      return;
    }
    const decile = this.total > 0 ? Math.floor((done / this.total) * 10) : 0;
    const intervalMs = (this.opts.intervalSec ?? 10) * 1000;
    if (decile > this.lastDecile || t - this.lastPrint >= intervalMs) {
      this.lastDecile = Math.max(decile, this.lastDecile);
      this.lastPrint = t;
      this.printedDone = done;
      this.printedFields = fields;
      this.stream.write(this.line(done, fields, t) + '\n');
    }
  }

  /** Print a full line of text (e.g. an evaluation result) without breaking the progress line. */
  log(text: string, out: ProgressStream = this.stream): void {
    if (this.tty) this.stream.write('\r\x1b[K');
    out.write(text + '\n');
    if (this.tty && !this.finished) this.lastPrint = -Infinity;
  }

  /** Stop without a final line (the work failed: its error is what should show); a TTY's line is cleared. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.tty) this.stream.write('\r\x1b[K');
  }

  /** Finish: print `finalText`, or the last state, and end the line. */
  done(finalText?: string): void {
    if (this.finished) return;
    this.finished = true;
    // not a TTY, and the last printed line already shows the final state: printing it again says nothing new
    if (!this.tty && finalText === undefined && this.printedDone === this.lastDone && this.printedFields === this.lastFields) return;
    const text = finalText ?? this.line(this.lastDone, this.lastFields, this.now());
    this.stream.write(this.tty ? `\r${text}\x1b[K\n` : text + '\n');
  }

  private line(done: number, fields: Record<string, string | number>, t: number): string {
    return formatProgressLine({
      label: this.opts.label,
      done,
      total: this.total,
      fields,
      elapsedSec: (t - this.start) / 1000,
      format: this.opts.format,
      bar: this.tty,
      initial: this.opts.initial,
    });
  }

  /** Cut to the terminal width so the line never wraps (wrapping breaks '\r' rewriting). */
  private fit(text: string): string {
    const cols = this.stream.columns;
    return cols && text.length >= cols ? text.slice(0, cols - 1) : text;
  }
}
