/**
 * A minimal protobuf wire-format reader (enough for SentencePiece's `tokenizer.model`).
 *
 *   const r = new ProtoReader(bytes, 'tokenizer.model');
 *   while (!r.done()) {
 *     const { field, wire } = r.tag();
 *     if (field === 1 && wire === WireType.LEN) handlePiece(r.message());
 *     else r.skip(wire);
 *   }
 *
 * Wire types: 0 varint, 1 fixed64, 2 length-delimited (strings, bytes, messages, packed
 * repeated), 5 fixed32; the deprecated groups (3, 4) are rejected. Every read is checked
 * against the end of the current message, so malformed or truncated input is a one-line
 * LlmError naming the source (`what`) and the byte offset — never a read past the buffer.
 */
import { LlmError } from '../util/errors.js';

export enum WireType {
  VARINT = 0,
  I64 = 1,
  LEN = 2,
  I32 = 5,
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class ProtoReader {
  /** absolute offset of the next byte to read */
  pos: number;
  /** absolute offset just past the last byte of this message */
  readonly end: number;
  private readonly view: DataView;

  /**
   * @param buf   the bytes (the whole file for the outermost message)
   * @param what  how errors name the input, e.g. the file path
   */
  constructor(readonly buf: Uint8Array, readonly what: string, start = 0, end = buf.length) {
    this.pos = start;
    this.end = end;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(detail: string): never {
    throw new LlmError(`${this.what}: malformed protobuf: ${detail} (at byte ${this.pos}); the file is corrupt, truncated or not this format`);
  }

  /** true when this message has been read to its end */
  done(): boolean {
    return this.pos >= this.end;
  }

  /** The next field tag. */
  tag(): { field: number; wire: number } {
    const at = this.pos;
    const v = this.uint32();
    const field = v >>> 3;
    const wire = v & 7;
    if (field === 0) {
      this.pos = at;
      this.fail('field number 0');
    }
    if (wire !== WireType.VARINT && wire !== WireType.I64 && wire !== WireType.LEN && wire !== WireType.I32) {
      this.pos = at;
      this.fail(`field ${field} has unsupported wire type ${wire}`);
    }
    return { field, wire };
  }

  /** A varint as its low and high 32 bits (unsigned). */
  private varint64(): [number, number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('varint runs past the end of the message');
      const b = this.buf[this.pos++];
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if ((b & 0x80) === 0) return [lo >>> 0, hi >>> 0];
    }
    this.fail('varint longer than 10 bytes');
  }

  /** uint32 / enum value (the low 32 bits, unsigned) */
  uint32(): number {
    return this.varint64()[0];
  }

  /** int32 / enum field (negative values are sign-extended to 10 bytes on the wire) */
  int32(): number {
    return this.varint64()[0] | 0;
  }

  /** uint64 / int64 that must fit a JavaScript safe integer */
  uint64(): number {
    const [lo, hi] = this.varint64();
    if (hi >= 1 << 21) this.fail('64-bit integer too large');
    return hi * 2 ** 32 + lo;
  }

  bool(): boolean {
    const [lo, hi] = this.varint64();
    return lo !== 0 || hi !== 0;
  }

  float(): number {
    this.need(4);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  double(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  fixed32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** fixed64 as a bigint */
  fixed64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** The payload of a length-delimited field (a view, not a copy). */
  bytes(): Uint8Array {
    const [start, end] = this.lenRange();
    return this.buf.subarray(start, end);
  }

  /** A length-delimited field as UTF-8 text (invalid UTF-8 is an error). */
  string(): string {
    const [start, end] = this.lenRange();
    try {
      return utf8.decode(this.buf.subarray(start, end));
    } catch {
      this.pos = start;
      return this.fail('string field is not valid UTF-8');
    }
  }

  /** A length-delimited field as a nested message reader. */
  message(): ProtoReader {
    const [start, end] = this.lenRange();
    return new ProtoReader(this.buf, this.what, start, end);
  }

  /** Skip a field's value of the given wire type. */
  skip(wire: number): void {
    switch (wire) {
      case WireType.VARINT:
        this.varint64();
        return;
      case WireType.I64:
        this.need(8);
        this.pos += 8;
        return;
      case WireType.LEN:
        this.lenRange();
        return;
      case WireType.I32:
        this.need(4);
        this.pos += 4;
        return;
      default:
        this.fail(`cannot skip wire type ${wire}`);
    }
  }

  private lenRange(): [number, number] {
    const n = this.uint64();
    const start = this.pos;
    if (n > this.end - start) this.fail(`length ${n} runs past the end of the message (${this.end - start} bytes left)`);
    this.pos = start + n;
    return [start, start + n];
  }

  private need(n: number): void {
    if (this.end - this.pos < n) this.fail(`needs ${n} bytes but the message has ${this.end - this.pos} left`);
  }
}
