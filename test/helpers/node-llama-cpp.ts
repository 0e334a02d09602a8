/**
 * node-llama-cpp (real llama.cpp) for agreement tests, when installed: it is not a project
 * dependency (about 1 GB of prebuilt binaries); `npm --prefix bench install` adds it.
 *
 *   const llamaCpp = await loadNodeLlamaCpp();   // null when not installed: skip the test
 *   const llama = await llamaCpp!.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The part of node-llama-cpp's API the tests use (it is not a dependency, so no types). */
export interface NodeLlamaCpp {
  getLlama(opts: { gpu: false; build: 'never'; logLevel?: 'error' }): Promise<{
    loadModel(opts: { modelPath: string }): Promise<{
      tokenize(text: string): number[];
      detokenize(tokens: readonly number[]): string;
      isEogToken(token: number): boolean;
      createContext(opts: { contextSize: number; threads: number }): Promise<{
        getSequence(): { evaluate(tokens: number[], opts: { temperature: number }): AsyncIterable<number> };
        dispose(): Promise<void>;
      }>;
      dispose(): Promise<void>;
    }>;
  }>;
}

const benchDir = fileURLToPath(new URL('../../../bench/', import.meta.url));

/** The entry file of node-llama-cpp under bench/node_modules, or null when it is not installed. */
export function nodeLlamaCppEntry(): string | null {
  if (!existsSync(join(benchDir, 'node_modules', 'node-llama-cpp'))) return null;
  try {
    return createRequire(join(benchDir, 'package.json')).resolve('node-llama-cpp');
  } catch {
    return null;
  }
}

export const NODE_LLAMA_CPP_SKIP = 'node-llama-cpp not installed (npm --prefix bench install)';

export async function importNodeLlamaCpp(entry: string): Promise<NodeLlamaCpp> {
  return (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
}

type LlamaModel = Awaited<ReturnType<Awaited<ReturnType<NodeLlamaCpp['getLlama']>>['loadModel']>>;

/** llama.cpp's first `n` greedy tokens after `prompt` (a 64-token context, one thread). */
export async function llamaCppGreedy(lm: LlamaModel, prompt: number[], n: number): Promise<number[]> {
  const context = await lm.createContext({ contextSize: 64, threads: 1 });
  const tokens: number[] = [];
  try {
    for await (const t of context.getSequence().evaluate(prompt, { temperature: 0 })) {
      tokens.push(t);
      if (tokens.length >= n) break;
    }
  } finally {
    await context.dispose();
  }
  return tokens;
}
