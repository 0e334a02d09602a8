/**
 * The flag tables: one table per command makes the parser and the --help text, so every flag
 * the help shows is one the parser takes and the other way round; values are type- and
 * range-checked with the flag named as typed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { COMMANDS, type CommandModule, type Loaded } from '../../src/cli/commands.js';
import { allFlags, flagLabel, helpText, parseCommandLine, type CommandSpec } from '../../src/cli/flags.js';
import { LlmError } from '../../src/util/errors.js';

async function everyCommand(): Promise<{ label: string; cmd: CommandModule }[]> {
  const out: { label: string; cmd: CommandModule }[] = [];
  for (const [name, load] of Object.entries(COMMANDS)) {
    const loaded: Loaded = await load();
    if ('subcommands' in loaded) for (const [sub, cmd] of Object.entries(loaded.subcommands)) out.push({ label: `${name} ${sub}`, cmd });
    else out.push({ label: name, cmd: loaded });
  }
  return out;
}

/** A value the flag accepts (its default, a choice, or a number in range). */
function sampleValue(spec: CommandSpec, name: string): string[] {
  const d = allFlags(spec).find((f) => f.name === name || f.aliases?.includes(name) || f.short === name)!;
  if (d.kind === 'boolean') return [];
  if (d.choices) return [d.choices[0]];
  if (d.kind === 'integer' || d.kind === 'number') return [String(d.default ?? d.min ?? (d.above !== undefined ? d.above + 1 : 1))];
  return ['x'];
}

const FLAG_IN_TEXT = /(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])(?![\w-])/g;

