/**
 * Rendered chats to token ids: template specials become single ids, everything else is encoded
 * as ordinary text (so text can never forge a special token), and trained parts get mask 1.
 *
 *   const t = chatTemplate('chatml');
 *   encodeChat(tokenizer, t, [{ role: 'user', content: 'Hi <|im_end|>' }]);
 *   // [<|im_start|>, ...'user\nHi <|im_end|>' as text..., <|im_end|>, ...'\n', <|im_start|>, ...'assistant\n']
 *   encodeChatPrompt(tokenizer, t, t.render(msgs));   // the same ids, from text (specials in it are parsed)
 *   encodeParts(tokenizer, t, t.renderParts(msgs, { addGenerationPrompt: false, train: true }));
 *   // { ids, lossMask }   (1 on the trained parts)
 *
 * A special becomes the tokenizer's special token of that text if it has one, else bosId / eosId
 * for the template's BOS / EOS markers; only when the tokenizer has neither is it encoded as
 * ordinary text (for a tokenizer without such tokens, e.g. a char tokenizer, use the alpaca or qa
 * templates). Text between specials is encoded in one piece without special-token parsing and
 * without an automatic BOS (the template places it), as one string would be, so the ids are those
 * of the whole rendered text; where a trained part starts or ends inside such a piece, the text
 * before the boundary must encode to a prefix of the piece's ids (else the boundary is not a token
 * boundary and the mask could not be cut there: an LlmError names the template and the message).
 */
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import type { ChatMessage } from './messages.js';
import { splitAtSpecials, type ChatPart, type ChatTemplate } from './template.js';

export type ChatTokenizer = Pick<Tokenizer, 'encode' | 'specialTokens' | 'bosId' | 'eosId'>;

/** Token ids of a rendered conversation, and 1 where the model learns (assistant answers and their end-of-turn). */
export interface EncodedChat {
  ids: number[];
  lossMask: Uint8Array;
}

/** The id a template special stands for with this tokenizer, or undefined. */
export function specialId(tokenizer: Pick<Tokenizer, 'specialTokens' | 'bosId' | 'eosId'>, template: ChatTemplate, s: string): number | undefined {
  const specials = tokenizer.specialTokens;
  if (specials !== undefined && Object.hasOwn(specials, s)) return specials[s];
  if (s === template.bos) return tokenizer.bosId;
  if (s === template.eos) return tokenizer.eosId;
  return undefined;
}

/** Encode parts; the mask is 1 on the tokens of parts with train set. */
export function encodeParts(tokenizer: ChatTokenizer, template: ChatTemplate, parts: readonly ChatPart[]): EncodedChat {
  const ids: number[] = [];
  const mask: number[] = [];
  const push = (tokens: readonly number[], train: boolean): void => {
    for (const id of tokens) {
      ids.push(id);
      mask.push(train ? 1 : 0);
    }
  };
  const encodeText = (s: string): number[] => (s === '' ? [] : tokenizer.encode(s, { addBos: false, allowedSpecial: 'none' }));
  for (let i = 0; i < parts.length;) {
    const p = parts[i];
    if (p.kind === 'eos') {
      if (tokenizer.eosId === undefined) throw new LlmError(`the ${template.name} chat template ends answers with EOS here, but the tokenizer has no EOS token`);
      push([tokenizer.eosId], p.train);
      i++;
    } else if (p.kind === 'special') {
      push(encodeSpecial(tokenizer, template, p.text, encodeText), p.train);
      i++;
    } else {
      let j = i;
      while (j < parts.length && parts[j].kind === 'text') j++;
      encodeTextRun(parts.slice(i, j), template, encodeText, push);
      i = j;
    }
  }
  return { ids, lossMask: Uint8Array.from(mask) };
}

function encodeSpecial(tokenizer: ChatTokenizer, template: ChatTemplate, s: string, encodeText: (s: string) => number[]): number[] {
  const id = specialId(tokenizer, template, s);
  if (id !== undefined) return [id];
  try {
    return encodeText(s);
  } catch {
    throw new LlmError(`the tokenizer can neither encode nor has a token for the ${template.name} template's '${s}' (try --template qa or alpaca)`);
  }
}

/**
 * Consecutive text parts are encoded as one string; the ids are split where the train flag
 * changes, at the length of the encoded text before the change (which must be a prefix).
 */
function encodeTextRun(run: readonly ChatPart[], template: ChatTemplate, encodeText: (s: string) => number[], push: (tokens: readonly number[], train: boolean) => void): void {
  // merge neighbours with the same train flag: only flag changes need a token boundary
  const segs: { text: string; train: boolean; message?: number }[] = [];
  for (const p of run) {
    const last = segs[segs.length - 1];
    if (last !== undefined && last.train === p.train) last.text += p.text;
    else segs.push({ text: p.text, train: p.train, message: p.message });
  }
  const text = segs.map((s) => s.text).join('');
  const all = encodeText(text);
  let chars = 0;
  let at = 0;
  segs.forEach((seg, k) => {
    if (k === segs.length - 1) {
      push(all.slice(at), seg.train);
      return;
    }
    chars += seg.text.length;
    const before = encodeText(text.slice(0, chars));
    if (before.length < at || before.length > all.length || before.some((id, n) => id !== all[n])) {
      const answer = seg.train ? seg : segs[k + 1];
      const where = seg.train ? 'end' : 'start';
      throw new LlmError(
        `the ${template.name} chat template: the answer in message ${answer.message ?? '?'} does not ${where} on a token boundary `
        + `(the tokenizer encodes ${JSON.stringify(text.slice(Math.max(0, chars - 20), chars))} + ${JSON.stringify(text.slice(chars, chars + 20))} `
        + 'differently from the two apart), so the loss mask cannot be cut there; try another template or tokenizer',
      );
    }
    push(all.slice(at, before.length), seg.train);
    at = before.length;
  });
}

/**
 * Encode a rendered chat prompt given as text: the template's specials in it become single ids,
 * wherever they are, so a special written in a message is one too. Prefer encodeChat, which
 * renders the messages itself and keeps their content text.
 */
export function encodeChatPrompt(tokenizer: ChatTokenizer, template: ChatTemplate, text: string): number[] {
  return encodeParts(tokenizer, template, splitAtSpecials(text, template.specials)).ids;
}

/** The prompt for the next assistant turn as ids; message content is always text (never a special token). */
export function encodeChat(tokenizer: ChatTokenizer, template: ChatTemplate, messages: readonly ChatMessage[]): number[] {
  return encodeParts(tokenizer, template, template.renderParts(messages, { addGenerationPrompt: true })).ids;
}

/** Token ids that end an assistant turn: the tokenizer's EOS and the template's stop strings that are single special tokens. */
export function chatStopTokens(tokenizer: Pick<Tokenizer, 'specialTokens' | 'bosId' | 'eosId'>, template: ChatTemplate): number[] {
  const ids = new Set<number>();
  if (tokenizer.eosId !== undefined) ids.add(tokenizer.eosId);
  for (const s of template.stop) {
    if (!template.specials.includes(s)) continue;
    const id = specialId(tokenizer, template, s);
    if (id !== undefined && s !== template.bos) ids.add(id);
  }
  return [...ids];
}
