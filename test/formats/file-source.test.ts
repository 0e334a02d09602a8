/**
 * Memory-mapped and lazily read model files (src/formats/file-source.ts, native/mmap.c): views
 * into the copy-on-write mapping, copies where a tensor is converted or unaligned, clear errors,
 * no descriptor left open, the mapping released on garbage collection, and training on loaded
 * weights (in-place AdamW updates) never changing the file -- with mapping and with reads.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nativeFunction } from '../../src/backend/index.js';
import { fileMappingAvailable, openFileSource } from '../../src/formats/file-source.js';
import { exportGgufModel, importGgufModel } from '../../src/formats/gguf-model.js';
import { exportHfCheckpoint, importHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { readLlama2c } from '../../src/formats/llama2c.js';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { validateConfig, type ModelConfig } from '../../src/model/config.js';
import { parameterSpecs } from '../../src/model/parameters.js';
import { Transformer } from '../../src/model/transformer.js';
import { noGrad } from '../../src/tensor/index.js';
import { AdamW } from '../../src/train/adamw.js';
import { LlmError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { writeLlama2cV1 } from '../helpers/model-memory.js';
import { tmpDir } from '../helpers/tmp.js';

const dir = tmpDir('file-source');
const mapping = fileMappingAvailable();
const mapFile = nativeFunction<(path: string) => ArrayBuffer>('mapFile');

function tinyLlama(): ModelConfig {
  return validateConfig({
    family: 'llama', vocabSize: 64, blockSize: 16, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, hiddenDim: 64,
    bias: false, tiedEmbeddings: false, normEps: 1e-5, ropeTheta: 10000, dropout: 0,
  });
}

/** Which of this process's descriptors point at `path` (Linux; null where /proc is absent). */
function openDescriptorsOf(path: string): number | null {
  if (!existsSync('/proc/self/fd')) return null;
  const real = realpathSync(path);
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === real) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

/** One training step (forward, backward, AdamW in place) on the model's float parameters. */
function trainStep(model: Transformer): void {
  const specs = parameterSpecs(model.config);
  const params = model.parameters();
  const opt = new AdamW(params.map((t, i) => ({ tensor: t, decay: specs[i].decay })), { weightDecay: 0.1 });
  const x = Int32Array.from({ length: 8 }, (_, i) => (i * 7) % model.config.vocabSize);
  const y = Int32Array.from({ length: 8 }, (_, i) => (i * 5 + 1) % model.config.vocabSize);
  const { loss } = model.forward(x, 1, 8, y);
  loss!.backward();
  opt.step(1e-2);
}

