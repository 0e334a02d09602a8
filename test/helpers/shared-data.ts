/**
 * Locating the shared data directory (`shared/data`, next to or inside the repo).
 *
 *   const p = sharedDataPath('tinyshakespeare/input.txt');
 *   if (p === null) t.skip('shared data not available'); else readFileSync(p, 'utf8');
 *
 * Walks up from process.cwd() and from this file's directory, trying
 * `<dir>/shared/data/<rel>` at every level; returns the first that exists or null.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function sharedDataPath(rel: string): string | null {
  for (const start of [process.cwd(), dirname(fileURLToPath(import.meta.url))]) {
    let dir = resolve(start);
    for (;;) {
      const candidate = join(dir, 'shared', 'data', rel);
      if (existsSync(candidate)) return candidate;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return null;
}
