/**
 * Inference speed: prefill and decode tokens/s of Llama shapes, llm.ts next to llama.cpp
 * (through node-llama-cpp), on the SAME GGUF files, same machine, same run.
 *
 *   node dist/bench/decode.js [--shapes 15m,110m] [--quants f32,q8_0,q4_0] [--threads 1,2]
 *                             [--tokens 64] [--prompt 100] [--reps 3] [--vocab PATH]
 *
 * The models have random weights (new Transformer(cfg, new Rng(seed))) and are exported once per
 * shape/quant to a tmp dir with the Llama 2 SentencePiece vocabulary (llama.cpp needs one).
 * Prompt: token ids 1..N (mod vocab). Greedy (temperature 0), EOS does not stop either side.
 * Prefill = prompt tokens / time to the first generated token; decode = the remaining tokens /
 * their time. Our thread count is fixed per process (LLMTS_THREADS, read at addon load), so our
 * side runs in a child process per (file, thread count); llama.cpp runs in this process with its
 * `threads` context option. Each measurement is the best of --reps runs after one warm-up.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { nativeBackendInfo } from '../src/backend/index.js';
import { exportGgufModel, importGgufModel, type GgufQuant } from '../src/formats/gguf-model.js';
import { generateCached } from '../src/generate/generate.js';
import { resolveConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { readGgufSentencePiece } from '../src/tokenizer/gguf-sentencepiece.js';
import { Rng } from '../src/util/rng.js';
import { sharedDataPath } from '../test/helpers/shared-data.js';

interface Speed {
  prefill: number;
  decode: number;
  generated: number;
  error?: string;
}

/** The part of node-llama-cpp's API this bench uses (it is not a dependency, so no types). */
interface LlamaContext {
  getSequence(): { evaluate(tokens: number[], opts: { temperature: number; yieldEogToken?: boolean }): AsyncIterable<number> };
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(opts: { contextSize: number; threads: number; batchSize?: number }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(opts: { gpu: false; build: 'never' }): Promise<{ loadModel(opts: { modelPath: string }): Promise<LlamaModel> }>;
}

const SHAPES: Record<string, string> = { '15m': 'llama-15m', '110m': 'llama-110m' };

function promptIds(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i + 1) % vocab);
}

function best(runs: Speed[]): Speed {
  return {
    prefill: Math.max(...runs.map((r) => r.prefill)),
    decode: Math.max(...runs.map((r) => r.decode)),
    generated: Math.min(...runs.map((r) => r.generated)),
  };
}

/** Child mode: our speed on one file with the thread count given by LLMTS_THREADS. */
function runOurs(file: string, tokens: number, promptLen: number, reps: number): Speed & { threads: number; simd: string } {
  const info = nativeBackendInfo();
  const m = importGgufModel(file, { keepQuantized: true, tokenizer: false });
  const model = new Transformer(m.config, m.params, { quantized: m.quantized });
  const prompt = promptIds(promptLen, m.config.vocabSize);
  const once = (n: number): Speed => {
    const t0 = performance.now();
    let t1 = t0;
    let count = 0;
    for (const _t of generateCached(model, prompt, { maxTokens: n, temperature: 0, topK: 0, seed: 1 })) {
      if (count === 0) t1 = performance.now();
      count++;
    }
    const t2 = performance.now();
    return { prefill: promptLen / ((t1 - t0) / 1000), decode: (count - 1) / ((t2 - t1) / 1000), generated: count };
  };
  once(Math.min(tokens, 4)); // warm-up
  const runs: Speed[] = [];
  for (let r = 0; r < reps; r++) runs.push(once(tokens));
  return { ...best(runs), threads: info?.threads ?? 0, simd: info?.simd ?? 'js' };
}

let llamaInstance: Awaited<ReturnType<NodeLlamaCpp['getLlama']>> | null = null;

