/**
 * Where the model loaders get their bytes: one interface over a memory-mapped file (native
 * addon's mapFile) or, without it, lazy reads of exactly the bytes asked for.
 *
 *   const src = openFileSource('model.gguf', 'GGUF');
 *   try {
 *     const w = src.f32(offset, count, "tensor 'output.weight'");  // view into the mapping, or its own read
 *     const raw = src.copy(offset, bytes, "tensor 'blk.0.attn_q.weight'"); // always a private copy (to convert)
 *   } finally {
 *     src.close();   // closes the descriptor; mapped views stay valid
 *   }
 *
 * Mapped ('mmap'): the file is mapped once, privately and copy-on-write (native/mmap.c), so a
 * Float32Array view of a tensor costs no memory until its pages are touched, the kernel can drop
 * unmodified pages again, and in-place writes (an optimizer step on a loaded parameter) copy
 * only the touched pages and never reach the file. The mapping lives until every view of it is
 * garbage collected. As with any mapped file, overwriting the file in place (rather than writing
 * a new one and renaming it, as every llm.ts writer does) while a model is loaded from it changes
 * or invalidates those weights. A file that shrinks under its mapping would make the next touch
 * of a page past its new end a fatal SIGBUS; the addon catches those faults, zero-fills the rest
 * of that mapping and counts it (native/mmap.c), and checkMappedFiles() -- called after loading,
 * after each prefill and decoded token (CachedSequence) and after each training step -- turns
 * the count into a one-line LlmError naming the file.
 *
 * Read ('read'): used when the native addon is absent or has no mapFile, under
 * LLMTS_BACKEND=reference (no native code at all), with LLMTS_MMAP=0, for empty files, and if
 * mapping fails. Each request reads exactly its range into a fresh buffer; the whole file is never
 * held in memory.
 *
 * Bytes that a loader converts (F16 -> F32, row permutations, transposes) go through copy(),
 * which always reads into a private buffer, so the mapped pages of tensors that are converted are
 * never touched and do not count towards the process's memory.
 *
 * Every range is checked against the file size (loaders check first, with their own messages;
 * this is the last line of defence).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { nativeFunction } from '../backend/index.js';
import { requireRegularFile } from '../util/regular-file.js';
import { LlmError } from '../util/errors.js';

export type FileSourceMode = 'mmap' | 'read';

export interface FileSource {
  readonly path: string;
  readonly size: number;
  readonly mode: FileSourceMode;
  /** bytes [offset, offset + length): a view into the mapping, or a fresh buffer of their own */
  bytes(offset: number, length: number, what: string): Uint8Array;
  /** bytes [offset, offset + length) in a fresh buffer the caller owns (read, not mapped) */
  copy(offset: number, length: number, what: string): Uint8Array;
  /** `count` little-endian float32s at offset: a view when mapped and 4-byte aligned, else a fresh array */
  f32(offset: number, count: number, what: string): Float32Array;
  /** close the descriptor (idempotent); views returned so far stay valid. Throws if the mapped
   * file was truncated while open (see checkMappedFiles). */
  close(): void;
}

type MapFile = (path: string) => ArrayBuffer;
/** live mappings that faulted (the file shrank under them); with a buffer from mapFile: 1 if that one did */
type MapFaults = (buffer?: ArrayBuffer) => number;

/** mapFaults once this process has mapped a file (until then checkMappedFiles costs nothing) */
let mapFaults: MapFaults | null = null;

/** mapFile of the native addon when mapping is allowed here, else null. An addon without the
 * fault guard (mapFaults) is not used for mapping: a truncated file would kill the process. */
function mapper(): MapFile | null {
  if (process.env.LLMTS_MMAP === '0' || process.env.LLMTS_BACKEND === 'reference') return null;
  const map = nativeFunction<MapFile>('mapFile');
  return map && nativeFunction<MapFaults>('mapFaults') ? map : null;
}

