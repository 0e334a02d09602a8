/**
 * Tokenizers and conversations shared by the chat tests.
 *
 *   const tok = bpeWithSpecials();                  // byte-level BPE with ChatML, Llama and end-of-text specials
 *   spell(tok, ids);                                // 'Hello!<|im_end|>' (specials by name, EOS as <EOS>)
 *   maskedRuns(ids, lossMask);                      // [[...first answer ids], [...second]]
 */
import type { ChatMessage } from '../../src/chat/messages.js';
import { trainBpe } from '../../src/tokenizer/bpe-train.js';
import { BpeTokenizer } from '../../src/tokenizer/bpe.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';

const CORPUS = 'hello there, how are you today? i am fine and you? tell me a story about the sea and the ship. Be brief. Hi Hello! What is 2+2? It is 4. '.repeat(4);

export const SPECIALS = ['<|im_start|>', '<|im_end|>', '<s>', '</s>', '<|endoftext|>', '<start_of_turn>', '<end_of_turn>', '<|user|>', '<|assistant|>', '<|system|>'];

/** A trained byte-level BPE whose specials include ChatML's, Llama's and Gemma's; EOS '<|endoftext|>' (or none). */
export function bpeWithSpecials(opts: { eos?: boolean } = {}): BpeTokenizer {
  const t = trainBpe(CORPUS, { vocabSize: 360, specialTokens: SPECIALS });
  return new BpeTokenizer({
    tokens: t.tokenBytes, merges: t.merges.map((m) => m.pair), pattern: t.pattern, specialTokens: t.specialTokens,
    ...(opts.eos === false ? {} : { eosId: t.specialTokens['<|endoftext|>'] }),
  });
}

/** ids as text: specials by their text, the EOS id as <EOS> (when it is not a special's), other tokens by their bytes. */
export function spell(tok: Pick<Tokenizer, 'tokenBytes' | 'specialTokens' | 'eosId'>, ids: readonly number[]): string {
  const byId = new Map(Object.entries(tok.specialTokens ?? {}).map(([s, id]) => [id, s]));
  const bytes: number[] = [];
  let out = '';
  const flush = (): void => {
    out += Buffer.from(bytes).toString('utf8');
    bytes.length = 0;
  };
  for (const id of ids) {
    const special = byId.get(id) ?? (id === tok.eosId ? '<EOS>' : undefined);
    if (special !== undefined) {
      flush();
      out += id === tok.eosId && special !== '</s>' ? '<EOS>' : special;
    } else {
      bytes.push(...tok.tokenBytes(id));
    }
  }
  flush();
  return out;
}

/** The runs of consecutive ids with mask 1. */
export function maskedRuns(ids: readonly number[], mask: Uint8Array): number[][] {
  const runs: number[][] = [];
  ids.forEach((id, i) => {
    if (mask[i] !== 1) return;
    if (i === 0 || mask[i - 1] !== 1) runs.push([]);
    runs[runs.length - 1].push(id);
  });
  return runs;
}

export const SYSTEM_MULTI: ChatMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'What is 2+2?' },
  { role: 'assistant', content: 'It is 4.' },
];
