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
 * Only the header is read (through a 1 MiB window over the file descriptor), so opening a
 * large model costs no more than its metadata. Every count, length and offset is checked
 * against the file size before anything is allocated; a malformed file is a one-line LlmError.
 *
 * Metadata arrays. Only the tokenizer arrays llm.ts uses are read: tokenizer.ggml.tokens and
 * tokenizer.ggml.merges as string[] (at most MAX_STRING_ARRAY strings), tokenizer.ggml.scores and
 * tokenizer.ggml.token_type as typed arrays (any numeric element type but BOOL). Every other array,
 * and one of those keys with another element type, stays in the file: its value is a
 * GgufArrayRef (element type, length, place), which readGgufArray() reads on request. Skipping an
 * array allocates nothing: it reads the lengths of a string array's strings and the headers of
 * nested arrays, and arrays nest at most MAX_ARRAY_DEPTH levels. There are at most
 * MAX_METADATA entries and MAX_TENSORS tensors, so the header's cost is bounded by the file size
 * and those limits (llama.cpp itself rejects nested arrays).
 *
 * Layout checks, as llama.cpp's gguf reader makes them: no metadata key and no tensor name twice;
 * general.alignment, when present, is a UINT32 power of two; a tensor has 1 to 4 dims and rows
 * of a whole number of blocks of its type; every tensor's offset is a multiple of the
 * alignment; and for every type whose block size is known (GGML_TYPES) the tensor's data lies
 * within the file and overlaps no other tensor's.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { LlmError } from '../util/errors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

const TYPE_NAMES = ['UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64'];

/** 'UINT32', 'STRING', ... or 'type N'. */
export function ggufTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

export type GgufTypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array
  | BigUint64Array | BigInt64Array | Float64Array;

/** A metadata array left in the file (see the file comment); readGgufArray reads it. */
export class GgufArrayRef {
  constructor(
    readonly elementType: GgufType,
    readonly length: number,
    /** absolute byte offset of the first element */
    readonly offset: number,
    /** bytes its elements take in the file */
    readonly byteLength: number,
  ) {}

  toString(): string {
    return `array of ${this.length} ${ggufTypeName(this.elementType)}`;
  }
}

export type GgufValue = number | bigint | boolean | string | GgufTypedArray | string[] | GgufArrayRef;

/** An array as readGgufArray returns it: BOOL elements as a Uint8Array of 0/1, nested arrays as JS arrays. */
export type GgufArrayValue = GgufTypedArray | string[] | GgufArrayValue[];

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

/**
 * ggml tensor types: name, weights per block and bytes per block (ggml's type traits). Types
 * that ggml removed (4, 5, 31-33, 36-38) and newer ones are absent: their size is unknown here.
 */
export const GGML_TYPES: ReadonlyMap<number, { name: string; blockSize: number; blockBytes: number }> = new Map(
  ([
    [0, 'F32', 1, 4], [1, 'F16', 1, 2], [2, 'Q4_0', 32, 18], [3, 'Q4_1', 32, 20], [6, 'Q5_0', 32, 22], [7, 'Q5_1', 32, 24],
    [8, 'Q8_0', 32, 34], [9, 'Q8_1', 32, 36], [10, 'Q2_K', 256, 84], [11, 'Q3_K', 256, 110], [12, 'Q4_K', 256, 144],
    [13, 'Q5_K', 256, 176], [14, 'Q6_K', 256, 210], [15, 'Q8_K', 256, 292], [16, 'IQ2_XXS', 256, 66], [17, 'IQ2_XS', 256, 74],
    [18, 'IQ3_XXS', 256, 98], [19, 'IQ1_S', 256, 50], [20, 'IQ4_NL', 32, 18], [21, 'IQ3_S', 256, 110], [22, 'IQ2_S', 256, 82],
    [23, 'IQ4_XS', 256, 136], [24, 'I8', 1, 1], [25, 'I16', 1, 2], [26, 'I32', 1, 4], [27, 'I64', 1, 8], [28, 'F64', 1, 8],
    [29, 'IQ1_M', 256, 56], [30, 'BF16', 1, 2], [34, 'TQ1_0', 256, 54], [35, 'TQ2_0', 256, 66], [39, 'MXFP4', 32, 17],
  ] as const).map(([t, name, blockSize, blockBytes]) => [t, { name, blockSize, blockBytes }]),
);

/** 'F32', 'Q4_K', 'I32', ... or 'type N' for a type we do not know. */
export function ggmlTypeLabel(type: number): string {
  return GGML_TYPES.get(type)?.name ?? `type ${type}`;
}