describe('flag tables', () => {
  it('every command: each flag of the table is in --help, and each flag --help names parses', async () => {
    const commands = await everyCommand();
    assert.deepEqual(commands.map((c) => c.label), ['train', 'sample', 'run', 'chat', 'tokenizer train', 'tokenizer encode', 'tokenizer decode', 'convert', 'info', 'sft', 'merge', 'reward train', 'reward eval', 'reward score', 'reward export', 'dpo', 'ppo', 'data split', 'data text', 'serve']);
    for (const { label, cmd } of commands) {
      const spec = cmd.spec;
      assert.equal(spec.name, label);
      const help = helpText(spec);
      assert.match(help, new RegExp(`^Usage: llmts ${label} `));
      const names = new Set<string>();
      for (const f of allFlags(spec)) {
        assert.ok(help.includes(flagLabel(f)), `${label}: --help lacks '${flagLabel(f)}'`);
        for (const n of [`--${f.name}`, ...(f.aliases ?? []).map((a) => `--${a}`), ...(f.short ? [`-${f.short}`] : [])]) {
          assert.ok(!names.has(n), `${label}: ${n} is declared twice`);
          names.add(n);
        }
      }
      for (const [, flag] of help.matchAll(FLAG_IN_TEXT)) {
        const known = allFlags(spec).some((f) => `--${f.name}` === flag || `-${f.short}` === flag || f.aliases?.some((a) => `--${a}` === flag));
        assert.ok(known, `${label}: --help names ${flag}, which is not in the table`);
        const argv = [flag, ...sampleValue(spec, flag.replace(/^-+/, ''))];
        assert.doesNotThrow(() => parseCommandLine(spec, argv), `${label}: --help names ${flag}, which the parser refuses`);
      }
    }
  });

  it('commands that compute take -t, inference commands -n -p -m, those with a context -c', async () => {
    const byLabel = new Map((await everyCommand()).map((c) => [c.label, c.cmd.spec]));
    const short = (label: string, s: string): string | undefined => allFlags(byLabel.get(label)!).find((f) => f.short === s)?.name;
    for (const label of ['train', 'sample', 'run', 'chat']) assert.equal(short(label, 't'), 'threads', label);
    for (const label of ['sample', 'run', 'chat']) {
      assert.equal(short(label, 'n'), 'max-tokens', label);
      assert.equal(short(label, 'm') !== undefined, true, label);
    }
    for (const label of ['sample', 'run']) assert.equal(short(label, 'p'), 'prompt', label);
    for (const label of ['convert', 'info']) assert.equal(short(label, 'm'), 'model', label);
    for (const label of ['run', 'chat']) assert.equal(short(label, 'c'), 'ctx-size', label);
    assert.equal(short('train', 'c'), 'block-size');
  });

  const SPEC: CommandSpec = {
    name: 'demo', usage: '[flags]', summary: 'A demo.',
    flags: [
      { name: 'temperature', kind: 'number', min: 0, default: 0.8, help: 'randomness' },
      { name: 'max-tokens', short: 'n', kind: 'integer', min: 0, default: 256, help: 'how many' },
      { name: 'top-p', kind: 'number', above: 0, max: 1, help: 'nucleus' },
      { name: 'stop', kind: 'strings', help: 'stop strings' },
      { name: 'output', kind: 'string', choices: ['text', 'ids'], default: 'text', help: 'what to print' },
      { name: 'verbose', kind: 'boolean', help: 'talk more' },
      { name: 'block-size', short: 'c', aliases: ['ctx-size'], kind: 'integer', min: 1, help: 'context' },
    ],
  };
  const fails = (argv: string[], re: RegExp): void => {
    assert.throws(() => parseCommandLine(SPEC, argv), (e: unknown) => e instanceof LlmError && re.test(e.message) && !e.message.includes('\n'));
  };

  it('parses long, --name=value, short and repeated flags; defaults apply; -- ends the flags', () => {
    const f = parseCommandLine(SPEC, ['model', '-n', '5', '--temperature=0.5', '--stop', 'a', '--stop', 'b', '--verbose', '--', '--not-a-flag']);
    assert.equal(f.number('max-tokens'), 5);
    assert.equal(f.number('temperature'), 0.5);
    assert.deepEqual(f.strings('stop'), ['a', 'b']);
    assert.equal(f.bool('verbose'), true);
    assert.equal(f.string('output'), 'text');
    assert.equal(f.has('output'), false);
    assert.equal(f.number('top-p'), undefined);
    assert.deepEqual(f.positionals, ['model', '--not-a-flag']);
    assert.equal(f.typed('max-tokens'), '-n');
    assert.equal(parseCommandLine(SPEC, ['--ctx-size', '9']).number('block-size'), 9);
    assert.equal(parseCommandLine(SPEC, ['-c', '9']).typed('block-size'), '-c');
  });

  it('a negative value is the value of the flag before it, and reaches the range check', () => {
    fails(['--temperature', '-1'], /^--temperature -1: must be a number >= 0$/);
    fails(['-n', '-3'], /^-n -3: must be an integer >= 0$/);
    assert.equal(parseCommandLine({ ...SPEC, flags: [{ name: 'x', kind: 'number', help: 'any' }] }, ['--x', '-2.5']).number('x'), -2.5);
  });

  it('one-line errors that name the flag as typed, its type and range', () => {
    fails(['--max-tokens', 'lots'], /^--max-tokens lots: must be an integer >= 0$/);
    fails(['-n', '1.5'], /^-n 1\.5: must be an integer >= 0$/);
    fails(['--top-p', '2'], /^--top-p 2: must be a number > 0 and <= 1$/);
    fails(['--top-p', '0'], /^--top-p 0: must be a number > 0 and <= 1$/);
    fails(['--top-p', ''], /^--top-p "": must be a number/);
    fails(['--top-p', 'NaN'], /must be a number/);
    fails(['--output', 'json'], /^--output json: must be one of text, ids$/);
    fails(['--verbose=yes'], /^--verbose takes no value/);
    fails(['-n'], /^-n needs a value: -n N/);
    fails(['--temprature', '1'], /^Unknown option '--temprature' \(did you mean --temperature\? see 'llmts demo --help'\)$/);
    fails(['--temperature', 'x'.repeat(5000)], /^--temperature x{37}\.\.\.: must be a number/);
  });

  it('--help lists groups, placeholders and defaults from the table', () => {
    const help = helpText(SPEC);
    assert.match(help, /^Usage: llmts demo \[flags\]\n\nA demo\.\n/);
    assert.match(help, /\n {2}-n, --max-tokens N +how many \(default 256\)\n/);
    assert.match(help, /\n {6}--output text\|ids +what to print \(default text\)\n/);
    assert.match(help, /\n {2}-c, --block-size, --ctx-size N\n +context\n/);
    assert.match(help, /\nCommon:\n {2}-h, --help +print this help and exit\n {6}--debug +show stack traces on errors\n/);
    assert.ok(help.split('\n').every((l) => l.length <= 100), 'lines fit 100 columns');
  });
});

describe('README', () => {
  it('documents every flag of every command', async () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    for (const { label, cmd } of await everyCommand()) {
      for (const f of allFlags(cmd.spec)) {
        assert.ok(readme.includes(`--${f.name}`), `README lacks --${f.name} (llmts ${label})`);
        if (f.short) assert.ok(readme.includes(`-${f.short}/--${f.name}`), `README lacks -${f.short}/--${f.name} (llmts ${label})`);
      }
    }
  });
});
