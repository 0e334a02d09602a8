/**
 * Backend selection. The reference backend is always available; the native backend
 * (a later addition) is chosen when it loads, and `LLMTS_BACKEND=reference|native` forces one.
 */
import type { Backend } from './backend.js';
import { referenceBackend } from './reference/index.js';

export type { Backend, GemmArgs, AttentionShape } from './backend.js';
export { referenceBackend };

let current: Backend | null = null;

/** The backend every op uses. */
export function backend(): Backend {
  if (current === null) current = chooseBackend();
  return current;
}

/** Replace the backend (tests run the same suite on each). */
export function setBackend(b: Backend): void {
  current = b;
}

function chooseBackend(): Backend {
  const wanted = process.env.LLMTS_BACKEND;
  if (wanted && wanted !== 'reference' && wanted !== 'native') {
    process.stderr.write(`llmts: unknown LLMTS_BACKEND=${wanted} (use reference or native); using reference\n`);
  }
  return referenceBackend;
}
