/**
 * Generated token ids to text, as llmts run prints it: never half a UTF-8 character, stop tokens
 * not decoded, text cut before the first stop string, and the start of a possible stop string
 * held back until it is known not to be one.
 *
 *   const s = new TextStream(tokenizer, ['\n\n'], new Set([eos]));
 *   s.push(id);     // { text: 'completed text', stopped: false }
 *   s.flush();      // what was held back, at the end
 */
import { firstStop, heldSuffix } from '../generate/generate.js';
import { StreamDecoder } from '../tokenizer/stream-decoder.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export class TextStream {
  private readonly decoder: StreamDecoder;
  private readonly stops: string[];
  private pending = '';
  private done = false;
  /** everything emitted */
  text = '';

  constructor(tokenizer: Pick<Tokenizer, 'tokenBytes'>, stops: readonly string[], private readonly stopTokens: ReadonlySet<number>) {
    this.decoder = new StreamDecoder(tokenizer);
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** The text this token completes; stopped when a stop string appeared (the text before it is emitted). */
  push(id: number): { text: string; stopped: boolean } {
    if (this.done) return { text: '', stopped: true };
    if (!this.stopTokens.has(id)) this.pending += this.decoder.push(id);
    const cut = firstStop(this.pending, this.stops);
    if (cut >= 0) {
      this.done = true;
      return { text: this.emit(this.pending.slice(0, cut)), stopped: true };
    }
    const n = this.pending.length - heldSuffix(this.pending, this.stops);
    return { text: this.emit(this.pending.slice(0, n), n), stopped: false };
  }

  /** At the end: what was held back (an incomplete character as U+FFFD), cut at a stop string; stopped if one was found. */
  flush(): { text: string; stopped: boolean } {
    if (this.done) return { text: '', stopped: false };
    this.done = true;
    const rest = this.pending + this.decoder.flush();
    const cut = firstStop(rest, this.stops);
    this.pending = rest;
    return cut >= 0 ? { text: this.emit(rest.slice(0, cut)), stopped: true } : { text: this.emit(rest), stopped: false };
  }

  /** Emit `piece` and drop the first `consumed` characters of pending (all of it by default). */
  private emit(piece: string, consumed = this.pending.length): string {
    this.pending = this.pending.slice(consumed);
    this.text += piece;
    return piece;
  }
}
