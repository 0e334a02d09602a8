/**
 * Adversarial tokenizer inputs: the committed test/fixtures/tokenizer/adversarial.txt (one case per
 * line, with \n \r \t \\ and \u{HEX} escapes, '#' comments) plus strings a UTF-8 file cannot hold
 * (lone surrogates) and long ones generated here.
 *
 *   for (const s of adversarialStrings()) assert.deepEqual(ours.encode(s), reference.encode(s));
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/tokenizer/adversarial.txt', import.meta.url)); // from dist/test/helpers/

/** Decode one fixture line's escapes. */
export function unescapeCase(line: string): string {
  return line.replace(/\\(n|r|t|\\|u\{([0-9A-Fa-f]{1,6})\})/g, (_m, what: string, hex?: string) => {
    if (hex !== undefined) return String.fromCodePoint(Number.parseInt(hex, 16));
    return what === 'n' ? '\n' : what === 'r' ? '\r' : what === 't' ? '\t' : '\\';
  });
}

/** The cases of adversarial.txt, escapes decoded. */
export function adversarialFixture(): string[] {
  const lines = readFileSync(FIXTURE, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.filter((l) => !l.startsWith('#')).map(unescapeCase);
}

/** Strings with lone surrogates (JavaScript strings that are not valid UTF-16). */
export function loneSurrogateStrings(): string[] {
  return [
    '\ud800',
    '\udc00',
    'a\ud800b',
    'x\udfffy z',
    ' \ud83d',
    '\ud83d\ud83d\ude00', // a lone high surrogate, then a valid pair
    '\ude00\ud83d',
    "it'\ud800s",
    '12\udc003',
    '\ud800\n\udc00 ',
  ];
}

/** Long inputs: exercise the heap merge (chunks of 128+ bytes) and long runs of one class. */
export function longStrings(): string[] {
  let seed = 1;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const letters = 'etaoinshrdlucmfwypvbgkqjxz';
  let random = '';
  for (let i = 0; i < 3000; i++) random += letters[rnd(letters.length)];
  let mixed = '';
  const pieces = ['the', ' ', 'ing', 'é', '中', '😀', '1', "'s", '\n', 'ab', 'Q'];
  for (let i = 0; i < 2000; i++) mixed += pieces[rnd(pieces.length)];
  return [
    'a'.repeat(5000),
    'ab'.repeat(1500),
    random,
    ' ' + random,
    '9'.repeat(1000),
    ' '.repeat(1000) + 'x',
    '\n'.repeat(500),
    '!?'.repeat(400),
    '中文'.repeat(300),
    '😀'.repeat(200),
    'e\u0301'.repeat(300),
    mixed,
  ];
}

/** Everything above. */
export function adversarialStrings(): string[] {
  return [...adversarialFixture(), ...loneSurrogateStrings(), ...longStrings()];
}
