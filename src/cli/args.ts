/**
 * Flag parsing on top of node:util parseArgs: typed number flags with range checks and
 * one-line errors that name the flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LlmError } from '../util/errors.js';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function parseFlags(argv: string[], options: FlagSpec, command: string): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/, '');
    throw new LlmError(`${msg} (see 'llmts ${command} --help')`);
  }
}

/** A numeric flag: undefined when absent; an LlmError when not a number in range. */
export function numberFlag(
  p: Parsed, name: string, opts: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  const raw = p.values[name];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  const bad = typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(v) ||
    (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max);
  if (bad) {
    const range = [opts.integer ? 'an integer' : 'a number', opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : '']
      .filter(Boolean).join(' ');
    throw new LlmError(`--${name} ${String(raw)}: must be ${range}`);
  }
  return v;
}

export function stringFlag(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}
