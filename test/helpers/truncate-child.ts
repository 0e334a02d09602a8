/**
 * Child process of test/formats/truncate-while-running.test.ts (issue 14: a model file truncated
 * while in use must end in an error, never in SIGBUS).
 *
 *   node truncate-child.js MODEL [TOKENS]      load, print "loaded <mmap|read>", wait for a line on
 *                                              stdin, generate TOKENS (default 40) greedy tokens on
 *                                              the KV cache, print "generated <n>"
 *   node truncate-child.js --kill-self MODEL   load, then send itself SIGBUS: a signal that is not
 *                                              a fault in a mapping must still end the process
 *
 * The model is loaded the way `llmts run` loads it (loadAnyModel, then a Transformer over the
 * loaded tensors, which stay views into the mapping). Errors are reported like the CLI reports
 * them: an LlmError as one line `error: MESSAGE` and exit code 1; anything else is thrown (a
 * stack trace, which the test rejects).
 */
import { createInterface } from 'node:readline';
import { loadAnyModel } from '../../src/formats/load-model.js';
import { generateCached } from '../../src/generate/generate.js';
import { Transformer } from '../../src/model/transformer.js';
import { LlmError } from '../../src/util/errors.js';

async function main(args: string[]): Promise<void> {
  const killSelf = args[0] === '--kill-self';
  if (killSelf) args = args.slice(1);
  const [path, tokens = '40'] = args;
  const loaded = await loadAnyModel(path);
  const model = new Transformer(loaded.config, loaded.params, { quantized: loaded.quantized });
  model.eval();
  process.stdout.write(`loaded ${loaded.source}\n`);
  if (killSelf) {
    process.kill(process.pid, 'SIGBUS');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    process.stdout.write('survived SIGBUS\n');
    return;
  }
  // the parent truncates the file now, then sends a line
  const rl = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => {
    rl.once('line', () => resolve());
    rl.once('close', () => resolve());
  });
  rl.close();
  let n = 0;
  for (const _ of generateCached(model, [1, 2, 3], { maxTokens: Number(tokens), seed: 1, temperature: 0, topK: 0 })) n++;
  process.stdout.write(`generated ${n}\n`);
}

// `node --test dist/test/` also runs every file under test/helpers: without arguments there is nothing to do
if (process.argv.length > 2) main(process.argv.slice(2)).catch((err: unknown) => {
  if (!(err instanceof LlmError)) throw err;
  process.stderr.write(`error: ${err.message}\n`);
  process.exitCode = 1;
});
