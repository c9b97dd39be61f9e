// diffusers writes configs with Python's json module, which emits NaN, Infinity and -Infinity
// (e.g. DPMSolverMultistepScheduler's "lambda_min_clipped": -Infinity). JSON.parse rejects them,
// so they are turned into numbers here; everything else stays strict JSON.

/** JSON.parse that also accepts Python's NaN / Infinity / -Infinity literals outside strings. */
export function parseConfigJson(text: string): unknown {
  const sentinels = new Map<string, number>();
  // A marker that cannot already occur in the text, so no real string is mistaken for a number.
  let marker = 0;
  while (text.includes(`@@pia-number-${marker}-`)) marker++;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"') {
      // Copy the string verbatim, honouring escapes.
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    const m = /^(-?Infinity|NaN)/.exec(text.slice(i, i + 9));
    if (m) {
      const key = `"@@pia-number-${marker}-${sentinels.size}@@"`;
      sentinels.set(key.slice(1, -1), m[1] === 'NaN' ? NaN : m[1].startsWith('-') ? -Infinity : Infinity);
      out += key;
      i += m[1].length;
      continue;
    }
    out += ch;
    i++;
  }
  if (sentinels.size === 0) return JSON.parse(text);
  return JSON.parse(out, (_k, v) => (typeof v === 'string' && sentinels.has(v) ? sentinels.get(v) : v));
}
