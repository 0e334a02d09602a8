/**
 * Reference interpreter of decode programs (see ../decode-program.ts): each op runs the reference
 * kernel the op-by-op path runs, in the same order, so a program gives the same floats as
 * Transformer.forwardCached on the reference backend. Checks what depends on (token, pos)
 * before it writes anything, with the same messages as native/decode.c.
 */
import { Epilogue, Op, WeightType, opLength, type DecodeBuffer, type DecodeProgram, type DecodeRunner } from '../decode-program.js';
import { Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK, dequantizeQ4_0, dequantizeQ8_0 } from '../../formats/quant.js';
import { LlmError } from '../../util/errors.js';
import { attentionCached } from './attention-cached.js';
import { add, addBias } from './elementwise.js';
import { geluForward, swigluForward } from './activation.js';
import { gemm } from './gemm.js';
import { layerNormForward, rmsNormForward } from './norm.js';
import { matmulQuantized } from './quant-matmul.js';
import { rope } from './rope.js';

function rowBytes(type: number, K: number): number {
  if (type === WeightType.Q8_0) return (K / QK) * Q8_0_BLOCK_BYTES;
  if (type === WeightType.Q4_0) return (K / QK) * Q4_0_BLOCK_BYTES;
  return K * 4;
}

function f32(b: DecodeBuffer): Float32Array {
  if (!(b instanceof Float32Array)) throw new LlmError('decode program: a float operand is not a Float32Array');
  return b;
}

