/**
 * Helpers for the tokenizer parity tests: llama.cpp's tokenizer test vectors (BPE and
 * SentencePiece vocabularies alike) and readable reports of the first place where two id
 * sequences part.
 *
 *   const { inputs, expected } = readLlamaCppVectors('/…/ggml-vocab-gpt-2.gguf');
 *   const i = firstMismatch(ours, ref);
 *   if (i >= 0) assert.fail(mismatchReport(tok, ours, ref, i));
 */
import { readFileSync } from 'node:fs';

/**
 * `X.gguf.inp` / `X.gguf.out` as llama.cpp's tests/test-tokenizer-0.cpp reads them: each input
 * is followed by the separator "\n__ggml_vocab_test__\n" (the file ends with one), taken verbatim,
 * leading and trailing whitespace and newlines included; each .out line holds one input's ids,
 * each preceded by a space (an empty line for the empty input).
 */
export function readLlamaCppVectors(ggufPath: string): { inputs: string[]; expected: number[][] } {
  const inp = readFileSync(`${ggufPath}.inp`, 'utf8');
  const out = readFileSync(`${ggufPath}.out`, 'utf8');
  const inputs = inp.split('\n__ggml_vocab_test__\n');
  if (inputs.pop() !== '') throw new Error(`${ggufPath}.inp does not end with the separator`);
  const lines = out.split('\n');
  if (lines.pop() !== '') throw new Error(`${ggufPath}.out does not end with a newline`);
  const expected = lines.map((l) => l.split(' ').filter((x) => x !== '').map(Number));
  if (expected.length !== inputs.length) throw new Error(`${inputs.length} inputs but ${expected.length} output lines`);
  return { inputs, expected };
}

/** Index of the first difference, or -1 when the sequences are equal. */
export function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** "ids differ at token i of n: ours [...] = "text" vs reference [...] = "text"", with context. */
export function mismatchReport(
  tok: { decode(ids: ArrayLike<number>): string },
  ours: ArrayLike<number>,
  ref: ArrayLike<number>,
  i: number,
  refName = 'reference',
): string {
  const a = Array.from(ours);
  const b = Array.from(ref);
  const from = Math.max(0, i - 3);
  const show = (ids: number[]): string => `${JSON.stringify(ids.slice(from, i + 5))} = ${JSON.stringify(tok.decode(ids.slice(from, i + 5)))}`;
  return (
    `ids differ at token ${i} (ours ${a.length} tokens, ${refName} ${b.length}); text before: ${JSON.stringify(tok.decode(a.slice(Math.max(0, i - 12), from)))}\n` +
    `  ours: ${show(a)}\n  ${refName}: ${show(b)}`
  );
}
