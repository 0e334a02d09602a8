/**
 * Supervised fine-tuning data: JSONL (or a JSON array) in the common shapes, every row turned
 * into one SftExample. The format is named (`--format`) or decided by the first row that fits
 * one (`auto`); a row that does not fit the file's format is a bad row (see rows.ts).
 *
 *   format             row                                                      example
 *   messages           {"messages": [{"role": "system"|"user"|"assistant",      chat: the messages
 *                        "content": "..."}, ...]}                                 (TRL's conversational)
 *   sharegpt           {"conversations": [{"from": "human"|"gpt"|"system",      chat: human/user -> user,
 *                        "value": "..."}, ...], "system"?: "..."}                 gpt/assistant -> assistant
 *   alpaca             {"instruction", "input"?, "output", "system"?,            chat: [system], user, assistant
 *                        "history"?: [["user", "assistant"], ...]}
 *   self-instruct      {"instruction", "instances": [{"input", "output"}, ...]}  one alpaca chat per instance
 *   prompt-completion  {"prompt": "...", "completion": "..."}                   completion (loss on the completion)
 *                      {"prompt": [messages], "completion": [messages]}          chat (prompt then completion)
 *   text               {"text": "..."}                                          text (continued pretraining)
 *
 *   const r = loadSftExamples('alpaca.jsonl');
 *   // {"instruction": "Translate to French.", "input": "cat", "output": "chat"}
 *   r.format;        // 'alpaca'
 *   r.examples[0];   // { kind: 'chat', messages: [{ role: 'user', content: 'Translate to French.\n\ncat' },
 *                    //                            { role: 'assistant', content: 'chat' }] }
 *
 * Alpaca: the user turn is the instruction, then "\n\n" and the input when the input is not
 * blank; the output is the assistant turn; there is no system turn unless the row has `system`
 * (the Stanford preamble "Below is an instruction..." is the alpaca chat template's business, not
 * the data's). `history` (LLaMA-Factory's alpaca) is earlier [user, assistant] pairs. Extra
 * fields (`id`, alpaca-libre's `status` and `similarity`, ...) are ignored. Texts are kept
 * exactly, whitespace included.
 *
 * Bad rows: a field missing or of the wrong type, an unknown role, an empty user or assistant
 * turn, turns that do not alternate, a conversation that does not end with the assistant, an
 * empty output/completion/text. In every format, conversations follow conversation.ts.
 */
import { LlmError } from '../util/errors.js';
import { checkConversation, messageList, placedMessages, type ChatMessage, type PlacedMessage } from './conversation.js';
import { arrayField, badRow, loadRows, objectAt, optionalStringField, stringField, typeName, type BadRow, type OnBadRow, type RowFormat } from './rows.js';

export type { ChatMessage };

/** One training example, whatever the file's format. */
export type SftExample =
  | { kind: 'chat'; messages: ChatMessage[] }
  | { kind: 'completion'; prompt: string; completion: string }
  | { kind: 'text'; text: string };

export type SftFormat = 'messages' | 'sharegpt' | 'alpaca' | 'self-instruct' | 'prompt-completion' | 'text';

/** The formats in the order `auto` tries them on a row. */
export const SFT_FORMATS: readonly SftFormat[] = ['messages', 'sharegpt', 'self-instruct', 'alpaca', 'prompt-completion', 'text'];

export interface SftLoadOptions {
  /** A format, or 'auto' (default). */
  format?: SftFormat | 'auto';
  /** 'skip' (default): leave bad rows out and list them in `bad`; 'error': throw at the first. */
  onBadRow?: OnBadRow;
  /** Longest row in bytes (default 16 MiB). */
  maxRowBytes?: number;
}

export interface SftLoadResult {
  format: SftFormat;
  examples: SftExample[];
  /** For each example, the line of the file its row starts on. */
  lines: number[];
  bad: BadRow[];
  /** Rows read, good and bad. */
  rows: number;
}

/** The examples of an SFT data file (see the file comment). */
export function loadSftExamples(path: string, opts: SftLoadOptions = {}): SftLoadResult {
  const r = loadRows(path, SFT_ROW_FORMATS, { ...opts, what: 'SFT data', misfit });
  return { format: r.format as SftFormat, examples: r.items, lines: r.lines, bad: r.bad, rows: r.rows };
}

/** The example of one row in `format`; throws BadRowError (from rows.ts) with the reason. */
export function sftExamplesFromRow(row: Record<string, unknown>, format: SftFormat): SftExample[] {
  return formatNamed(format).convert(row);
}

/** The format `auto` would pick for this row, or null. */
export function detectSftFormat(row: Record<string, unknown>): SftFormat | null {
  return (SFT_ROW_FORMATS.find((f) => f.matches(row))?.name as SftFormat | undefined) ?? null;
}

/** Parses a --format value for SFT data. */
export function parseSftFormat(s: string): SftFormat | 'auto' {
  if (s === 'auto' || (SFT_FORMATS as readonly string[]).includes(s)) return s as SftFormat | 'auto';
  throw new LlmError(`--format must be auto or one of ${SFT_FORMATS.join(', ')}, not '${s}'`);
}

// ---------------------------------------------------------------------------------------------

const has = (row: Record<string, unknown>, key: string): boolean => Object.hasOwn(row, key);

const chat = (messages: ChatMessage[]): SftExample => ({ kind: 'chat', messages });

const messages: RowFormat<SftExample> = {
  name: 'messages',
  matches: (row) => has(row, 'messages'),
  convert: (row) => [chat(messageList(row.messages, 'messages'))],
};