function u8(b: DecodeBuffer): Uint8Array {
  return b instanceof Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * What native/decode.c checks at compile time: indices, sizes, types (not the KV slots).
 * Returns the op offsets and the widest accumulating product (its scratch).
 */
function validate({ buffers, code, consts }: DecodeProgram): { ops: Int32Array[]; maxAccumulate: number } {
  const ops: Int32Array[] = [];
  let maxAccumulate = 0;
  const fail = (at: number, what: string): never => {
    throw new LlmError(`compileDecode: op at ${at}: ${what}`);
  };
  const need = (at: number, idx: number, n: number, what: string, bytes = false): void => {
    if (!Number.isInteger(idx) || idx < 0 || idx >= buffers.length) fail(at, `${what} buffer index ${idx} out of range`);
    const have = buffers[idx].byteLength;
    if ((bytes ? n : 4 * n) > have) fail(at, `${what} buffer ${idx} holds ${have} bytes, ${bytes ? n : 4 * n} needed`);
  };
  const constant = (at: number, idx: number): void => {
    if (!(idx >= 0 && idx < consts.length)) fail(at, `constant index ${idx} out of range`);
  };
  for (let at = 0; at < code.length;) {
    const len = code[at] === Op.MATVEC && at + 4 >= code.length ? 5 : opLength(code, at);
    if (at + len > code.length) fail(at, 'truncated');
    const op = code.subarray(at, at + len);
    ops.push(op);
    switch (op[0]) {
      case Op.EMBED:
        if (op[2] !== WeightType.F32 && op[2] !== WeightType.Q8_0 && op[2] !== WeightType.Q4_0) fail(at, `embedding type ${op[2]} unknown`);
        need(at, op[1], rowBytes(op[2], op[3]), 'table', true);
        need(at, op[4], op[3], 'dst');
        break;
      case Op.ADD_ROW:
        need(at, op[1], op[2], 'table');
        need(at, op[3], op[2], 'dst');
        break;
      case Op.NORM:
        need(at, op[2], op[6], 'x');
        need(at, op[3], op[6], 'weight');
        if (op[4] >= 0) need(at, op[4], op[6], 'bias');
        need(at, op[5], op[6], 'out');
        constant(at, op[7]);
        break;
      case Op.MATVEC: {
        const K = op[2];
        need(at, op[1], K, 'x');
        if (op[4] < 1 || op[4] > 3) fail(at, `products = ${op[4]} is out of range`);
        for (let i = 0; i < op[4]; i++) {
          const [w, type, out, N, bias, accumulate] = op.subarray(5 + 6 * i, 11 + 6 * i);
          if (accumulate) maxAccumulate = Math.max(maxAccumulate, N);
          if (![WeightType.F32, WeightType.F32_IN_OUT, WeightType.Q8_0, WeightType.Q4_0].includes(type as never)) fail(at, `weight type ${type} unknown`);
          if ((type === WeightType.Q8_0 || type === WeightType.Q4_0) && K % QK !== 0) fail(at, `quantized K = ${K} is not a multiple of 32`);
          need(at, w, N * rowBytes(type, K), 'weight', true);
          need(at, out, N, 'out');
          if (bias >= 0) need(at, bias, N, 'bias');
        }
        if (op[3] === Epilogue.SWIGLU && (op[4] !== 2 || op[8] !== op[14])) fail(at, 'the SwiGLU epilogue needs two products of equal N');
        if (op[3] === Epilogue.GELU && op[4] !== 1) fail(at, 'the GELU epilogue needs one product');
        break;
      }
      case Op.ROPE:
        need(at, op[1], op[2] * op[3], 'x');
        need(at, op[4], op[3] / 2, 'cos');
        need(at, op[5], op[3] / 2, 'sin');
        break;
      case Op.KV_STORE:
        need(at, op[1], op[3], 'src');
        need(at, op[2], 0, 'slot');
        break;
      case Op.ATTENTION:
        if (op[6] <= 0 || op[5] % op[6] !== 0) fail(at, 'nHead must be a positive multiple of nKvHead');
        need(at, op[1], op[5] * op[7], 'q');
        need(at, op[2], 0, 'kslot');
        need(at, op[3], 0, 'vslot');
        need(at, op[4], op[5] * op[7], 'out');
        constant(at, op[8]);
        break;
    }
    at += len;
  }
  return { ops, maxAccumulate };
}

/** Bytes from a typed array's first element to the end of its ArrayBuffer. */
function extent(b: DecodeBuffer): number {
  return b.buffer.byteLength - b.byteOffset;
}

export function compileDecode(program: DecodeProgram): DecodeRunner {
  const { consts } = program;
  const bufs = program.buffers.slice();
  const { ops, maxAccumulate } = validate(program);
  const strides = program.rowStrides;
  if (strides && (!(strides instanceof Int32Array) || strides.length !== bufs.length)) {
    throw new LlmError('compileDecode: argument 3 (row strides) must be an Int32Array with one entry per buffer');
  }
  if (strides?.some((v) => v < 0)) throw new LlmError('compileDecode: row strides must be >= 0');
  const maxRows = strides ? rowsThatFit(ops, bufs, strides) : 1;
  const mean = new Float32Array(1);
  const rstd = new Float32Array(1);
  /** W x of an accumulating product, before it is added into out */
  const product = new Float32Array(maxAccumulate);

  /** What depends on (token, pos) and the row's first KV position kv, checked before anything is written. */
  function check(token: number, pos: number, kv: number, pre: string): void {
    const fail = (what: string): never => {
      throw new LlmError(`decodeRun: ${pre}${what}`);
    };
    for (const op of ops) {
      switch (op[0]) {
        case Op.EMBED: {
          const rows = Math.floor(bufs[op[1]].byteLength / rowBytes(op[2], op[3]));
          if (!Number.isInteger(token) || token < 0 || token >= rows) fail(`token id ${token} is outside the vocabulary [0, ${rows})`);
          break;
        }
        case Op.ADD_ROW:
          if ((pos + 1) * op[2] > bufs[op[1]].length) fail(`position ${pos} is beyond the position table`);
          break;
        case Op.ROPE:
          if ((pos + 1) * (op[3] / 2) > Math.min(bufs[op[4]].length, bufs[op[5]].length)) fail(`position ${pos} is beyond the rotary tables`);
          break;
        case Op.KV_STORE:
          if ((kv + pos + 1) * op[3] > bufs[op[2]].length) fail(`position ${pos} does not fit the KV cache buffer ${op[2]}`);
          break;
        case Op.ATTENTION: {
          const need = (kv + pos + 1) * op[6] * op[7];
          if (need > bufs[op[2]].length || need > bufs[op[3]].length) fail(`position ${pos} does not fit the KV cache buffers ${op[2]}/${op[3]}`);
          break;
        }
      }
    }
  }

  function matvec(op: Int32Array, b: (i: number) => DecodeBuffer): void {
    const x = f32(b(op[1]));
    const K = op[2];
    const epilogue = op[3];
    for (let i = 0; i < op[4]; i++) {
      const [w, type, outIdx, N, biasIdx, accumulate] = op.subarray(5 + 6 * i, 11 + 6 * i);
      const out = f32(b(outIdx));
      const y = accumulate ? product.subarray(0, N) : out;
      if (type === WeightType.F32) gemm({ M: 1, N, K, a: x, b: f32(bufs[w]), c: y, transB: true });
      else if (type === WeightType.F32_IN_OUT) gemm({ M: 1, N, K, a: x, b: f32(bufs[w]), c: y });
      else matmulQuantized(x, u8(bufs[w]), type === WeightType.Q8_0 ? 'q8_0' : 'q4_0', y, 1, N, K);
      if (biasIdx >= 0) addBias(y, f32(bufs[biasIdx]), y, 1, N);
      if (accumulate) add(out, y, out, N);
    }
    // the first product's out (word 7) and N (word 8); SwiGLU's second out is word 13
    const out0 = f32(b(op[7]));
    if (epilogue === Epilogue.SWIGLU) swigluForward(out0, f32(b(op[13])), out0, op[8]);
    else if (epilogue === Epilogue.GELU) geluForward(out0, out0, op[8]);
  }

  /**
   * One op for one row: b(i) is buffer i as that row sees it (its row of a row buffer), kv the
   * row's first position in the KV slots.
   */
  function exec(op: Int32Array, b: (i: number) => DecodeBuffer, token: number, pos: number, kv: number): void {
    switch (op[0]) {
      case Op.EMBED: {
        const dim = op[3];
        const dst = f32(b(op[4]));
        const bytes = rowBytes(op[2], dim);
        if (op[2] === WeightType.F32) dst.set(f32(bufs[op[1]]).subarray(token * dim, (token + 1) * dim));
        else {
          const row = u8(bufs[op[1]]).subarray(token * bytes, (token + 1) * bytes);
          if (op[2] === WeightType.Q8_0) dequantizeQ8_0(row, dim, dst);
          else dequantizeQ4_0(row, dim, dst);
        }
        break;
      }
      case Op.ADD_ROW: {
        const dim = op[2];
        const dst = f32(b(op[3]));
        add(dst, f32(bufs[op[1]]).subarray(pos * dim, (pos + 1) * dim), dst, dim);
        break;
      }
      case Op.NORM: {
        const bias = op[4] >= 0 ? f32(bufs[op[4]]) : null;
        if (op[1]) rmsNormForward(f32(b(op[2])), f32(bufs[op[3]]), f32(b(op[5])), rstd, 1, op[6], consts[op[7]]);
        else layerNormForward(f32(b(op[2])), f32(bufs[op[3]]), bias, f32(b(op[5])), mean, rstd, 1, op[6], consts[op[7]]);
        break;
      }
      case Op.MATVEC:
        matvec(op, b);
        break;
      case Op.ROPE: {
        const x = f32(b(op[1]));
        rope(x, x, f32(bufs[op[4]]), f32(bufs[op[5]]), 1, 1, op[2], op[3], pos, false);
        break;
      }
      case Op.KV_STORE:
        f32(bufs[op[2]]).set(f32(b(op[1])).subarray(0, op[3]), (kv + pos) * op[3]);
        break;
      case Op.ATTENTION: {
        const base = kv * op[6] * op[7];
        attentionCached(f32(b(op[1])), f32(bufs[op[2]]).subarray(base), f32(bufs[op[3]]).subarray(base), f32(b(op[4])), {
          Tq: 1, pos, nHead: op[5], nKvHead: op[6], headDim: op[7], scale: consts[op[8]],
        });
        break;
      }
    }
  }

  const whole = (i: number): DecodeBuffer => bufs[i];

  function run(token: number, pos: number): void {
    if (!Number.isInteger(pos) || pos < 0) throw new LlmError(`decodeRun: position must be >= 0, got ${pos}`);
    check(token, pos, 0, '');
    for (const op of ops) exec(op, whole, token, pos, 0);
  }

  function runBatch(tokens: Int32Array, positions: Int32Array, slots: Int32Array, n: number, slotRows: number): void {
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new LlmError('decodeRunBatch: the row count must be in [1, 1024]');
    if (n > maxRows) throw new LlmError(`decodeRunBatch: ${n} rows given, but the program's buffers hold ${maxRows}`);
    if (!Number.isInteger(slotRows) || slotRows < 1 || slotRows > 0x7fffffff) throw new LlmError('decodeRunBatch: slotRows must be a positive 32-bit integer');
    if (tokens.length < n || positions.length < n || slots.length < n) throw new LlmError(`decodeRunBatch: tokens, positions and slots must hold ${n} entries`);
    for (let r = 0; r < n; r++) {
      const pos = positions[r];
      const slot = slots[r];
      if (pos < 0 || pos >= slotRows || slot < 0) {
        throw new LlmError(`decodeRunBatch: row ${r}: position ${pos} in KV slot ${slot} is outside the slot's ${slotRows} positions`);
      }
      for (let q = 0; q < r; q++) if (slots[q] === slot) throw new LlmError(`decodeRunBatch: rows ${q} and ${r} both decode KV slot ${slot}`);
      check(tokens[r], pos, slot * slotRows, n > 1 ? `row ${r}: ` : '');
    }
    const rowViews = Array.from({ length: n }, (_, r) => {
      const views = new Map<number, DecodeBuffer>();
      return (i: number): DecodeBuffer => {
        const stride = strides?.[i] ?? 0;
        if (stride === 0 || r === 0) return bufs[i];
        let v = views.get(i);
        if (!v) {
          const buf = bufs[i];
          const offset = buf.byteOffset + 4 * r * stride;
          v = new Float32Array(buf.buffer, offset, (buf.buffer.byteLength - offset) >> 2);
          views.set(i, v);
        }
        return v;
      };
    });
    for (const op of ops) for (let r = 0; r < n; r++) exec(op, rowViews[r], tokens[r], positions[r], slots[r] * slotRows);
  }

  return {
    run,
    runBatch,
    bind(index: number, buffer: DecodeBuffer): void {
      if (!Number.isInteger(index) || index < 0 || index >= bufs.length) throw new LlmError(`decodeBind: buffer index ${index} out of range`);
      if ((strides?.[index] ?? 0) > 0) throw new LlmError('decodeBind: a row buffer of a batch program cannot be rebound');
      bufs[index] = buffer;
    },
  };
}

/**
 * Rows a batch may hold: for every op operand in a row buffer (stride > 0), rows r with
 * r * stride + width floats inside the buffer's ArrayBuffer (as native/decode.c computes it).
 */
function rowsThatFit(ops: Int32Array[], bufs: DecodeBuffer[], strides: Int32Array): number {
  let rows = Infinity;
  const use = (idx: number, width: number): void => {
    const stride = strides[idx];
    if (stride > 0) rows = Math.min(rows, Math.floor((Math.floor(extent(bufs[idx]) / 4) - width) / stride) + 1);
  };
  for (const op of ops) {
    switch (op[0]) {
      case Op.EMBED: use(op[4], op[3]); if (strides[op[1]] > 0) rows = Math.min(rows, 1); break;
      case Op.ADD_ROW: use(op[1], op[2]); use(op[3], op[2]); break;
      case Op.NORM: use(op[2], op[6]); use(op[3], op[6]); if (op[4] >= 0) use(op[4], op[6]); use(op[5], op[6]); break;
      case Op.MATVEC:
        use(op[1], op[2]);
        for (let i = 0; i < op[4]; i++) {
          const [w, , out, N, bias] = op.subarray(5 + 6 * i, 11 + 6 * i);
          if (strides[w] > 0) rows = Math.min(rows, 1); // a weight given a row stride: one row only, as native
          use(out, N);
          if (bias >= 0) use(bias, N);
        }
        break;
      case Op.ROPE: use(op[1], op[2] * op[3]); use(op[4], op[3] / 2); use(op[5], op[3] / 2); break;
      case Op.KV_STORE: use(op[1], op[3]); use(op[2], 0); break;
      case Op.ATTENTION: use(op[1], op[5] * op[7]); use(op[2], 0); use(op[3], 0); use(op[4], op[5] * op[7]); break;
    }
  }
  return rows === Infinity ? 0x7fffffff : Math.max(rows, 0);
}
