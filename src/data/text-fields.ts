/**
 * Plain text from JSON rows, for pretraining on the text of a dataset (`llmts data text`): the
 * named string fields of each row, in order, each followed by a separator.
 *
 *   // pairs.jsonl: {"chosen": "Hi. Hello!", "rejected": "Hi. Go away."}
 *   rowsText('pairs.jsonl', ['chosen', 'rejected'], '\n\n');
 *   // { text: 'Hi. Hello!\n\nHi. Go away.\n\n', rows: 1, fields: 2 }
 *
 * A field that is missing or not a string, or a row that is not an object, is an LlmError naming
 * the file, line and field: text made from a file should hold all of it or say why not.
 */
import { LlmError } from '../util/errors.js';
import { readJsonRows, rowMessage } from './jsonl.js';

export interface RowsText {
  text: string;
  /** rows read */
  rows: number;
  /** fields written (rows × fields) */
  fields: number;
}

export function rowsText(path: string, fields: readonly string[], separator: string): RowsText {
  if (fields.length === 0) throw new LlmError('name at least one field to take the text from (e.g. --field text)');
  const parts: string[] = [];
  let rows = 0;
  for (const row of readJsonRows(path)) {
    if (row.error !== undefined) throw new LlmError(rowMessage(path, row.line, row.error));
    const value = row.value;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new LlmError(rowMessage(path, row.line, `expected a JSON object with the field${fields.length === 1 ? '' : 's'} ${fields.join(', ')}`));
    }
    for (const field of fields) {
      const v = (value as Record<string, unknown>)[field];
      if (typeof v !== 'string') {
        const got = v === undefined ? 'missing' : `a ${v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v}, not a string`;
        throw new LlmError(rowMessage(path, row.line, `field "${field}" is ${got} (name string fields with --field)`));
      }
      parts.push(v, separator);
    }
    rows++;
  }
  if (rows === 0) throw new LlmError(`${path} holds no rows`);
  return { text: parts.join(''), rows, fields: rows * fields.length };
}
