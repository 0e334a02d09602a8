/**
 * Chat messages: their type, and the checks every renderer makes before rendering.
 *
 *   const msgs: ChatMessage[] = [
 *     { role: 'system', content: 'Be brief.' },
 *     { role: 'user', content: 'Hi' },
 *     { role: 'assistant', content: 'Hello!' },
 *   ];
 *   checkMessages(msgs);                       // throws an LlmError naming the bad message
 *   splitConversation(msgs, 'conversation');
 *   // { system: 'Be brief.', turns: [{ user: 'Hi', assistant: 'Hello!' }] }
 *   splitConversation(msgs);                   // LlmError: a chat prompt needs the conversation to end with a user message
 */
import { LlmError } from '../util/errors.js';

export type ChatRole = 'system' | 'user' | 'assistant';

export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** One user message and the assistant's answer to it (absent for the last turn of a prompt). */
export interface ChatTurn {
  user: string;
  assistant?: string;
}

/**
 * Every message must be an object with a known role and string content (data read from JSONL
 * files reaches here unchecked).
 */
export function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new LlmError(`a conversation must be an array of messages, got ${typeof messages}`);
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null) throw new LlmError(`chat message ${i} must be an object with role and content, got ${JSON.stringify(m)}`);
    if (!CHAT_ROLES.includes(m.role)) {
      throw new LlmError(`chat message ${i} has role ${JSON.stringify(m.role)}; roles are ${CHAT_ROLES.join(', ')}`);
    }
    if (typeof m.content !== 'string') throw new LlmError(`chat message ${i} (${m.role}) must have string content, got ${typeof m.content}`);
  });
}

/**
 * Split a conversation into its (optional) system text and user/assistant turns: an optional
 * system message first, then user and assistant alternating. A 'prompt' (the default) ends with
 * a user message (the next answer is the model's); a 'conversation' may end with either role.
 */
export function splitConversation(messages: readonly ChatMessage[], kind: 'prompt' | 'conversation' = 'prompt'): { system?: string; turns: ChatTurn[] } {
  checkMessages(messages);
  let i = 0;
  let system: string | undefined;
  if (messages.length > 0 && messages[0].role === 'system') {
    system = messages[0].content;
    i = 1;
  }
  const turns: ChatTurn[] = [];
  for (; i < messages.length; i++) {
    const m = messages[i];
    const want = turns.length > 0 && turns[turns.length - 1].assistant === undefined ? 'assistant' : 'user';
    if (m.role !== want) {
      throw new LlmError(`chat message ${i} has role '${m.role}' but '${want}' was expected (an optional system message first, then user and assistant alternating)`);
    }
    if (want === 'user') turns.push({ user: m.content });
    else turns[turns.length - 1].assistant = m.content;
  }
  if (kind === 'prompt' && (turns.length === 0 || turns[turns.length - 1].assistant !== undefined)) {
    throw new LlmError('a chat prompt needs the conversation to end with a user message');
  }
  return { system, turns };
}
