/**
 * The template for a model when the user names none.
 *
 *   chooseChatTemplate(charTokenizer);                   // { name: 'qa', reason: 'the model has no chat tokens' }
 *   chooseChatTemplate(tok, "{% ... '[INST] ' ... %}");   // { name: 'llama2', reason: "the model's own chat template" }
 *   chooseModelChatTemplate(tok, gemmaJinjaSource);
 *   // { name: 'jinja', template: <the Jinja template>, reason: "the model's own chat template (Jinja)" }
 *
 * The model's own template (Jinja source from tokenizer_config.json or GGUF metadata) maps to a
 * named template when it writes that template's markers ('<|im_start|>' chatml, '[INST]' llama2,
 * '### Instruction' alpaca): the fast path, and the same prompts. chooseModelChatTemplate renders
 * any other one with @huggingface/jinja; chooseChatTemplate (names only) falls back to chatml when
 * the tokenizer has ChatML's tokens, else qa (plain text, which any tokenizer can encode).
 */
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { jinjaChatTemplate, type JinjaTokenizer } from './jinja-template.js';
import type { ChatTemplate, ChatTemplateName } from './template.js';
import { chatTemplate } from './templates.js';

const OWN = "the model's own chat template";

/** The named template the model's own template writes, if any. */
function namedFromSource(modelTemplate: string): ChatTemplateName | undefined {
  if (modelTemplate.includes('<|im_start|>')) return 'chatml';
  if (modelTemplate.includes('[INST]')) return 'llama2';
  if (modelTemplate.includes('### Instruction')) return 'alpaca';
  return undefined;
}

/** chatml for a tokenizer with ChatML's tokens, else qa; `tail` is added to the reason. */
function fallback(tokenizer: Pick<Tokenizer, 'specialTokens'>, tail: string): { name: ChatTemplateName; reason: string } {
  const specials = tokenizer.specialTokens ?? {};
  if (specials['<|im_start|>'] !== undefined && specials['<|im_end|>'] !== undefined) {
    return { name: 'chatml', reason: `the tokenizer has ChatML's tokens${tail}` };
  }
  return { name: 'qa', reason: `the model has no chat tokens${tail}` };
}

/** A named template only: the model's own when it is one of them, else chatml or qa. */
export function chooseChatTemplate(
  tokenizer: Pick<Tokenizer, 'specialTokens'>, modelTemplate?: string,
): { name: ChatTemplateName; reason: string } {
  if (modelTemplate === undefined || modelTemplate.trim() === '') return fallback(tokenizer, '');
  const name = namedFromSource(modelTemplate);
  if (name !== undefined) return { name, reason: OWN };
  return fallback(tokenizer, "; the model's own chat template is not one llm.ts renders yet");
}

/**
 * A template object: the named one the model's own template matches, else that template itself
 * rendered as Jinja (name 'jinja'), else (no template, or one @huggingface/jinja cannot parse)
 * chatml or qa as chooseChatTemplate picks them; the reason says which and why.
 */
export function chooseModelChatTemplate(
  tokenizer: JinjaTokenizer, modelTemplate?: string,
): { name: string; template: ChatTemplate; reason: string } {
  if (modelTemplate === undefined || modelTemplate.trim() === '') {
    const f = fallback(tokenizer, '');
    return { ...f, template: chatTemplate(f.name) };
  }
  const name = namedFromSource(modelTemplate);
  if (name !== undefined) return { name, template: chatTemplate(name), reason: OWN };
  try {
    const template = jinjaChatTemplate(modelTemplate, tokenizer);
    return { name: template.name, template, reason: `${OWN} (Jinja)` };
  } catch (err) {
    if (!(err instanceof LlmError)) throw err;
    const f = fallback(tokenizer, `; ${err.message}`);
    return { ...f, template: chatTemplate(f.name) };
  }
}
