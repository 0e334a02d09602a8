/**
 * Running the llmts command as a user would (a child process) and checking its errors.
 *
 *   const r = runCli(['train', '--data', 'x.txt']);
 *   assertOneLineError(r, /data file not found/);
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `llmts args...` with optional stdin; the backend choice of the test run is inherited. */
export function runCli(args: string[], input?: string): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8', input, env: { ...process.env, LLMTS_BACKEND: process.env.LLMTS_BACKEND ?? '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A failed command: non-zero exit, exactly one non-empty stderr line, no stack trace. */
export function assertOneLineError(r: CliResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, 'exit code should be non-zero');
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace without --debug');
}
