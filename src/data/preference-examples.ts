/**
 * Preference data (reward models, DPO): pairs of answers to one prompt, the chosen one better.
 * Every row becomes `{ prompt: ChatMessage[] (ends with the user), chosen, rejected }`.
 *
 *   format                  row
 *   prompt-chosen-rejected  {"prompt": "...", "chosen": "...", "rejected": "..."}
 *                           prompt a string (one user turn) or a list of messages ending with the
 *                           user; chosen/rejected strings or one-message assistant lists (TRL's
 *                           conversational form)
 *   chosen-rejected         two whole dialogues sharing a prompt (TRL's "implicit prompt"):
 *                           HH-RLHF text "\n\nHuman: ...\n\nAssistant: ...", or lists of messages
 *
 *   // hh.jsonl: {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}
 *   loadPreferenceExamples('hh.jsonl').examples[0];
 *   // { prompt: [{ role: 'user', content: 'Hi' }], chosen: 'Hello!', rejected: 'Go away.' }
 *
 * HH-RLHF dialogues are split at their last "\n\nAssistant:"; what comes before must be the same
 * text in both, or the row is bad (some rows of the released data differ there: a turn marker
 * missing its blank line inside an answer). Each turn's text is trimmed of surrounding
 * whitespace. Also bad: an empty or identical chosen and rejected, a dialogue that does not
 * start with "Human:" or ends with a Human turn, a prompt whose turns do not alternate.
 */
import { LlmError } from '../util/errors.js';
import { checkConversation, placedMessages, type ChatMessage, type PlacedMessage } from './conversation.js';
import { badRow, loadRows, stringField, typeName, type BadRow, type OnBadRow, type RowFormat } from './rows.js';

export type { ChatMessage };

export interface PreferenceExample {
  /** The conversation so far: optional system, then user/assistant turns, ending with the user. */
  prompt: ChatMessage[];
  /** The better answer (the assistant's next turn). */
  chosen: string;
  /** The worse answer. */
  rejected: string;
}

export type PreferenceFormat = 'prompt-chosen-rejected' | 'chosen-rejected';

export const PREFERENCE_FORMATS: readonly PreferenceFormat[] = ['prompt-chosen-rejected', 'chosen-rejected'];

export interface PreferenceLoadOptions {
  format?: PreferenceFormat | 'auto';
  onBadRow?: OnBadRow;
  maxRowBytes?: number;
}

export interface PreferenceLoadResult {
  format: PreferenceFormat;
  examples: PreferenceExample[];
  /** For each example, the line of the file its row starts on. */
  lines: number[];
  bad: BadRow[];
  rows: number;
}

/** The pairs of a preference data file (see the file comment). */
export function loadPreferenceExamples(path: string, opts: PreferenceLoadOptions = {}): PreferenceLoadResult {
  const r = loadRows(path, PREFERENCE_ROW_FORMATS, { ...opts, what: 'preference data', misfit });
  return { format: r.format as PreferenceFormat, examples: r.items, lines: r.lines, bad: r.bad, rows: r.rows };
}

/** Parses a --format value for preference data. */
export function parsePreferenceFormat(s: string): PreferenceFormat | 'auto' {
  if (s === 'auto' || (PREFERENCE_FORMATS as readonly string[]).includes(s)) return s as PreferenceFormat | 'auto';
  throw new LlmError(`--format must be auto or one of ${PREFERENCE_FORMATS.join(', ')}, not '${s}'`);
}

const HUMAN = '\n\nHuman:';
const ASSISTANT = '\n\nAssistant:';

/**
 * The turns of an HH-RLHF dialogue, unchecked for order: text cut at each "\n\nHuman:" and
 * "\n\nAssistant:", each turn trimmed. `field` names it in messages.
 *
 *   hhDialogue('\n\nHuman: Hi\n\nAssistant: Hello!', 'chosen');
 *   // [{ role: 'user', content: 'Hi', at: 'chosen turn 1' }, { role: 'assistant', content: 'Hello!', at: 'chosen turn 2' }]
 */
export function hhDialogue(text: string, field: string): PlacedMessage[] {
  const body = text.trimStart();
  if (!body.startsWith('Human:')) badRow(`${field} does not start with "Human:" (an HH-RLHF dialogue is "\\n\\nHuman: ...\\n\\nAssistant: ...")`);
  const s = `\n\n${body}`;
  const marks = [...s.matchAll(/\n\n(Human|Assistant):/g)];
  return marks.map((m, k) => {
    const end = k + 1 < marks.length ? marks[k + 1].index : s.length;
    const content = s.slice(m.index + m[0].length, end).trim();
    return { role: m[1] === 'Human' ? 'user' : 'assistant', content, at: `${field} turn ${k + 1}` };
  });
}

