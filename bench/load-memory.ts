/**
 * Peak memory of loading a model: for each file format, a fresh child process loads a model with
 * random weights through loadAnyModel (src/formats/load-model.ts), builds the Transformer and
 * generates one token; the table shows the growth of its peak RSS over the baseline taken just
 * before loading, next to the file size.
 *
 *   node dist/bench/load-memory.js [--shape llama-110m] [--formats gguf-f32,gguf-q8_0,hf,llama2c]
 *                                  [--backends native,reference] [--dir DIR]
 *
 * The files (llama-110m: ~440 MB each in F32) are written once to a temporary directory (or --dir,
 * reused when the files are there) and removed at the end unless --dir is given.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveConfig } from '../src/model/config.js';
import { parameterSpecs } from '../src/model/parameters.js';
import { Transformer } from '../src/model/transformer.js';
import { Rng } from '../src/util/rng.js';
import { measureLoad, MODEL_FILE_KINDS, writeModelFiles, type ModelFileKind } from '../test/helpers/model-memory.js';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: 'llama-110m' },
    formats: { type: 'string', default: MODEL_FILE_KINDS.join(',') },
    backends: { type: 'string', default: 'native,reference' },
    dir: { type: 'string' },
  },
});

const kinds = values.formats.split(',') as ModelFileKind[];
for (const k of kinds) if (!MODEL_FILE_KINDS.includes(k)) throw new Error(`unknown format '${k}' (${MODEL_FILE_KINDS.join(', ')})`);
const backends = values.backends.split(',');
const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'llmts-load-memory-'));
mkdirSync(dir, { recursive: true });

const cfg = resolveConfig(values.shape);
const names: Record<ModelFileKind, string> = { 'gguf-f32': 'model-f32.gguf', 'gguf-q8_0': 'model-q8_0.gguf', hf: 'hf', llama2c: 'model.bin' };
const missing = kinds.filter((k) => !existsSync(join(dir, names[k])));
if (missing.length > 0) {
  process.stderr.write(`writing ${missing.join(', ')} (${values.shape}, random weights) to ${dir}\n`);
  const model = new Transformer(cfg, new Rng(1));
  writeModelFiles(dir, cfg, model.params, missing);
}

const MB = (b: number): string => (b / 2 ** 20).toFixed(0);
const rows: string[] = [];
for (const kind of kinds) {
  for (const b of backends) {
    process.stderr.write(`measuring ${kind} with the ${b} backend\n`);
    const m = measureLoad(join(dir, names[kind]), { LLMTS_BACKEND: b });
    rows.push(`| ${kind} | ${m.backend} | ${m.source} | ${MB(m.fileBytes)} | ${MB(m.loadGrowthBytes)} | ${MB(m.peakGrowthBytes)} | ${(m.peakGrowthBytes / m.fileBytes).toFixed(2)} | ${MB(m.finalGrowthBytes)} | ${m.loadMs.toFixed(0)} |`);
  }
}
console.log(`model ${values.shape} (${(model0Params() / 1e6).toFixed(0)}M parameters), random weights; peak RSS growth over the child's baseline (MiB)\n`);
console.log('| file | backend | read by | file MiB | after load | after load + 1 token | peak / file | RSS at end | load ms |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(`\n${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`);
if (!values.dir) rmSync(dir, { recursive: true, force: true });

function model0Params(): number {
  return parameterSpecs(cfg).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}
