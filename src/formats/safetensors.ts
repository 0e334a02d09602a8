/**
 * The safetensors file format (https://huggingface.co/docs/safetensors):
 *
 *   [8 bytes]  N, header length, u64 little-endian
 *   [N bytes]  JSON header, padded with spaces so 8 + N is a multiple of 8:
 *              {"__metadata__": {"format": "pt"},
 *               "wte": {"dtype": "F32", "shape": [65, 64], "data_offsets": [0, 16640]}, ...}
 *   [rest]     data buffer; data_offsets are [begin, end) byte offsets into it
 *
 * Example:
 *
 *   saveSafetensors('model.safetensors', {
 *     wte: { dtype: 'F32', shape: [2, 3], data: new Float32Array(6) },
 *     step: { dtype: 'I64', shape: [], data: new BigInt64Array([100n]) },
 *   }, { format: 'pt' });
 *   const { tensors, metadata } = loadSafetensors('model.safetensors');
 *   tensors.get('wte');   // { dtype: 'F32', shape: [2, 3], data: Float32Array(6) }
 *
 * Dtypes and the arrays used for them:
 *
 *   dtype  write accepts                          read returns
 *   F32    Float32Array                           Float32Array
 *   F16    Float32Array (rounded) or Uint16Array  Float32Array (converted)
 *   BF16   Float32Array (rounded) or Uint16Array  Float32Array (converted)
 *          (a Uint16Array is taken as raw bit patterns)
 *   I32    Int32Array                             Int32Array
 *   I64    BigInt64Array or Int32Array (widened)  BigInt64Array (always, so no value is lost)
 *   U8     Uint8Array                             Uint8Array
 *   U16    Uint16Array                            Uint16Array
 *
 * parseSafetensors returns fresh copies that the caller owns, aligned at offset 0 of their own
 * ArrayBuffer. loadSafetensors returns views into a copy-on-write memory mapping of the file where
 * it can (see loadSafetensors); writing into them is safe and never changes the file. The writer orders the data by dtype size
 * (largest first) so that every tensor is naturally aligned in the file. Byte
 * order is little-endian, as on every platform Node runs on.
 */
import { writeFileAtomicParts } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import { preview, requireRegularFile, scanJson } from '../util/regular-file.js';
import { openFileSource, type FileSourceMode } from './file-source.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from './half.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'U16';

/** Bytes per element of each supported dtype. */
export const SAFETENSORS_DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  U8: 1,
  U16: 2,
};

/** Largest header accepted when reading (the reference implementation uses the same limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Deepest nesting of JSON values accepted in a header. A valid one nests 3 deep (the header
 * object, a tensor's entry, its shape); serde_json, which the reference reader uses, stops at 128.
 */
export const MAX_HEADER_DEPTH = 32;

export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

/** A tensor to write; see the table above for which `data` array fits which dtype. */
export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

/** A tensor as read back; `dtype` is the dtype stored in the file. */
export type LoadedTensor =
  | { dtype: 'F32' | 'F16' | 'BF16'; shape: number[]; data: Float32Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'I64'; shape: number[]; data: BigInt64Array }
  | { dtype: 'U8'; shape: number[]; data: Uint8Array }
  | { dtype: 'U16'; shape: number[]; data: Uint16Array };

export interface Safetensors {
  tensors: Map<string, LoadedTensor>;
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------- writing

/**
 * Encode tensors as safetensors: returns [header, data1, data2, ...] to be written
 * one after the other (e.g. with writeFileAtomicParts), without one big copy.
 */
export function serializeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Uint8Array[] {
  const entries = Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: tensorBytes(name, t) }));
  entries.sort((a, b) => SAFETENSORS_DTYPE_SIZE[b.dtype] - SAFETENSORS_DTYPE_SIZE[a.dtype]);

  const header: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new LlmError(`safetensors metadata "${k}" must be a string, got ${typeof v}`);
  }
  if (Object.keys(metadata).length > 0) setKey(header, '__metadata__', metadata);
  let offset = 0;
  for (const e of entries) {
    setKey(header, e.name, { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.byteLength] });
    offset += e.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  const jsonLen = new TextEncoder().encode(json).byteLength;
  json += ' '.repeat((8 - (jsonLen % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);

  const headerPart = new Uint8Array(8 + jsonBytes.byteLength);
  new DataView(headerPart.buffer).setBigUint64(0, BigInt(jsonBytes.byteLength), true);
  headerPart.set(jsonBytes, 8);
  return [headerPart, ...entries.map((e) => e.bytes)];
}

/** Write tensors (and optional string metadata) to `path` atomically. */
export function saveSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): void {
  writeFileAtomicParts(path, serializeSafetensors(tensors, metadata));
}

