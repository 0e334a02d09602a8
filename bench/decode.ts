/**
 * Inference speed: prefill and decode tokens/s of Llama shapes, llm.ts next to llama.cpp
 * (through node-llama-cpp), on the SAME GGUF files, same machine, same run; and next to
 * llama2.c's run.c on the same weights written as a llama2.c file (F32 only).
 *
 *   node dist/bench/decode.js [--shapes 15m,110m] [--quants f32,q8_0,q4_0] [--threads 1,2]
 *                             [--tokens 64] [--prompt 100] [--reps 3] [--vocab PATH]
 *                             [--llama2c DIR]     (or LLAMA2C_DIR=DIR: a llama2.c checkout)
 *
 * The models have random weights (new Transformer(cfg, new Rng(seed))) and are exported once per
 * shape/quant to a tmp dir with the Llama 2 SentencePiece vocabulary (llama.cpp needs one).
 * Prompt: token ids 1..N (mod vocab). Greedy (temperature 0), EOS does not stop either side.
 * Prefill = prompt tokens / time to the first generated token; decode = the remaining tokens /
 * their time. Our thread count is fixed per process (LLMTS_THREADS, read at addon load), so our
 * side runs in a child process per (file, thread count); llama.cpp runs in this process with its
 * `threads` context option. Each measurement is the best of --reps runs after one warm-up.
 * TTFT = time to the first generated token for the --prompt-token prompt (prefill + one token
 * out), in ms.
 *
 * llama2.c: the repo holds no llama2.c code; --llama2c DIR points at a checkout holding run.c,
 * compiled once with `gcc -Ofast -fopenmp -march=native run.c -lm` into the tmp dir. Each shape's
 * weights are written with writeLlama2c (version 0, the layout run.c reads) with the Llama 2
 * vocabulary as tokenizer.bin, and run as `OMP_NUM_THREADS=<threads> run model.bin -z
 * tokenizer.bin -t 0 -n <1 + tokens> -i Once`. What run.c measures ("achieved tok/s"): the
 * timer starts after the first forward (BOS) and stops at the end; rate = (pos - 1) / time,
 * which counts every forward after the first, prompt tokens included, one token per forward
 * (run.c has no batched prefill). With the one-token prompt " Once" the timed forwards are the
 * one that produces the first generated token and the ones that produce the rest: `tokens`
 * single-token forwards at positions 1..tokens, i.e. decode speed. The llama2.c ratio divides it
 * into ours on the same schedule (a one-token prompt, then `tokens` forwards at positions
 * 1..tokens: "ours decode at run.c's positions"), since the attention span (and so the work per
 * token) grows with the position; the llama.cpp columns use the --prompt-token prompt. Greedy run.c stops at BOS (token 1); so that it always produces `tokens`
 * tokens, the llama2.c file's classifier row for BOS is zeroed (logit exactly 0, below the max of
 * 31,999 random logits; the work per token is unchanged). The bench also checks that run.c loads
 * our file correctly: it decodes our own greedy continuation of the same weights and prompt with
 * run.c's printing rules and reports how many leading tokens of run.c's output text agree.
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
import { writeLlama2c } from '../src/formats/llama2c-write.js';
import type { ModelConfig } from '../src/model/config.js';
import { Tensor } from '../src/tensor/index.js';
import { writeLlama2cTokenizer } from '../src/tokenizer/llama2c-tokenizer.js';
import type { SentencePieceTokenizer } from '../src/tokenizer/sentencepiece.js';
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
  /** time to first token, ms */
  ttft?: number;
  /** ours: decode tok/s after a one-token prompt (the positions run.c times), for the llama2.c ratio */
  decodeShort?: number;
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

/** The smallest finite ratio (the best peer is the one we compare worst against), NaN if none. */
function worstOf(ratios: number[]): number {
  const ok = ratios.filter(Number.isFinite);
  return ok.length ? Math.min(...ok) : NaN;
}

function best(runs: Speed[]): Speed {
  return {
    prefill: Math.max(...runs.map((r) => r.prefill)),
    decode: Math.max(...runs.map((r) => r.decode)),
    generated: Math.min(...runs.map((r) => r.generated)),
    ttft: Math.min(...runs.map((r) => r.ttft ?? Infinity)),
  };
}

