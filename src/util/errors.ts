/**
 * A user-facing error: the CLI prints its one-line message without a stack trace.
 * Messages name the bad input and say what to do about it.
 *
 *   throw new LlmError('data file not found: foo.txt (pass --data with a local file or a URL)');
 *
 * Messages often quote names read from files (tensor names, metadata keys); control characters
 * in them are escaped here, so a hostile file can never break the one-line format, and a message
 * is cut to MAX_MESSAGE_CHARS (its start and end kept), so it never floods the terminal.
 */
export class LlmError extends Error {
  override name = 'LlmError';

  constructor(message: string, options?: ErrorOptions) {
    super(bounded(oneLine(message)), options);
  }
}

/** Longest message kept: a value quoted from a hostile file (a 5-million-element shape) must not make a 15 MB line. */
export const MAX_MESSAGE_CHARS = 1000;

function bounded(message: string): string {
  if (message.length <= MAX_MESSAGE_CHARS) return message;
  const head = MAX_MESSAGE_CHARS - 200;
  return `${message.slice(0, head)} [... ${message.length - head - 200} characters cut ...] ${message.slice(-200)}`;
}

function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex
  return message.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => (c === '\n' ? '\\n' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}
