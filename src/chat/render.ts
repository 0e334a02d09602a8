/**
 * Conversations rendered for training: token ids and a loss mask that is 1 exactly on what the
 * model should learn to write (assistant answers and their end-of-turn marker), 0 on system and
 * user turns and on the template's headers.
 *
 *   const t = chatTemplate('chatml');
 *   const { ids, lossMask } = renderConversation(tokenizer, t, [
 *     { role: 'system', content: 'Be brief.' },
 *     { role: 'user', content: 'Hi' },
 *     { role: 'assistant', content: 'Hello!' },
 *   ]);
 *   tokenizer.decode(ids.filter((_, i) => lossMask[i] === 1));   // 'Hello!<|im_end|>'
 *
 *   renderPromptCompletion(tokenizer, null, 'Q: 2+2=', ' 4');    // plain text: mask 1 on ' 4' and EOS
 *   renderPromptCompletion(tokenizer, t, 'Hi', 'Hello!');         // as a user / assistant exchange
 *
 * The end-of-turn marker is the template's: '<|im_end|>' (chatml), '</s>' (llama2), EOS for
 * alpaca / qa when the tokenizer has one (else their separator, '\n\n' / '\n'), and for a Jinja
 * template what its {% generation %} blocks hold, or the rendering of the answer up to its last
 * special token (jinja-template.ts). Ids are those of the whole rendered text (specials as single
 * ids, message content never parsed for specials: encode.ts); an answer that does not start on a
 * token boundary of that text is an LlmError naming the template and the message.
 */
import { LlmError } from '../util/errors.js';
import { encodeParts, type ChatTokenizer, type EncodedChat } from './encode.js';
import { checkMessages, type ChatMessage } from './messages.js';
import type { ChatTemplate } from './template.js';

export interface RenderConversationOptions {
  /**
   * Templates without an end-of-turn token (alpaca, qa) end each answer with the tokenizer's EOS
   * (default true; only when the tokenizer has one). False: their separator ends it.
   */
  eos?: boolean;
}

/** A whole conversation (assistant turns included) as ids, with mask 1 on the assistant answers + end-of-turn. */
export function renderConversation(tokenizer: ChatTokenizer, template: ChatTemplate, messages: readonly ChatMessage[], opts: RenderConversationOptions = {}): EncodedChat {
  return encodeTrained(tokenizer, template, messages, opts, () => true);
}

/**
 * A prompt / completion row (TRL's prompt-completion data): mask 1 on the completion and its
 * end-of-turn only. With a template the prompt is a user message (or a list of messages, whose
 * own assistant turns are not trained) and the completion the assistant's answer; with null it
 * is plain text: the tokenizer's ids of prompt + completion (BOS as its encode() adds it), then
 * EOS when the tokenizer has one. The prompt's ids must be a prefix of prompt + completion's.
 */
export function renderPromptCompletion(
  tokenizer: ChatTokenizer, template: ChatTemplate | null, prompt: string | readonly ChatMessage[], completion: string, opts: RenderConversationOptions = {},
): EncodedChat {
  if (typeof completion !== 'string') throw new LlmError(`a completion must be a string, got ${typeof completion}`);
  if (template === null) {
    if (typeof prompt !== 'string') throw new LlmError('a prompt given as messages needs a chat template (pass one, or give the prompt as text)');
    return plainPromptCompletion(tokenizer, prompt, completion, opts);
  }
  const messages: ChatMessage[] = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : [...prompt];
  messages.push({ role: 'assistant', content: completion });
  const last = messages.length - 1;
  return encodeTrained(tokenizer, template, messages, opts, (message) => message === last);
}

function encodeTrained(
  tokenizer: ChatTokenizer, template: ChatTemplate, messages: readonly ChatMessage[], opts: RenderConversationOptions, trainOn: (message: number | undefined) => boolean,
): EncodedChat {
  checkMessages(messages);
  if (!messages.some((m) => m.role === 'assistant')) {
    throw new LlmError('a training conversation needs at least one assistant message (there is nothing to learn otherwise)');
  }
  const eos = (opts.eos ?? true) && tokenizer.eosId !== undefined;
  const parts = template.renderParts(messages, { addGenerationPrompt: false, train: true, eos })
    .map((p) => (p.train && !trainOn(p.message) ? { ...p, train: false } : p));
  const out = encodeParts(tokenizer, template, parts);
  if (!out.lossMask.includes(1)) {
    throw new LlmError(`the ${template.name} chat template marks no assistant tokens in this conversation, so there is nothing to learn (does it render the assistant's turns?)`);
  }
  return out;
}

function plainPromptCompletion(tokenizer: ChatTokenizer, prompt: string, completion: string, opts: RenderConversationOptions): EncodedChat {
  const head = tokenizer.encode(prompt, { allowedSpecial: 'none' });
  const ids = tokenizer.encode(prompt + completion, { allowedSpecial: 'none' });
  if (head.length > ids.length || head.some((id, i) => id !== ids[i])) {
    throw new LlmError(
      `the prompt's tokens are not a prefix of prompt + completion's: the tokenizer merges ${JSON.stringify(prompt.slice(-20))} with ${JSON.stringify(completion.slice(0, 20))}; `
      + 'end the prompt, or start the completion, with a space or newline',
    );
  }
  if ((opts.eos ?? true) && tokenizer.eosId !== undefined) ids.push(tokenizer.eosId);
  const lossMask = new Uint8Array(ids.length);
  lossMask.fill(1, head.length);
  if (head.length === ids.length) throw new LlmError('the completion is empty and the tokenizer has no EOS: there is nothing to learn');
  return { ids, lossMask };
}