function truncatedError(paths: string[]): LlmError {
  const names = paths.length > 0 ? paths.join(' and ') : 'a memory-mapped model file';
  return new LlmError(
    `${names} ${paths.length > 1 ? 'were' : 'was'} truncated or changed while in use (its memory-mapped weights could no longer be read); ` +
      'do not modify a model file while llm.ts runs it, or set LLMTS_MMAP=0 to read it into memory',
  );
}

/**
 * Throw if a model file mapped by this process was truncated (or rewritten in place) while in
 * use: its missing pages now read as zeros, so every result since is wrong. One native call
 * (about 0.1 us) once a file has been mapped, nothing before.
 */
export function checkMappedFiles(): void {
  if (mapFaults === null || mapFaults() === 0) return;
  throw truncatedError(nativeFunction<() => string[]>('mapFaultPaths')?.() ?? []);
}

/** Whether openFileSource will memory-map files in this process. */
export function fileMappingAvailable(): boolean {
  return mapper() !== null;
}

/** Open `path` for a loader; `kind` names the format in errors ('GGUF', 'safetensors', ...). */
export function openFileSource(path: string, kind: string): FileSource {
  requireRegularFile(path, `${kind} file`); // opening a FIFO would block forever
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new LlmError(`cannot open ${kind} file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new LlmError(`${path} is a directory, not a ${kind} file`);
    if (!st.isFile()) throw new LlmError(`${path} is not a regular file (a ${kind} file is needed)`);
    const map = st.size > 0 ? mapper() : null;
    let mapped: ArrayBuffer | null = null;
    if (map) {
      try {
        mapped = map(path);
      } catch {
        mapped = null; // e.g. no address space left: reading still works
      }
      if (mapped) mapFaults ??= nativeFunction<MapFaults>('mapFaults') ?? null;
      if (mapped && mapped.byteLength !== st.size) {
        throw new LlmError(`${path} changed size while being opened (${st.size} -> ${mapped.byteLength} bytes); load it again`);
      }
    }
    return new Source(path, fd, st.size, mapped);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

class Source implements FileSource {
  readonly mode: FileSourceMode;
  private fd: number | null;

  constructor(readonly path: string, fd: number, readonly size: number, private readonly mapped: ArrayBuffer | null) {
    this.fd = fd;
    this.mode = mapped ? 'mmap' : 'read';
  }

  private check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new LlmError(`${this.path}: ${what} (${length} bytes at byte ${offset}) extends past the end of the ${this.size}-byte file (truncated?)`);
    }
  }

  bytes(offset: number, length: number, what: string): Uint8Array {
    this.check(offset, length, what);
    if (this.mapped) return new Uint8Array(this.mapped, offset, length);
    return this.read(offset, length, what);
  }

  copy(offset: number, length: number, what: string): Uint8Array {
    this.check(offset, length, what);
    return this.read(offset, length, what);
  }

  f32(offset: number, count: number, what: string): Float32Array {
    const length = count * 4;
    this.check(offset, length, what);
    if (this.mapped && offset % 4 === 0) return new Float32Array(this.mapped, offset, count);
    return new Float32Array(this.read(offset, length, what).buffer);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    // loaders close in `finally`: a file truncated while being loaded is reported as such,
    // rather than as whatever its zero-filled pages looked like to the parser
    if (this.mapped && mapFaults?.(this.mapped)) throw truncatedError([this.path]);
  }

  /** Exactly `length` bytes at `offset` into a fresh buffer (range already checked). */
  private read(offset: number, length: number, what: string): Uint8Array {
    if (this.fd === null) throw new LlmError(`${this.path}: reading ${what} after the file was closed`);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const got = readSync(this.fd, out, done, Math.min(length - done, 1 << 30), offset + done);
      if (got <= 0) throw new LlmError(`${this.path}: file ends early inside ${what} (was it truncated while being read?)`);
      done += got;
    }
    return out;
  }
}
