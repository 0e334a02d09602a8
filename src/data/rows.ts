/**
 * From rows of JSON to examples: one format per file (named, or decided by the first row that
 * fits one), every row converted by it, and a row that cannot be is a bad row, reported with its
 * line and either left out (`--on-bad-row skip`, the default) or fatal (`--on-bad-row error`).
 * Never is a bad row trained on, and never is one dropped without being counted.
 *
 *   const r = loadRows('a.jsonl', [alpaca, text], { what: 'SFT data' });
 *   // a.jsonl: {"text": "x"}\n{"text": 3}\n{"text": "y"}
 *   r.format;   // 'text' (line 1 decided it)
 *   r.items;    // [{ kind: 'text', text: 'x' }, { kind: 'text', text: 'y' }], r.lines [1, 3]
 *   r.bad;      // [{ line: 2, reason: 'field "text" is a number, not a string' }]
 *   badRowsReport('a.jsonl', r);   // 'a.jsonl: left out 1 bad row of 3: line 2: field "text" is ...'
 *   loadRows('a.jsonl', [alpaca, text], { what: 'SFT data', onBadRow: 'error' });
 *   // LlmError: a.jsonl:2: field "text" is a number, not a string (fix or remove the row, or pass --on-bad-row skip ...)
 *
 * Converters throw BadRowError with the reason; helpers here check the common field shapes.
 */
import { LlmError } from '../util/errors.js';
import { readJsonRows, rowMessage } from './jsonl.js';

/** What to do with a row that cannot be used: leave it out and report it, or stop. */
export type OnBadRow = 'skip' | 'error';

export const ON_BAD_ROW_CHOICES: readonly OnBadRow[] = ['skip', 'error'];

/** A row left out: its line in the file (1-based) and why. */
export interface BadRow {
  line: number;
  reason: string;
}

/** Why a row cannot be used; thrown by converters, caught by loadRows. */
export class BadRowError extends Error {
  override name = 'BadRowError';
}

/** Throws a BadRowError with `reason`. */
export function badRow(reason: string): never {
  throw new BadRowError(reason);
}

/** One row format: how to recognise a row of it, and how to turn a row into examples. */
export interface RowFormat<T> {
  readonly name: string;
  /** True when the row has this format's keys (used to decide the file's format). */
  matches(row: Record<string, unknown>): boolean;
  /** The examples of one row (usually one); throws BadRowError when the row is bad. */
  convert(row: Record<string, unknown>): T[];
}

export interface LoadRowsOptions {
  /** A format's name, or 'auto' (default): decided by the first row that fits a format. */
  format?: string;
  onBadRow?: OnBadRow;
  /** Longest row in bytes (see readJsonRows). */
  maxRowBytes?: number;
  /** Names the data in messages ('SFT data', 'preference data'). */
  what: string;
  /** A reason for a row that fits no format, if a better one than "no known fields" applies. */
  misfit?: (row: Record<string, unknown>) => string | undefined;
}

export interface LoadedRows<T> {
  /** The file's format. */
  format: string;
  items: T[];
  /** For each item, the line its row starts on. */
  lines: number[];
  bad: BadRow[];
  /** Rows read (good and bad; blank lines are not rows). */
  rows: number;
}

/** Reads `path` and converts its rows with one of `formats` (see the file comment). */
export function loadRows<T>(path: string, formats: readonly RowFormat<T>[], opts: LoadRowsOptions): LoadedRows<T> {
  const onBadRow = opts.onBadRow ?? 'skip';
  const wanted = opts.format ?? 'auto';
  let format: RowFormat<T> | undefined = wanted === 'auto' ? undefined : formats.find((f) => f.name === wanted);
  if (wanted !== 'auto' && !format) throw new LlmError(`unknown ${opts.what} format '${wanted}' (expected auto, ${formats.map((f) => f.name).join(', ')})`);
  let decidedAt = 0;
  const out: LoadedRows<T> = { format: format?.name ?? 'auto', items: [], lines: [], bad: [], rows: 0 };
  const reject = (line: number, reason: string): void => {
    if (onBadRow === 'error') {
      throw new LlmError(`${rowMessage(path, line, reason)} (fix or remove the row, or pass --on-bad-row skip to leave bad rows out)`);
    }
    out.bad.push({ line, reason });
  };
  for (const row of readJsonRows(path, { maxRowBytes: opts.maxRowBytes })) {
    out.rows++;
    if (row.error !== undefined) {
      reject(row.line, row.error);
      continue;
    }
    const value = row.value;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      reject(row.line, `the row is ${typeName(value)}, not a JSON object`);
      continue;
    }
    const obj = value as Record<string, unknown>;
    if (!format) {
      format = formats.find((f) => f.matches(obj));
      if (!format) {
        reject(row.line, opts.misfit?.(obj) ?? noKnownFields(obj, formats));
        continue;
      }
      out.format = format.name;
      decidedAt = row.line;
    }
    try {
      const items = format.convert(obj);
      for (const item of items) {
        out.items.push(item);
        out.lines.push(row.line);
      }
    } catch (err) {
      if (!(err instanceof BadRowError)) throw err;
      let reason = err.message;
      const other = format.matches(obj) ? undefined : formats.find((f) => f.matches(obj));
      if (other) reason += ` (the row looks like ${other.name}, but the file is read as ${format.name}${decidedAt ? `, decided by line ${decidedAt}` : ''}; one format per file)`;
      reject(row.line, reason);
    }
  }
  if (out.items.length === 0) {
    if (out.rows === 0) throw new LlmError(`${path} holds no rows (an empty file? ${opts.what} is one JSON object per line, or a JSON array of objects)`);
    const first = out.bad[0];
    const firstWhy = first ? `; line ${first.line}: ${first.reason}` : '';
    throw new LlmError(`${path} has no usable ${opts.what}: ${out.bad.length} of ${out.rows} rows are bad${firstWhy}`);
  }
  return out;
}

