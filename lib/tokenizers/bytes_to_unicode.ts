/**
 * GPT-2 / CLIP byte-level alphabet: every byte 0..255 gets a printable stand-in character so that a BPE
 * vocabulary stored as text never contains whitespace or control characters. Bytes that are already
 * printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 are numbered on from
 * U+0100 in byte order. vocab.json and merges.txt are written in this alphabet, so the table must be exact.
 */
function buildByteEncoder(): string[] {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

/** byte value → its stand-in character. */
export const BYTE_ENCODER: readonly string[] = buildByteEncoder();

/** stand-in character → byte value (for decoding). */
export const BYTE_DECODER: ReadonlyMap<string, number> = new Map(BYTE_ENCODER.map((ch, b) => [ch, b]));

const utf8 = new TextEncoder();

/** A string's UTF-8 bytes written in the byte-level alphabet. */
export function bytesToUnicode(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_ENCODER[b];
  return out;
}
