/**
 * Chat templates moved to src/chat/ (messages, named templates, Jinja templates, encoding and
 * training rendering); this re-export keeps the old import path working.
 *
 *   import { chatTemplate, encodeChat } from '../chat/index.js';   // new code
 */
export * from '../chat/index.js';
