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

export function compileDecode(program: DecodeProgram): DecodeRunner {
  const { consts } = program;
  const bufs = program.buffers.slice();
  const { ops, maxAccumulate } = validate(program);
  const mean = new Float32Array(1);
  const rstd = new Float32Array(1);
  /** W x of an accumulating product, before it is added into out */
  const product = new Float32Array(maxAccumulate);

  function check(token: number, pos: number): void {
    if (!Number.isInteger(pos) || pos < 0) throw new LlmError(`decodeRun: position must be >= 0, got ${pos}`);
    for (const op of ops) {
      switch (op[0]) {
        case Op.EMBED: {
          const rows = Math.floor(bufs[op[1]].byteLength / rowBytes(op[2], op[3]));
          if (!Number.isInteger(token) || token < 0 || token >= rows) throw new LlmError(`decodeRun: token id ${token} is outside the vocabulary [0, ${rows})`);
          break;
        }
        case Op.ADD_ROW:
          if ((pos + 1) * op[2] > bufs[op[1]].length) throw new LlmError(`decodeRun: position ${pos} is beyond the position table`);
          break;
        case Op.ROPE:
          if ((pos + 1) * (op[3] / 2) > Math.min(bufs[op[4]].length, bufs[op[5]].length)) throw new LlmError(`decodeRun: position ${pos} is beyond the rotary tables`);
          break;
        case Op.KV_STORE:
          if ((pos + 1) * op[3] > bufs[op[2]].length) throw new LlmError(`decodeRun: position ${pos} does not fit the KV cache buffer ${op[2]}`);
          break;
        case Op.ATTENTION: {
          const need = (pos + 1) * op[6] * op[7];
          if (need > bufs[op[2]].length || need > bufs[op[3]].length) throw new LlmError(`decodeRun: position ${pos} does not fit the KV cache buffers ${op[2]}/${op[3]}`);
          break;
        }
      }
    }
  }

  function matvec(op: Int32Array): void {
    const x = f32(bufs[op[1]]);
    const K = op[2];
    const epilogue = op[3];
    for (let i = 0; i < op[4]; i++) {
      const [w, type, outIdx, N, biasIdx, accumulate] = op.subarray(5 + 6 * i, 11 + 6 * i);
      const out = f32(bufs[outIdx]);
      const y = accumulate ? product.subarray(0, N) : out;
      if (type === WeightType.F32) gemm({ M: 1, N, K, a: x, b: f32(bufs[w]), c: y, transB: true });
      else if (type === WeightType.F32_IN_OUT) gemm({ M: 1, N, K, a: x, b: f32(bufs[w]), c: y });
      else matmulQuantized(x, u8(bufs[w]), type === WeightType.Q8_0 ? 'q8_0' : 'q4_0', y, 1, N, K);
      if (biasIdx >= 0) addBias(y, f32(bufs[biasIdx]), y, 1, N);
      if (accumulate) add(out, y, out, N);
    }
    // the first product's out (word 7) and N (word 8); SwiGLU's second out is word 13
    const out0 = f32(bufs[op[7]]);
    if (epilogue === Epilogue.SWIGLU) swigluForward(out0, f32(bufs[op[13]]), out0, op[8]);
    else if (epilogue === Epilogue.GELU) geluForward(out0, out0, op[8]);
  }

  function run(token: number, pos: number): void {
    check(token, pos);
    for (const op of ops) {
      switch (op[0]) {
        case Op.EMBED: {
          const dim = op[3];
          const dst = f32(bufs[op[4]]);
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
          const dst = f32(bufs[op[3]]);
          add(dst, f32(bufs[op[1]]).subarray(pos * dim, (pos + 1) * dim), dst, dim);
          break;
        }
        case Op.NORM: {
          const b = op[4] >= 0 ? f32(bufs[op[4]]) : null;
          if (op[1]) rmsNormForward(f32(bufs[op[2]]), f32(bufs[op[3]]), f32(bufs[op[5]]), rstd, 1, op[6], consts[op[7]]);
          else layerNormForward(f32(bufs[op[2]]), f32(bufs[op[3]]), b, f32(bufs[op[5]]), mean, rstd, 1, op[6], consts[op[7]]);
          break;
        }
        case Op.MATVEC:
          matvec(op);
          break;
        case Op.ROPE: {
          const x = f32(bufs[op[1]]);
          rope(x, x, f32(bufs[op[4]]), f32(bufs[op[5]]), 1, 1, op[2], op[3], pos, false);
          break;
        }
        case Op.KV_STORE:
          f32(bufs[op[2]]).set(f32(bufs[op[1]]).subarray(0, op[3]), pos * op[3]);
          break;
        case Op.ATTENTION:
          attentionCached(f32(bufs[op[1]]), f32(bufs[op[2]]), f32(bufs[op[3]]), f32(bufs[op[4]]), {
            Tq: 1, pos, nHead: op[5], nKvHead: op[6], headDim: op[7], scale: consts[op[8]],
          });
          break;
      }
    }
  }

  return {
    run,
    bind(index: number, buffer: DecodeBuffer): void {
      if (!Number.isInteger(index) || index < 0 || index >= bufs.length) throw new LlmError(`decodeBind: buffer index ${index} out of range`);
      bufs[index] = buffer;
    },
  };
}