/** Bytes of a tensor's data, or undefined when its type's block size is unknown. */
export function ggufTensorBytes(t: Pick<GgufTensorInfo, 'dims' | 'type'>): number | undefined {
  const info = GGML_TYPES.get(t.type);
  if (!info) return undefined;
  const n = t.dims.reduce((a, b) => a * b, 1);
  return (n / info.blockSize) * info.blockBytes;
}

const MAX_STRING = 1 << 24;
/** Strings in one materialised string array (tokens, merges, or readGgufArray); real vocabularies have < 300,000. */
export const MAX_STRING_ARRAY = 1 << 22;
/** Arrays inside one array that readGgufArray makes (each is an object of its own). */
export const MAX_NESTED_ARRAYS = 1 << 16;
/** Levels of arrays in arrays (llama.cpp reads none; Python's gguf writes them). */
export const MAX_ARRAY_DEPTH = 3;
export const MAX_METADATA = 1 << 16;
export const MAX_TENSORS = 1 << 20;
/** ggml's GGML_MAX_DIMS */
const MAX_DIMS = 4;
const WINDOW = 1 << 20;

/** The metadata arrays read by readGguf: the tokenizer's, when they have the element type we use. */
const READ_ARRAYS = new Map<string, 'strings' | 'numbers'>([
  ['tokenizer.ggml.tokens', 'strings'], ['tokenizer.ggml.merges', 'strings'],
  ['tokenizer.ggml.scores', 'numbers'], ['tokenizer.ggml.token_type', 'numbers'],
]);

/** Bytes of one element of a fixed-size metadata type (by GgufType), 0 for STRING, ARRAY and unknown types. */
const SIZES = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
const fixedSize = (type: number): number => SIZES[type] ?? 0;

/** What a value is, for an error message; a function when making the text costs (hot loops). */
type Label = string | (() => string);
const label = (what: Label): string => (typeof what === 'string' ? what : what());

/** Reads little-endian values from a file through a window of WINDOW bytes (or one value's size). */
class HeaderReader {
  private mem: Buffer = Buffer.alloc(0);
  private buf: Buffer = this.mem;
  private view: DataView = new DataView(new ArrayBuffer(0));
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
    const want = Math.min(this.size - this.pos, Math.max(n, WINDOW));
    // the window's memory is reused: nothing keeps a view into it (values are copied out)
    if (this.mem.length < want) this.mem = Buffer.allocUnsafe(want);
    const next = this.mem.subarray(0, want);
    readFully(this.fd, next, this.pos, this.path);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.length);
    this.bufStart = this.pos;
  }

  private at(n: number): number {
    this.ensure(n);
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  skip(n: number): void {
    if (this.pos + n > this.size) this.fail(`needs ${n} more bytes but the file ends (${this.size} bytes; truncated?)`);
    this.pos += n;
  }

  u8(): number {
    const o = this.at(1); // position first: at() may replace the buffer
    return this.buf.readUInt8(o);
  }
  i8(): number {
    const o = this.at(1);
    return this.buf.readInt8(o);
  }
  u16(): number {
    const o = this.at(2);
    return this.buf.readUInt16LE(o);
  }
  i16(): number {
    const o = this.at(2);
    return this.buf.readInt16LE(o);
  }
  u32(): number {
    const o = this.at(4);
    return this.view.getUint32(o, true);
  }
  i32(): number {
    const o = this.at(4);
    return this.buf.readInt32LE(o);
  }
  f32(): number {
    const o = this.at(4);
    return this.buf.readFloatLE(o);
  }
  f64(): number {
    const o = this.at(8);
    return this.buf.readDoubleLE(o);
  }
  u64big(): bigint {
    const o = this.at(8);
    return this.buf.readBigUInt64LE(o);
  }
  i64big(): bigint {
    const o = this.at(8);
    return this.buf.readBigInt64LE(o);
  }

  /** A u64 that must be a count or offset within the file (at most `max`); `what` names it in the error. */
  u64(what: Label, max = this.size): number {
    const o = this.at(8);
    const lo = this.buf.readUInt32LE(o);
    const hi = this.buf.readUInt32LE(o + 4);
    const v = hi * 2 ** 32 + lo; // exact below 2^53; above, certainly larger than max
    if (v > Math.floor(max)) this.fail(`${label(what)} ${hi < 2 ** 21 ? v : this.buf.readBigUInt64LE(o)} is larger than possible (max ${Math.floor(max)})`);
    return v;
  }

  /** A u64 as a number, unchecked (inexact above 2^53, which no count in a file reaches). */
  u64raw(): number {
    const o = this.at(8);
    return this.view.getUint32(o + 4, true) * 2 ** 32 + this.view.getUint32(o, true);
  }

  string(what: Label): string {
    const n = this.u64(() => `length of ${label(what)}`, Math.min(MAX_STRING, this.size));
    const o = this.at(n);
    return this.buf.toString('utf8', o, o + n);
  }

  /** The next n bytes as a fresh, 8-byte-aligned array (read straight from the file when large). */
  copy(n: number): Uint8Array {
    if (n <= WINDOW) {
      const o = this.at(n);
      return new Uint8Array(this.buf.subarray(o, o + n)); // a copy
    }
    if (this.pos + n > this.size) this.fail(`needs ${n} more bytes but the file ends (${this.size} bytes; truncated?)`);
    const out = new Uint8Array(n);
    readFully(this.fd, out, this.pos, this.path);
    this.pos += n;
    return out;
  }
}