/** Child mode: our speed on one file with the thread count given by LLMTS_THREADS. */
function runOurs(file: string, tokens: number, promptLen: number, reps: number): Speed & { threads: number; simd: string } {
  const info = nativeBackendInfo();
  const m = importGgufModel(file, { keepQuantized: true, tokenizer: false });
  const model = new Transformer(m.config, m.params, { quantized: m.quantized });
  const once = (n: number, prompt = promptIds(promptLen, m.config.vocabSize)): Speed => {
    const t0 = performance.now();
    let t1 = t0;
    let count = 0;
    for (const _t of generateCached(model, prompt, { maxTokens: n, temperature: 0, topK: 0, seed: 1 })) {
      if (count === 0) t1 = performance.now();
      count++;
    }
    const t2 = performance.now();
    return { prefill: prompt.length / ((t1 - t0) / 1000), decode: (count - 1) / ((t2 - t1) / 1000), generated: count, ttft: t1 - t0 };
  };
  once(Math.min(tokens, 4)); // warm-up
  const runs: Speed[] = [];
  const short: number[] = [];
  for (let r = 0; r < reps; r++) {
    runs.push(once(tokens));
    // the schedule run.c times: a one-token prompt, then `tokens` forwards at positions 1..tokens
    short.push(once(tokens + 1, [1]).decode);
  }
  return { ...best(runs), decodeShort: Math.max(...short), threads: info?.threads ?? 0, simd: info?.simd ?? 'js' };
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
        return { prefill: promptLen / ((t1 - t0) / 1000), decode: (count - 1) / ((t2 - t1) / 1000), generated: count, ttft: t1 - t0 };
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

/** The one-word prompt given to run.c (a single token of the Llama vocabulary). */
const LLAMA2C_PROMPT = 'Once';

/** Compile run.c once; returns the binary or an error message. */
function buildLlama2c(dir: string | undefined, outDir: string): { bin: string } | { error: string } {
  if (!dir) return { error: 'no --llama2c DIR (or LLAMA2C_DIR) given' };
  const src = join(dir, 'run.c');
  if (!existsSync(src)) return { error: `${src} not found: --llama2c must name a llama2.c checkout holding run.c` };
  const bin = join(outDir, 'llama2c-run');
  const args = ['-Ofast', '-fopenmp', '-march=native', src, '-lm', '-o', bin];
  const r = spawnSync('gcc', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr || `exit code ${r.status}`).trim().split('\n').slice(-1)[0];
    return { error: `compiling llama2.c failed (gcc ${args.join(' ')}): ${why}` };
  }
  return { bin };
}

/** The bench weights with the BOS classifier row zeroed, so greedy run.c never stops at BOS. */
function withoutBosLogit(cfg: ModelConfig, params: Map<string, Tensor>): Map<string, Tensor> {
  const name = cfg.tiedEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const w = params.get(name)!;
  const data = Float32Array.from(w.data);
  data.fill(0, cfg.nEmbd, 2 * cfg.nEmbd); // row 1 = BOS
  return new Map(params).set(name, new Tensor(data, w.shape));
}

interface Llama2cSpeed extends Speed {
  /** leading tokens of run.c's output text that equal our greedy continuation (sanity check) */
  agree?: number;
}

function runLlama2c(bin: string, model: string, tokenizerBin: string, threads: number, tokens: number, reps: number): Llama2cSpeed {
  const once = (n: number): Speed & { text: string } => {
    const r = spawnSync(bin, [model, '-z', tokenizerBin, '-t', '0', '-n', String(1 + n), '-i', LLAMA2C_PROMPT], {
      encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) }, maxBuffer: 1 << 24,
    });
    const m = /achieved tok\/s: ([\d.]+)/.exec(r.stderr ?? '');
    if (r.status !== 0 || !m) throw new Error(`run.c failed (exit ${r.status}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-1)[0]}`);
    return { prefill: NaN, decode: Number(m[1]), generated: n, text: r.stdout };
  };
  once(Math.min(tokens, 4)); // warm-up
  const runs: (Speed & { text: string })[] = [];
  for (let r = 0; r < reps; r++) runs.push(once(tokens));
  return { ...best(runs), ttft: undefined, text: runs[0].text } as Llama2cSpeed & { text: string };
}

