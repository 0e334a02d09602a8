/**
 * A user-facing error: the CLI prints its one-line message without a stack trace.
 * Messages name the bad input and say what to do about it.
 *
 *   throw new LlmError('data file not found: foo.txt (pass --data with a local file or a URL)');
 */
export class LlmError extends Error {
  override name = 'LlmError';
}
