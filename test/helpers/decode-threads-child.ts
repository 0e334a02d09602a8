/**
 * Child process of the decode-program thread test: decodes 40 greedy tokens of a random Llama
 * large enough that every product is split over the pool, and prints the sha256 of all logits.
 * Run with LLMTS_THREADS=1 and =2; the two digests must be equal.
 */
import { createHash } from 'node:crypto';
import { backend } from '../../src/backend/index.js';
import { Transformer } from '../../src/model/transformer.js';
import { KvCache } from '../../src/generate/kv-cache.js';
import { Rng } from '../../src/util/rng.js';
import { tinyLlama } from './tiny-model.js';

const cfg = tinyLlama({ vocabSize: 1000, blockSize: 64, nLayer: 2, nHead: 8, nKvHead: 4, nEmbd: 256, hiddenDim: 512 });
const m = new Transformer(cfg, new Rng(5));
m.eval();
const cache = new KvCache(cfg);
const hash = createHash('sha256');
let next = backend().argmax(m.forwardCached(Int32Array.of(1, 2, 3, 4), cache), cfg.vocabSize);
for (let i = 0; i < 40; i++) {
  const logits = m.forwardCached(Int32Array.of(next), cache);
  hash.update(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
  next = backend().argmax(logits, cfg.vocabSize);
}
process.stdout.write(hash.digest('hex') + '\n');
