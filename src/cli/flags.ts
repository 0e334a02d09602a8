/**
 * Command-line flags from one table per command. A command declares each flag once (name,
 * short alias, type, default, range, help text, group); the parser, the range checks and the
 * --help text are all made from that table, so they cannot drift apart.
 *
 *   const SPEC: CommandSpec = {
 *     name: 'run', usage: 'MODEL -p PROMPT [flags]', summary: 'Generate text.',
 *     flags: [{ name: 'top-p', kind: 'number', value: 'X', min: 0, max: 1, default: 0.95, help: 'nucleus sampling' }],
 *   };
 *   const f = parseCommandLine(SPEC, ['--top-p', '0.9', 'model.gguf']);
 *   f.number('top-p');   // 0.9 (range-checked; the default when absent)
 *   f.positionals;       // ['model.gguf']
 *   helpText(SPEC);      // 'Usage: llmts run MODEL -p PROMPT [flags]\n...  --top-p X  nucleus sampling (default 0.95)'
 *
 * Conventions (those of llama.cpp and most CLIs): `--name value`, `--name=value`, `-s value`;
 * the argument after a flag that takes a value is always its value, so `--temperature -1`
 * reaches the range check instead of being read as a flag; `--` ends the flags. Errors are
 * one-line LlmErrors that name the flag as the user typed it (`-n x: must be an integer >= 0`).
 * I wrote this rather than use node:util parseArgs because parseArgs rejects negative
 * values ("argument is ambiguous") and its messages cannot name our types and ranges.
 */
import { LlmError } from '../util/errors.js';

export type FlagKind = 'string' | 'number' | 'integer' | 'boolean' | 'strings';

export interface FlagDef {
  /** long name without the dashes: 'max-tokens' */
  name: string;
  /** one-letter alias without the dash: 'n' */
  short?: string;
  /** other long names that mean the same flag: ['ctx-size'] */
  aliases?: readonly string[];
  /** 'strings' may be repeated and collects every value; the others take the last one */
  kind: FlagKind;
  /** placeholder for the value in --help: N, X, PATH (default: N for integers, X for numbers, TEXT) */
  value?: string;
  /** applied when the flag is absent, and shown in --help */
  default?: string | number | boolean;
  /** --help's words for a default that is computed ('lr/10', "the model's") */
  defaultText?: string;
  /** inclusive range of a number or integer */
  min?: number;
  max?: number;
  /** a number strictly greater than this */
  above?: number;
  /** the values a string may take */
  choices?: readonly string[];
  help: string;
  /** heading under which --help lists the flag */
  group?: string;
}

export interface CommandSpec {
  /** 'train', or 'tokenizer encode' for a subcommand */
  name: string;
  /** what follows 'Usage: llmts <name> ' */
  usage: string;
  /** the paragraph(s) after the usage line */
  summary: string;
  flags: readonly FlagDef[];
  /** text after the flag list (examples, notes) */
  notes?: string;
  /** other spellings to recognise in "not a flag of this command" errors (sibling subcommands) */
  siblings?: readonly CommandSpec[];
}

/** Flags every command accepts (main handles them before the command runs). */
export const COMMON_FLAGS: readonly FlagDef[] = [
  { name: 'help', short: 'h', kind: 'boolean', help: 'print this help and exit', group: 'Common' },
  { name: 'debug', kind: 'boolean', help: 'show stack traces on errors', group: 'Common' },
];

export type FlagValue = string | number | boolean | string[];

/** The parsed command line: typed values (defaults applied) and the positionals. */
export class Flags {
  constructor(
    readonly spec: CommandSpec,
    private readonly values: ReadonlyMap<string, FlagValue>,
    private readonly spelled: ReadonlyMap<string, string>,
    readonly positionals: readonly string[],
  ) {}

  /** Whether the user gave the flag (defaults do not count). */
  has(name: string): boolean {
    this.def(name);
    return this.spelled.has(name);
  }

