/**
 * A chat template from a model's own Jinja source (Hugging Face `chat_template` in
 * tokenizer_config.json, GGUF `tokenizer.chat_template`), rendered by @huggingface/jinja with
 * the variables transformers' apply_chat_template passes: messages, add_generation_prompt,
 * bos_token, eos_token and raise_exception.
 *
 *   const t = jinjaChatTemplate(
 *     "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
 *     + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", tokenizer);
 *   t.render([{ role: 'user', content: 'Hi' }]);   // '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 *   t.stop;                                         // ['<|im_end|>'] (the special that follows an answer)
 *
 * Specials are the tokenizer's special tokens (and its BOS / EOS text). Message content is
 * escaped before rendering (a private-use mark before each character of a special written in it,
 * and before the marks themselves), so after rendering every special found in the output was
 * written by the template, and content comes back as text whatever the template does with it
 * (strip, concatenation).
 *
 * Trained parts (renderParts with train): where the template has `{% generation %}` ...
 * `{% endgeneration %}` blocks (transformers' markers for assistant masks) they are exactly
 * those; else, as TRL does without markers, assistant message i spans from the end of the
 * rendering of messages[0, i) with the generation prompt to the end of the rendering of
 * messages[0, i], cut after its last special token (the end-of-turn, e.g. '<|im_end|>' without
 * the '\n' after it). Both renderings must be prefixes of the whole conversation's: a template
 * that renders earlier turns differently as the conversation grows is an LlmError naming the
 * message. A template that leaves a message's content out (a role it does not support) is an
 * LlmError too; raise_exception('...') becomes a one-line LlmError with the template's words.
 */
import { Template } from '@huggingface/jinja';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { LlmError } from '../util/errors.js';
import { checkMessages, type ChatMessage } from './messages.js';
import { partsText, specialsRegex, type ChatPart, type ChatTemplate, type RenderOptions } from './template.js';

/** escapes the next character of content; generation start / end marks (never in content unescaped) */
const ESC = '\uE000';
const GEN_START = '\uE001';
const GEN_END = '\uE002';
const MARKS = /[\uE000-\uE002]/g;

export type JinjaTokenizer = Pick<Tokenizer, 'specialTokens' | 'bosId' | 'eosId'> & { tokenBytes?: Tokenizer['tokenBytes'] };

export interface JinjaTemplateOptions {
  /** shown in messages and by `llmts chat` (default 'jinja') */
  name?: string;
  /** bos_token / eos_token text (default: the tokenizer's BOS / EOS token text, else '') */
  bosToken?: string;
  eosToken?: string;
}

const GENERATION_TAG = /{%-?\s*(?:end)?generation\s*-?%}/;

/** Whether a Jinja chat template marks assistant text with `{% generation %}` blocks. */
export function hasGenerationMarkers(source: string): boolean {
  return GENERATION_TAG.test(source);
}

/** A ChatTemplate rendering Jinja source; the source is parsed here (a syntax error is an LlmError). */
export function jinjaChatTemplate(source: string, tokenizer: JinjaTokenizer, opts: JinjaTemplateOptions = {}): ChatTemplate {
  return new JinjaChatTemplate(source, tokenizer, opts);
}

interface ScannedPart extends ChatPart {
  /** offsets in the escaped rendering */
  start: number;
  end: number;
}

class JinjaChatTemplate implements ChatTemplate {
  readonly name: string;
  readonly stop: readonly string[];
  readonly specials: readonly string[];
  readonly bos?: string;
  readonly eos?: string;
  private readonly template: Template;
  private readonly markers: boolean;
  private readonly specialsAt: RegExp | null;
  /** first characters of the specials: only there is specialsAt tried */
  private readonly specialStarts: Set<string>;
  private readonly specialsAll: RegExp | null;

  constructor(source: string, tokenizer: JinjaTokenizer, opts: JinjaTemplateOptions) {
    this.name = opts.name ?? 'jinja';
    if (typeof source !== 'string' || source.trim() === '') throw new LlmError(`the ${this.name} chat template is empty`);
    this.markers = hasGenerationMarkers(source);
    try {
      this.template = new Template(this.markers ? markGeneration(source) : source);
    } catch (err) {
      throw new LlmError(`the ${this.name} chat template cannot be parsed by @huggingface/jinja: ${(err as Error).message}`);
    }
    this.bos = opts.bosToken ?? tokenText(tokenizer, tokenizer.bosId);
    this.eos = opts.eosToken ?? tokenText(tokenizer, tokenizer.eosId);
    const specials = new Set(Object.keys(tokenizer.specialTokens ?? {}));
    for (const s of [this.bos, this.eos]) if (s !== undefined && s !== '') specials.add(s);
    this.specials = [...specials];
    this.specialsAt = specialsRegex(this.specials, 'y');
    this.specialStarts = new Set(this.specials.map((x) => x[0]));
    this.specialsAll = specialsRegex(this.specials, 'g');
    this.stop = this.probeStop();
  }

