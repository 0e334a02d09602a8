/**
 * GGUF reader (llama.cpp's model/vocabulary container, versions 2 and 3).
 *
 * Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count; then metadata
 * key/value pairs (key: u64 length + UTF-8; value: u32 type + payload; arrays are u32 element
 * type + u64 count + elements); then tensor infos (name, u32 n_dims, u64 dims, u32 ggml type,
 * u64 offset into the data section); the data section starts at the next multiple of
 * `general.alignment` (default 32). All little-endian.
 *
 *   const g = readGguf('ggml-vocab-gpt-2.gguf');
 *   g.metadata.get('tokenizer.ggml.model')   // 'gpt2'
 *   g.tensors                                // [{ name, dims, type, offset }]
 *
 * Only the header is read (through a growing buffer over the file descriptor), so opening a
 * large model costs no more than its metadata. Every count, length and offset is checked
 * against the file size before anything is allocated; a malformed file is a one-line LlmError.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { LlmError } from '../util/errors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

export type GgufValue =
  | number | bigint | boolean | string
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array
  | BigUint64Array | BigInt64Array | Float64Array | boolean[] | string[] | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (row length) */
  dims: number[];
  /** ggml tensor type (0 = F32, 1 = F16, 2 = Q4_0, 8 = Q8_0, ...) */
  type: number;
  /** byte offset from the start of the data section */
  offset: number;
}

export interface Gguf {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** absolute byte offset of the data section */
  dataOffset: number;
  fileSize: number;
}

const MAX_STRING = 1 << 24;

/** Reads little-endian values from a file, pulling more bytes on demand. */
class HeaderReader {
  private buf: Buffer = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly fd: number, readonly size: number, private readonly path: string) {}

  fail(what: string): never {
    throw new LlmError(`${this.path}: malformed GGUF file: ${what} (at byte ${this.pos})`);
  }

  private ensure(n: number): void {
    if (this.pos + n > this.size) this.fail(`needs ${n} more bytes but the file ends (${this.size} bytes; truncated?)`);
    const end = this.bufStart + this.buf.length;
    if (this.pos >= this.bufStart && this.pos + n <= end) return;
    const want = Math.min(this.size - this.pos, Math.max(n, 1 << 20, this.buf.length * 2));
    const next = Buffer.alloc(want);
    readSync(this.fd, next, 0, want, this.pos);
    this.buf = next;
    this.bufStart = this.pos;
  }

  private at(n: number): number {
    this.ensure(n);
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  u8(): number {
    const o = this.at(1); // position first: at() may replace the buffer
    return this.buf.readUInt8(o);
  }
  i8(): number {
    const o = this.at(1); // position first: at() may replace the buffer
    return this.buf.readInt8(o);
  }
  u16(): number {
    const o = this.at(2); // position first: at() may replace the buffer
    return this.buf.readUInt16LE(o);
  }
  i16(): number {
    const o = this.at(2); // position first: at() may replace the buffer
    return this.buf.readInt16LE(o);
  }
  u32(): number {
    const o = this.at(4); // position first: at() may replace the buffer
    return this.buf.readUInt32LE(o);
  }
  i32(): number {
    const o = this.at(4); // position first: at() may replace the buffer
    return this.buf.readInt32LE(o);
  }
  f32(): number {
    const o = this.at(4); // position first: at() may replace the buffer
    return this.buf.readFloatLE(o);
  }
  f64(): number {
    const o = this.at(8); // position first: at() may replace the buffer
    return this.buf.readDoubleLE(o);
  }
  u64big(): bigint {
    const o = this.at(8); // position first: at() may replace the buffer
    return this.buf.readBigUInt64LE(o);
  }
  i64big(): bigint {
    const o = this.at(8); // position first: at() may replace the buffer
    return this.buf.readBigInt64LE(o);
  }

  /** A u64 that must be a count or offset within the file. */
  u64(what: string, max = this.size): number {
    const v = this.u64big();
    if (v > BigInt(Math.floor(max))) this.fail(`${what} ${v} is larger than possible (max ${max})`);
    return Number(v);
  }

  string(what: string): string {
    const n = this.u64(`length of ${what}`, Math.min(MAX_STRING, this.size));
    const o = this.at(n);
    return this.buf.toString('utf8', o, o + n);
  }

  bytes(n: number): Buffer {
    const o = this.at(n);
    return this.buf.subarray(o, o + n);
  }
}

