/**
 * Streaming-safe decoding: feed token ids one at a time and get text as soon as it is
 * complete. A token that ends inside a multi-byte UTF-8 character is held back until the
 * rest arrives, so a stream never shows half a character; invalid bytes become U+FFFD.
 *
 *   const d = new StreamDecoder(tokenizer);
 *   for (const id of ids) process.stdout.write(d.push(id));
 *   process.stdout.write(d.flush());
 */
import type { Tokenizer } from './tokenizer.js';

export class StreamDecoder {
  // ignoreBOM: a leading U+FEFF is text like any other (decode keeps it too)
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(private readonly tokenizer: Pick<Tokenizer, 'tokenBytes'>) {}

  /** Text completed by this token ('' while a character is still incomplete). */
  push(id: number): string {
    return this.utf8.decode(this.tokenizer.tokenBytes(id), { stream: true });
  }

  /** Whatever is held back, with incomplete sequences as U+FFFD. */
  flush(): string {
    return this.utf8.decode();
  }
}