  render(messages: readonly ChatMessage[]): string {
    return partsText(this.renderParts(messages, { addGenerationPrompt: true }));
  }

  renderParts(messages: readonly ChatMessage[], opts: RenderOptions): ChatPart[] {
    checkMessages(messages);
    const whole = this.run(messages, opts.addGenerationPrompt);
    this.checkContents(messages, whole, opts.train === true);
    if (!opts.train) return this.scan(whole, []).parts.map(({ text, kind }) => ({ text, kind, train: false }));
    return this.markers ? this.markedParts(messages, whole) : this.incrementalParts(messages, whole);
  }

  /** Trained parts from {% generation %} blocks: the k-th block belongs to the k-th assistant message. */
  private markedParts(messages: readonly ChatMessage[], whole: string): ChatPart[] {
    const { parts, marks } = this.scan(whole, []);
    const answers = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
    let open: number | null = null;
    let block = 0;
    for (const mark of marks) {
      if ((mark.kind === 'start') !== (open === null)) {
        throw new LlmError(`the ${this.name} chat template's {% generation %} / {% endgeneration %} blocks are unbalanced in its output`);
      }
      if (mark.kind === 'start') {
        open = mark.at;
        continue;
      }
      const message = marks.length / 2 === answers.length ? answers[block] : undefined;
      for (let k = open!; k < mark.at; k++) Object.assign(parts[k], { train: true, message });
      open = null;
      block++;
    }
    if (open !== null) throw new LlmError(`the ${this.name} chat template's {% generation %} block is not closed in its output`);
    return parts.map(stripOffsets);
  }

  /** Trained parts by rendering the conversation up to each assistant message, as TRL does without markers. */
  private incrementalParts(messages: readonly ChatMessage[], whole: string): ChatPart[] {
    const spans: { start: number; end: number; message: number }[] = [];
    messages.forEach((m, i) => {
      if (m.role !== 'assistant') return;
      const context = `(rendering the messages before assistant message ${i} to find its tokens)`;
      const before = this.runWithContext(messages.slice(0, i), true, context);
      const through = this.runWithContext(messages.slice(0, i + 1), false, context);
      for (const [what, text] of [['before assistant message', before], ['up to and including assistant message', through]] as const) {
        if (!whole.startsWith(text)) {
          throw new LlmError(
            `the ${this.name} chat template renders the conversation ${what} ${i} differently from the start of the whole conversation `
            + '(earlier turns change as it grows), so the answer cannot be located; this template cannot be trained on without {% generation %} markers',
          );
        }
      }
      if (through.length <= before.length) throw new LlmError(`the ${this.name} chat template renders nothing for assistant message ${i}`);
      spans.push({ start: before.length, end: through.length, message: i });
    });
    const { parts } = this.scan(whole, spans.flatMap((s) => [s.start, s.end]));
    for (const span of spans) {
      const inside = parts.filter((p) => p.start >= span.start && p.end <= span.end);
      // cut after the end-of-turn special ('<|im_end|>', '</s>'): what follows it is the separator
      // (a lone special first is a header, unless only whitespace follows it: an empty answer)
      const lastSpecial = inside.map((p) => p.kind).lastIndexOf('special');
      const cut = lastSpecial > 0 || (lastSpecial === 0 && inside.slice(1).every((p) => p.text.trim() === ''));
      const kept = cut ? inside.slice(0, lastSpecial + 1) : inside;
      for (const p of kept) Object.assign(p, { train: true, message: span.message });
    }
    return parts.map(stripOffsets);
  }

  /** Render escaped messages; the template's failures and raise_exception('...') become one-line LlmErrors. */
  private run(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    const escaped = messages.map((m) => ({ role: m.role, content: this.escape(m.content) }));
    try {
      return this.template.render({
        messages: escaped,
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bos ?? '',
        eos_token: this.eos ?? '',
      });
    } catch (err) {
      // raise_exception('...') throws an Error with the template's words (as do the engine's own failures)
      const text = unescapeAll(err instanceof Error ? err.message : String(err));
      throw new LlmError(`the ${this.name} chat template cannot render this conversation: ${text}`);
    }
  }

  private runWithContext(messages: readonly ChatMessage[], addGenerationPrompt: boolean, context: string): string {
    try {
      return this.run(messages, addGenerationPrompt);
    } catch (err) {
      if (err instanceof LlmError) throw new LlmError(`${err.message} ${context}`);
      throw err;
    }
  }

