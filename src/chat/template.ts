/**
 * What a chat template is: a conversation rendered as text (the prompt for the next assistant
 * turn) and, underneath, as parts that say which text is a special token and which parts of the
 * assistant turns a model is trained on.
 *
 *   const t = chatTemplate('chatml');
 *   t.render([{ role: 'user', content: 'Hi' }]);
 *   // '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 *   t.renderParts([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Yo' }], { addGenerationPrompt: false });
 *   // [ { text: '<|im_start|>', kind: 'special', train: false }, { text: 'user\nHi', kind: 'text', train: false },
 *   //   { text: '<|im_end|>', kind: 'special', train: false }, { text: '\n', ... }, { text: '<|im_start|>', ... },
 *   //   { text: 'assistant\n', kind: 'text', train: false },
 *   //   { text: 'Yo', kind: 'text', train: true, message: 1 }, { text: '<|im_end|>', kind: 'special', train: true, message: 1 },
 *   //   { text: '\n', kind: 'text', train: false } ]
 *
 * Message content is always a 'text' part: a user who writes '<|im_end|>' writes text, never a
 * turn boundary (encode.ts turns parts into ids).
 */
import type { ChatMessage } from './messages.js';

export type ChatTemplateName = 'chatml' | 'llama2' | 'alpaca' | 'qa';

export const CHAT_TEMPLATE_NAMES: readonly ChatTemplateName[] = ['chatml', 'llama2', 'alpaca', 'qa'];

/** One piece of a rendered conversation. */
export interface ChatPart {
  /** the rendered text ('' for an 'eos' part) */
  text: string;
  /**
   * 'text' is encoded as ordinary text (never parsed for special tokens); 'special' is one
   * template special, a single id where the tokenizer has it; 'eos' is the tokenizer's EOS id
   * (written by templates whose text has no end-of-turn token, when training).
   */
  kind: 'text' | 'special' | 'eos';
  /** part of an assistant turn the model learns: its content and the end-of-turn marker */
  train: boolean;
  /** index (in the messages) of the assistant message a trained part belongs to */
  message?: number;
}

export interface RenderOptions {
  /** end with the header of the next assistant turn (what inference prompts do) */
  addGenerationPrompt: boolean;
  /**
   * Find the assistant parts to train on (default false: every part has train false). Named
   * templates know them; a Jinja template renders the conversation once per assistant message.
   */
  train?: boolean;
  /**
   * Templates whose text has no end-of-turn token (alpaca, qa) end each answer with the
   * tokenizer's EOS when this is set (training with a tokenizer that has one); without it their
   * end-of-turn is the separator that follows an answer ('\n\n', '\n').
   */
  eos?: boolean;
}

export interface ChatTemplate {
  /** 'chatml', 'llama2', 'alpaca', 'qa', or a Jinja template's name ('jinja' unless given) */
  readonly name: string;
  /** The prompt for the next assistant turn (ends with the assistant's header). */
  render(messages: readonly ChatMessage[]): string;
  /** The conversation as parts (joined, their text is what render() gives for the same options). */
  renderParts(messages: readonly ChatMessage[], opts: RenderOptions): ChatPart[];
  /** Stop strings that end an assistant turn (not part of the answer). */
  readonly stop: readonly string[];
  /** Strings of the template that are single tokens in tokenizers that know them. */
  readonly specials: readonly string[];
  /** Text standing for the beginning- / end-of-sequence token, if the template uses them. */
  readonly bos?: string;
  readonly eos?: string;
}

/** The text of parts, joined. */
export function partsText(parts: readonly ChatPart[]): string {
  return parts.map((p) => p.text).join('');
}

/**
 * Cut text at the given special strings (longest first where two start at the same place).
 *
 *   splitAtSpecials('<s>[INST] hi', ['<s>']);
 *   // [{ text: '<s>', kind: 'special', train: false }, { text: '[INST] hi', kind: 'text', train: false }]
 */
export function splitAtSpecials(text: string, specials: readonly string[]): ChatPart[] {
  const out: ChatPart[] = [];
  const pushText = (s: string): void => {
    if (s !== '') out.push({ text: s, kind: 'text', train: false });
  };
  const re = specialsRegex(specials, 'g');
  if (re === null) {
    pushText(text);
    return out;
  }
  let last = 0;
  for (const m of text.matchAll(re)) {
    pushText(text.slice(last, m.index));
    out.push({ text: m[0], kind: 'special', train: false });
    last = m.index + m[0].length;
  }
  pushText(text.slice(last));
  return out;
}

/** An alternation of the specials, longest first (so '<|im_start|>' wins over a special '<|'); null when there are none. */
export function specialsRegex(specials: readonly string[], flags: string): RegExp | null {
  const list = [...new Set(specials)].filter((s) => s !== '').sort((a, b) => b.length - a.length);
  if (list.length === 0) return null;
  return new RegExp(list.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), flags);
}
