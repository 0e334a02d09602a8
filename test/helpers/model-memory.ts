/**
 * Peak memory of loading a model file, measured in a fresh child process (used by
 * bench/load-memory.ts and test/formats/load-memory.test.ts).
 *
 *   const files = writeModelFiles(dir, config, params, ['gguf-f32', 'hf']);
 *   const m = measureLoad(files['gguf-f32']);   // { fileBytes, peakGrowthBytes, ... }
 *
 * The child (this file run with --measure-load PATH) starts the backend, records its peak RSS
 * (VmHWM on Linux, reset to the current RSS) as the baseline, then loads the model with loadAnyModel, builds
 * the Transformer and generates one token from a 4-token prompt (prefill + one decode step), and
 * prints one JSON line: peak RSS growth over the baseline after loading and after the forward.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backend, describeBackend } from '../../src/backend/index.js';
import { exportGgufModel } from '../../src/formats/gguf-model.js';
import { exportHfCheckpoint } from '../../src/formats/hf-checkpoint.js';
import { hfToMetaRows, LLAMA2C_MAGIC } from '../../src/formats/llama2c.js';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { generateCached } from '../../src/generate/generate.js';
import type { ModelConfig } from '../../src/model/config.js';
import { Transformer } from '../../src/model/transformer.js';
import type { Tensor } from '../../src/tensor/index.js';

export type ModelFileKind = 'gguf-f32' | 'gguf-q8_0' | 'hf' | 'llama2c';
export const MODEL_FILE_KINDS: readonly ModelFileKind[] = ['gguf-f32', 'gguf-q8_0', 'hf', 'llama2c'];

export interface LoadMeasurement {
  path: string;
  /** bytes of the model file(s) */
  fileBytes: number;
  /** the backend the child used, e.g. "native (avx512, 2 threads)" */
  backend: string;
  /** how loadAnyModel read the file: 'mmap' or 'read' (lazy per-tensor reads) */
  source: string;
  baselineBytes: number;
  /** max RSS after loading minus the baseline */
  loadGrowthBytes: number;
  /** max RSS after loading, building the model and one generation step, minus the baseline */
  peakGrowthBytes: number;
  /** RSS at the end minus the baseline */
  finalGrowthBytes: number;
  loadMs: number;
  token: number;
}

/** Write the model in each requested format under dir; returns the path of each. */
export function writeModelFiles(dir: string, cfg: ModelConfig, params: Map<string, Tensor>, kinds: readonly ModelFileKind[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kind of kinds) {
    if (kind === 'gguf-f32' || kind === 'gguf-q8_0') {
      const path = join(dir, `model-${kind.slice(5)}.gguf`);
      exportGgufModel(path, cfg, params, { quant: kind === 'gguf-f32' ? 'f32' : 'q8_0' });
      out[kind] = path;
    } else if (kind === 'hf') {
      const path = join(dir, 'hf');
      exportHfCheckpoint(path, cfg, params);
      out[kind] = path;
    } else {
      const path = join(dir, 'model.bin');
      writeLlama2cV1(path, cfg, params);
      out[kind] = path;
    }
  }
  return out;
}

