/**
 * Prompts for RL rollouts (llmts ppo): JSONL rows holding a conversation that ends with the user,
 * and any other fields, kept as the row's `meta` for programmatic rewards (a reference answer, an
 * `unsafe` flag for Llama 2's reward combination...).
 *
 *   {"prompt": "What is 2+3?", "answer": "5"}                  -> user turn; meta { answer: '5' }
 *   {"prompt": [{"role": "system", ...}, {"role": "user", ...}]}
 *   {"messages": [..., {"role": "user", "content": "..."}]}   (a trailing assistant turn is dropped)
 *   {"instruction": "...", "input": "..."}                        (Alpaca; output, if any, goes to meta.answer)
 */
import { checkConversation, placedMessages, type ChatMessage } from './conversation.js';
import { loadRows, stringField, type BadRow, type OnBadRow, type RowFormat } from './rows.js';

export interface PromptRow {
  messages: ChatMessage[];
  meta: Record<string, unknown>;
}

function rest(row: Record<string, unknown>, used: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).filter(([k]) => !used.includes(k)));
}

const FORMATS: RowFormat<PromptRow>[] = [
  {
    name: 'prompt',
    matches: (r) => Object.hasOwn(r, 'prompt'),
    convert: (r) => {
      const messages = typeof r.prompt === 'string'
        ? [{ role: 'user' as const, content: stringField(r, 'prompt') }]
        : checkConversation(placedMessages(r.prompt, 'prompt'), 'user');
      return [{ messages, meta: rest(r, ['prompt']) }];
    },
  },
  {
    name: 'messages',
    matches: (r) => Object.hasOwn(r, 'messages'),
    convert: (r) => {
      const placed = placedMessages(r.messages, 'messages');
      const upToUser = placed.length > 0 && placed[placed.length - 1].role === 'assistant' ? placed.slice(0, -1) : placed;
      return [{ messages: checkConversation(upToUser, 'user'), meta: rest(r, ['messages']) }];
    },
  },
  {
    name: 'alpaca',
    matches: (r) => Object.hasOwn(r, 'instruction'),
    convert: (r) => {
      const instruction = stringField(r, 'instruction');
      const input = typeof r.input === 'string' && r.input.trim() !== '' ? `\n\n${r.input}` : '';
      const meta = rest(r, ['instruction', 'input', 'output']);
      if (typeof r.output === 'string') meta.answer = r.output;
      return [{ messages: [{ role: 'user', content: instruction + input }], meta }];
    },
  },
];

export function loadPromptRows(path: string, opts: { onBadRow?: OnBadRow } = {}): { rows: PromptRow[]; lines: number[]; bad: BadRow[]; total: number; format: string } {
  const r = loadRows(path, FORMATS, { what: 'prompts', onBadRow: opts.onBadRow });
  return { rows: r.items, lines: r.lines, bad: r.bad, total: r.rows, format: r.format };
}
