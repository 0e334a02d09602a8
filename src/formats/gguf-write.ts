/**
 * GGUF version 3 writer (the inverse of gguf.ts's reader).
 *
 *   writeGguf('model.gguf', {
 *     metadata: [['general.architecture', ggufMeta.string('llama')], ['llama.block_count', ggufMeta.u32(2)],
 *                ['tokenizer.ggml.tokens', ggufMeta.strings(['<s>', 'a'])]],
 *     tensors: [{ name: 'token_embd.weight', dims: [64, 2], type: GgmlType.F32, data: () => bytesOfIt }],
 *   });
 *
 * Layout written: magic, version 3, tensor count, metadata count, metadata, tensor infos (dims in
 * ggml order, type, offset relative to the data section), zero padding to `alignment` (32 unless
 * given; written as general.alignment when not 32), then each tensor's bytes, each starting at a
 * multiple of the alignment. Numbers in metadata carry their GGUF type explicitly (llama.cpp checks
 * e.g. that rms epsilon is a float32), hence the ggufMeta helpers.
 *
 * The file is written atomically (temp file in the same directory + fsync + rename) and the
 * tensor data is streamed: each tensor's `data()` is called only when its turn comes, so a model
 * is never concatenated in memory.
 */
import { writeFileAtomicWith } from '../util/atomic-write.js';
import { LlmError } from '../util/errors.js';
import { GGUF_MAGIC, GgufType } from './gguf.js';
import { ggmlTensorBytes, ggmlTypeName, type GgmlType } from './quant.js';

type Scalar = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64' | 'u64' | 'i64' | 'bool' | 'string';

/** A metadata value with its GGUF type. */
export type GgufWriteValue =
  | { type: Exclude<Scalar, 'bool' | 'string'>; value: number | bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: Scalar; value: ArrayLike<number | bigint | boolean | string> }
  | { type: 'array'; of: 'array'; value: readonly GgufWriteValue[] };

export const ggufMeta = {
  u8: (v: number): GgufWriteValue => ({ type: 'u8', value: v }),
  i8: (v: number): GgufWriteValue => ({ type: 'i8', value: v }),
  u16: (v: number): GgufWriteValue => ({ type: 'u16', value: v }),
  i16: (v: number): GgufWriteValue => ({ type: 'i16', value: v }),
  u32: (v: number): GgufWriteValue => ({ type: 'u32', value: v }),
  i32: (v: number): GgufWriteValue => ({ type: 'i32', value: v }),
  f32: (v: number): GgufWriteValue => ({ type: 'f32', value: v }),
  f64: (v: number): GgufWriteValue => ({ type: 'f64', value: v }),
  u64: (v: number | bigint): GgufWriteValue => ({ type: 'u64', value: v }),
  i64: (v: number | bigint): GgufWriteValue => ({ type: 'i64', value: v }),
  bool: (v: boolean): GgufWriteValue => ({ type: 'bool', value: v }),
  string: (v: string): GgufWriteValue => ({ type: 'string', value: v }),
  strings: (v: readonly string[]): GgufWriteValue => ({ type: 'array', of: 'string', value: v }),
  f32s: (v: ArrayLike<number>): GgufWriteValue => ({ type: 'array', of: 'f32', value: v }),
  i32s: (v: ArrayLike<number>): GgufWriteValue => ({ type: 'array', of: 'i32', value: v }),
  array: (of: Scalar, v: ArrayLike<number | bigint | boolean | string>): GgufWriteValue => ({ type: 'array', of, value: v }),
  arrays: (v: readonly GgufWriteValue[]): GgufWriteValue => ({ type: 'array', of: 'array', value: v }),
};

export interface GgufTensorToWrite {
  name: string;
  /** ggml order: dims[0] is the row length (fastest varying) */
  dims: number[];
  type: GgmlType;
  /** The tensor's bytes, produced when written: one buffer or several parts in order. */
  data: () => Uint8Array | Iterable<Uint8Array>;
}

export interface GgufToWrite {
  metadata: ReadonlyArray<readonly [string, GgufWriteValue]>;
  tensors: readonly GgufTensorToWrite[];
  /** default 32 */
  alignment?: number;
}

const TYPE_CODE: Record<Scalar | 'array', GgufType> = {
  u8: GgufType.UINT8, i8: GgufType.INT8, u16: GgufType.UINT16, i16: GgufType.INT16, u32: GgufType.UINT32, i32: GgufType.INT32,
  f32: GgufType.FLOAT32, f64: GgufType.FLOAT64, u64: GgufType.UINT64, i64: GgufType.INT64, bool: GgufType.BOOL,
  string: GgufType.STRING, array: GgufType.ARRAY,
};

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  buf = Buffer.alloc(1 << 16);
  len = 0;
  private room(n: number): number {
    if (this.len + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const o = this.len;
    this.len += n;
    return o;
  }
  u8(v: number): void {
    const o = this.room(1); // first: room() may replace the buffer
    this.buf.writeUInt8(v, o);
  }
  i8(v: number): void {
    const o = this.room(1); // first: room() may replace the buffer
    this.buf.writeInt8(v, o);
  }
  u16(v: number): void {
    const o = this.room(2); // first: room() may replace the buffer
    this.buf.writeUInt16LE(v, o);
  }
  i16(v: number): void {
    const o = this.room(2); // first: room() may replace the buffer
    this.buf.writeInt16LE(v, o);
  }
  u32(v: number): void {
    const o = this.room(4); // first: room() may replace the buffer
    this.buf.writeUInt32LE(v, o);
  }
  i32(v: number): void {
    const o = this.room(4); // first: room() may replace the buffer
    this.buf.writeInt32LE(v, o);
  }
  f32(v: number): void {
    const o = this.room(4); // first: room() may replace the buffer
    this.buf.writeFloatLE(v, o);
  }
  f64(v: number): void {
    const o = this.room(8); // first: room() may replace the buffer
    this.buf.writeDoubleLE(v, o);
  }
  u64(v: number | bigint): void {
    const o = this.room(8); // first: room() may replace the buffer
    this.buf.writeBigUInt64LE(BigInt(v), o);
  }
  i64(v: number | bigint): void {
    const o = this.room(8); // first: room() may replace the buffer
    this.buf.writeBigInt64LE(BigInt(v), o);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    const o = this.room(bytes.length);
    bytes.copy(this.buf, o);
  }
  pad(alignment: number): void {
    const n = (alignment - (this.len % alignment)) % alignment;
    const o = this.room(n);
    this.buf.fill(0, o, this.len);
  }
}

