/**
 * The reference backend: readable pure-TypeScript kernels. It always works and is the
 * oracle the native backend is tested against.
 */
import type { Backend } from '../backend.js';
import { gemm } from './gemm.js';
import { add, mul, axpy, scale, addBias, sumRows, copyRows, sumSquares } from './elementwise.js';
import {
  geluForward, geluBackward, siluForward, siluBackward, swigluForward, swigluBackward,
} from './activation.js';
import { layerNormForward, layerNormBackward, rmsNormForward, rmsNormBackward } from './norm.js';
import { softmaxForward, softmaxBackward } from './softmax.js';
import { attentionForward, attentionBackward } from './attention.js';
import { attentionCached } from './attention-cached.js';
import { rope } from './rope.js';
import { embeddingForward, embeddingBackward } from './embedding.js';
import { crossEntropyForward, crossEntropyBackward, crossEntropyFused } from './cross-entropy.js';
import { adamw } from './adamw.js';
import { dropoutMask } from './dropout.js';
import { matmulQuantized, matmulQuantizedTransposed } from './quant-matmul.js';
import { argmax, logSumExp, topK, sampleSoftmax } from './sampling.js';
import { compileDecode } from './decode-program.js';
import { gemmBf16, roundBf16, toBf16 } from './bf16.js';

export const referenceBackend: Backend = {
  name: 'reference',
  gemm,
  gemmBf16,
  matmulQuantized,
  matmulQuantizedTransposed,
  add, mul, axpy, scale, addBias, sumRows, copyRows, sumSquares,
  roundBf16, toBf16,
  geluForward, geluBackward, siluForward, siluBackward, swigluForward, swigluBackward,
  layerNormForward, layerNormBackward, rmsNormForward, rmsNormBackward,
  softmaxForward, softmaxBackward,
  attentionForward, attentionBackward, attentionCached,
  rope,
  embeddingForward, embeddingBackward,
  crossEntropyForward, crossEntropyBackward, crossEntropyFused,
  argmax, logSumExp, topK, sampleSoftmax,
  dropoutMask,
  compileDecode,
  adamw,
};