  string(name: string): string | undefined {
    const v = this.get(name, 'string');
    return v === undefined ? undefined : String(v);
  }

  number(name: string): number | undefined {
    const v = this.get(name, 'number');
    return v === undefined ? undefined : (v as number);
  }

  bool(name: string): boolean {
    return this.get(name, 'boolean') === true;
  }

  strings(name: string): string[] {
    return [...((this.get(name, 'strings') as string[] | undefined) ?? [])];
  }

  /** The flag as the user typed it ('-n'), or its long form when not given. */
  typed(name: string): string {
    return this.spelled.get(name) ?? `--${this.def(name).name}`;
  }

  /** The flags the user gave, by long name. */
  given(): string[] {
    return [...this.spelled.keys()];
  }

  private def(name: string): FlagDef {
    const d = allFlags(this.spec).find((f) => f.name === name);
    if (!d) throw new Error(`flag --${name} is not in the table of 'llmts ${this.spec.name}'`); // a programming error
    return d;
  }

  private get(name: string, want: 'string' | 'number' | 'boolean' | 'strings'): FlagValue | undefined {
    const d = this.def(name);
    const kind = d.kind === 'integer' ? 'number' : d.kind;
    if (kind !== want) throw new Error(`flag --${name} is a ${d.kind} flag, read as ${want}`); // a programming error
    return this.values.get(name);
  }
}

/** Every flag of a command, its own and the common ones. */
export function allFlags(spec: CommandSpec): FlagDef[] {
  return [...spec.flags, ...COMMON_FLAGS];
}

/** Parse argv against the command's table; every value is type- and range-checked here. */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): Flags {
  const flags = allFlags(spec);
  const byName = new Map<string, FlagDef>();
  for (const f of flags) {
    for (const n of [f.name, ...(f.aliases ?? [])]) byName.set(`--${n}`, f);
    if (f.short) byName.set(`-${f.short}`, f);
  }
  const raw = new Map<string, string[]>();
  const spelled = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-' || isNumber(arg)) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const key = eq >= 0 ? arg.slice(0, eq) : arg;
    const def = byName.get(key);
    if (!def) throw unknownFlag(spec, key);
    spelled.set(def.name, key);
    let value: string;
    if (def.kind === 'boolean') {
      if (eq >= 0) throw new LlmError(`${key} takes no value (got '${arg.slice(eq + 1)}'); write just ${key}`);
      value = 'true';
    } else if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) throw new LlmError(`${key} needs a value: ${key} ${placeholder(def)} (see 'llmts ${spec.name} --help')`);
      value = argv[++i];
    }
    const list = def.kind === 'strings' ? raw.get(def.name) ?? [] : [];
    list.push(value);
    raw.set(def.name, list);
  }
  const values = new Map<string, FlagValue>();
  for (const def of flags) {
    const given = raw.get(def.name);
    if (given === undefined) {
      if (def.default !== undefined) values.set(def.name, def.default);
      continue;
    }
    values.set(def.name, convert(def, spelled.get(def.name)!, given));
  }
  return new Flags(spec, values, spelled, positionals);
}

function convert(def: FlagDef, typed: string, given: string[]): FlagValue {
  const last = given[given.length - 1];
  switch (def.kind) {
    case 'boolean':
      return true;
    case 'strings':
      return given;
    case 'string':
      if (def.choices && !def.choices.includes(last)) {
        throw new LlmError(`${typed} ${quoteValue(last)}: must be one of ${def.choices.join(', ')}`);
      }
      return last;
    default:
      return checkNumber(def, typed, last);
  }
}

function checkNumber(def: FlagDef, typed: string, text: string): number {
  const v = Number(text);
  const integer = def.kind === 'integer';
  const ok = text.trim() !== '' && Number.isFinite(v) && (!integer || Number.isInteger(v)) &&
    (def.min === undefined || v >= def.min) && (def.max === undefined || v <= def.max) && (def.above === undefined || v > def.above);
  if (!ok) throw new LlmError(`${typed} ${quoteValue(text)}: must be ${describeRange(def)}`);
  return v;
}

