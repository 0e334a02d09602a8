/**
 * Training metrics as JSON Lines: one JSON object per line, appended as training goes,
 * so a crash loses at most the line being written.
 *
 *   const log = new MetricsLog('runs/shakespeare/metrics.jsonl');
 *   log.append({ type: 'train', step: 10, loss: 3.91, lr: 6e-4 });
 *   log.append({ type: 'eval', step: 250, valLoss: 2.05 });
 *   readMetrics('runs/shakespeare/metrics.jsonl');   // [{ type: 'train', ... }, { type: 'eval', ... }]
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { LlmError } from '../util/errors.js';

export class MetricsLog {
  /** opened on the first append (append mode), so a training step costs one write, not an open */
  private fd: number | null = null;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  /** Append `record` as one JSON line (NaN and Infinity become null, as in JSON.stringify). */
  append(record: object): void {
    if (this.fd === null) this.fd = openSync(this.path, 'a');
    writeSync(this.fd, JSON.stringify(record) + '\n');
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * Parse a metrics file back into records. An unterminated final line that does not
 * parse (a write torn by a crash) is skipped; a bad line anywhere else is an error.
 */
export function readMetrics(path: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LlmError(`cannot read metrics file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const lines = text.split('\n');
  const records: Record<string, unknown>[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      if (i === lines.length - 1) break; // torn final line (no trailing newline)
      throw new LlmError(`${path}:${i + 1}: metrics line is not valid JSON; fix or delete that line`);
    }
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) {
      throw new LlmError(`${path}:${i + 1}: metrics line must be a JSON object`);
    }
    records.push(rec as Record<string, unknown>);
  }
  return records;
}
