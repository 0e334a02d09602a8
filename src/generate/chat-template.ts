/**
 * Chat templates: a conversation turned into the prompt text for the next assistant turn, plus
 * the stop strings that end an assistant turn.
 *
 *   const t = chatTemplate('chatml');
 *   t.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
 *   // '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 *   t.stop;                                   // ['<|im_end|>', '<|im_start|>']
 *   encodeChatPrompt(tokenizer, t, text);     // token ids, template specials as single tokens
 *
 * Templates (a conversation is an optional system message, then user / assistant turns
 * alternating, starting and ending with a user turn):
 *
 *   chatml  <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
 *           <|im_start|>assistant\n{assistant}<|im_end|>\n ... <|im_start|>assistant\n
 *   llama2  Meta's format (llama/generation.py chat_completion), contents stripped:
 *           <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 *           (without a system prompt the first turn is `<s>[INST] {user} [/INST]`)
 *   alpaca  {system}\n\n### Instruction:\n{user}\n\n### Response:\n{assistant}\n\n### Instruction:\n{user}\n\n### Response:\n
 *           (the system prompt is the preamble; none, no preamble)
 *   qa      {system}\n\nQ: {user}\nA: {assistant}\nQ: {user}\nA:
 *
 * BOS / EOS: templates write them as text ('<s>', '</s>' in llama2), which is what Hugging Face
 * chat templates produce for tokenizers that parse special tokens. encodeChatPrompt cuts the
 * text at the template's special strings and turns each into one id: the tokenizer's special
 * token of that text if it has one, else bosId / eosId for the template's BOS / EOS markers;
 * only when the tokenizer has neither is it encoded as ordinary text (for a tokenizer without
 * such tokens, e.g. a char tokenizer, use the alpaca or qa templates). The text between
 * specials is encoded without special-token parsing, so a user typing '<|im_end|>' cannot forge
 * a turn boundary, and without an automatic BOS (the template places it).
 */
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export type ChatTemplateName = 'chatml' | 'llama2' | 'alpaca' | 'qa';

export const CHAT_TEMPLATE_NAMES: readonly ChatTemplateName[] = ['chatml', 'llama2', 'alpaca', 'qa'];

export interface ChatTemplate {
  readonly name: ChatTemplateName;
  /** The prompt for the next assistant turn (ends with the assistant's header). */
  render(messages: readonly ChatMessage[]): string;
  /** Stop strings that end an assistant turn (not part of the answer). */
  readonly stop: readonly string[];
  /** Strings of the template that are single tokens in tokenizers that know them. */
  readonly specials: readonly string[];
  /** Text standing for the beginning- / end-of-sequence token, if the template uses them. */
  readonly bos?: string;
  readonly eos?: string;
}

/** Split a conversation into (optional) system text and user/assistant turns; validates order. */
export function splitConversation(messages: readonly ChatMessage[]): { system?: string; turns: { user: string; assistant?: string }[] } {
  let i = 0;
  let system: string | undefined;
  if (messages.length > 0 && messages[0].role === 'system') {
    system = messages[0].content;
    i = 1;
  }
  const turns: { user: string; assistant?: string }[] = [];
  for (; i < messages.length; i++) {
    const m = messages[i];
    const want = turns.length > 0 && turns[turns.length - 1].assistant === undefined ? 'assistant' : 'user';
    if (m.role !== want) {
      throw new LlmError(`chat message ${i} has role '${m.role}' but '${want}' was expected (an optional system message first, then user and assistant alternating)`);
    }
    if (want === 'user') turns.push({ user: m.content });
    else turns[turns.length - 1].assistant = m.content;
  }
  if (turns.length === 0 || turns[turns.length - 1].assistant !== undefined) {
    throw new LlmError('a chat prompt needs the conversation to end with a user message');
  }
  return { system, turns };
}

const chatml: ChatTemplate = {
  name: 'chatml',
  render(messages) {
    const { system, turns } = splitConversation(messages);
    const block = (role: string, content: string): string => `<|im_start|>${role}\n${content}<|im_end|>\n`;
    let s = system !== undefined ? block('system', system) : '';
    for (const t of turns) {
      s += block('user', t.user);
      if (t.assistant !== undefined) s += block('assistant', t.assistant);
    }
    return `${s}<|im_start|>assistant\n`;
  },
  stop: ['<|im_end|>', '<|im_start|>'],
  specials: ['<|im_start|>', '<|im_end|>'],
};

const B_INST = '[INST]';
const E_INST = '[/INST]';
const B_SYS = '<<SYS>>\n';
const E_SYS = '\n<</SYS>>\n\n';

const llama2: ChatTemplate = {
  name: 'llama2',
  render(messages) {
    const { system, turns } = splitConversation(messages);
    let s = '';
    turns.forEach((t, i) => {
      const user = i === 0 && system !== undefined ? `${B_SYS}${system.trim()}${E_SYS}${t.user.trim()}` : t.user.trim();
      s += `<s>${B_INST} ${user} ${E_INST}`;
      if (t.assistant !== undefined) s += ` ${t.assistant.trim()} </s>`;
    });
    return s;
  },
  stop: ['</s>', '[INST]'],
  specials: ['<s>', '</s>'],
  bos: '<s>',
  eos: '</s>',
};