async function runLlamaCpp(lib: NodeLlamaCpp, file: string, ctxSize: number, threads: number, tokens: number, promptLen: number, reps: number): Promise<Speed> {
  llamaInstance ??= await lib.getLlama({ gpu: false, build: 'never' });
  const model = await llamaInstance.loadModel({ modelPath: file });
  try {
    const prompt = promptIds(promptLen, 32000);
    const once = async (n: number): Promise<Speed> => {
      // a fresh context per run: no prompt cache carried between runs
      const context = await model.createContext({ contextSize: ctxSize, threads, batchSize: Math.max(512, promptLen) });
      try {
        const t0 = performance.now();
        let t1 = t0;
        let count = 0;
        for await (const _t of context.getSequence().evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
          if (count === 0) t1 = performance.now();
          if (++count >= n) break;
        }
        const t2 = performance.now();
        return { prefill: promptLen / ((t1 - t0) / 1000), decode: (count - 1) / ((t2 - t1) / 1000), generated: count };
      } finally {
        await context.dispose();
      }
    };
    await once(Math.min(tokens, 4));
    const runs: Speed[] = [];
    for (let r = 0; r < reps; r++) runs.push(await once(tokens));
    return best(runs);
  } finally {
    await model.dispose();
  }
}

function findVocab(flag: string | undefined): string | null {
  return flag ?? sharedDataPath('gguf-vocab/ggml-vocab-llama-spm.gguf');
}

function nodeLlamaCppEntry(): string | null {
  const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));
  if (!existsSync(join(benchDir, 'node_modules', 'node-llama-cpp'))) return null;
  try {
    return createRequire(join(benchDir, 'package.json')).resolve('node-llama-cpp');
  } catch {
    return null;
  }
}

