/**
 * Chat: message types, templates (named and the model's own Jinja), encoding to ids, and
 * rendering for training (ids + loss mask).
 *
 *   import { chatTemplate, encodeChat, renderConversation } from '../chat/index.js';
 *   const t = chatTemplate('chatml');
 *   encodeChat(tokenizer, t, [{ role: 'user', content: 'Hi' }]);          // the next assistant turn's prompt ids
 *   renderConversation(tokenizer, t, conversation);                       // { ids, lossMask }
 */
export { CHAT_ROLES, checkMessages, splitConversation, type ChatMessage, type ChatRole, type ChatTurn } from './messages.js';
export { CHAT_TEMPLATE_NAMES, partsText, splitAtSpecials, type ChatPart, type ChatTemplate, type ChatTemplateName, type RenderOptions } from './template.js';
export { chatTemplate } from './templates.js';
export { hasGenerationMarkers, jinjaChatTemplate, type JinjaTemplateOptions, type JinjaTokenizer } from './jinja-template.js';
export { chatStopTokens, encodeChat, encodeChatPrompt, encodeParts, specialId, type ChatTokenizer, type EncodedChat } from './encode.js';
export { renderConversation, renderPromptCompletion, type RenderConversationOptions } from './render.js';
export { chooseChatTemplate, chooseModelChatTemplate } from './choose.js';