const alpaca: ChatTemplate = {
  name: 'alpaca',
  render(messages) {
    const { system, turns } = splitConversation(messages);
    let s = system !== undefined && system !== '' ? `${system}\n\n` : '';
    for (const t of turns) {
      s += `### Instruction:\n${t.user}\n\n### Response:\n`;
      if (t.assistant !== undefined) s += `${t.assistant}\n\n`;
    }
    return s;
  },
  stop: ['### Instruction', '### Response'],
  specials: [],
};

const qa: ChatTemplate = {
  name: 'qa',
  render(messages) {
    const { system, turns } = splitConversation(messages);
    const parts: string[] = [];
    for (const t of turns) {
      parts.push(`Q: ${t.user}\nA:`);
      if (t.assistant !== undefined) parts[parts.length - 1] += ` ${t.assistant}`;
    }
    return (system !== undefined && system !== '' ? `${system}\n\n` : '') + parts.join('\n');
  },
  stop: ['\nQ:'],
  specials: [],
};

const TEMPLATES: Record<ChatTemplateName, ChatTemplate> = { chatml, llama2, alpaca, qa };

export function chatTemplate(name: string): ChatTemplate {
  const t = (TEMPLATES as Record<string, ChatTemplate | undefined>)[name];
  if (!t) throw new LlmError(`unknown chat template '${name}' (templates: ${CHAT_TEMPLATE_NAMES.join(', ')})`);
  return t;
}

/** The id a template special stands for with this tokenizer, or undefined. */
export function specialId(tokenizer: Pick<Tokenizer, 'specialTokens' | 'bosId' | 'eosId'>, template: ChatTemplate, s: string): number | undefined {
  const id = tokenizer.specialTokens?.[s];
  if (id !== undefined) return id;
  if (s === template.bos) return tokenizer.bosId;
  if (s === template.eos) return tokenizer.eosId;
  return undefined;
}

/** Encode a rendered chat prompt: template specials become single ids where the tokenizer has them. */
export function encodeChatPrompt(tokenizer: Pick<Tokenizer, 'encode' | 'specialTokens' | 'bosId' | 'eosId'>, template: ChatTemplate, text: string): number[] {
  const out: number[] = [];
  const encodeText = (s: string): void => {
    if (s === '') return;
    for (const id of tokenizer.encode(s, { addBos: false, allowedSpecial: 'none' })) out.push(id);
  };
  if (template.specials.length === 0) {
    encodeText(text);
    return out;
  }
  const re = new RegExp(template.specials.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  let last = 0;
  for (const m of text.matchAll(re)) {
    encodeText(text.slice(last, m.index));
    const id = specialId(tokenizer, template, m[0]);
    if (id !== undefined) {
      out.push(id);
    } else {
      try {
        encodeText(m[0]);
      } catch {
        throw new LlmError(`the tokenizer can neither encode nor has a token for the ${template.name} template's '${m[0]}' (try --template qa or alpaca)`);
      }
    }
    last = m.index + m[0].length;
  }
  encodeText(text.slice(last));
  return out;
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

/**
 * The template for a model when the user names none: the one its own chat template (Jinja
 * source from tokenizer_config.json or GGUF metadata) writes, else chatml when the tokenizer has
 * ChatML's tokens, else qa (plain text, which any tokenizer can encode).
 *
 *   chooseChatTemplate(charTokenizer);                 // { name: 'qa', reason: 'the model has no chat tokens' }
 *   chooseChatTemplate(tok, "{% ... '[INST] ' ... %}"); // { name: 'llama2', reason: "the model's own chat template" }
 */
export function chooseChatTemplate(
  tokenizer: Pick<Tokenizer, 'specialTokens'>, modelTemplate?: string,
): { name: ChatTemplateName; reason: string } {
  let unknownOwn = false;
  if (modelTemplate !== undefined && modelTemplate.trim() !== '') {
    const own = "the model's own chat template";
    if (modelTemplate.includes('<|im_start|>')) return { name: 'chatml', reason: own };
    if (modelTemplate.includes('[INST]')) return { name: 'llama2', reason: own };
    if (modelTemplate.includes('### Instruction')) return { name: 'alpaca', reason: own };
    unknownOwn = true;
  }
  const specials = tokenizer.specialTokens ?? {};
  const tail = unknownOwn ? "; the model's own chat template is not one llm.ts renders yet" : '';
  if (specials['<|im_start|>'] !== undefined && specials['<|im_end|>'] !== undefined) {
    return { name: 'chatml', reason: `the tokenizer has ChatML's tokens${tail}` };
  }
  return { name: 'qa', reason: `the model has no chat tokens${tail}` };
}