/** Validate one tensor to write and return its bytes in file encoding. */
function tensorBytes(name: string, t: TensorToWrite): Uint8Array {
  const what = `safetensors tensor "${name}"`;
  if (name === '__metadata__' || name === '') throw new LlmError(`${what}: this name is reserved; rename the tensor`);
  if (!(t.dtype in SAFETENSORS_DTYPE_SIZE)) {
    throw new LlmError(`${what}: unsupported dtype ${preview(t.dtype)} (use one of ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')})`);
  }
  const count = checkShape(t.shape);
  if (count === null) throw new LlmError(`${what}: shape ${preview(t.shape)} must be an array of non-negative integers`);
  if (t.data.length !== count) {
    throw new LlmError(`${what}: shape ${preview(t.shape)} needs ${count} elements but data has ${t.data.length}`);
  }
  const d = t.data;
  const mismatch = () =>
    new LlmError(`${what}: dtype ${t.dtype} cannot be written from a ${d.constructor.name} (see the table in safetensors.ts)`);
  switch (t.dtype) {
    case 'F32':
      if (!(d instanceof Float32Array)) throw mismatch();
      return view(d);
    case 'F16':
    case 'BF16':
      if (d instanceof Uint16Array) return view(d);
      if (!(d instanceof Float32Array)) throw mismatch();
      return view(t.dtype === 'F16' ? encodeF16(d) : encodeBf16(d));
    case 'I32':
      if (!(d instanceof Int32Array)) throw mismatch();
      return view(d);
    case 'I64':
      if (d instanceof BigInt64Array) return view(d);
      if (!(d instanceof Int32Array)) throw mismatch();
      return view(BigInt64Array.from(d, (v) => BigInt(v)));
    case 'U8':
      if (!(d instanceof Uint8Array)) throw mismatch();
      return view(d);
    case 'U16':
      if (!(d instanceof Uint16Array)) throw mismatch();
      return view(d);
  }
}

function view(a: TensorData): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

// ---------------------------------------------------------------- reading

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** Parse a whole safetensors file held in memory; `source` (usually the path) names it in errors. */
export function parseSafetensors(buf: Uint8Array, source: string): Safetensors {
  if (buf.byteLength < 8) throw tooShort(source, buf.byteLength);
  const n = headerLength(buf.subarray(0, 8), buf.byteLength, source);
  const { entries, metadata } = parseHeader(buf.subarray(8, 8 + n), buf.byteLength - 8 - n, source);
  const base = 8 + n;
  const tensors = new Map<string, LoadedTensor>();
  for (const e of entries) {
    // Copy explicitly: on a Node Buffer, slice() would return a view, not a copy.
    const bytes = new Uint8Array(e.end - e.begin);
    bytes.set(buf.subarray(base + e.begin, base + e.end));
    tensors.set(e.name, decode(e, bytes));
  }
  return { tensors, metadata };
}

/**
 * Read a safetensors file. Where the file can be memory-mapped (file-source.ts), tensors stored
 * in a dtype we return as it is (F32, I32, I64, U8, U16) and naturally aligned in the file are
 * views into the copy-on-write mapping: no memory until used, and writes into them never reach
 * the file. F16/BF16 (converted to float32) and unaligned tensors are read into arrays of their own.
 * Without mapping, each tensor is read from disk into its own array. `source` says which.
 */
export function loadSafetensors(path: string): Safetensors & { source: FileSourceMode } {
  requireRegularFile(path, 'safetensors file');
  const src = openFileSource(path, 'safetensors');
  try {
    const size = src.size;
    if (size < 8) throw tooShort(path, size);
    const n = headerLength(src.copy(0, 8, 'the header length'), size, path);
    const { entries, metadata } = parseHeader(src.copy(8, n, 'the JSON header'), size - 8 - n, path);
    const tensors = new Map<string, LoadedTensor>();
    for (const e of entries) {
      const offset = 8 + n + e.begin;
      const length = e.end - e.begin;
      const what = `tensor "${e.name}"`;
      const converted = e.dtype === 'F16' || e.dtype === 'BF16';
      const bytes = converted ? src.copy(offset, length, what) : src.bytes(offset, length, what);
      const aligned = bytes.byteOffset % SAFETENSORS_DTYPE_SIZE[e.dtype] === 0;
      tensors.set(e.name, aligned ? decode(e, bytes) : decode(e, src.copy(offset, length, what)));
    }
    return { tensors, metadata, source: src.mode };
  } finally {
    src.close();
  }
}