describe('file sources', () => {
  it('maps a file copy-on-write: views share the mapping, copies and unaligned floats get their own buffer', () => {
    const p = join(dir, 'bytes.bin');
    const f = new Float32Array([1.5, -2, 3.25, 4, 5]);
    writeFileSync(p, Buffer.concat([Buffer.from([9, 9]), Buffer.from(f.buffer)]));
    const before = readFileSync(p);
    const src = openFileSource(p, 'test');
    try {
      assert.equal(src.mode, mapping ? 'mmap' : 'read');
      assert.equal(src.size, 22);
      const view = src.bytes(2, 8, 'a range');
      assert.deepEqual([...view], [...before.subarray(2, 10)]);
      if (mapping) assert.equal(view.buffer.byteLength, 22, 'a view into the whole mapped file');
      const copy = src.copy(2, 8, 'a range');
      assert.equal(copy.byteOffset, 0);
      assert.equal(copy.buffer.byteLength, 8);
      // float32s at byte 2 are not 4-byte aligned: a copy of their own with the right values
      const floats = src.f32(2, 5, 'floats');
      assert.deepEqual(floats, f);
      assert.equal(floats.byteOffset, 0);
      view[0] = 123; // copy-on-write: only this process's page changes
      assert.throws(() => src.bytes(20, 4, 'the tail'), (e: unknown) => e instanceof LlmError && /the tail \(4 bytes at byte 20\) extends past the end of the 22-byte file/.test(e.message));
      assert.throws(() => src.f32(-4, 1, 'x'), LlmError);
    } finally {
      src.close();
    }
    assert.deepEqual(readFileSync(p), before);
    assert.equal(openDescriptorsOf(p) ?? 0, 0, 'close() released the descriptor');
  });

  it('gives one-line errors for missing files, directories and empty files', () => {
    assert.throws(() => openFileSource(join(dir, 'nope.gguf'), 'GGUF'), /cannot open GGUF file .*nope\.gguf: ENOENT/);
    assert.throws(() => openFileSource(dir, 'GGUF'), (e: unknown) => e instanceof LlmError && e.message === `${dir} is a directory, not a GGUF file`);
    const empty = join(dir, 'empty.gguf');
    writeFileSync(empty, '');
    const src = openFileSource(empty, 'GGUF');
    assert.equal(src.mode, 'read', 'an empty file is not mapped');
    src.close();
    assert.throws(() => importGgufModel(empty), (e: unknown) => e instanceof LlmError && !e.message.includes('\n'));
    assert.throws(() => readLlama2c(dir), /is a directory, not a llama2.c model file/);
  });

  it('native mapFile rejects bad paths with clear errors', { skip: mapFile ? false : 'the native addon has no mapFile' }, () => {
    const empty = join(dir, 'empty.bin');
    writeFileSync(empty, '');
    assert.throws(() => mapFile!(join(dir, 'missing.bin')), /mapFile: .*missing\.bin: cannot open \(No such file or directory\)/);
    assert.throws(() => mapFile!(dir), /is a directory, not a file/);
    assert.throws(() => mapFile!(empty), /is empty \(0 bytes\)/);
    assert.throws(() => (mapFile as unknown as (x: number) => ArrayBuffer)(3), /argument 0 must be a file path/);
  });

  it('releases the mapping when the buffer is garbage collected', { skip: mapFile && existsSync('/proc/self/maps') ? false : 'needs mapFile and /proc/self/maps' }, () => {
    const p = join(dir, 'gc.bin');
    writeFileSync(p, new Uint8Array(1 << 16).fill(7));
    const script = `
      const { nativeFunction } = await import(${JSON.stringify(new URL('../../src/backend/index.js', import.meta.url).href)});
      const { readFileSync } = await import('node:fs');
      const mapped = () => readFileSync('/proc/self/maps', 'utf8').includes(${JSON.stringify(realpathSync(p))});
      let buf = nativeFunction('mapFile')(${JSON.stringify(p)});
      const sum = new Uint8Array(buf).reduce((a, b) => a + b, 0);
      const during = mapped();
      buf = null;
      let after = true;
      for (let i = 0; i < 50 && after; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); after = mapped(); }
      console.log(JSON.stringify({ sum, during, after }));
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { sum: 7 << 16, during: true, after: false });
  });

  for (const mode of ['mmap', 'read'] as const) {
    it(`loading GGUF, HF and llama2.c files then training in place leaves the files unchanged (${mode})`, { skip: mode === 'mmap' && !mapping ? 'no native mapFile' : false }, () => {
      const saved = process.env.LLMTS_MMAP;
      if (mode === 'read') process.env.LLMTS_MMAP = '0';
      try {
        const cfg = tinyLlama();
        const orig = new Transformer(cfg, new Rng(3));
        const sub = join(dir, mode);
        mkdirSync(sub, { recursive: true });
        const gguf = join(sub, 'm.gguf');
        exportGgufModel(gguf, cfg, orig.params);
        const hf = join(sub, 'hf');
        exportHfCheckpoint(hf, cfg, orig.params);
        const l2c = join(sub, 'm.bin');
        writeLlama2cV1(l2c, cfg, orig.params);
        const files = [gguf, join(hf, 'model.safetensors'), l2c];
        const before = files.map((f) => readFileSync(f));
        const loaded = [
          { name: 'gguf', ...importGgufModel(gguf) },
          { name: 'hf', ...importHfCheckpoint(hf) },
          { name: 'llama2c', ...readLlama2c(l2c) },
        ];
        for (const m of loaded) {
          assert.equal(m.source, mode, m.name);
          const w = m.params.get('model.layers.0.mlp.up_proj.weight')!.data;
          if (mode === 'mmap') assert.ok(w.buffer.byteLength > w.byteLength, `${m.name}: a view into the mapped file`);
          else assert.equal(w.buffer.byteLength, w.byteLength, `${m.name}: its own buffer`);
          // q/k are permuted from Meta's RoPE order in GGUF and llama2.c files: always copies
          const q = m.params.get('model.layers.0.self_attn.q_proj.weight')!.data;
          if (m.name !== 'hf') assert.equal(q.buffer.byteLength, q.byteLength, `${m.name}: converted tensors are copies`);
          assert.deepEqual(q, orig.params.get('model.layers.0.self_attn.q_proj.weight')!.data);
          const model = new Transformer(cfg, m.params);
          const w0 = w[0];
          trainStep(model);
          assert.notEqual(w[0], w0, `${m.name}: AdamW updated the loaded weight in place`);
          w[1] = 1234.5; // and a direct write
        }
        files.forEach((f, i) => assert.ok(readFileSync(f).equals(before[i]), `${f} is unchanged`));
        const again = importGgufModel(gguf).params.get('model.layers.0.mlp.up_proj.weight')!.data;
        assert.deepEqual(again, orig.params.get('model.layers.0.mlp.up_proj.weight')!.data);
        for (const f of files) assert.equal(openDescriptorsOf(f) ?? 0, 0, `no descriptor left open on ${f}`);
      } finally {
        if (saved === undefined) delete process.env.LLMTS_MMAP;
        else process.env.LLMTS_MMAP = saved;
      }
    });
  }

  it('quantized GGUF blocks are views into the mapping unless their rows are permuted', async () => {
    const cfg = tinyLlama();
    const orig = new Transformer(cfg, new Rng(4));
    const p = join(dir, 'q8.gguf');
    exportGgufModel(p, cfg, orig.params, { quant: 'q8_0' });
    const m = await loadAnyModel(p);
    assert.equal(m.source, mapping ? 'mmap' : 'read');
    const v = m.quantized!.get('model.layers.0.self_attn.v_proj.weight')!.blocks;
    const q = m.quantized!.get('model.layers.0.self_attn.q_proj.weight')!.blocks;
    if (mapping) assert.ok(v.buffer.byteLength > v.byteLength, 'raw blocks stay in the mapping');
    assert.equal(q.buffer.byteLength, q.byteLength, 'permuted q rows are a copy');
    const model = new Transformer(m.config, m.params, { quantized: m.quantized });
    const { logits } = noGrad(() => model.forward(Int32Array.from([1, 2, 3]), 1, 3));
    assert.ok(logits.data.every(Number.isFinite));
  });
});
