/**
 * GPT-2's reversible byte <-> printable-character table, used by byte-level BPE vocabularies
 * (GPT-2 vocab.json/merges.txt, HF tokenizer.json, GGUF 'gpt2' vocabularies): printable
 * Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in order.
 *
 *   BYTE_TO_CHAR[32]   // 'Ġ'  (space)
 *   BYTE_TO_CHAR[10]   // 'Ċ'  (newline)
 *   tokenTextToBytes('Ġthe')  // Uint8Array [32, 116, 104, 101]
 */
export const BYTE_TO_CHAR: readonly string[] = buildTable();
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

function buildTable(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : next++);
  return table;
}

/** Bytes of a vocabulary entry written in the byte-level alphabet; null if a character is outside it. */
export function tokenTextToBytes(text: string): Uint8Array | null {
  const out: number[] = [];
  for (const ch of text) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) return null;
    out.push(b);
  }
  return Uint8Array.from(out);
}

/** The byte-level alphabet spelling of some bytes (inverse of tokenTextToBytes). */
export function bytesToTokenText(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}