/** 'an integer >= 1', 'a number > 0 and <= 1' */
export function describeRange(def: FlagDef): string {
  const parts = [def.kind === 'integer' ? 'an integer' : 'a number'];
  const bounds: string[] = [];
  if (def.above !== undefined) bounds.push(`> ${def.above}`);
  if (def.min !== undefined) bounds.push(`>= ${def.min}`);
  if (def.max !== undefined) bounds.push(`<= ${def.max}`);
  if (bounds.length > 0) parts.push(bounds.join(' and '));
  return parts.join(' ');
}

function isNumber(arg: string): boolean {
  return /^-(\d|\.\d)/.test(arg);
}

function quoteValue(text: string): string {
  const shown = text.length > 40 ? `${text.slice(0, 37)}...` : text;
  return /^[\w.+-]+$/.test(shown) ? shown : JSON.stringify(shown);
}

function unknownFlag(spec: CommandSpec, key: string): LlmError {
  const owner = spec.siblings?.find((s) => allFlags(s).some((f) => `--${f.name}` === key || (f.short && `-${f.short}` === key)));
  if (owner) return new LlmError(`${key} is not a flag of 'llmts ${spec.name}' (it is one of 'llmts ${owner.name}'; see 'llmts ${spec.name} --help')`);
  const near = allFlags(spec).map((f) => `--${f.name}`).filter((n) => key.startsWith('--') && editDistance(n, key) <= 2);
  const hint = near.length > 0 ? `did you mean ${near.join(' or ')}? ` : '';
  return new LlmError(`Unknown option '${key}' (${hint}see 'llmts ${spec.name} --help')`);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

function placeholder(def: FlagDef): string {
  if (def.value) return def.value;
  if (def.choices) return def.choices.join('|');
  return def.kind === 'integer' ? 'N' : def.kind === 'number' ? 'X' : 'TEXT';
}

/** The left column of a flag's --help line: '-n, --max-tokens N' */
export function flagLabel(def: FlagDef): string {
  const names = [def.short ? `-${def.short}, ` : '    ', `--${def.name}`];
  for (const a of def.aliases ?? []) names.push(`, --${a}`);
  return names.join('') + (def.kind === 'boolean' ? '' : ` ${placeholder(def)}`);
}

const HELP_WIDTH = 100;
const LABEL_COLUMN = 28;

/** The --help text of a command, made from its table. */
export function helpText(spec: CommandSpec): string {
  const out = [`Usage: llmts ${spec.name} ${spec.usage}`, '', spec.summary.trimEnd(), ''];
  const groups = new Map<string, FlagDef[]>();
  for (const f of allFlags(spec)) {
    const g = f.group ?? 'Flags';
    groups.set(g, [...(groups.get(g) ?? []), f]);
  }
  for (const [group, defs] of groups) {
    if (out.at(-1) !== '') out.push('');
    out.push(`${group}:`);
    for (const def of defs) out.push(...flagHelpLines(def));
  }
  if (spec.notes) out.push('', spec.notes.trimEnd());
  return out.join('\n') + '\n';
}

function flagHelpLines(def: FlagDef): string[] {
  const label = `  ${flagLabel(def)}`;
  let text = def.help;
  const shown = def.defaultText ?? (def.default !== undefined && def.kind !== 'boolean' ? String(def.default) : undefined);
  if (shown !== undefined) text += ` (default ${shown})`;
  const wrapped = wrap(text, HELP_WIDTH - LABEL_COLUMN);
  const lines: string[] = [];
  if (label.length + 2 > LABEL_COLUMN) lines.push(label);
  else lines.push(label.padEnd(LABEL_COLUMN) + wrapped.shift());
  for (const w of wrapped) lines.push(' '.repeat(LABEL_COLUMN) + w);
  return lines;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}