/** How many of `ids` (our greedy tokens after the prompt), printed the way run.c prints, start run.c's output. */
function agreeingTokens(text: string, ids: number[], tok: SentencePieceTokenizer): number {
  let expected = LLAMA2C_PROMPT; // run.c prints the prompt token, its leading space dropped after BOS
  let n = 0;
  for (const id of ids) {
    const piece = tok.pieces[id].replaceAll('\u2581', ' ');
    const byte = /^<0x([0-9A-F]{2})>$/.exec(piece);
    let s = piece;
    if (byte) {
      const b = parseInt(byte[1], 16);
      s = (b >= 0x20 && b < 0x7f) || (b >= 9 && b <= 13) ? String.fromCharCode(b) : '';
    }
    expected += s;
    if (!text.startsWith(expected)) break;
    n++;
  }
  return n;
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
      llama2c: { type: 'string' },
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
  const rows: { shape: string; quant: string; threads: number; ours: Speed; theirs: Speed | null; l2c: Llama2cSpeed | null }[] = [];
  let simd = '';
  const llama2cDir = values.llama2c ?? process.env.LLAMA2C_DIR;
  const wantLlama2c = llama2cDir !== undefined && quants.includes('f32');
  const l2cBuild = wantLlama2c ? buildLlama2c(llama2cDir, dir) : null;
  if (l2cBuild && 'error' in l2cBuild) process.stderr.write(`llama2.c: ${l2cBuild.error}; running without it\n`);
  const l2cBin = l2cBuild && 'bin' in l2cBuild ? l2cBuild.bin : null;
  const l2cTokenizer = join(dir, 'tokenizer.bin');
  if (l2cBin) writeLlama2cTokenizer(l2cTokenizer, tokenizer);
  try {
    for (const shape of shapes) {
      const cfg = resolveConfig(SHAPES[shape]);
      if (promptLen + tokens > cfg.blockSize) throw new Error(`--prompt + --tokens (${promptLen + tokens}) exceeds the ${shape} context (${cfg.blockSize})`);
      process.stderr.write(`${shape}: initialising random weights...\n`);
      const params = new Transformer(cfg, new Rng(1234)).params;
      let l2cModel: string | null = null;
      let ourGreedy: number[] = [];
      if (l2cBin) {
        l2cModel = join(dir, `${shape}-llama2c.bin`);
        const l2cParams = withoutBosLogit(cfg, params);
        writeLlama2c(l2cModel, cfg, l2cParams, { version: 0 });
        // our greedy continuation of [BOS, "Once"] on the same weights, for the agreement check
        const word = tokenizer.encode(LLAMA2C_PROMPT, { addBos: false });
        if (word.length !== 1) throw new Error(`llama2.c prompt '${LLAMA2C_PROMPT}' is ${word.length} tokens, expected 1`);
        const m = new Transformer(cfg, l2cParams);
        ourGreedy = [...generateCached(m, [1, word[0]], { maxTokens: tokens, temperature: 0, topK: 0, seed: 1 })].map((t) => t.id);
      }
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
          let l2c: Llama2cSpeed | null = null;
          if (l2cBin && l2cModel && quant === 'f32') {
            process.stderr.write(' llama2.c...');
            try {
              const res = runLlama2c(l2cBin, l2cModel, l2cTokenizer, threads, tokens, reps) as Llama2cSpeed & { text: string };
              res.agree = agreeingTokens(res.text, ourGreedy, tokenizer);
              l2c = res;
            } catch (err) {
              l2c = { prefill: NaN, decode: NaN, generated: 0, error: (err as Error).message };
            }
          }
          process.stderr.write(` decode ${fmt(ours.decode)} vs ${fmt(theirs?.decode)}${l2c ? ` vs ${fmt(l2c.decode)}` : ''} tok/s\n`);
          rows.push({ shape, quant, threads, ours, theirs, l2c });
        }
        if (!values.keep) rmSync(file, { force: true });
      }
    }
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }

  const ratio = (a: number | undefined, b: number | undefined): string => (a && b && b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '—');
  const ms = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(1));
  console.log(
    `\n| shape | quant | threads | ours TTFT ms | llama.cpp TTFT ms | ours prefill tok/s | llama.cpp prefill tok/s | ours decode tok/s | llama.cpp decode tok/s | decode ratio | ours decode at run.c's positions | llama2.c decode tok/s | ratio to llama2.c |`,
  );
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(
      `| ${r.shape} | ${r.quant} | ${r.threads} | ${ms(r.ours.ttft)} | ${ms(r.theirs?.ttft)} | ${fmt(r.ours.prefill)} | ${fmt(r.theirs?.prefill)} | ${fmt(r.ours.decode)} | ${fmt(r.theirs?.decode)} | ${ratio(r.ours.decode, r.theirs?.decode)} | ${fmt(r.ours.decodeShort)} | ${fmt(r.l2c?.decode)} | ${ratio(r.ours.decodeShort, r.l2c?.decode)} |`,
    );
  }
  const haveL2c = rows.some((r) => r.l2c && Number.isFinite(r.l2c.decode));
  if (lib || haveL2c) {
    console.log('\nBest over thread counts (ours best / peer best; TTFT in ms, lowest):\n');
    console.log('| shape | quant | ours TTFT | llama.cpp TTFT | prefill ratio (llama.cpp) | decode ratio (llama.cpp) | decode ratio (llama2.c) | decode ratio (best peer) |');
    console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const shape of shapes) {
      for (const quant of quants) {
        const g = rows.filter((r) => r.shape === shape && r.quant === quant);
        const m = (xs: number[]): number => Math.max(...xs.filter(Number.isFinite));
        const lo = (xs: number[]): number => Math.min(...xs.filter(Number.isFinite));
        const ourDecode = m(g.map((r) => r.ours.decode));
        const cppDecode = m(g.map((r) => r.theirs?.decode ?? NaN));
        const l2cDecode = m(g.map((r) => r.l2c?.decode ?? NaN));
        const ourShort = m(g.map((r) => r.ours.decodeShort ?? NaN));
        console.log(
          `| ${shape} | ${quant} | ${ms(lo(g.map((r) => r.ours.ttft ?? NaN)))} | ${ms(lo(g.map((r) => r.theirs?.ttft ?? NaN)))} | ${ratio(m(g.map((r) => r.ours.prefill)), m(g.map((r) => r.theirs?.prefill ?? NaN)))} | ${ratio(ourDecode, cppDecode)} | ${ratio(ourShort, l2cDecode)} | ${ratio(worstOf([ourDecode / cppDecode, ourShort / l2cDecode]), 1)} |`,
        );
      }
    }
  }
  if (!lib) console.log('\nnode-llama-cpp is not installed (npm --prefix bench install): no llama.cpp columns.');
  if (llama2cDir === undefined) console.log('no --llama2c DIR (or LLAMA2C_DIR): no llama2.c columns.');
  else if (!quants.includes('f32')) console.log('llama2.c runs float32 only: add f32 to --quants for its columns.');
  else if (!l2cBin && l2cBuild && 'error' in l2cBuild) console.log(`llama2.c: ${l2cBuild.error}`);
  const llamaVersion = entry ? (JSON.parse(readFileSync(join(fileURLToPath(new URL('../../bench/', import.meta.url)), 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8')) as { version: string }).version : null;
  console.log(`\n${new Date().toISOString()}; ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; load average at start ${load.toFixed(2)}, at end ${loadavg()[0].toFixed(2)}`);
  console.log(`llm.ts native (${simd || '?'}) vs ${llamaVersion ? `node-llama-cpp ${llamaVersion} (CPU, prebuilt llama.cpp)` : 'no llama.cpp'}; prompt ${promptLen} tokens, ${tokens} generated, greedy, best of ${reps} after a warm-up`);
  if (l2cBin) {
    console.log(`llama2.c: ${llama2cDir}/run.c (gcc -Ofast -fopenmp -march=native), F32, OMP_NUM_THREADS = threads; decode = run.c's achieved tok/s with the one-token prompt '${LLAMA2C_PROMPT}' and -n ${1 + tokens} (${tokens} generated)`);
    for (const r of rows) {
      if (!r.l2c) continue;
      if (r.l2c.error) console.log(`llama2.c ${r.shape} ${r.threads}t: ${r.l2c.error}`);
      else console.log(`llama2.c ${r.shape} ${r.threads}t: ran -n ${1 + tokens} to the end (${tokens} generated; BOS's classifier row is zero, so it cannot stop early); its text equals our greedy continuation for the first ${r.l2c.agree} of ${tokens} tokens`);
    }
  }
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
