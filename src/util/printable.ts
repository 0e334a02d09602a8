/**
 * Text read from a file, made safe to print on a terminal: control characters (C0, DEL, C1),
 * line and paragraph separators and bidirectional overrides are written as escapes, so a
 * hostile file cannot forge lines, retitle or clear the terminal, or reorder what is shown.
 *
 *   printable('llama\x1b]0;pwned\x07');   // 'llama\\x1b]0;pwned\\x07'
 *   printable('a\nb');                    // 'a\\nb'
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const named = NAMED[c];
    if (named) return named;
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