export function readGguf(path: string): Gguf {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new LlmError(`cannot open GGUF file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return parse(new HeaderReader(fd, fstatSync(fd).size, path), path);
  } finally {
    closeSync(fd);
  }
}

function parse(r: HeaderReader, path: string): Gguf {
  if (r.size < 24) r.fail(`file is only ${r.size} bytes`);
  const magic = r.u32();
  if (magic !== GGUF_MAGIC) {
    throw new LlmError(`${path} is not a GGUF file (magic 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF")`);
  }
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new LlmError(`${path}: GGUF version ${version} is not supported (2 and 3 are)`);
  // every tensor info and key/value takes at least 8 bytes, which bounds the counts
  const tensorCount = r.u64('tensor count', r.size / 8);
  const kvCount = r.u64('metadata count', r.size / 8);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string('metadata key');
    const type = r.u32();
    metadata.set(key, readValue(r, type, key));
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string('tensor name');
    const nDims = r.u32();
    if (nDims < 1 || nDims > 8) r.fail(`tensor '${name}' has ${nDims} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.u64(`dimension ${d} of tensor '${name}'`, 2 ** 40));
    const type = r.u32();
    const offset = r.u64(`offset of tensor '${name}'`);
    tensors.push({ name, dims, type, offset });
  }
  const alignValue = metadata.get('general.alignment');
  const alignment = typeof alignValue === 'number' ? alignValue : 32;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 1 << 16 || (alignment & (alignment - 1)) !== 0) {
    r.fail(`general.alignment ${String(alignValue)} is not a power of two`);
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > r.size) r.fail('the data section starts beyond the end of the file');
  return { path, version, metadata, tensors, alignment, dataOffset, fileSize: r.size };
}

function readValue(r: HeaderReader, type: number, key: string): GgufValue {
  switch (type) {
    case GgufType.UINT8: return r.u8();
    case GgufType.INT8: return r.i8();
    case GgufType.UINT16: return r.u16();
    case GgufType.INT16: return r.i16();
    case GgufType.UINT32: return r.u32();
    case GgufType.INT32: return r.i32();
    case GgufType.FLOAT32: return r.f32();
    case GgufType.FLOAT64: return r.f64();
    case GgufType.BOOL: return r.u8() !== 0;
    case GgufType.STRING: return r.string(`value of ${key}`);
    case GgufType.UINT64: return safeNumber(r.u64big());
    case GgufType.INT64: return safeNumber(r.i64big());
    case GgufType.ARRAY: return readArray(r, key);
    default: return r.fail(`metadata '${key}' has unknown value type ${type}`);
  }
}

const FIXED_SIZE: Partial<Record<GgufType, number>> = {
  [GgufType.UINT8]: 1, [GgufType.INT8]: 1, [GgufType.UINT16]: 2, [GgufType.INT16]: 2, [GgufType.UINT32]: 4,
  [GgufType.INT32]: 4, [GgufType.FLOAT32]: 4, [GgufType.BOOL]: 1, [GgufType.UINT64]: 8, [GgufType.INT64]: 8,
  [GgufType.FLOAT64]: 8,
};

/** Arrays of arrays deeper than this are rejected (real files nest at most once). */
const MAX_ARRAY_DEPTH = 16;

function readArray(r: HeaderReader, key: string, depth = 0): GgufValue {
  if (depth > MAX_ARRAY_DEPTH) r.fail(`array '${key}' is nested more than ${MAX_ARRAY_DEPTH} levels deep`);
  const elemType = r.u32();
  const elemSize = FIXED_SIZE[elemType as GgufType];
  // strings take at least 8 bytes each (their length), fixed types their size
  const count = r.u64(`element count of ${key}`, Math.floor(r.size / (elemSize ?? 8)));
  if (elemSize !== undefined) {
    const raw = r.bytes(count * elemSize);
    const copy = new Uint8Array(raw); // aligned copy
    const buf = copy.buffer;
    switch (elemType) {
      case GgufType.UINT8: return copy;
      case GgufType.INT8: return new Int8Array(buf);
      case GgufType.UINT16: return new Uint16Array(buf);
      case GgufType.INT16: return new Int16Array(buf);
      case GgufType.UINT32: return new Uint32Array(buf);
      case GgufType.INT32: return new Int32Array(buf);
      case GgufType.FLOAT32: return new Float32Array(buf);
      case GgufType.FLOAT64: return new Float64Array(buf);
      case GgufType.UINT64: return new BigUint64Array(buf);
      case GgufType.INT64: return new BigInt64Array(buf);
      case GgufType.BOOL: return Array.from(copy, (b) => b !== 0);
    }
  }
  if (elemType === GgufType.STRING) {
    const out: string[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = r.string(`element ${i} of ${key}`);
    return out;
  }
  if (elemType === GgufType.ARRAY) {
    const out: GgufValue[] = [];
    for (let i = 0; i < count; i++) out.push(readArray(r, `${key}[${i}]`, depth + 1));
    return out;
  }
  return r.fail(`array '${key}' has unknown element type ${elemType}`);
}

function safeNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Typed accessors with clear errors. */
export function ggufString(g: Gguf, key: string): string {
  const v = g.metadata.get(key);
  if (typeof v !== 'string') throw new LlmError(`${g.path}: GGUF metadata '${key}' is missing or not a string`);
  return v;
}

export function ggufStringArray(g: Gguf, key: string): string[] {
  const v = g.metadata.get(key);
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
    throw new LlmError(`${g.path}: GGUF metadata '${key}' is missing or not an array of strings`);
  }
  return v as string[];
}

export function ggufOptionalNumber(g: Gguf, key: string): number | undefined {
  const v = g.metadata.get(key);
  return typeof v === 'number' ? v : undefined;
}