/** The string metadata of a safetensors file, reading only its header. */
export function readSafetensorsMetadata(path: string): Record<string, string> {
  return readSafetensorsHeader(path).metadata;
}

/** A tensor as the header describes it (no data read). */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
}

/**
 * The tensors (names, dtypes, shapes) and metadata of a safetensors file, reading and checking
 * only its header: loaders check them against what they expect before reading any data.
 */
export function readSafetensorsHeader(path: string): { tensors: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  requireRegularFile(path, 'safetensors file');
  const src = openFileSource(path, 'safetensors');
  try {
    if (src.size < 8) throw tooShort(path, src.size);
    const n = headerLength(src.copy(0, 8, 'the header length'), src.size, path);
    const { entries, metadata } = parseHeader(src.copy(8, n, 'the JSON header'), src.size - 8 - n, path);
    return { tensors: new Map(entries.map((e) => [e.name, { name: e.name, dtype: e.dtype, shape: e.shape }])), metadata };
  } finally {
    src.close();
  }
}

function tooShort(source: string, size: number): LlmError {
  return new LlmError(`${source}: not a safetensors file (it is ${size} bytes; even an empty one has an 8-byte header length)`);
}

/** Header length from the first 8 bytes, checked against the limit and the file size. */
function headerLength(first8: Uint8Array, fileSize: number, source: string): number {
  const big = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (big > BigInt(MAX_HEADER_BYTES)) {
    throw new LlmError(`${source}: safetensors header length ${big} is over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file, or corrupt)`);
  }
  const n = Number(big);
  if (8 + n > fileSize) {
    throw new LlmError(`${source}: safetensors header length ${n} is larger than the ${fileSize}-byte file (truncated or not a safetensors file)`);
  }
  return n;
}

/**
 * Parse and validate the JSON header as the reference implementation (the safetensors crate)
 * does: every entry is checked against `dataLen`, and the tensors' data, in offset order, must
 * tile the data buffer exactly: no overlap, no gap, no trailing bytes. Duplicate keys (which
 * JSON.parse would silently resolve to the last) and values nested deeper than MAX_HEADER_DEPTH
 * are rejected too.
 */
function parseHeader(bytes: Uint8Array, dataLen: number, source: string): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    header = JSON.parse(text);
  } catch (err) {
    throw new LlmError(`${source}: safetensors header is not valid JSON (${(err as Error).message.slice(0, 200)}); the file is corrupt or not safetensors`);
  }
  if (!isObject(header)) throw new LlmError(`${source}: safetensors header must be a JSON object, got ${preview(header)}`);
  checkJsonStructure(text, source);

  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(raw)) throw new LlmError(`${source}: safetensors __metadata__ must be an object of strings, got ${preview(raw)}`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw new LlmError(`${source}: safetensors __metadata__ "${short(k)}" must be a string, got ${preview(v)}`);
        setKey(metadata, k, v);
      }
      continue;
    }
    entries.push(parseEntry(name, raw, dataLen, source));
  }
  checkCoverage(entries, dataLen, source);
  return { entries, metadata };
}

/** A name from a file, cut for a message. */
function short(name: string): string {
  return name.length > 100 ? `${name.slice(0, 100)}...` : name;
}

/**
 * The data of the tensors, sorted by offsets, must be contiguous from 0 to dataLen (the
 * safetensors crate's InvalidOffset and MetadataIncompleteBuffer): overlapping tensors would
 * alias each other's memory, and gaps or trailing bytes mean a corrupt or doctored file.
 */
