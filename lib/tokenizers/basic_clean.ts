/**
 * Pre-tokenisation of CLIP prompts as HF's slow `CLIPTokenizer` does it when `ftfy` is NOT installed (the
 * path diffusers users hit by default): `BasicTokenizer(strip_accents=False, do_split_on_punc=False)`,
 * its words joined with single spaces, then the CLIP regex. Differences from openai's `simple_tokenizer.py`
 * (no html.unescape, category-C removal, NFC, CJK spacing) are deliberate: they are what diffusers
 * actually feeds the text encoder.
 */

// BasicTokenizer._clean_text drops NUL, U+FFFD and every category-C code point (Cc, Cf, Cs, Co, Cn) except
// \t \n \r, which `_is_control` exempts because `_is_whitespace` turns them into spaces along with Zs.
const DROPPED = /[\0\uFFFD]|(?![\t\n\r])\p{C}/gu;
const TO_SPACE = /[\t\n\r\p{Zs}]/gu;

// BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks only (not kana, not hangul), each of
// which becomes a word of its own.
const CJK =
  /[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}]/gu;

// `whitespace_tokenize` is Python's `str.split()`, whose whitespace set is not JS's `\s` (it has
// \x1c-\x1f and \x85, lacks \uFEFF). After _clean_text only ' ', U+2028 and U+2029 can still be there,
// but the full Python set keeps this independent of that reasoning.
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

function whitespaceTokenize(text: string): string[] {
  return text.split(PY_WHITESPACE).filter((w) => w.length > 0);
}

/**
 * BasicTokenizer.tokenize for CLIP: clean, space out CJK ideographs, NFC-normalise, split on whitespace,
 * lower-case each word (no accent stripping, no punctuation split). Returns the words.
 */
export function basicTokenize(text: string): string[] {
  let t = text.replace(DROPPED, '').replace(TO_SPACE, ' ');
  t = t.replace(CJK, ' $& ');
  t = t.normalize('NFC');
  // Lower-casing per word (not on the whole text) matters only for the final-sigma rule, whose context
  // Python and JS both take from the string being lowered.
  const words = whitespaceTokenize(t).map((w) => w.toLowerCase());
  return whitespaceTokenize(words.join(' '));
}

// The CLIP pre-tokenisation regex (openai's simple_tokenizer, copied by HF), compiled IGNORECASE like
// Python's `regex.compile(..., regex.IGNORECASE)`: after lower-casing that still matters, e.g. `'s` also takes
// `'ſ` (long s folds to s). The special-token alternatives catch spellings the added-token split missed,
// e.g. "<|ENDOFTEXT|>", which the clean-up lower-cases first (the BPE cache then maps it to one token).
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

// U+0345 COMBINING GREEK YPOGEGRAMMENI simple-case-folds to a letter (ι). JS's /iu then counts it as
// \p{L}; Python's `regex` matches it with no alternative at all, so it is skipped like whitespace (it
// also splits the word it sits in). Turning it into a space before matching gives Python's result.
const YPOGEGRAMMENI = /\u0345/g;

/**
 * The words CLIP's BPE sees for a piece of text without added tokens in it: `basicTokenize`, joined with
 * spaces, split by the CLIP regex (HF `CLIPTokenizer._tokenize` before the byte-level mapping).
 */
export function preTokenize(text: string): string[] {
  const cleaned = basicTokenize(text).join(' ').replace(YPOGEGRAMMENI, ' ');
  return Array.from(cleaned.matchAll(CLIP_PATTERN), (m) => m[0]);
}
