/**
 * Encode throughput of our byte-level BPE (src/tokenizer/bpe.ts) against tiktoken (Rust compiled to
 * WebAssembly), js-tiktoken and gpt-tokenizer, all with the cl100k_base vocabulary, in one process
 * on the same text: Tiny Shakespeare repeated 10 times (~11 MB).
 *
 *   node dist/bench/tokenizer.js [--runs 5] [--repeat 10] [--encoding cl100k_base|o200k_base|r50k_base]
 *
 * Every library first encodes the text once (warm-up, not timed; its ids must equal ours, or the
 * bench fails). Then each timed round runs every library once, in rotating order; the table shows
 * the median over rounds. Our vocabulary is the .tiktoken rank file rebuilt from js-tiktoken's bundled
 * ranks (byte-identical to OpenAI's file: same sha256), read through our parser, so no network is needed.
 */
import { readFileSync } from 'node:fs';
import { trainBpe } from '../src/tokenizer/bpe-train.js';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { getEncoding } from 'js-tiktoken';
import { get_encoding } from 'tiktoken';
import * as gptCl100k from 'gpt-tokenizer/encoding/cl100k_base';
import * as gptO200k from 'gpt-tokenizer/encoding/o200k_base';
import * as gptR50k from 'gpt-tokenizer/encoding/r50k_base';
import { parseTiktokenRanks, tiktokenFromRanks, TIKTOKEN_ENCODINGS } from '../src/tokenizer/tiktoken.js';
import { sharedDataPath } from '../test/helpers/shared-data.js';
import { jsTiktokenRankText, type JsTiktokenName } from '../test/helpers/tiktoken-ranks.js';

type Encoder = { name: string; encode: (text: string) => ArrayLike<number> };

const GPT_TOKENIZER: Record<string, { encode: (text: string) => number[] }> = {
  cl100k_base: gptCl100k,
  o200k_base: gptO200k,
  r50k_base: gptR50k,
};

function main(): void {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      repeat: { type: 'string', default: '10' },
      encoding: { type: 'string', default: 'cl100k_base' },
    },
  });
  const runs = Number(values.runs);
  const repeat = Number(values.repeat);
  const encoding = values.encoding as JsTiktokenName;
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(repeat) || repeat < 1) throw new Error('--runs and --repeat must be positive integers');
  if (!GPT_TOKENIZER[encoding]) throw new Error(`--encoding must be one of ${Object.keys(GPT_TOKENIZER).join(', ')}`);

  const path = sharedDataPath('tinyshakespeare/input.txt');
  if (path === null) {
    console.log('Tiny Shakespeare not found (shared/data/tinyshakespeare/input.txt); nothing to measure.');
    return;
  }
  const raw = readFileSync(path);
  const text = Buffer.concat(Array.from({ length: repeat }, () => raw)).toString('utf8');
  const bytes = Buffer.byteLength(text);

  let t0 = performance.now();
  const ours = tiktokenFromRanks(parseTiktokenRanks(jsTiktokenRankText(encoding)), TIKTOKEN_ENCODINGS[encoding]);
  const ourLoadMs = performance.now() - t0;
  const wasm = get_encoding(encoding);
  const js = getEncoding(encoding);
  const gpt = GPT_TOKENIZER[encoding];
  const encoders: Encoder[] = [
    { name: 'llm.ts (ours)', encode: (s) => ours.encode(s) },
    { name: 'tiktoken (WASM)', encode: (s) => wasm.encode(s) },
    { name: 'js-tiktoken', encode: (s) => js.encode(s) },
    { name: 'gpt-tokenizer', encode: (s) => gpt.encode(s) },
  ];

  // warm-up and the identical-ids check
  const reference = ours.encode(text);
  for (const e of encoders.slice(1)) {
    const ids = e.encode(text);
    const n = Math.max(ids.length, reference.length);
    for (let i = 0; i < n; i++) {
      if (ids[i] !== reference[i]) throw new Error(`${e.name} differs from ours at token ${i} (${ids[i]} vs ${reference[i]}); not comparable`);
    }
  }

  const times: number[][] = encoders.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (let k = 0; k < encoders.length; k++) {
      const i = (k + r) % encoders.length;
      t0 = performance.now();
      encoders[i].encode(text);
      times[i].push(performance.now() - t0);
    }
  }
  wasm.free();

  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const med = times.map(median);
  const mbps = med.map((ms) => bytes / 1e6 / (ms / 1000));
  console.log(`## Tokenizer encode throughput (${encoding})\n`);
  console.log(
    `Input: Tiny Shakespeare x${repeat} = ${(bytes / 1e6).toFixed(2)} MB (${text.length.toLocaleString('en-US')} characters) -> ` +
      `${reference.length.toLocaleString('en-US')} tokens; all four libraries produce identical ids (checked). ` +
      `Median of ${runs} runs after one warm-up encode each; Node ${process.version}, load average ${loadavg()[0].toFixed(2)}.\n`,
  );
  console.log('| tokenizer | median ms | MB/s | ours is faster by |');
  console.log('|---|---:|---:|---:|');
  encoders.forEach((e, i) => {
    const ratio = i === 0 ? '-' : `${(med[i] / med[0]).toFixed(2)}x`;
    console.log(`| ${e.name} | ${med[i].toFixed(0)} | ${mbps[i].toFixed(1)} | ${ratio} |`);
  });
  console.log(`\nOur vocabulary load (parse the rank file + build the tables): ${ourLoadMs.toFixed(0)} ms.`);

  // BPE training: a 4096-token vocabulary on Tiny Shakespeare (once), median of 3 runs
  const once = raw.toString('utf8');
  const trainMs: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    trainBpe(once, { vocabSize: 4096, pattern: 'cl100k' });
    trainMs.push(performance.now() - t);
  }
  trainMs.sort((a, b) => a - b);
  console.log(`\n## BPE training\n\n4096-token byte-level vocabulary (cl100k splitting) on Tiny Shakespeare (${(raw.length / 1e6).toFixed(2)} MB): ${(trainMs[1] / 1000).toFixed(2)} s (median of 3).`);
}

main();
