/**
 * The named chat templates: chatml, llama2, alpaca and qa.
 *
 *   const t = chatTemplate('chatml');
 *   t.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
 *   // '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 *   t.stop;                                   // ['<|im_end|>', '<|im_start|>']
 *
 * A conversation is an optional system message, then user / assistant turns alternating; a
 * prompt ends with a user turn. Trained parts (·) are each answer and its end-of-turn marker:
 *
 *   chatml  <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
 *           <|im_start|>assistant\n·{assistant}<|im_end|>·\n ... <|im_start|>assistant\n
 *   llama2  Meta's format (llama/generation.py chat_completion), contents stripped:
 *           <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]· {assistant} </s>·<s>[INST] {user} [/INST]
 *           (without a system prompt the first turn is `<s>[INST] {user} [/INST]`)
 *   alpaca  {system}\n\n### Instruction:\n{user}\n\n### Response:\n·{assistant}\n\n·### Instruction:\n{user}\n\n### Response:\n
 *           (the system prompt is the preamble; none, no preamble)
 *   qa      {system}\n\nQ: {user}\nA:· {assistant}\n·Q: {user}\nA:
 *
 * alpaca and qa have no end-of-turn token: their answers end with the separator ('\n\n', '\n'),
 * or, when training with RenderOptions.eos (a tokenizer with an EOS), with EOS before it
 * (`{assistant}<eos>\n\n`, trained up to the EOS). Inference prompts never hold that EOS.
 *
 * BOS / EOS: llama2 writes them as text ('<s>', '</s>'), as Hugging Face chat templates do for
 * tokenizers that parse special tokens; encode.ts makes each one id.
 */
import { LlmError } from '../util/errors.js';
import { splitConversation, type ChatMessage } from './messages.js';
import { CHAT_TEMPLATE_NAMES, partsText, type ChatPart, type ChatTemplate, type ChatTemplateName, type RenderOptions } from './template.js';

/** Collects parts; `message` is the index of the assistant message the trained parts belong to. */
class Parts {
  readonly list: ChatPart[] = [];

  text(text: string, train = false, message?: number): void {
    if (text !== '') this.list.push(train ? { text, kind: 'text', train, message } : { text, kind: 'text', train });
  }

  special(text: string, train = false, message?: number): void {
    this.list.push(train ? { text, kind: 'special', train, message } : { text, kind: 'special', train });
  }

  eos(message: number): void {
    this.list.push({ text: '', kind: 'eos', train: true, message });
  }
}

/** A named template from a function that writes a conversation's parts. */
function named(
  name: ChatTemplateName,
  write: (out: Parts, conv: ReturnType<typeof splitConversation>, opts: RenderOptions, answerIndex: (turn: number) => number) => void,
  rest: Pick<ChatTemplate, 'stop' | 'specials' | 'bos' | 'eos'>,
): ChatTemplate {
  const renderParts = (messages: readonly ChatMessage[], opts: RenderOptions): ChatPart[] => {
    const conv = splitConversation(messages, opts.addGenerationPrompt ? 'prompt' : 'conversation');
    const base = conv.system !== undefined ? 1 : 0;
    const out = new Parts();
    write(out, conv, opts, (turn) => base + 2 * turn + 1);
    if (opts.train) return out.list;
    return out.list.map(({ text, kind }) => ({ text, kind, train: false }));
  };
  return {
    name,
    renderParts,
    render: (messages) => partsText(renderParts(messages, { addGenerationPrompt: true })),
    ...rest,
  };
}

const chatml = named('chatml', (out, { system, turns }, opts, answerIndex) => {
  const block = (role: string, content: string): void => {
    out.special('<|im_start|>');
    out.text(`${role}\n${content}`);
    out.special('<|im_end|>');
    out.text('\n');
  };
  if (system !== undefined) block('system', system);
  turns.forEach((t, i) => {
    block('user', t.user);
    if (t.assistant === undefined) return;
    out.special('<|im_start|>');
    out.text('assistant\n');
    out.text(t.assistant, true, answerIndex(i));
    out.special('<|im_end|>', true, answerIndex(i));
    out.text('\n');
  });
  if (opts.addGenerationPrompt) {
    out.special('<|im_start|>');
    out.text('assistant\n');
  }
}, { stop: ['<|im_end|>', '<|im_start|>'], specials: ['<|im_start|>', '<|im_end|>'] });

const B_INST = '[INST]';
const E_INST = '[/INST]';
const B_SYS = '<<SYS>>\n';
const E_SYS = '\n<</SYS>>\n\n';

const llama2 = named('llama2', (out, { system, turns }, _opts, answerIndex) => {
  turns.forEach((t, i) => {
    const user = i === 0 && system !== undefined ? `${B_SYS}${system.trim()}${E_SYS}${t.user.trim()}` : t.user.trim();
    out.special('<s>');
    out.text(`${B_INST} ${user} ${E_INST}`);
    if (t.assistant === undefined) return;
    out.text(` ${t.assistant.trim()} `, true, answerIndex(i));
    out.special('</s>', true, answerIndex(i));
  });
}, { stop: ['</s>', '[INST]'], specials: ['<s>', '</s>'], bos: '<s>', eos: '</s>' });

/** alpaca and qa: preamble, then per turn a user block and, when answered, answer + end-of-turn + separator. */
function plain(name: ChatTemplateName, userBlock: (user: string) => string, answer: (a: string) => string, separator: string, stop: string[]): ChatTemplate {
  return named(name, (out, { system, turns }, opts, answerIndex) => {
    if (system !== undefined && system !== '') out.text(`${system}\n\n`);
    turns.forEach((t, i) => {
      out.text(userBlock(t.user));
      if (t.assistant === undefined) return;
      out.text(answer(t.assistant), true, answerIndex(i));
      if (opts.eos) out.eos(answerIndex(i));
      out.text(separator, !opts.eos, answerIndex(i));
    });
  }, { stop, specials: [] });
}

const alpaca = plain('alpaca', (u) => `### Instruction:\n${u}\n\n### Response:\n`, (a) => a, '\n\n', ['### Instruction', '### Response']);

const qa = plain('qa', (u) => `Q: ${u}\nA:`, (a) => ` ${a}`, '\n', ['\nQ:']);

const TEMPLATES: Record<ChatTemplateName, ChatTemplate> = { chatml, llama2, alpaca, qa };

/** A named template: chatml, llama2, alpaca or qa. */
export function chatTemplate(name: string): ChatTemplate {
  const t = Object.hasOwn(TEMPLATES, name) ? TEMPLATES[name as ChatTemplateName] : undefined;
  if (!t) throw new LlmError(`unknown chat template '${name}' (templates: ${CHAT_TEMPLATE_NAMES.join(', ')})`);
  return t;
}