/** ShareGPT speakers (FastChat's human/gpt, plus the role names some exports use). */
const SHAREGPT_ROLES: Readonly<Record<string, ChatMessage['role']>> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
};

const sharegpt: RowFormat<SftExample> = {
  name: 'sharegpt',
  matches: (row) => has(row, 'conversations'),
  convert(row) {
    const turns = arrayField(row, 'conversations');
    const placed: PlacedMessage[] = [];
    const system = optionalStringField(row, 'system');
    if (system.trim() !== '') placed.push({ role: 'system', content: system, at: 'field "system"' });
    turns.forEach((v, i) => {
      const at = `conversations[${i}]`;
      const m = objectAt(v, at);
      const from = stringField(m, 'from', { name: `${at}.from` });
      const role = Object.hasOwn(SHAREGPT_ROLES, from) ? SHAREGPT_ROLES[from] : badRow(`${at}.from is ${JSON.stringify(from.slice(0, 40))} (expected human, gpt or system)`);
      placed.push({ role, content: stringField(m, 'value', { name: `${at}.value`, allowEmpty: true }), at });
    });
    return [chat(checkConversation(placed, 'assistant'))];
  },
};

/** The alpaca user turn: instruction, then a blank line and the input when there is one. */
function alpacaUser(instruction: string, input: string): string {
  return input.trim() === '' ? instruction : `${instruction}\n\n${input}`;
}

const alpaca: RowFormat<SftExample> = {
  name: 'alpaca',
  matches: (row) => has(row, 'instruction'),
  convert(row) {
    const placed: PlacedMessage[] = [];
    const system = optionalStringField(row, 'system');
    if (system.trim() !== '') placed.push({ role: 'system', content: system, at: 'field "system"' });
    const history = row.history ?? [];
    if (!Array.isArray(history)) badRow(`field "history" is ${typeName(history)}, not a list of [user, assistant] pairs`);
    history.forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        badRow(`history[${i}] is not a [user, assistant] pair of strings`);
      }
      placed.push({ role: 'user', content: pair[0], at: `history[${i}][0]` }, { role: 'assistant', content: pair[1], at: `history[${i}][1]` });
    });
    const instruction = stringField(row, 'instruction');
    const input = optionalStringField(row, 'input');
    const output = stringField(row, 'output');
    placed.push({ role: 'user', content: alpacaUser(instruction, input), at: 'field "instruction"' }, { role: 'assistant', content: output, at: 'field "output"' });
    return [chat(checkConversation(placed, 'assistant'))];
  },
};

const selfInstruct: RowFormat<SftExample> = {
  name: 'self-instruct',
  matches: (row) => has(row, 'instruction') && has(row, 'instances'),
  convert(row) {
    const instruction = stringField(row, 'instruction');
    const instances = arrayField(row, 'instances');
    if (instances.length === 0) badRow('field "instances" is empty (no input/output pair to learn from)');
    return instances.map((v, i) => {
      const inst = objectAt(v, `instances[${i}]`);
      const input = optionalStringField(inst, 'input', `instances[${i}].input`);
      const output = stringField(inst, 'output', { name: `instances[${i}].output` });
      return chat([
        { role: 'user', content: alpacaUser(instruction, input) },
        { role: 'assistant', content: output },
      ]);
    });
  },
};

const promptCompletion: RowFormat<SftExample> = {
  name: 'prompt-completion',
  matches: (row) => has(row, 'completion'),
  convert(row) {
    if (Array.isArray(row.prompt) || Array.isArray(row.completion)) {
      if (!Array.isArray(row.prompt) || !Array.isArray(row.completion)) {
        badRow('"prompt" and "completion" must both be strings or both be lists of messages');
      }
      const completion = placedMessages(row.completion, 'completion');
      const stray = completion.find((m) => m.role !== 'assistant');
      if (stray) badRow(`${stray.at}.role is ${JSON.stringify(stray.role)}; a completion holds assistant messages`);
      return [chat(checkConversation([...placedMessages(row.prompt, 'prompt'), ...completion], 'assistant'))];
    }
    const prompt = stringField(row, 'prompt', { allowEmpty: true });
    if (prompt === '') badRow('field "prompt" is empty (for text without a prompt, use the text format)');
    return [{ kind: 'completion', prompt, completion: stringField(row, 'completion') }];
  },
};

const text: RowFormat<SftExample> = {
  name: 'text',
  matches: (row) => has(row, 'text'),
  convert: (row) => [{ kind: 'text', text: stringField(row, 'text') }],
};

const SFT_ROW_FORMATS: readonly RowFormat<SftExample>[] = [messages, sharegpt, selfInstruct, alpaca, promptCompletion, text];

function formatNamed(name: SftFormat): RowFormat<SftExample> {
  const f = SFT_ROW_FORMATS.find((x) => x.name === name);
  if (!f) throw new LlmError(`unknown SFT data format '${name}' (expected ${SFT_FORMATS.join(', ')})`);
  return f;
}

/** Better reasons for rows of data that is not SFT data. */
function misfit(row: Record<string, unknown>): string | undefined {
  if (has(row, 'chosen') && has(row, 'rejected')) {
    return 'a preference pair (chosen/rejected), not an SFT example; preference data is for reward-model and DPO training';
  }
  if (has(row, 'prompt')) return 'a prompt without a "completion" (prompt-only rows are for generation or RL, not SFT)';
  return undefined;
}