function readFully(fd: number, into: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < into.length) {
    let got: number;
    try {
      got = readSync(fd, into, done, into.length - done, position + done);
    } catch (err) {
      throw new LlmError(`cannot read GGUF file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (got === 0) throw new LlmError(`${path}: the GGUF file ended while being read (${into.length - done} bytes missing at byte ${position + done}; was it truncated meanwhile?)`);
    done += got;
  }
}

function openGguf<T>(path: string, use: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    // a FIFO would block open() forever and a directory fails reads: only regular files are opened
    const st = statSync(path);
    if (!st.isFile()) {
      const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO (named pipe)' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw new LlmError(`${path} is ${kind}, not a GGUF file`);
    }
    fd = openSync(path, 'r');
  } catch (err) {
    if (err instanceof LlmError) throw err;
    throw new LlmError(`cannot open GGUF file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return use(fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

export function readGguf(path: string): Gguf {
  return openGguf(path, (fd, size) => parse(new HeaderReader(fd, size, path), path));
}

function parse(r: HeaderReader, path: string): Gguf {
  if (r.size < 24) r.fail(`file is only ${r.size} bytes`);
  const magic = r.u32();
  if (magic !== GGUF_MAGIC) {
    throw new LlmError(`${path} is not a GGUF file (magic 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF")`);
  }
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new LlmError(`${path}: GGUF version ${version} is not supported (2 and 3 are)`);
  // a tensor info takes at least 32 bytes, a key/value 13, which bounds the counts by the file size
  const tensorCount = r.u64('tensor count', Math.min(r.size / 32, MAX_TENSORS));
  const kvCount = r.u64('metadata count', Math.min(r.size / 13, MAX_METADATA));
  const metadata = new Map<string, GgufValue>();
  let alignValue: number | undefined;
  for (let i = 0; i < kvCount; i++) {
    const key = r.string('metadata key');
    if (metadata.has(key)) r.fail(`metadata key '${key}' appears twice`);
    const type = r.u32();
    if (key === 'general.alignment' && type !== GgufType.UINT32) r.fail(`general.alignment must be a UINT32, not a ${ggufTypeName(type)}`);
    const value = readValue(r, type, key);
    if (key === 'general.alignment') alignValue = value as number;
    metadata.set(key, value);
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string('tensor name');
    if (names.has(name)) r.fail(`tensor '${name}' is listed twice`);
    names.add(name);
    const nDims = r.u32();
    if (nDims < 1 || nDims > MAX_DIMS) r.fail(`tensor '${name}' has ${nDims} dimensions (1 to ${MAX_DIMS} are possible)`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.u64(`dimension ${d} of tensor '${name}'`, 2 ** 40));
    const type = r.u32();
    const blockSize = GGML_TYPES.get(type)?.blockSize ?? 1;
    if (dims[0] % blockSize !== 0) {
      r.fail(`tensor '${name}' of type ${ggmlTypeLabel(type)} has rows of ${dims[0]} elements, not a multiple of its block size ${blockSize}`);
    }
    const offset = r.u64(`offset of tensor '${name}'`);
    tensors.push({ name, dims, type, offset });
  }
  const alignment = alignValue ?? 32;
  if (alignment === 0 || (alignment & (alignment - 1)) !== 0) r.fail(`general.alignment ${alignment} is not a power of two`);
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > r.size) r.fail('the data section starts beyond the end of the file');
  checkTensorData(path, tensors, alignment, dataOffset, r.size);
  return { path, version, metadata, tensors, alignment, dataOffset, fileSize: r.size };
}

/** Offsets aligned, data within the file, no two tensors' data overlapping. */
function checkTensorData(path: string, tensors: GgufTensorInfo[], alignment: number, dataOffset: number, fileSize: number): void {
  const bad = (what: string): never => {
    throw new LlmError(`${path}: malformed GGUF file: ${what}`);
  };
  const spans: { t: GgufTensorInfo; size: number | undefined }[] = [];
  for (const t of tensors) {
    if (t.offset % alignment !== 0) bad(`tensor '${t.name}' has offset ${t.offset}, not a multiple of the alignment ${alignment}`);
    const size = ggufTensorBytes(t);
    if (size !== undefined && dataOffset + t.offset + size > fileSize) {
      bad(`tensor '${t.name}' (${size} bytes at offset ${t.offset}) extends past the end of the file (truncated?)`);
    }
    spans.push({ t, size });
  }
  spans.sort((a, b) => a.t.offset - b.t.offset);
  // sorted by offset, a tensor overlaps an earlier one iff it starts before the furthest end so far;
  // a tensor of unknown size takes at least its first byte, an empty one nothing
  let last: (typeof spans)[number] | undefined;
  let end = 0;
  for (const s of spans) {
    const size = s.size ?? 1;
    if (size === 0) continue;
    if (last && s.t.offset < end) {
      bad(`the data of tensors '${last.t.name}' (offset ${last.t.offset}${last.size === undefined ? '' : `, ${last.size} bytes`}) and '${s.t.name}' (offset ${s.t.offset}) overlap`);
    }
    if (s.t.offset + size > end) {
      end = s.t.offset + size;
      last = s;
    }
  }
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
    case GgufType.ARRAY: return readMetadataArray(r, key);
    default: return r.fail(`metadata '${key}' has unknown value type ${type}`);
  }
}

/** An array's element type and count, the count checked against what the rest of the file can hold. */
function arrayHeader(r: HeaderReader, key: string): { elemType: number; count: number } {
  const elemType = r.u32();
  return { elemType, count: arrayCount(r, key, elemType) };
}

function arrayCount(r: HeaderReader, key: string, elemType: number): number {
  // fixed types take their size per element, strings at least 8 bytes (their length), arrays 12
  const min = elemType === GgufType.STRING ? 8 : elemType === GgufType.ARRAY ? 12 : fixedSize(elemType);
  if (min === 0) r.fail(`array '${key}' has unknown element type ${elemType}`);
  const count = r.u64raw();
  if (count > Math.floor((r.size - r.pos) / min)) {
    r.pos -= 8;
    r.u64(`element count of ${key}`, Math.floor((r.size - r.pos - 8) / min)); // fails with the message
  }
  return count;
}

function readMetadataArray(r: HeaderReader, key: string): GgufValue {
  const { elemType, count } = arrayHeader(r, key);
  const start = r.pos;
  const use = READ_ARRAYS.get(key);
  if (use === 'strings' && elemType === GgufType.STRING && count <= MAX_STRING_ARRAY) return readStrings(r, key, count);
  if (use === 'numbers' && fixedSize(elemType) > 0 && elemType !== GgufType.BOOL) return readNumbers(r, elemType, count);
  skipArrayBody(r, key, elemType, count, 1);
  return new GgufArrayRef(elemType, count, start, r.pos - start);
}

function readStrings(r: HeaderReader, key: string, count: number): string[] {
  const out: string[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = r.string(() => `element ${i} of ${key}`);
  return out;
}

function readNumbers(r: HeaderReader, elemType: number, count: number): GgufTypedArray {
  const bytes = r.copy(count * fixedSize(elemType));
  const buf = bytes.buffer;
  switch (elemType) {
    case GgufType.INT8: return new Int8Array(buf);
    case GgufType.UINT16: return new Uint16Array(buf);
    case GgufType.INT16: return new Int16Array(buf);
    case GgufType.UINT32: return new Uint32Array(buf);
    case GgufType.INT32: return new Int32Array(buf);
    case GgufType.FLOAT32: return new Float32Array(buf);
    case GgufType.FLOAT64: return new Float64Array(buf);
    case GgufType.UINT64: return new BigUint64Array(buf);
    case GgufType.INT64: return new BigInt64Array(buf);
    default: return bytes; // UINT8, BOOL (0/1)
  }
}

/** Move past an array's elements without keeping them; `depth` is the array's nesting level (1 = a value). */
function skipArrayBody(r: HeaderReader, key: string, elemType: number, count: number, depth: number): void {
  const fixed = fixedSize(elemType);
  if (fixed > 0) return r.skip(count * fixed);
  if (elemType === GgufType.STRING) {
    for (let i = 0; i < count; i++) {
      const n = r.u64raw();
      if (n > MAX_STRING) {
        r.pos -= 8;
        r.u64(`length of element ${i} of ${key}`, MAX_STRING); // fails with the message
      }
      r.skip(n);
    }
    return;
  }
  if (depth >= MAX_ARRAY_DEPTH) r.fail(`array '${key}' nests arrays more than ${MAX_ARRAY_DEPTH} levels deep`);
  for (let i = 0; i < count; i++) {
    const innerType = r.u32();
    skipArrayBody(r, key, innerType, arrayCount(r, key, innerType), depth + 1);
  }
}

/**
 * Read a metadata array: one readGguf left in the file (a GgufArrayRef) is read from g.path now;
 * one it read is returned as it is. At most MAX_STRING_ARRAY strings and MAX_NESTED_ARRAYS arrays
 * inside it are made.
 */
export function readGgufArray(g: Gguf, key: string): GgufArrayValue {
  const v = g.metadata.get(key);
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return v as GgufArrayValue;
  if (!(v instanceof GgufArrayRef)) throw new LlmError(`${g.path}: GGUF metadata '${key}' is ${v === undefined ? 'missing' : `not an array (${describeGgufValue(v)})`}`);
  return openGguf(g.path, (fd, size) => {
    if (size !== g.fileSize) throw new LlmError(`${g.path}: the GGUF file changed since it was opened`);
    const r = new HeaderReader(fd, size, g.path);
    r.pos = v.offset;
    return readArrayBody(r, key, v.elementType, v.length, 1, { strings: MAX_STRING_ARRAY, arrays: MAX_NESTED_ARRAYS });
  });
}

function readArrayBody(r: HeaderReader, key: string, elemType: number, count: number, depth: number, budget: { strings: number; arrays: number }): GgufArrayValue {
  if (fixedSize(elemType) > 0) return readNumbers(r, elemType, count);
  if (elemType === GgufType.STRING) {
    budget.strings -= count;
    if (budget.strings < 0) r.fail(`array '${key}' holds more than ${MAX_STRING_ARRAY} strings, more than llm.ts reads`);
    return readStrings(r, key, count);
  }
  if (elemType !== GgufType.ARRAY) r.fail(`array '${key}' has unknown element type ${elemType}`);
  budget.arrays -= count;
  if (budget.arrays < 0) r.fail(`array '${key}' holds more than ${MAX_NESTED_ARRAYS} arrays, more than llm.ts reads`);
  if (depth >= MAX_ARRAY_DEPTH) r.fail(`array '${key}' nests arrays more than ${MAX_ARRAY_DEPTH} levels deep`);
  const out: GgufArrayValue[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const inner = arrayHeader(r, key);
    out[i] = readArrayBody(r, key, inner.elemType, inner.count, depth + 1, budget);
  }
  return out;
}

function safeNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** A short description of a metadata value for error messages: 'a string', 'an array of 3 BOOL', ... */
export function describeGgufValue(v: GgufValue | undefined): string {
  if (v === undefined) return 'missing';
  if (v instanceof GgufArrayRef) return `an ${String(v)}`;
  if (Array.isArray(v)) return `an array of ${v.length} strings`;
  if (ArrayBuffer.isView(v)) return `an array of ${v.length} ${v.constructor.name.replace(/Array$/, '').toLowerCase()}`;
  return `a ${typeof v} (${String(v).slice(0, 40)})`;
}

/** Typed accessors with clear errors. */
export function ggufString(g: Gguf, key: string): string {
  const v = g.metadata.get(key);
  if (typeof v !== 'string') throw new LlmError(`${g.path}: GGUF metadata '${key}' is missing or not a string`);
  return v;
}

export function ggufStringArray(g: Gguf, key: string): string[] {
  const v = g.metadata.get(key);
  if (Array.isArray(v)) return v;
  if (v instanceof GgufArrayRef && v.elementType === GgufType.STRING) {
    throw new LlmError(`${g.path}: GGUF metadata '${key}' holds ${v.length} strings, more than llm.ts reads (${MAX_STRING_ARRAY})`);
  }
  throw new LlmError(`${g.path}: GGUF metadata '${key}' must be an array of strings; it is ${describeGgufValue(v)}`);
}

export function ggufOptionalNumber(g: Gguf, key: string): number | undefined {
  const v = g.metadata.get(key);
  return typeof v === 'number' ? v : undefined;
}