function writeScalar(s: ByteSink, type: Scalar, v: number | bigint | boolean | string, key: string): void {
  const bad = (): never => {
    throw new LlmError(`GGUF metadata '${key}': value ${String(v)} does not fit type ${type}`);
  };
  if (type === 'string') {
    if (typeof v !== 'string') bad();
    s.string(v as string);
    return;
  }
  if (type === 'bool') {
    if (typeof v !== 'boolean') bad();
    s.u8(v ? 1 : 0);
    return;
  }
  if (typeof v !== 'number' && typeof v !== 'bigint') return bad();
  if (type === 'u64' || type === 'i64') {
    try {
      if (type === 'u64') s.u64(v);
      else s.i64(v);
    } catch {
      bad();
    }
    return;
  }
  const n = Number(v);
  if (type === 'f32') return s.f32(n);
  if (type === 'f64') return s.f64(n);
  const range: Record<string, [number, number]> = {
    u8: [0, 255], i8: [-128, 127], u16: [0, 65535], i16: [-32768, 32767], u32: [0, 2 ** 32 - 1], i32: [-(2 ** 31), 2 ** 31 - 1],
  };
  const [lo, hi] = range[type];
  if (!Number.isInteger(n) || n < lo || n > hi) bad();
  s[type](n);
}

function writeValue(s: ByteSink, v: GgufWriteValue, key: string): void {
  if (v.type !== 'array') {
    s.u32(TYPE_CODE[v.type]);
    writeScalar(s, v.type, v.value, key);
    return;
  }
  s.u32(GgufType.ARRAY);
  writeArrayBody(s, v, key);
}

function writeArrayBody(s: ByteSink, v: Extract<GgufWriteValue, { type: 'array' }>, key: string): void {
  s.u32(TYPE_CODE[v.of]);
  s.u64(v.value.length);
  if (v.of === 'array') {
    for (const inner of v.value as readonly GgufWriteValue[]) {
      if (inner.type !== 'array') throw new LlmError(`GGUF metadata '${key}': an array of arrays holds a non-array`);
      writeArrayBody(s, inner, key);
    }
    return;
  }
  const of = v.of;
  const arr = v.value as ArrayLike<number | bigint | boolean | string>;
  for (let i = 0; i < arr.length; i++) writeScalar(s, of, arr[i], key);
}

/** Write a GGUF v3 file atomically; returns the file size in bytes. */
export function writeGguf(path: string, file: GgufToWrite): number {
  const alignment = file.alignment ?? 32;
  if (!Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
    throw new LlmError(`GGUF alignment ${alignment} must be a power of two`);
  }
  const metadata = [...file.metadata];
  const keys = new Set(metadata.map(([k]) => k));
  if (keys.size !== metadata.length) throw new LlmError('GGUF metadata has a duplicate key');
  if (alignment !== 32 && !keys.has('general.alignment')) metadata.push(['general.alignment', ggufMeta.u32(alignment)]);
  const names = new Set<string>();
  const sizes: number[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const t of file.tensors) {
    if (names.has(t.name)) throw new LlmError(`GGUF tensor '${t.name}' is listed twice`);
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new LlmError(`GGUF tensor '${t.name}' has invalid dims [${t.dims.join(', ')}]`);
    }
    offsets.push(offset);
    const size = ggmlTensorBytes(t.type, t.dims);
    sizes.push(size);
    offset += Math.ceil(size / alignment) * alignment;
  }
  const h = new ByteSink();
  h.u32(GGUF_MAGIC);
  h.u32(3);
  h.u64(file.tensors.length);
  h.u64(metadata.length);
  for (const [key, value] of metadata) {
    h.string(key);
    writeValue(h, value, key);
  }
  file.tensors.forEach((t, i) => {
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.type);
    h.u64(offsets[i]);
  });
  h.pad(alignment);

  const zeros = new Uint8Array(alignment);
  return writeFileAtomicWith(path, (put) => {
    put(h.buf.subarray(0, h.len));
    let total = h.len;
    file.tensors.forEach((t, i) => {
      const produced = t.data();
      const parts = produced instanceof Uint8Array ? [produced] : produced;
      let n = 0;
      for (const part of parts) {
        n += part.byteLength;
        if (n > sizes[i]) break;
        put(part);
      }
      if (n !== sizes[i]) {
        throw new LlmError(`GGUF tensor '${t.name}' (${ggmlTypeName(t.type)}, dims [${t.dims.join(', ')}]) produced ${n} bytes, expected ${sizes[i]}`);
      }
      const pad = (alignment - (n % alignment)) % alignment;
      if (pad > 0) put(zeros.subarray(0, pad)); // llama.cpp reads every tensor padded, the last one too
      total += n + pad;
    });
    return total;
  });
}
