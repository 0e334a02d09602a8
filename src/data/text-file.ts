/**
 * Reading a training text: the file must be UTF-8 text, so a binary file handed to `--data`
 * (an executable, an image, a token shard without --tokenizer) is refused with the byte offset
 * of the first thing that is not text, instead of being trained on as garbage.
 *
 *   readTextFile('input.txt');   // the text
 *   readTextFile('/bin/ls');     // LlmError: /bin/ls is not a text file: a NUL byte at offset 25 ...
 *   firstInvalidUtf8(Buffer.from([0x61, 0xc3]));   // 1 (a sequence cut short)
 */
import { readFileSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { LlmError } from '../util/errors.js';

/** The file's text; an LlmError naming the byte offset when it holds a NUL byte or invalid UTF-8. */
export function readTextFile(path: string, hint = 'give a UTF-8 text file'): string {
  const bytes = readFileSync(path);
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new LlmError(`${path} is not a text file: a NUL byte at offset ${nul} (${hint})`);
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    throw new LlmError(`${path} is not UTF-8 text: invalid byte 0x${bytes[at].toString(16).padStart(2, '0')} at offset ${at} (${hint}; convert other encodings with iconv)`);
  }
  return bytes.toString('utf8');
}

/**
 * Offset of the first byte that does not belong to a valid UTF-8 sequence, or -1. Follows the
 * Unicode definition: no overlong forms, no surrogates (U+D800..DFFF), nothing above U+10FFFF.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= n; k++) {
      const x = b[i + k];
      if (x === undefined) return i;
      if (k === 1 ? x < lo || x > hi : x < 0x80 || x > 0xbf) return i;
    }
    i += n + 1;
  }
  return -1;
}
