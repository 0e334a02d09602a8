/**
 * Reading rows of JSON: a JSONL file (one value per line) or a JSON file holding one array of
 * rows (Alpaca's and ShareGPT's usual `.json`), streamed in 1 MiB chunks, so memory stays at
 * one row however large the file. Each row comes with the line it starts on.
 *
 *   // train.jsonl:  {"text": "a"}\n\n{"text": 1\n[1]\n
 *   [...readJsonRows('train.jsonl')];
 *   // [{ line: 1, value: { text: 'a' } },                  (blank line 2 skipped)
 *   //  { line: 3, error: 'not valid JSON (Expected ...): {"text": 1' },
 *   //  { line: 4, value: [1] }]                             (shape is the caller's business)
 *
 *   // chats.json:  [\n  {"id": 1},\n  {"id": 2}\n]
 *   [...readJsonRows('chats.json')];   // [{ line: 2, value: { id: 1 } }, { line: 3, value: { id: 2 } }]
 *
 * A row that cannot be read (not JSON, invalid UTF-8, a key twice, nested deeper than 64, longer
 * than maxRowBytes) is yielded as `{ line, error }` so the caller can skip it or stop at it
 * (`--on-bad-row`); only problems with the file as a whole throw an LlmError: missing, not a
 * regular file, UTF-16, an array that is not closed or is followed by more text. A UTF-8 byte
 * order mark is dropped (at the start of the file, and of a line, for files joined with `cat`);
 * a CRLF line ending is read as LF.
 *
 * Which kind is decided by the first character: `[` starts a JSON array file, anything else is
 * read as JSONL, whatever the file's extension (`.json` files of one object per line are common).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { LlmError } from '../util/errors.js';
import { printable } from '../util/printable.js';
import { requireRegularFile, scanJson } from '../util/regular-file.js';
import { firstInvalidUtf8 } from './text-file.js';

/** A row read: its value, or why it could not be read. `line` is 1-based, where the row starts. */
export type JsonRow = { line: number; value: unknown; error?: undefined } | { line: number; error: string; value?: undefined };

export interface ReadJsonRowsOptions {
  /** Longest row in bytes (default MAX_ROW_BYTES); a longer one is a bad row, never held whole in memory. */
  maxRowBytes?: number;
  /** Bytes read at a time (default 1 MiB; tests use small chunks to cross row boundaries). */
  chunkBytes?: number;
}

/** 16 MiB: a row longer than this is not a training example (millions of tokens) but a broken file. */
export const MAX_ROW_BYTES = 16 * 1024 * 1024;

/** Deepest nesting of a row (a conversation is 3 deep). */
export const MAX_ROW_DEPTH = 64;

const PREVIEW_CHARS = 60;

/** The rows of a JSONL or JSON-array file, one at a time (see the file comment). */
export function* readJsonRows(path: string, opts: ReadJsonRowsOptions = {}): Generator<JsonRow> {
  const maxRowBytes = opts.maxRowBytes ?? MAX_ROW_BYTES;
  const chunkBytes = opts.chunkBytes ?? 1024 * 1024;
  requireRegularFile(path, 'data file');
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new LlmError(`cannot open data file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const splitter = new RowSplitter(path, maxRowBytes);
    const chunk = Buffer.alloc(chunkBytes);
    let first = true;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, chunk, 0, chunkBytes, null);
      } catch (err) {
        throw new LlmError(`cannot read data file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (n === 0) break;
      let bytes = chunk.subarray(0, n);
      if (first) {
        checkNotUtf16(path, bytes);
        if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
        first = false;
      }
      yield* splitter.push(bytes).map((r) => parseRow(r, maxRowBytes));
    }
    yield* splitter.end().map((r) => parseRow(r, maxRowBytes));
  } finally {
    closeSync(fd);
  }
}

/** `path:line: reason`, the form every row error takes. */
export function rowMessage(path: string, line: number, reason: string): string {
  return `${path}:${line}: ${reason}`;
}