/** Splits HH-RLHF's two dialogues into the shared prompt and the two last answers. */
export function splitHhPair(chosen: string, rejected: string): PreferenceExample {
  const cut = (text: string, field: string): { prefix: string; answer: string } => {
    const at = text.lastIndexOf(ASSISTANT);
    if (at < 0) badRow(`${field} has no "\\n\\nAssistant:" turn`);
    const answer = text.slice(at + ASSISTANT.length);
    if (answer.includes(HUMAN)) badRow(`${field} ends with a Human turn, not the Assistant's answer`);
    return { prefix: text.slice(0, at), answer: answer.trim() };
  };
  const c = cut(chosen, 'chosen');
  const r = cut(rejected, 'rejected');
  if (c.prefix !== r.prefix) {
    let i = 0;
    while (i < c.prefix.length && c.prefix[i] === r.prefix[i]) i++;
    const turn = (c.prefix.slice(0, i).match(/\n\n(Human|Assistant):/g) ?? []).length;
    badRow(`chosen and rejected do not share the prompt before their last "\\n\\nAssistant:" (they differ from character ${i}, in turn ${turn}; lengths ${c.prefix.length} and ${r.prefix.length})`);
  }
  const prompt = checkConversation(hhDialogue(c.prefix, 'chosen'), 'user');
  return pair(prompt, c.answer, r.answer);
}

/** Checks the two answers and makes the example. */
function pair(prompt: ChatMessage[], chosen: string, rejected: string): PreferenceExample {
  if (chosen.trim() === '') badRow('the chosen answer is empty');
  if (rejected.trim() === '') badRow('the rejected answer is empty');
  if (chosen === rejected) badRow('chosen and rejected are the same answer (nothing to prefer)');
  return { prompt, chosen, rejected };
}

/** A chosen/rejected answer: a string, or a list of one assistant message. */
function answer(row: Record<string, unknown>, field: 'chosen' | 'rejected'): string {
  const v = row[field];
  if (Array.isArray(v)) {
    const ms = placedMessages(v, field);
    if (ms.length !== 1 || ms[0].role !== 'assistant') badRow(`field "${field}" must be one assistant message when it is a list (it has ${ms.length} message${ms.length === 1 ? '' : 's'})`);
    return ms[0].content;
  }
  return stringField(row, field, { allowEmpty: true });
}

const has = (row: Record<string, unknown>, key: string): boolean => Object.hasOwn(row, key);

const explicitPrompt: RowFormat<PreferenceExample> = {
  name: 'prompt-chosen-rejected',
  matches: (row) => has(row, 'prompt') && (has(row, 'chosen') || has(row, 'rejected')),
  convert(row) {
    let prompt: ChatMessage[];
    if (Array.isArray(row.prompt)) prompt = checkConversation(placedMessages(row.prompt, 'prompt'), 'user');
    else prompt = [{ role: 'user', content: stringField(row, 'prompt') }];
    return [pair(prompt, answer(row, 'chosen'), answer(row, 'rejected'))];
  },
};

const implicitPrompt: RowFormat<PreferenceExample> = {
  name: 'chosen-rejected',
  matches: (row) => has(row, 'chosen') && has(row, 'rejected'),
  convert(row) {
    for (const field of ['chosen', 'rejected']) if (!has(row, field)) badRow(`field "${field}" is missing`);
    const { chosen, rejected } = row;
    if (typeof chosen === 'string' && typeof rejected === 'string') return [splitHhPair(chosen, rejected)];
    if (Array.isArray(chosen) && Array.isArray(rejected)) {
      const c = checkConversation(placedMessages(chosen, 'chosen'), 'assistant');
      const r = checkConversation(placedMessages(rejected, 'rejected'), 'assistant');
      const prompt = c.slice(0, -1);
      const same = prompt.length === r.length - 1 && prompt.every((m, i) => m.role === r[i].role && m.content === r[i].content);
      if (!same) badRow('chosen and rejected do not share the prompt (every message but the last must be the same)');
      return [pair(prompt, c[c.length - 1].content, r[r.length - 1].content)];
    }
    return badRow(`"chosen" and "rejected" must both be dialogues as text or both lists of messages (they are ${typeName(chosen)} and ${typeName(rejected)})`);
  },
};

const PREFERENCE_ROW_FORMATS: readonly RowFormat<PreferenceExample>[] = [explicitPrompt, implicitPrompt];

function misfit(row: Record<string, unknown>): string | undefined {
  if (has(row, 'chosen') !== has(row, 'rejected')) return `a pair needs both "chosen" and "rejected" (this row has only "${has(row, 'chosen') ? 'chosen' : 'rejected'}")`;
  return undefined;
}