const fmt = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(1));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      shapes: { type: 'string' },
      quants: { type: 'string' },
      threads: { type: 'string' },
      tokens: { type: 'string' },
      prompt: { type: 'string' },
      reps: { type: 'string' },
      vocab: { type: 'string' },
      keep: { type: 'boolean' },
    },
  });
  const tokens = Number(values.tokens ?? 64);
  const promptLen = Number(values.prompt ?? 100);
  const reps = Math.max(1, Number(values.reps ?? 3));
  if (values.child) {
    process.stdout.write(JSON.stringify(runOurs(values.child, tokens, promptLen, reps)) + '\n');
    return;
  }
  const shapes = (values.shapes ?? '15m,110m').split(',');
  for (const s of shapes) if (!SHAPES[s]) throw new Error(`unknown shape '${s}' (15m, 110m)`);
  const quants = (values.quants ?? 'f32,q8_0,q4_0').split(',') as GgufQuant[];
  const threadCounts = (values.threads ?? '1,2').split(',').map(Number).filter((n, i, a) => n > 0 && a.indexOf(n) === i);
  const vocabPath = findVocab(values.vocab);
  if (!vocabPath) throw new Error('Llama SentencePiece vocab not found (shared/data/gguf-vocab/ggml-vocab-llama-spm.gguf); pass --vocab PATH');
  const tokenizer = readGgufSentencePiece(vocabPath);
  const entry = nodeLlamaCppEntry();
  const lib = entry ? ((await import(pathToFileURL(entry).href)) as NodeLlamaCpp) : null;
  const load = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'llmts-decode-'));
  const self = fileURLToPath(import.meta.url);
  const rows: { shape: string; quant: string; threads: number; ours: Speed; theirs: Speed | null }[] = [];
  let simd = '';
  try {
    for (const shape of shapes) {
      const cfg = resolveConfig(SHAPES[shape]);
      if (promptLen + tokens > cfg.blockSize) throw new Error(`--prompt + --tokens (${promptLen + tokens}) exceeds the ${shape} context (${cfg.blockSize})`);
      process.stderr.write(`${shape}: initialising random weights...\n`);
      const params = new Transformer(cfg, new Rng(1234)).params;
      for (const quant of quants) {
        const file = join(dir, `${shape}-${quant}.gguf`);
        exportGgufModel(file, cfg, params, { quant, tokenizer });
        process.stderr.write(`${shape} ${quant}: ${(statSync(file).size / 2 ** 20).toFixed(0)} MiB\n`);
        for (const threads of threadCounts) {
          process.stderr.write(`  ${threads} thread(s): llm.ts...`);
          const r = spawnSync(process.execPath, [self, '--child', file, '--tokens', String(tokens), '--prompt', String(promptLen), '--reps', String(reps)], {
            encoding: 'utf8', env: { ...process.env, LLMTS_THREADS: String(threads) }, maxBuffer: 1 << 20,
          });
          let ours: Speed;
          try {
            const o = JSON.parse(r.stdout.trim().split('\n').slice(-1)[0]) as Speed & { simd: string; threads: number };
            simd = o.simd;
            if (o.threads !== threads) o.error = `ran with ${o.threads} threads`;
            ours = o;
          } catch {
            ours = { prefill: NaN, decode: NaN, generated: 0, error: (r.stderr || 'failed').trim().split('\n').slice(-1)[0] };
          }
          let theirs: Speed | null = null;
          if (lib) {
            process.stderr.write(' llama.cpp...');
            try {
              theirs = await runLlamaCpp(lib, file, cfg.blockSize, threads, tokens, promptLen, reps);
            } catch (err) {
              theirs = { prefill: NaN, decode: NaN, generated: 0, error: (err as Error).message };
            }
          }
          process.stderr.write(` decode ${fmt(ours.decode)} vs ${fmt(theirs?.decode)} tok/s\n`);
          rows.push({ shape, quant, threads, ours, theirs });
        }
        if (!values.keep) rmSync(file, { force: true });
      }
    }
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }

  const ratio = (a: number | undefined, b: number | undefined): string => (a && b && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '—');
  console.log(`\n| shape | quant | threads | ours prefill tok/s | llama.cpp prefill tok/s | ours decode tok/s | llama.cpp decode tok/s | decode ratio |`);
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(`| ${r.shape} | ${r.quant} | ${r.threads} | ${fmt(r.ours.prefill)} | ${fmt(r.theirs?.prefill)} | ${fmt(r.ours.decode)} | ${fmt(r.theirs?.decode)} | ${ratio(r.ours.decode, r.theirs?.decode)} |`);
  }
  if (lib) {
    console.log('\nBest over thread counts (ours best / llama.cpp best):\n');
    console.log('| shape | quant | prefill ratio | decode ratio |');
    console.log('| --- | --- | ---: | ---: |');
    for (const shape of shapes) {
      for (const quant of quants) {
        const g = rows.filter((r) => r.shape === shape && r.quant === quant);
        const m = (xs: number[]): number => Math.max(...xs.filter(Number.isFinite));
        console.log(
          `| ${shape} | ${quant} | ${ratio(m(g.map((r) => r.ours.prefill)), m(g.map((r) => r.theirs?.prefill ?? NaN)))} | ${ratio(m(g.map((r) => r.ours.decode)), m(g.map((r) => r.theirs?.decode ?? NaN)))} |`,
        );
      }
    }
  } else {
    console.log('\nnode-llama-cpp is not installed (npm --prefix bench install): llm.ts only.');
  }
  const llamaVersion = entry ? (JSON.parse(readFileSync(join(fileURLToPath(new URL('../../bench/', import.meta.url)), 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8')) as { version: string }).version : null;
  console.log(`\n${new Date().toISOString()}; ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; load average at start ${load.toFixed(2)}, at end ${loadavg()[0].toFixed(2)}`);
  console.log(`llm.ts native (${simd || '?'}) vs ${llamaVersion ? `node-llama-cpp ${llamaVersion} (CPU, prebuilt llama.cpp)` : 'no peer'}; prompt ${promptLen} tokens, ${tokens} generated, greedy, best of ${reps} after a warm-up`);
  for (const r of rows) {
    if (r.ours.error) console.log(`llm.ts ${r.shape} ${r.quant} ${r.threads}t: ${r.ours.error}`);
    if (r.theirs?.error) console.log(`llama.cpp ${r.shape} ${r.quant} ${r.threads}t: ${r.theirs.error}`);
    if (r.ours.generated && r.ours.generated < tokens) console.log(`llm.ts ${r.shape} ${r.quant} ${r.threads}t generated only ${r.ours.generated}`);
    if (r.theirs && r.theirs.generated && r.theirs.generated < tokens) console.log(`llama.cpp ${r.shape} ${r.quant} ${r.threads}t generated only ${r.theirs.generated}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
