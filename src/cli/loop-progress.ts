/**
 * A training loop run from a command: the progress line, Ctrl-C (finish the step and write a
 * checkpoint; a second Ctrl-C quits at once) and the summary lines every training command
 * prints (metrics, curve, checkpoint, speed, and how to continue an interrupted run).
 *
 *   const result = await runLoopInTerminal({
 *     command: 'train', outDir, maxIters: 2000, initialStep: trainer.step, metricsPath: trainer.metricsPath,
 *     run: (hooks) => trainer.run(hooks),
 *     stepFields: (r) => ({ loss: r.loss.toFixed(4) }), evalLine: (e) => `step ${e.step}: val loss ${e.valLoss}`,
 *   });
 *   if (result.interrupted) return;   // the continue line was printed
 */
import { join } from 'node:path';
import { ProgressLine } from '../util/progress.js';

export interface LoopHooks<S, E> {
  onStep: (record: S) => void;
  onEval: (record: E) => void;
  shouldStop: () => boolean;
}

export interface LoopResultLike {
  step: number;
  interrupted: boolean;
  checkpointPath: string;
  tokensPerSec: number;
}

export interface TerminalRun<S, E, R extends LoopResultLike> {
  /** the command name, for the progress label and the continue line: 'train', 'sft' */
  command: string;
  outDir: string;
  maxIters: number;
  initialStep: number;
  metricsPath: string;
  run: (hooks: LoopHooks<S, E>) => Promise<R>;
  /** the progress line's fields after a step */
  stepFields: (record: S) => Record<string, string | number>;
  /** the line printed after an evaluation */
  evalLine: (record: E) => string;
}

export async function runLoopInTerminal<S, E, R extends LoopResultLike>(o: TerminalRun<S, E, R>): Promise<R> {
  const log = (s: string): void => void process.stdout.write(s + '\n');
  let stopRequested = false;
  const onSigint = (): void => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    process.stderr.write('\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  const progress = new ProgressLine(o.maxIters, { label: o.command, initial: o.initialStep });
  let result: R;
  try {
    result = await o.run({
      onStep: (r) => progress.update((r as { step: number }).step, o.stepFields(r)),
      onEval: (e) => progress.log(o.evalLine(e), process.stdout),
      shouldStop: () => stopRequested,
    });
  } catch (err) {
    progress.abort(); // the error is the last word, not a progress line
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    progress.done();
  }
  log(`metrics: ${o.metricsPath}; loss curve: ${join(o.outDir, 'loss.svg')}; checkpoint: ${result.checkpointPath}`);
  log(`speed: ${Math.round(result.tokensPerSec)} tokens/s`);
  if (result.interrupted) log(`stopped at step ${result.step}; continue with: llmts ${o.command} --out ${o.outDir} --resume`);
  return result;
}