function checkCoverage(entries: HeaderEntry[], dataLen: number, source: string): void {
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: HeaderEntry | null = null;
  for (const e of sorted) {
    if (e.begin < pos) {
      throw new LlmError(`${source}: tensor "${short(e.name)}" data_offsets [${e.begin}, ${e.end}] overlap tensor "${short(prev!.name)}" [${prev!.begin}, ${prev!.end}] (corrupt safetensors file)`);
    }
    if (e.begin > pos) {
      throw new LlmError(`${source}: bytes [${pos}, ${e.begin}) of the data buffer belong to no tensor (before tensor "${short(e.name)}"); safetensors data must be contiguous (corrupt file)`);
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== dataLen) {
    throw new LlmError(`${source}: the data buffer has ${dataLen - pos} bytes after the last tensor (the tensors cover ${pos} of ${dataLen}); safetensors data must end with the last tensor (corrupt file or trailing data)`);
  }
}

/** Duplicate keys and nesting deeper than MAX_HEADER_DEPTH, as LlmErrors in safetensors terms. */
function checkJsonStructure(text: string, source: string): void {
  const problem = scanJson(text, MAX_HEADER_DEPTH);
  if (problem?.kind === 'duplicate') {
    throw new LlmError(`${source}: safetensors header has the key "${short(problem.key)}" twice (a duplicate tensor name or metadata key; the file is corrupt or doctored)`);
  }
  if (problem?.kind === 'depth') {
    throw new LlmError(`${source}: safetensors header nests values more than ${MAX_HEADER_DEPTH} deep (a valid one nests 3); the file is corrupt or hostile`);
  }
}

function parseEntry(name: string, raw: unknown, dataLen: number, source: string): HeaderEntry {
  const what = `${source}: tensor "${short(name)}"`;
  if (!isObject(raw)) throw new LlmError(`${what}: header entry must be an object with dtype, shape and data_offsets, got ${preview(raw)}`);
  const dtype = raw.dtype;
  if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_SIZE, dtype)) {
    throw new LlmError(`${what}: unsupported dtype ${preview(dtype)} (supported: ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')})`);
  }
  const dt = dtype as SafetensorsDtype;
  const size = SAFETENSORS_DTYPE_SIZE[dt];
  const count = checkShape(raw.shape);
  if (count === null) throw new LlmError(`${what}: shape ${preview(raw.shape)} must be an array of non-negative integers`);
  const offs = raw.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1]) {
    throw new LlmError(`${what}: data_offsets ${preview(offs)} must be [begin, end] with 0 <= begin <= end`);
  }
  const [begin, end] = offs as [number, number];
  if (end > dataLen) {
    throw new LlmError(`${what}: data_offsets [${begin}, ${end}] run past the ${dataLen}-byte data buffer (file truncated or corrupt)`);
  }
  if (count * size !== end - begin) {
    const need = Number.isSafeInteger(count * size) ? String(count * size) : `more than ${dataLen}`;
    throw new LlmError(`${what}: shape ${preview(raw.shape)} of ${dt} needs ${need} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  }
  return { name, dtype: dt, shape: (raw.shape as number[]).slice(), begin, end };
}

/**
 * Number of elements of a valid shape, or null if it is not an array of
 * non-negative integers. Huge shapes give huge (possibly inexact or infinite)
 * counts, never small ones, so size checks against them stay sound.
 */
function checkShape(shape: unknown): number | null {
  if (!Array.isArray(shape)) return null;
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return null;
  if (shape.includes(0)) return 0;
  return shape.reduce((a: number, d: number) => a * d, 1);
}

/** The tensor over `bytes` (which must be aligned to the dtype size); F16/BF16 are converted. */
function decode(e: HeaderEntry, bytes: Uint8Array): LoadedTensor {
  const shape = e.shape;
  const buf = bytes.buffer as ArrayBuffer;
  const at = bytes.byteOffset;
  const count = bytes.byteLength / SAFETENSORS_DTYPE_SIZE[e.dtype];
  switch (e.dtype) {
    case 'F32':
      return { dtype: 'F32', shape, data: new Float32Array(buf, at, count) };
    case 'F16':
      return { dtype: 'F16', shape, data: decodeF16(new Uint16Array(buf, at, count)) };
    case 'BF16':
      return { dtype: 'BF16', shape, data: decodeBf16(new Uint16Array(buf, at, count)) };
    case 'I32':
      return { dtype: 'I32', shape, data: new Int32Array(buf, at, count) };
    case 'I64':
      return { dtype: 'I64', shape, data: new BigInt64Array(buf, at, count) };
    case 'U8':
      return { dtype: 'U8', shape, data: new Uint8Array(buf, at, count) };
    case 'U16':
      return { dtype: 'U16', shape, data: new Uint16Array(buf, at, count) };
  }
}

/** obj[key] = value, safe even for the key "__proto__". */
function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
