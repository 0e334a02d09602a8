/**
 * Checks before a loader opens a file: a FIFO, socket or character device named as a model,
 * tokenizer, config.json or shard would block forever on open or read (or never end), and a
 * directory would surface as "not valid JSON". Loaders call these first and report in their terms.
 *
 *   const size = requireRegularFile('model/config.json', 'config file');   // LlmError unless a regular file: '... is a FIFO (named pipe), not a config file'
 *   const json = readJsonFile('model/config.json', 'config file');        // checked, read, parsed (unknown: shape-check it)
 *
 * Symbolic links are followed (the Hugging Face cache links every file to a blob).
 */
import { readFileSync, statSync, type Stats } from 'node:fs';
import { LlmError } from './errors.js';

/** What kind of non-file `st` is, for messages. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'a special file';
}

/**
 * Throws an LlmError unless `path` is (a link to) a regular file; returns its size in bytes.
 * `what` names it in messages ('model file', 'tokenizer file', 'config file').
 */
export function requireRegularFile(path: string, what: string): number {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' || code === 'ENOTDIR' ? ' (no such file)' : '';
    throw new LlmError(`cannot open ${what} ${path}: ${code ?? (err as Error).message}${hint}`);
  }
  if (!st.isFile()) {
    const hint = st.isDirectory() ? '' : ' (reading it could block forever, so it is refused)';
    throw new LlmError(`${path} is ${kindOf(st)}, not a ${what}${hint}`);
  }
  return st.size;
}

/** The text of a regular file (UTF-8), after requireRegularFile. */
export function readRegularFileText(path: string, what: string): string {
  requireRegularFile(path, what);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new LlmError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * A regular file parsed as JSON; the result is `unknown` on purpose: every caller checks its
 * shape (a config.json that is `null` or an array is an error in the caller's terms).
 */
export function readJsonFile(path: string, what: string): unknown {
  return parseJsonText(readRegularFileText(path, what), `${what} ${path}`);
}

/** Deepest nesting parseJsonText accepts (config files nest a few levels). */
export const MAX_JSON_DEPTH = 64;

/**
 * JSON.parse, plus what it lets through: a key given twice in one object (JSON.parse keeps the
 * last silently) and nesting deeper than maxDepth (which would overflow the stack of any
 * recursive walk, JSON.stringify in an error path included). `what` starts the messages.
 */
export function parseJsonText(text: string, what: string, maxDepth = MAX_JSON_DEPTH): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LlmError(`${what} is not valid JSON (${(err as Error).message.slice(0, 200)})`);
  }
  const problem = scanJson(text, maxDepth);
  if (problem?.kind === 'duplicate') {
    throw new LlmError(`${what} has the key ${JSON.stringify(problem.key.length > 100 ? `${problem.key.slice(0, 100)}...` : problem.key)} twice in one object`);
  }
  if (problem?.kind === 'depth') throw new LlmError(`${what} nests values more than ${maxDepth} deep`);
  return value;
}

/** What scanJson found: the first duplicate key, or nesting beyond the limit. */
export type JsonProblem = { kind: 'duplicate'; key: string } | { kind: 'depth' };

/**
 * Duplicate keys of any object and nesting deeper than maxDepth, in JSON text that JSON.parse
 * has accepted (so it is well-formed). One pass over the text, no recursion; null when neither.
 */
export function scanJson(text: string, maxDepth: number): JsonProblem | null {
  const stack: (Set<string> | null)[] = []; // per open value: its keys (objects) or null (arrays)
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let end = i + 1;
      for (;;) {
        end = text.indexOf('"', end);
        let back = 0; // backslashes before it: an odd count escapes it
        while (text.charCodeAt(end - 1 - back) === 0x5c /* \ */) back++;
        if (back % 2 === 0) break;
        end++;
      }
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (keys.has(key)) return { kind: 'duplicate', key };
        keys.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      stack.push(c === 0x7b ? new Set() : null);
      if (stack.length > maxDepth) return { kind: 'depth' };
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] !== null;
    } else if (c === 0x3a /* : */) {
      expectKey = false;
    }
  }
  return null;
}

/** JSON object (not null, not an array)? */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A short, safe rendering of a value read from a file, for an error message: strings and
 * numbers as JSON, cut to `max` characters; arrays and objects shallowly (a few elements, never
 * recursing deeply, so a value nested 100,000 deep cannot overflow the stack).
 */
export function preview(v: unknown, max = 60): string {
  const cut = (s: string): string => (s.length > max ? `${s.slice(0, max)}...` : s);
  if (v === undefined) return 'undefined';
  if (v === null || typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return cut(JSON.stringify(v.length > max ? v.slice(0, max + 1) : v));
  if (typeof v === 'bigint') return cut(`${v}n`);
  if (Array.isArray(v)) {
    const shown = v.slice(0, 8).map((e) => (Array.isArray(e) ? '[...]' : isJsonObject(e) ? '{...}' : preview(e, 20)));
    return cut(`[${shown.join(', ')}${v.length > 8 ? `, ... (${v.length} elements)` : ''}]`);
  }
  if (isJsonObject(v)) return '{...}';
  return typeof v;
}
