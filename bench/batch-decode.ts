/**
 * Batched decoding: tokens/s of 1 sequence against 4, 8 and 16 decoded together (BatchDecoder,
 * continuous batching over a KV cache with a batch dimension), on the llama-15m shape, float32.
 *
 *   node dist/bench/batch-decode.js [--batches 1,4,8,16] [--tokens 64] [--prompt 32] [--reps 3] [--shape llama-15m]
 *
 * The model has random weights (new Transformer(cfg, new Rng(1))). Each batch size B decodes B
 * prompts of --prompt tokens (different ids per sequence), --tokens new tokens each, greedy; EOS
 * does not stop. "one at a time" is the existing single-sequence path (generateCached, the fused
 * decode step) on the first of the prompts. Decode tokens/s = generated tokens / time in decode
 * steps (sampling included, prefill excluded); all-in tokens/s also counts the prefills. CPU ms
 * per token (process.cpuUsage, all threads) is what the work costs whatever else the machine
 * runs. Each row is the best of --reps runs, the runs of all rows interleaved (so a change in the
 * machine's load hits every row alike), after one warm-up. Before timing, the bench checks that
 * the batched tokens of every sequence equal one-at-a-time greedy decoding of that prompt.
 *
 * Threads: LLMTS_THREADS (the native pool's size, fixed when the addon loads). Prints a markdown
 * table, then the backend, the load average and the date.
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { describeBackend } from '../src/backend/index.js';
import { BatchDecoder } from '../src/generate/batch-decoder.js';
import { generateCached } from '../src/generate/generate.js';
import { resolveConfig } from '../src/model/config.js';
import { Transformer } from '../src/model/transformer.js';
import { Rng } from '../src/util/rng.js';

interface Run {
  /** generated tokens / decode-step seconds */
  decode: number;
  /** generated tokens / wall seconds including prefills */
  allIn: number;
  /** CPU milliseconds (user + system, all threads) per generated token in decode steps */
  cpuPerToken: number;
}

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '1,4,8,16' },
    tokens: { type: 'string', default: '64' },
    prompt: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    shape: { type: 'string', default: 'llama-15m' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log('usage: node dist/bench/batch-decode.js [--batches 1,4,8,16] [--tokens 64] [--prompt 32] [--reps 3] [--shape llama-15m]');
  process.exit(0);
}
const batches = values.batches!.split(',').map(Number);
const tokens = Number(values.tokens);
const promptLen = Number(values.prompt);
const reps = Number(values.reps);
const cfg = resolveConfig(values.shape!);
const model = new Transformer(cfg, new Rng(1));
model.eval();
const V = cfg.vocabSize;
const greedy = { maxTokens: tokens, temperature: 0, topK: 0, seed: 1 };

const prompts = Array.from({ length: Math.max(...batches) }, (_, s) => Array.from({ length: promptLen }, (_, i) => (1 + 97 * s + 31 * i) % V));

/** B sequences together: every token counted, decode-step time and CPU measured apart from prefill. */
function batched(B: number): Run & { ids: number[][] } {
  const dec = new BatchDecoder(model, { slots: B });
  const t0 = performance.now();
  const seqs = prompts.slice(0, B).map((p) => dec.add(p, greedy));
  const t1 = performance.now();
  const c0 = process.cpuUsage();
  dec.runToEnd();
  const cpu = process.cpuUsage(c0);
  const t2 = performance.now();
  const generated = seqs.reduce((n, s) => n + s.tokens.length, 0);
  return {
    decode: generated / ((t2 - t1) / 1000),
    allIn: generated / ((t2 - t0) / 1000),
    cpuPerToken: (cpu.user + cpu.system) / 1000 / generated,
    ids: seqs.map((s) => s.ids),
  };
}

/** One sequence on the single-sequence path (generateCached). */
function single(prompt: number[]): Run & { ids: number[] } {
  const ids: number[] = [];
  const t0 = performance.now();
  let t1 = t0;
  let c0 = process.cpuUsage();
  for (const t of generateCached(model, prompt, greedy)) {
    if (ids.length === 0) {
      t1 = performance.now();
      c0 = process.cpuUsage();
    }
    ids.push(t.id);
  }
  const cpu = process.cpuUsage(c0);
  const t2 = performance.now();
  // the first token comes from the prefill; the other tokens - 1 from decode steps
  return { decode: (ids.length - 1) / ((t2 - t1) / 1000), allIn: ids.length / ((t2 - t0) / 1000), cpuPerToken: (cpu.user + cpu.system) / 1000 / (ids.length - 1), ids };
}

// identical tokens: every sequence of the largest batch against one-at-a-time greedy decoding
const largest = Math.max(...batches);
const check = batched(largest);
let identical = 0;
for (let s = 0; s < largest; s++) if (JSON.stringify(single(prompts[s]).ids) === JSON.stringify(check.ids[s])) identical++;
process.stderr.write(`identical tokens: ${identical}/${largest} sequences of ${tokens} tokens\n`);

const load = loadavg();
const runs = new Map<string, Run[]>();
const rows = ['one at a time', ...batches.map((b) => `batch ${b}`)];
for (const r of rows) runs.set(r, []);
single(prompts[0]);
for (const b of batches) batched(b); // warm-up
for (let rep = 0; rep < reps; rep++) {
  runs.get('one at a time')!.push(single(prompts[0]));
  for (const b of batches) runs.get(`batch ${b}`)!.push(batched(b));
  process.stderr.write(`rep ${rep + 1}/${reps} done\n`);
}

const best = (rs: Run[]): Run => ({
  decode: Math.max(...rs.map((r) => r.decode)),
  allIn: Math.max(...rs.map((r) => r.allIn)),
  cpuPerToken: Math.min(...rs.map((r) => r.cpuPerToken)),
});
const base = best(runs.get('one at a time')!);
console.log(`| ${values.shape} F32, ${promptLen}-token prompts, ${tokens} new tokens each | sequences | decode tok/s | × one at a time | all-in tok/s | CPU ms / token |`);
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  const b = best(runs.get(r)!);
  const n = r === 'one at a time' ? 1 : Number(r.split(' ')[1]);
  console.log(`| ${r} | ${n} | ${b.decode.toFixed(0)} | ${(b.decode / base.decode).toFixed(2)}× | ${b.allIn.toFixed(0)} | ${b.cpuPerToken.toFixed(2)} |`);
}
console.log();
console.log(`identical tokens to one-at-a-time greedy decoding: ${identical}/${largest} sequences`);
console.log(`${new Date().toISOString().slice(0, 10)}, ${describeBackend()}, ${cpus().length} CPUs, load average ${load.map((x) => x.toFixed(2)).join(' ')} at the start, ${loadavg().map((x) => x.toFixed(2)).join(' ')} at the end; best of ${reps}`);
