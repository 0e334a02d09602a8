/**
 * Atomic file writes: data goes to a temp file in the same directory, is fsynced,
 * then renamed over the destination, so readers see either the old file or the
 * complete new one, never a torn write. On failure the temp file is removed and
 * an LlmError naming `path` is thrown.
 *
 *   writeFileAtomic('runs/a/config.json', JSON.stringify(cfg));
 *   writeFileAtomicParts('runs/a/model.safetensors', [header, weights1, weights2]);
 *   writeFileAtomicWith('model.gguf', (write) => { write(header); for (const t of tensors) write(t.bytes()); });
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
  writeFileAtomicWith(path, (write) => {
    for (const part of parts) write(part);
  });
}

/**
 * Write to `path` atomically whatever `produce` passes to `write`, as it produces it (a writer
 * that makes its bytes piece by piece, e.g. tensor by tensor, never holds the whole file). What
 * produce returns is returned; if it throws, the temp file is removed and an LlmError it threw
 * reaches the caller unchanged (anything else becomes an LlmError naming `path`).
 */
export function writeFileAtomicWith<T>(path: string, produce: (write: (bytes: Uint8Array) => void) => T): T {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    const out = fd;
    const result = produce((bytes) => {
      let off = 0;
      while (off < bytes.byteLength) off += writeSync(out, bytes, off, bytes.byteLength - off);
    });
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
    return result;
  } catch (err) {
    if (fd !== null) {
      try {
        closeSync(fd);
      } catch {
        /* already failing; keep the original error */
      }
    }
    rmSync(tmp, { force: true });
    if (err instanceof LlmError) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new LlmError(`cannot write ${path}: ${why} (check that the directory is writable and the disk is not full)`, {
      cause: err,
    });
  }
}