/** A llama2.c version 1 file (export.py's version1_export layout), written part by part. */
export function writeLlama2cV1(path: string, cfg: ModelConfig, p: Map<string, Tensor>): void {
  if (cfg.family !== 'llama') throw new Error('llama2.c files hold Llama models only');
  const hs = cfg.nEmbd / cfg.nHead;
  const layers = Array.from({ length: cfg.nLayer }, (_, l) => l);
  const w = (l: number, n: string): Float32Array => p.get(`model.layers.${l}.${n}.weight`)!.data;
  const header = Buffer.alloc(256);
  header.writeUInt32LE(LLAMA2C_MAGIC, 0);
  header.writeInt32LE(1, 4);
  [cfg.nEmbd, cfg.hiddenDim, cfg.nLayer, cfg.nHead, cfg.nKvHead, cfg.vocabSize, cfg.blockSize].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
  header.writeUInt8(cfg.tiedEmbeddings ? 1 : 0, 36);
  const parts: (() => Float32Array)[] = [
    ...layers.map((l) => () => w(l, 'input_layernorm')),
    ...layers.map((l) => () => w(l, 'post_attention_layernorm')),
    () => p.get('model.norm.weight')!.data,
    () => p.get('model.embed_tokens.weight')!.data,
    ...layers.map((l) => () => hfToMetaRows(w(l, 'self_attn.q_proj'), cfg.nHead, hs, cfg.nEmbd)),
    ...layers.map((l) => () => hfToMetaRows(w(l, 'self_attn.k_proj'), cfg.nKvHead, hs, cfg.nEmbd)),
    ...layers.map((l) => () => w(l, 'self_attn.v_proj')),
    ...layers.map((l) => () => w(l, 'self_attn.o_proj')),
    ...layers.map((l) => () => w(l, 'mlp.gate_proj')),
    ...layers.map((l) => () => w(l, 'mlp.down_proj')),
    ...layers.map((l) => () => w(l, 'mlp.up_proj')),
    ...(cfg.tiedEmbeddings ? [] : [() => p.get('lm_head.weight')!.data]),
  ];
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, header);
    for (const part of parts) {
      const a = part();
      writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    }
  } finally {
    closeSync(fd);
  }
}

/** Total bytes of a model file, or of the files of a Hugging Face directory. */
export function modelBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return statSync(join(path, 'model.safetensors')).size + statSync(join(path, 'config.json')).size;
}

const SELF = fileURLToPath(import.meta.url);

/** Load `path` in a fresh child process and report its memory (env is added to this process's). */
export function measureLoad(path: string, env: Record<string, string> = {}): LoadMeasurement {
  const r = spawnSync(process.execPath, [SELF, '--measure-load', path], {
    env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 20,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    throw new Error(`measuring ${path} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  }
  return { ...(JSON.parse(line) as Omit<LoadMeasurement, 'fileBytes'>), fileBytes: modelBytes(path) };
}

/**
 * Peak RSS in bytes. On Linux /proc/self/status VmHWM (the peak of this process image only:
 * getrusage's maxRSS keeps the parent's peak across fork + exec, which would hide the growth
 * we measure); elsewhere process.resourceUsage().maxRSS (kilobytes on Linux and macOS).
 */
function peakRssBytes(): number {
  const kb = procStatusKb('VmHWM');
  return kb !== null ? kb * 1024 : process.resourceUsage().maxRSS * 1024;
}

function procStatusKb(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Reset the peak to the current RSS where Linux allows it (clear_refs 5); returns the baseline. */
function resetPeak(): number {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    const kb = procStatusKb('VmRSS');
    if (kb !== null) return kb * 1024;
  } catch {
    // not Linux: the peak so far is the baseline
  }
  return peakRssBytes();
}

async function child(path: string): Promise<void> {
  backend(); // load the native addon (or not) before the baseline
  describeBackend();
  const baseline = resetPeak();
  const t0 = performance.now();
  const m = await loadAnyModel(path);
  const loadMs = performance.now() - t0;
  const afterLoad = peakRssBytes();
  const model = new Transformer(m.config, m.params, { quantized: m.quantized });
  let token = -1;
  for (const t of generateCached(model, [1, 2, 3, 4], { maxTokens: 1, temperature: 0, topK: 0, seed: 1 })) token = t.id;
  const peak = peakRssBytes();
  const result: Omit<LoadMeasurement, 'fileBytes'> = {
    path, backend: describeBackend(), source: m.source, baselineBytes: baseline,
    loadGrowthBytes: afterLoad - baseline, peakGrowthBytes: peak - baseline,
    finalGrowthBytes: process.memoryUsage().rss - baseline, loadMs, token,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

if (process.argv[1] === SELF && process.argv[2] === '--measure-load') {
  await child(process.argv[3]);
}
