/**
 * Temporary directories for tests, removed when the test file finishes.
 *
 *   const dir = tmpDir('safetensors');   // e.g. /tmp/llmts-safetensors-AbC123
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export function tmpDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `llmts-${name}-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
