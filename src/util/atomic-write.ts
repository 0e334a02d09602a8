/**
 * Atomic file writes: data goes to a temp file in the same directory, is fsynced,
 * then renamed over the destination, so readers see either the old file or the
 * complete new one, never a torn write. On failure the temp file is removed and
 * an LlmError naming `path` is thrown.
 *
 *   writeFileAtomic('runs/a/config.json', JSON.stringify(cfg));
 *   writeFileAtomicParts('runs/a/model.safetensors', [header, weights1, weights2]);
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { LlmError } from './errors.js';

/** Write `data` (bytes or UTF-8 text) to `path` atomically, creating parent directories. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  writeFileAtomicParts(path, [bytes]);
}

/** Write the concatenation of `parts` to `path` atomically, without concatenating them in memory. */
export function writeFileAtomicParts(path: string, parts: Uint8Array[]): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    for (const part of parts) {
      let off = 0;
      while (off < part.byteLength) {
        off += writeSync(fd, part, off, part.byteLength - off);
      }
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        /* already failing; keep the original error */
      }
    }
    rmSync(tmp, { force: true });
    const why = err instanceof Error ? err.message : String(err);
    throw new LlmError(`cannot write ${path}: ${why} (check that the directory is writable and the disk is not full)`, {
      cause: err,
    });
  }
}