  /** Content whose (trimmed) text is missing from the output was left out: a role the template does not render. */
  private checkContents(messages: readonly ChatMessage[], whole: string, all: boolean): void {
    messages.forEach((m, i) => {
      if (!all && m.role === 'assistant') return; // templates may drop reasoning from earlier answers
      const content = m.content.trim();
      if (content !== '' && !whole.includes(this.escape(content))) {
        throw new LlmError(`the ${this.name} chat template leaves out message ${i} (role ${m.role}): its content is not in the rendered text (does the template support the ${m.role} role here?)`);
      }
    });
  }

  /** Content made safe to render: marks escaped, every character of a special in it preceded by ESC. */
  private escape(content: string): string {
    const marked = content.replace(MARKS, (c) => ESC + c);
    if (this.specialsAll === null) return marked;
    return marked.replace(this.specialsAll, (s) => [...s].map((c) => ESC + c).join(''));
  }

  /**
   * Split an escaped rendering into text and special parts (content escapes undone, generation
   * marks removed and returned as part indices); text is also cut at the given offsets.
   */
  private scan(text: string, cuts: readonly number[]): { parts: ScannedPart[]; marks: { at: number; kind: 'start' | 'end' }[] } {
    const parts: ScannedPart[] = [];
    const marks: { at: number; kind: 'start' | 'end' }[] = [];
    const cutAt = new Set(cuts);
    const reached = new Set<number>();
    let buf = '';
    let bufStart = 0;
    const flush = (at: number): void => {
      if (buf !== '') parts.push({ text: buf, kind: 'text', train: false, start: bufStart, end: at });
      buf = '';
      bufStart = at;
    };
    for (let i = 0; i < text.length;) {
      if (cutAt.has(i)) {
        flush(i);
        reached.add(i);
      }
      const c = text[i];
      if (c === ESC && i + 1 < text.length) {
        buf += text[i + 1];
        i += 2;
      } else if (c === GEN_START || c === GEN_END) {
        flush(i);
        marks.push({ at: parts.length, kind: c === GEN_START ? 'start' : 'end' });
        bufStart = ++i;
      } else {
        const re = this.specialStarts.has(c) ? this.specialsAt : null;
        if (re !== null) re.lastIndex = i;
        const m = re?.exec(text);
        if (m) {
          flush(i);
          parts.push({ text: m[0], kind: 'special', train: false, start: i, end: i + m[0].length });
          i += m[0].length;
          bufStart = i;
        } else {
          buf += c;
          i++;
        }
      }
    }
    flush(text.length);
    for (const at of cutAt) {
      if (at < text.length && !reached.has(at)) {
        throw new LlmError(`the ${this.name} chat template puts an assistant answer's boundary inside a special token, so its tokens cannot be found`);
      }
    }
    return { parts, marks };
  }

  /** The special that follows an answer (e.g. '<|im_end|>'), from a one-turn probe; none if the probe fails. */
  private probeStop(): string[] {
    try {
      const user: ChatMessage = { role: 'user', content: 'Hi' };
      const prompt = this.run([user], true);
      const whole = this.run([user, { role: 'assistant', content: 'Hello' }], false);
      if (!whole.startsWith(prompt)) return [];
      const rest = whole.slice(prompt.length);
      const at = rest.indexOf('Hello');
      if (at < 0) return [];
      const next = this.scan(rest.slice(at + 'Hello'.length), []).parts.find((p) => p.kind === 'special');
      return next ? [next.text] : [];
    } catch {
      return [];
    }
  }
}

function stripOffsets({ text, kind, train, message }: ScannedPart): ChatPart {
  return train ? { text, kind, train, message } : { text, kind, train };
}

/** Undo content escapes in text that is not scanned (an error message quoting content). */
function unescapeAll(s: string): string {
  return s.replace(/\uE000([\s\S])/g, '$1').replace(/[\uE001\uE002]/g, '');
}

/**
 * Turn `{% generation %}` / `{% endgeneration %}` into expressions printing a start / end mark,
 * keeping the whitespace rules of block tags (a '-' strips, lstrip_blocks, trim_blocks).
 */
function markGeneration(source: string): string {
  return source
    .replace(/^[ \t]*(?={%-?\s*(?:end)?generation\s*-?%})/gm, '')
    .replace(/{%(-?)\s*(end)?generation\s*(-?)%}\n?/g, (_m, l: string, end: string | undefined, r: string) => `{{${l} '${end ? GEN_END : GEN_START}' ${r}}}`);
}

/** The text of a token: its special-token text, else its bytes as UTF-8; undefined for none. */
function tokenText(tokenizer: JinjaTokenizer, id: number | undefined): string | undefined {
  if (id === undefined) return undefined;
  for (const [s, v] of Object.entries(tokenizer.specialTokens ?? {})) if (v === id) return s;
  const bytes = tokenizer.tokenBytes?.(id);
  return bytes && bytes.length > 0 ? new TextDecoder().decode(bytes) : undefined;
}