/** The start of a row's text as shown in messages: at most 60 characters, control characters escaped. */
export function preview(text: string): string {
  const cut = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}...` : text;
  return printable(cut);
}

function checkNotUtf16(path: string, b: Uint8Array): void {
  const bomLE = b[0] === 0xff && b[1] === 0xfe;
  const bomBE = b[0] === 0xfe && b[1] === 0xff;
  const zeros = b.length >= 2 && (b[0] === 0 || b[1] === 0); // '{\0' or '\0{': UTF-16 without a BOM
  if (bomLE || bomBE || zeros) {
    throw new LlmError(`${path} looks like UTF-16 text, not UTF-8 (convert it: iconv -f UTF-16 -t UTF-8 ${path} > out.jsonl)`);
  }
}

/** The raw bytes of one row (or the news that it was too long), before decoding. */
interface RawRow {
  line: number;
  bytes: Buffer | null; // null: longer than maxRowBytes, dropped while reading
  size: number;
}

function parseRow(raw: RawRow, maxRowBytes: number): JsonRow {
  const { line } = raw;
  if (raw.bytes === null) {
    return { line, error: `the row is ${raw.size} bytes, over the limit of ${maxRowBytes} (a broken file? raise maxRowBytes if it is a real row)` };
  }
  let bytes = raw.bytes;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    const good = bytes.subarray(0, at).toString('utf8');
    return { line, error: `invalid UTF-8 byte 0x${bytes[at].toString(16).padStart(2, '0')} at offset ${at} of the row, after: ${preview(good.slice(-PREVIEW_CHARS))} (save the file as UTF-8)` };
  }
  const text = bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { line, error: `not valid JSON (${(err as Error).message.slice(0, 100)}): ${preview(text)}` };
  }
  if (typeof value === 'object' && value !== null) {
    const problem = scanJson(text, MAX_ROW_DEPTH);
    if (problem?.kind === 'duplicate') return { line, error: `the key ${JSON.stringify(problem.key.slice(0, 100))} appears twice in one object (which one is meant?): ${preview(text)}` };
    if (problem?.kind === 'depth') return { line, error: `values nest more than ${MAX_ROW_DEPTH} deep: ${preview(text)}` };
  }
  return { line, value };
}

/**
 * Cuts a byte stream into rows: at newlines (JSONL), or at the top-level commas of an array
 * (JSON array file), decided by the first non-blank byte. Keeps at most maxRowBytes of a row.
 */
class RowSplitter {
  private mode: 'start' | 'jsonl' | 'array' | 'after' = 'start';
  private line = 1; // line of the byte being read
  private rowLine = 0; // line where the current row started (0: no row open)
  private parts: Buffer[] = [];
  private size = 0;
  private blank = true; // JSONL: the current line holds only whitespace so far
  // array mode
  private depth = 0; // nesting inside the top array's element
  private inString = false;
  private escaped = false;
  private afterComma = false;
  private arrayLine = 0;

  constructor(
    private readonly path: string,
    private readonly maxRowBytes: number,
  ) {}

  push(b: Buffer): RawRow[] {
    const out: RawRow[] = [];
    let i = 0;
    if (this.mode === 'start') {
      while (i < b.length && isSpace(b[i])) if (b[i++] === 0x0a) this.line++;
      if (i === b.length) return out;
      if (b[i] === 0x5b /* [ */) {
        this.mode = 'array';
        this.arrayLine = this.line;
        i++;
      } else this.mode = 'jsonl';
    }
    if (this.mode === 'jsonl') this.pushLines(b, i, out);
    else this.pushArray(b, i, out);
    return out;
  }

  end(): RawRow[] {
    if (this.mode === 'jsonl' && this.rowLine !== 0 && !this.blank) return [this.take()];
    if (this.mode === 'array') {
      throw new LlmError(`${this.path}: the JSON array opened on line ${this.arrayLine} is not closed at the end of the file (line ${this.line}); the file is cut short or an element is broken`);
    }
    return [];
  }

  private pushLines(b: Buffer, from: number, out: RawRow[]): void {
    let i = from;
    while (i < b.length) {
      const nl = b.indexOf(0x0a, i);
      const stop = nl < 0 ? b.length : nl;
      if (this.rowLine === 0) this.rowLine = this.line;
      for (let k = i; this.blank && k < stop; k++) if (!isSpace(b[k])) this.blank = false;
      this.append(b.subarray(i, stop));
      if (nl < 0) break;
      if (!this.blank) out.push(this.take());
      else this.reset();
      this.line++;
      i = nl + 1;
    }
  }

  private pushArray(b: Buffer, from: number, out: RawRow[]): void {
    let start = -1; // start in b of the current element's bytes not yet appended
    if (this.rowLine !== 0) start = from;
    for (let i = from; i < b.length; i++) {
      const c = b[i];
      if (this.mode === 'after') {
        if (c === 0x0a) this.line++;
        else if (!isSpace(c)) throw new LlmError(`${this.path}:${this.line}: text after the closing ] of the JSON array (a JSON file holds one array of rows; in JSONL, a line starting with [ would be an array, and rows are objects)`);
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) this.inString = false;
        else if (c === 0x0a) this.line++;
        continue;
      }
      if (this.rowLine === 0) {
        // between elements
        if (c === 0x0a) this.line++;
        if (isSpace(c)) continue;
        if (c === 0x5d /* ] */ && !this.afterComma) {
          this.mode = 'after';
          continue;
        }
        if (c === 0x2c /* , */ || c === 0x5d) {
          throw new LlmError(`${this.path}:${this.line}: a ${c === 0x2c ? 'comma' : ']'} where an element of the JSON array was expected (an empty element or a trailing comma)`);
        }
        this.rowLine = this.line;
        start = i;
      }
      if (c === 0x0a) this.line++;
      else if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth++;
      else if ((c === 0x7d || c === 0x5d) && this.depth > 0) this.depth--;
      else if (this.depth === 0 && (c === 0x2c || c === 0x5d)) {
        this.append(b.subarray(start, i));
        out.push(this.take());
        start = -1;
        this.afterComma = c === 0x2c;
        if (c === 0x5d) this.mode = 'after';
      } else if (c === 0x7d && this.depth === 0) {
        throw new LlmError(`${this.path}:${this.line}: a } that closes nothing in the JSON array (the element before it is broken)`);
      }
    }
    if (start >= 0 && this.rowLine !== 0) this.append(b.subarray(start));
  }

  private append(piece: Buffer): void {
    this.size += piece.length;
    if (this.size > this.maxRowBytes) this.parts = [];
    else this.parts.push(Buffer.from(piece)); // a copy: the chunk buffer is reused
  }

  private take(): RawRow {
    let bytes: Buffer | null = this.size > this.maxRowBytes ? null : this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts);
    if (bytes && bytes[bytes.length - 1] === 0x0d && this.mode === 'jsonl') bytes = bytes.subarray(0, bytes.length - 1);
    const row = { line: this.rowLine, bytes, size: this.size };
    this.reset();
    return row;
  }

  private reset(): void {
    this.parts = [];
    this.size = 0;
    this.rowLine = 0;
    this.blank = true;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