/** One line about the rows left out, or null when none were: the count and the first `shown`. */
export function badRowsReport(path: string, loaded: { bad: readonly BadRow[]; rows: number }, shown = 3): string | null {
  const { bad, rows } = loaded;
  if (bad.length === 0) return null;
  const first = bad.slice(0, shown).map((b) => `line ${b.line}: ${b.reason.length > 160 ? `${b.reason.slice(0, 160)}...` : b.reason}`);
  const more = bad.length > shown ? `; and ${bad.length - shown} more` : '';
  return `${path}: left out ${bad.length} bad row${bad.length === 1 ? '' : 's'} of ${rows}: ${first.join('; ')}${more}`;
}

/** Parses an --on-bad-row value. */
export function parseOnBadRow(s: string): OnBadRow {
  if ((ON_BAD_ROW_CHOICES as readonly string[]).includes(s)) return s as OnBadRow;
  throw new LlmError(`--on-bad-row must be skip or error, not '${s}'`);
}

function noKnownFields(obj: Record<string, unknown>, formats: readonly RowFormat<unknown>[]): string {
  const keys = Object.keys(obj);
  const shown = keys.slice(0, 8).map((k) => JSON.stringify(k.slice(0, 40))).join(', ');
  const have = keys.length === 0 ? 'an empty object' : `keys ${shown}${keys.length > 8 ? ', ...' : ''}`;
  return `no known fields (${have}); expected the fields of one of: ${formats.map((f) => f.name).join(', ')} (or name the format with --format)`;
}

// ---------------------------------------------------------------------------------------------
// Field checks for converters

/** 'a string', 'a number', 'null', 'an array', 'an object', ... for messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  const t = typeof v;
  return t === 'object' || t === 'undefined' ? `an ${t}` : `a ${t}`;
}

/**
 * `row[key]` as a string. Missing, null or not a string is a bad row; so is an empty (blank)
 * one unless `allowEmpty`. `name` is how messages call it (default: field "key").
 */
export function stringField(row: Record<string, unknown>, key: string, opts: { allowEmpty?: boolean; name?: string } = {}): string {
  const name = opts.name ?? `field ${JSON.stringify(key)}`;
  if (!Object.hasOwn(row, key)) badRow(`${name} is missing`);
  const v = row[key];
  if (typeof v !== 'string') badRow(`${name} is ${typeName(v)}, not a string`);
  if (!opts.allowEmpty && v.trim() === '') badRow(`${name} is empty`);
  return v;
}

/** `row[key]` as a string when present; missing or null gives ''; any other type is a bad row. */
export function optionalStringField(row: Record<string, unknown>, key: string, name = `field ${JSON.stringify(key)}`): string {
  const v = row[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') badRow(`${name} is ${typeName(v)}, not a string`);
  return v;
}

/** `row[key]` as an array; missing or another type is a bad row. */
export function arrayField(row: Record<string, unknown>, key: string): unknown[] {
  if (!Object.hasOwn(row, key)) badRow(`field ${JSON.stringify(key)} is missing`);
  const v = row[key];
  if (!Array.isArray(v)) badRow(`field ${JSON.stringify(key)} is ${typeName(v)}, not an array`);
  return v;
}

/** `v` as an object (named `name` in messages); anything else is a bad row. */
export function objectAt(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) badRow(`${name} is ${typeName(v)}, not an object`);
  return v as Record<string, unknown>;
}
