import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { PiaError } from '../../lib/errors.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { CLIPTokenizer, bundledTokenizerDir } from '../../lib/tokenizers/clip_tokenizer.js';
import { fixture } from '../helpers/fixtures.js';

interface GoldenCase {
  index: number;
  prompt: string;
  untruncated_ids: number[];
  untruncated_len: number;
  tokens: string[];
  matches_openai: boolean;
}

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json'];

const goldenJson = JSON.parse(readFileSync(fixture('golden', 'components', 'tokenizer_ids.json'), 'utf8')) as {
  cases: GoldenCase[];
};
const cases = goldenJson.cases;
const key = (c: GoldenCase): string => String(c.index).padStart(2, '0');

function goldenRow(file: ReturnType<typeof readSafetensors>, name: string): number[] {
  const t = file.get(name);
  assert.equal(t.dtype, 'I64', name);
  assert.deepEqual(t.shape, [77], name);
  return Array.from(t.data as BigInt64Array, Number);
}

function isPiaError(code: string, file?: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof PiaError, `expected PiaError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (file !== undefined) assert.equal(err.file, file);
    return true;
  };
}

/** A writable copy of the fixture tokenizer folder, for variants and broken files. */
function tempTokenizerDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pia-clip-tok-'));
  for (const f of TOKENIZER_FILES) cpSync(fixture('models', 'tiny', 'tokenizer', f), join(dir, f));
  return dir;
}

describe('CLIPTokenizer against golden/components/tokenizer_ids', () => {
  let tok: CLIPTokenizer;
  let golden: ReturnType<typeof readSafetensors>;

  before(async () => {
    tok = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny', 'tokenizer'));
    golden = readSafetensors(fixture('golden', 'components', 'tokenizer_ids.safetensors'));
  });
  after(() => golden.close());

  it('has one ids/attention_mask pair per JSON case', () => {
    assert.equal(cases.length, 31);
    const names = golden.names().sort();
    const expected = cases.flatMap((c) => [`attention_mask_${key(c)}`, `ids_${key(c)}`]).sort();
    assert.deepEqual(names, expected);
  });

  it('reads the SD-1.5 tokenizer folder', () => {
    assert.equal(tok.vocabSize, 49408);
    assert.equal(tok.length, 49408);
    assert.equal(tok.bosTokenId, 49406);
    assert.equal(tok.eosTokenId, 49407);
    assert.equal(tok.padTokenId, 49407);
    assert.equal(tok.modelMaxLength, 77);
  });

  for (const c of cases) {
    it(`case ${key(c)}: ${JSON.stringify(c.prompt).slice(0, 60)}`, () => {
      assert.deepEqual(tok.tokenize(c.prompt), c.tokens, 'BPE tokens');
      const untruncated = tok.encode(c.prompt, { padding: false, truncation: false });
      assert.deepEqual(untruncated.inputIds, [c.untruncated_ids], 'untruncated ids');
      assert.equal(untruncated.inputIds[0].length, c.untruncated_len);
      assert.deepEqual(untruncated.attentionMask, [c.untruncated_ids.map(() => 1)]);

      // diffusers' encode_prompt call: padding="max_length", max_length=77, truncation=True
      const { inputIds, attentionMask } = tok.encode([c.prompt], { padding: 'max_length', maxLength: 77, truncation: true });
      assert.deepEqual(inputIds, [goldenRow(golden, `ids_${key(c)}`)], 'ids');
      assert.deepEqual(attentionMask, [goldenRow(golden, `attention_mask_${key(c)}`)], 'attention mask');
      // the defaults are that call
      assert.deepEqual(tok.encode(c.prompt), { inputIds, attentionMask });
    });
  }

  it('encodes the whole batch at once like prompt by prompt', () => {
    const batch = tok.encode(cases.map((c) => c.prompt));
    assert.equal(batch.inputIds.length, cases.length);
    cases.forEach((c, i) => {
      assert.deepEqual(batch.inputIds[i], goldenRow(golden, `ids_${key(c)}`));
      assert.deepEqual(batch.attentionMask[i], goldenRow(golden, `attention_mask_${key(c)}`));
    });
  });

  it('truncates keeping BOS first and EOS last', () => {
    const long = cases.find((c) => c.untruncated_len > 77);
    assert.ok(long, 'the goldens have an over-long prompt');
    const { inputIds, attentionMask } = tok.encode(long.prompt);
    assert.equal(inputIds[0].length, 77);
    assert.equal(inputIds[0][0], 49406);
    assert.equal(inputIds[0][76], 49407);
    assert.deepEqual(inputIds[0].slice(0, 76), long.untruncated_ids.slice(0, 76));
    assert.ok(attentionMask[0].every((m) => m === 1));
    // without truncation the whole sequence comes back, unpadded past its length
    assert.equal(tok.encode(long.prompt, { truncation: false }).inputIds[0].length, long.untruncated_len);
  });

  it("pads to the batch's longest sequence with padding 'longest'", () => {
    const { inputIds, attentionMask } = tok.encode(['a photo of a cat', 'cat'], { padding: 'longest' });
    assert.deepEqual(inputIds, [
      [49406, 320, 1125, 539, 320, 2368, 49407],
      [49406, 2368, 49407, 49407, 49407, 49407, 49407],
    ]);
    assert.deepEqual(attentionMask, [
      [1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0, 0, 0],
    ]);
  });
});

describe('CLIPTokenizer.bundled', () => {
  it('ships the same files as the fixture tokenizer', () => {
    for (const f of TOKENIZER_FILES) {
      assert.ok(
        readFileSync(join(bundledTokenizerDir(), f)).equals(readFileSync(fixture('models', 'tiny', 'tokenizer', f))),
        f,
      );
    }
  });

  it('tokenizes every golden prompt like the fixture tokenizer', async () => {
    const bundled = await CLIPTokenizer.bundled();
    const reference = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny', 'tokenizer'));
    assert.equal(bundled.vocabSize, reference.vocabSize);
    assert.equal(bundled.padTokenId, reference.padTokenId);
    assert.equal(bundled.modelMaxLength, reference.modelMaxLength);
    const prompts = cases.map((c) => c.prompt);
    assert.deepEqual(bundled.encode(prompts), reference.encode(prompts));
  });

  it('gives independent instances (added tokens do not leak)', async () => {
    const a = await CLIPTokenizer.bundled();
    a.addTokens(['<only-in-a>']);
    const b = await CLIPTokenizer.bundled();
    assert.equal(b.hasToken('<only-in-a>'), false);
    assert.equal(b.length, 49408);
  });
});

describe('CLIPTokenizer HF quirks beyond the goldens', () => {
  let tok: CLIPTokenizer;
  before(async () => {
    tok = await CLIPTokenizer.fromPretrained(fixture('models', 'tiny', 'tokenizer'));
  });

  it('splits special tokens out before the clean-up, wherever they sit', () => {
    assert.deepEqual(tok.tokenize('cat<|endoftext|>dog'), ['cat</w>', '<|endoftext|>', 'dog</w>']);
    assert.deepEqual(tok.encode('<|startoftext|>', { padding: false }).inputIds, [[49406, 49406, 49407]]);
  });

  it('maps an upper-case special-token spelling through the regex and the seeded BPE cache', () => {
    // Not an added-token match (case differs); the clean-up lower-cases it, the CLIP regex takes it whole and
    // HF's pre-filled BPE cache returns it as one token.
    assert.deepEqual(tok.tokenize('a <|ENDOFTEXT|> b'), ['a</w>', '<|endoftext|>', 'b</w>']);
    assert.deepEqual(tok.encode('a <|ENDOFTEXT|> b', { padding: false }).inputIds, [[49406, 320, 49407, 321, 49407]]);
  });

  it("treats U+0345 like Python's regex: matched by no alternative, so it splits the word", () => {
    assert.deepEqual(tok.tokenize('p\u0345o'), tok.tokenize('p o'));
  });

  it("lets `'s` take a long s, as Python's IGNORECASE does", () => {
    // one regex word "'ſ" after "x" (not "'" then "ſ"): two end-of-word markers in all, not three
    const words = tok.tokenize("x'\u017f");
    assert.equal(words.filter((w) => w.endsWith('</w>')).length, 2, words.join(' '));
  });

  it('adds tokens for textual inversion: next ids, split out before BPE, longest match first', () => {
    const t = tok;
    const ids = t.addTokens(['<cat-toy>', '<cat-toy>_1']);
    assert.deepEqual(ids, [49408, 49409]);
    assert.equal(t.length, 49410);
    assert.equal(t.vocabSize, 49408);
    assert.deepEqual(t.tokenize('a <cat-toy> <cat-toy>_1 on a<cat-toy>table'), [
      'a</w>',
      '<cat-toy>',
      '<cat-toy>_1',
      'on</w>',
      'a</w>',
      '<cat-toy>',
      'table</w>',
    ]);
    assert.deepEqual(t.encode('<cat-toy>', { padding: false }).inputIds, [[49406, 49408, 49407]]);
    assert.deepEqual(t.addTokens(['<cat-toy>']), [49408], 'adding again keeps the id');
    assert.equal(t.convertTokensToIds('<cat-toy>_1'), 49409);
    assert.equal(t.convertIdsToTokens(49409), '<cat-toy>_1');
    // a string the vocabulary already has keeps its id (HF add_tokens), but is now split out whole
    assert.deepEqual(t.addTokens(['cats']), [t.convertTokensToIds('cats')]);
    assert.equal(t.length, 49410);
    assert.throws(() => t.addTokens(['']), isPiaError('E_INVALID_ARGUMENT'));
  });

  it('maps unknown token strings to the unk id', () => {
    assert.equal(tok.convertTokensToIds('definitely-not-a-token'), 49407);
    assert.deepEqual(tok.convertTokensToIds(['a</w>', 'cat</w>']), [320, 2368]);
  });

  it('decodes ids back to text (for truncation warnings)', () => {
    const { inputIds } = tok.encode('A photo of a cat, café!');
    assert.equal(tok.decode(inputIds[0], { skipSpecialTokens: true }), 'a photo of a cat , café !');
  });

  it('rejects bad encode arguments', () => {
    assert.throws(() => tok.encode([1 as unknown as string]), isPiaError('E_INVALID_ARGUMENT'));
    assert.throws(() => tok.encode('x', { maxLength: 1 }), isPiaError('E_INVALID_ARGUMENT'));
    assert.throws(() => tok.encode('x', { maxLength: 7.5 }), isPiaError('E_INVALID_ARGUMENT'));
    assert.throws(() => tok.encode('x', { padding: 'max' as 'max_length' }), isPiaError('E_INVALID_ARGUMENT'));
  });
});

