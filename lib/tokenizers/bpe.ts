/**
 * CLIP's byte-pair encoding of one pre-tokenised word (already in the byte-level alphabet): the last
 * symbol carries the `</w>` end-of-word marker, then the lowest-ranked adjacent pair is merged everywhere
 * (left to right, non-overlapping) until no ranked pair is left.
 */

export const END_OF_WORD = '</w>';

/** How many distinct words the per-tokenizer cache holds before it starts over (prompts repeat words a lot). */
const CACHE_LIMIT = 50_000;

export class BytePairEncoder {
  private readonly ranks: ReadonlyMap<string, number>;
  private readonly cache = new Map<string, readonly string[]>();
  private readonly seeds: ReadonlyMap<string, readonly string[]>;

  /**
   * @param ranks merge rank by `first + ' ' + second` (space never occurs in the byte-level alphabet).
   * @param seeds words answered without merging (HF pre-fills its cache with the two CLIP special tokens).
   */
  constructor(ranks: ReadonlyMap<string, number>, seeds: ReadonlyMap<string, readonly string[]> = new Map()) {
    this.ranks = ranks;
    this.seeds = seeds;
  }

  static pairKey(first: string, second: string): string {
    return `${first} ${second}`;
  }

  encode(word: string): readonly string[] {
    const seeded = this.seeds.get(word);
    if (seeded !== undefined) return seeded;
    const hit = this.cache.get(word);
    if (hit !== undefined) return hit;
    const out = this.merge(word);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, out);
    return out;
  }

  private merge(word: string): string[] {
    // Symbols are UTF-16 units: the byte-level alphabet lies entirely in U+0021..U+0143.
    let symbols = word.split('');
    if (symbols.length === 0) return [];
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.ranks.get(BytePairEncoder.pairKey(symbols[i], symbols[i + 1]));
        if (r !== undefined && r < best) {
          best = r;
          first = symbols[i];
          second = symbols[i + 1];
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < symbols.length; ) {
        if (i + 1 < symbols.length && symbols[i] === first && symbols[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else {
          next.push(symbols[i]);
          i += 1;
        }
      }
      symbols = next;
    }
    return symbols;
  }
}
