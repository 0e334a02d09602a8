#!/usr/bin/env node
/**
 * Builds the native kernels (N-API addon) with node-gyp during `npm install`.
 * A failed build is not fatal: llm.ts then runs on its pure-TypeScript reference backend and
 * says so in one line. LLMTS_SKIP_NATIVE=1 skips the build.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

if (process.env.LLMTS_SKIP_NATIVE === '1') {
  console.log('llm.ts: LLMTS_SKIP_NATIVE=1, not building the native backend');
  process.exit(0);
}

function nodeGypCommand() {
  // npm exposes its bundled node-gyp to install scripts; otherwise look for one we can run
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, [fromNpm]];
  try {
    const require = createRequire(import.meta.url);
    return [process.execPath, [require.resolve('node-gyp/bin/node-gyp.js')]];
  } catch {
    // the copy bundled with npm, next to the running node
    const bundled = join(dirname(dirname(process.execPath)), 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    return existsSync(bundled) ? [process.execPath, [bundled]] : ['node-gyp', []];
  }
}

/** Build against the headers of the running Node when they are installed (no download needed). */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [`--nodedir=${process.env.npm_config_nodedir}`];
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

/** One build at a time in this checkout (parallel `node-gyp rebuild`s delete each other's files). */
function acquireLock(dir) {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(dir);
      return;
    } catch {
      try {
        if (Date.now() - statSync(dir).mtimeMs > 300_000) rmdirSync(dir); // stale lock
      } catch {}
      if (Date.now() > deadline) return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
}

const lock = new URL('../.native-build.lock', import.meta.url).pathname;
acquireLock(lock);
const [cmd, pre] = nodeGypCommand();
const result = spawnSync(cmd, [...pre, 'rebuild', ...nodedirArgs()], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
try {
  rmdirSync(lock);
} catch {}
if (result.status === 0) {
  console.log('llm.ts: native backend built (build/Release/llmts_native.node)');
} else {
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
  console.warn(output);
  console.warn('llm.ts: warning: the native backend did not build (a C compiler, make and python3 are needed); ' +
    'the pure-TypeScript reference backend will be used');
}
