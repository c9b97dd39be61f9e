/**
 * Splits text around added tokens (the special tokens and anything added with `addTokens`) before the
 * normal clean-up and BPE see it, as HF's slow tokenizers do with their `Trie`: scanning left to right,
 * the earliest-starting added token wins, and among those starting there the longest (so a textual
 * inversion's `<tok>_1` is not cut to `<tok>`). Matching is exact: case and surrounding spaces matter.
 */

interface TrieNode {
  children: Map<string, TrieNode>;
  terminal: boolean;
}

export interface TextPiece {
  text: string;
  /** true when `text` is one whole added token */
  added: boolean;
}

export class AddedTokenSplitter {
  private readonly root: TrieNode = { children: new Map(), terminal: false };
  private count = 0;

  add(token: string): void {
    if (token.length === 0) return;
    let node = this.root;
    for (const ch of token) {
      let child = node.children.get(ch);
      if (child === undefined) {
        child = { children: new Map(), terminal: false };
        node.children.set(ch, child);
      }
      node = child;
    }
    if (!node.terminal) this.count++;
    node.terminal = true;
  }

  get size(): number {
    return this.count;
  }

  split(text: string): TextPiece[] {
    if (this.count === 0 || text.length === 0) return text.length === 0 ? [] : [{ text, added: false }];
    const chars = Array.from(text);
    const pieces: TextPiece[] = [];
    let plain = '';
    let i = 0;
    while (i < chars.length) {
      let node: TrieNode | undefined = this.root;
      let end = -1;
      for (let j = i; j < chars.length; j++) {
        node = node.children.get(chars[j]);
        if (node === undefined) break;
        if (node.terminal) end = j + 1;
      }
      if (end < 0) {
        plain += chars[i];
        i++;
        continue;
      }
      if (plain.length > 0) pieces.push({ text: plain, added: false });
      plain = '';
      pieces.push({ text: chars.slice(i, end).join(''), added: true });
      i = end;
    }
    if (plain.length > 0) pieces.push({ text: plain, added: false });
    return pieces;
  }
}
