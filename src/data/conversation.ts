/**
 * Conversations in training rows: reading a list of messages and checking its order. A
 * conversation is an optional system message, then user and assistant turns alternating, from a
 * user turn; a training conversation ends with an assistant turn, a prompt with a user turn.
 *
 *   messageList([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }], 'messages');
 *   // the same two ChatMessages
 *   messageList([{ role: 'tool', content: '4' }], 'messages');
 *   // BadRowError: messages[0].role is "tool" (expected system, user or assistant)
 *   checkConversation([{ role: 'user', content: 'Hi', at: 'messages[0]' }, { role: 'user', content: 'Hi?', at: 'messages[1]' }], 'assistant');
 *   // BadRowError: messages[1] is a user turn after a user turn (turns must alternate user, assistant, user, ...)
 *
 * An empty (blank) system message is dropped: it says nothing, and many ShareGPT exports carry
 * one on every row. An empty user or assistant turn is a bad row.
 */
import { CHAT_ROLES, type ChatMessage, type ChatRole } from '../chat/messages.js';
import { badRow, objectAt, stringField, typeName } from './rows.js';

export type { ChatMessage, ChatRole };

/** A message with where it came from in the row, for messages ('conversations[3]'). */
export interface PlacedMessage extends ChatMessage {
  at: string;
}

/**
 * The messages of an OpenAI-style list (`[{role, content}, ...]`) in `field`, unchecked for
 * order; a message that is not an object, an unknown role or a content that is not a string is
 * a bad row. Other keys of a message (name, weight, ...) are ignored.
 */
export function placedMessages(value: unknown, field: string): PlacedMessage[] {
  if (!Array.isArray(value)) badRow(`field ${JSON.stringify(field)} is ${typeName(value)}, not a list of messages`);
  return value.map((v, i) => {
    const at = `${field}[${i}]`;
    const m = objectAt(v, at);
    const role = stringField(m, 'role', { name: `${at}.role` });
    if (!(CHAT_ROLES as readonly string[]).includes(role)) badRow(`${at}.role is ${JSON.stringify(role.slice(0, 40))} (expected system, user or assistant)`);
    if (Array.isArray(m.content)) badRow(`${at}.content is a list of parts (only text content is supported; give a string)`);
    const content = stringField(m, 'content', { name: `${at}.content`, allowEmpty: true });
    return { role: role as ChatRole, content, at };
  });
}

/** placedMessages, then checkConversation. */
export function messageList(value: unknown, field: string, end: 'assistant' | 'user' = 'assistant'): ChatMessage[] {
  return checkConversation(placedMessages(value, field), end);
}

/**
 * The conversation without its source places, after checking its order (see the file comment);
 * `end` is the role the last message must have. Throws BadRowError naming the message at fault.
 */
export function checkConversation(messages: readonly PlacedMessage[], end: 'assistant' | 'user'): ChatMessage[] {
  const out: ChatMessage[] = [];
  messages.forEach((m, i) => {
    if (m.role === 'system') {
      if (i !== 0) badRow(`${m.at} is a system message after the first message (only the first may be system)`);
      if (m.content.trim() !== '') out.push({ role: 'system', content: m.content });
      return;
    }
    const prev = out.length === 0 || out[out.length - 1].role === 'system' ? undefined : out[out.length - 1].role;
    const want: ChatRole = prev === 'user' ? 'assistant' : 'user';
    if (m.role !== want) {
      badRow(prev === undefined
        ? `${m.at} is an assistant turn before any user turn (a conversation starts with a user turn, after an optional system message)`
        : `${m.at} is ${article(m.role)} turn after ${article(prev)} turn (turns must alternate user, assistant, user, ...)`);
    }
    if (m.content.trim() === '') badRow(`${m.at} is an empty ${m.role} turn`);
    out.push({ role: m.role, content: m.content });
  });
  const last = out[out.length - 1];
  if (!last || last.role === 'system') badRow(messages.length === 0 ? 'the conversation is empty' : 'the conversation has no user or assistant turn');
  if (last.role !== end) {
    badRow(end === 'assistant'
      ? `the conversation ends with a user turn (${messages[messages.length - 1].at}); a training conversation ends with the assistant's answer`
      : `the prompt ends with an assistant turn (${messages[messages.length - 1].at}); a prompt ends with the user's turn`);
  }
  return out;
}

function article(role: ChatRole): string {
  return role === 'assistant' ? 'an assistant' : `a ${role}`;
}