describe('CLIPTokenizer folder variants and errors', () => {
  const dirs: string[] = [];
  const temp = (): string => {
    const d = tempTokenizerDir();
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("honours a '!' pad token (SD-2 folders) and splits '!' out as that special token, as HF does", async () => {
    const dir = temp();
    for (const f of ['special_tokens_map.json', 'tokenizer_config.json']) {
      const j = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      j.pad_token = '!';
      writeFileSync(join(dir, f), JSON.stringify(j));
    }
    const t = await CLIPTokenizer.fromPretrained(dir);
    assert.equal(t.padTokenId, 0);
    // diffusers issue #4153: HF's slow tokenizer gives six 0s for "! !! !!!" (openai's would BPE "!!", "!!!")
    const { inputIds, attentionMask } = t.encode('! !! !!!');
    assert.deepEqual(inputIds[0].slice(0, 9), [49406, 0, 0, 0, 0, 0, 0, 49407, 0]);
    assert.equal(inputIds[0].length, 77);
    assert.deepEqual(attentionMask[0].slice(0, 9), [1, 1, 1, 1, 1, 1, 1, 1, 0]);
    assert.ok(inputIds[0].slice(8).every((id) => id === 0));
  });

  it('reads special tokens and model_max_length from the config, special_tokens_map winning', async () => {
    const dir = temp();
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ model_max_length: 16, pad_token: '<|startoftext|>' }),
    );
    writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: { content: '!' } }));
    const t = await CLIPTokenizer.fromPretrained(dir);
    assert.equal(t.modelMaxLength, 16);
    assert.equal(t.padToken, '!');
    assert.equal(t.encode('a cat').inputIds[0].length, 16);
  });

  it('falls back to the CLIPTokenizer defaults without the two JSON files', async () => {
    const dir = temp();
    rmSync(join(dir, 'tokenizer_config.json'));
    rmSync(join(dir, 'special_tokens_map.json'));
    const t = await CLIPTokenizer.fromPretrained(dir);
    assert.equal(t.bosTokenId, 49406);
    assert.equal(t.padTokenId, 49407);
    assert.equal(t.modelMaxLength, 77);
    assert.deepEqual(t.encode('a photo of a cat').inputIds[0].slice(0, 8), [49406, 320, 1125, 539, 320, 2368, 49407, 49407]);
  });

  it('E_MODEL_NOT_FOUND for a missing folder or file, naming it', async () => {
    const missing = join(tmpdir(), 'pia-no-such-tokenizer-dir');
    await assert.rejects(CLIPTokenizer.fromPretrained(missing), isPiaError('E_MODEL_NOT_FOUND', missing));
    for (const f of ['vocab.json', 'merges.txt']) {
      const dir = temp();
      rmSync(join(dir, f));
      await assert.rejects(CLIPTokenizer.fromPretrained(dir), isPiaError('E_MODEL_NOT_FOUND', join(dir, f)));
    }
  });

  it('E_WEIGHTS_CORRUPT for malformed files', async () => {
    const broken: [string, string][] = [
      ['vocab.json', '{"a": 1,'],
      ['vocab.json', '["a", "b"]'],
      ['vocab.json', '{"a": "one"}'],
      ['vocab.json', '{"a": -1}'],
      ['vocab.json', '{}'],
      ['merges.txt', '#version: 0.2\ni n\nt h e\n'],
      ['tokenizer_config.json', 'not json'],
      ['special_tokens_map.json', '{"pad_token": 5}'],
    ];
    for (const [f, text] of broken) {
      const dir = temp();
      writeFileSync(join(dir, f), text);
      await assert.rejects(CLIPTokenizer.fromPretrained(dir), isPiaError('E_WEIGHTS_CORRUPT', join(dir, f)), `${f}: ${text}`);
    }
  });

  it('rejects with AbortError when the signal is already aborted', async () => {
    await assert.rejects(
      CLIPTokenizer.fromPretrained(fixture('models', 'tiny', 'tokenizer'), { signal: AbortSignal.abort() }),
      (err: unknown) => err instanceof DOMException && err.name === 'AbortError',
    );
  });
});
