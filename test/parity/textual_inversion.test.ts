// Textual inversion (A1111 .pt through the restricted pickle reader, A1111/kohya .safetensors `emb_params`,
// diffusers learned_embeds) against diffusers v0.26.3 goldens (../shared/fixtures/loaders/golden/ti_a1111,
// ti_diffusers), plus diffusers' token rules: multi-vector expansion, new ids from len(tokenizer), refusals.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PiaError } from '../../lib/errors.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { CLIPTextModel } from '../../lib/models/clip_text_model.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import { CLIPTokenizer } from '../../lib/tokenizers/clip_tokenizer.js';
import { maxDiff } from '../helpers/compare.js';
import { fixture } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { tensor, torchSaveZip } from '../helpers/torch_pickle.js';

// Component tolerance (task spec): max|ours - ref| ≤ 1e-4 · max|ref|. The new rows are copied from the
// file (fp16-exact values widened to f32), so they must match exactly; the text states are fp32 math
// whose op order differs from torch's by ~1e-6 of their scale.
const COMPONENT_RTOL = 1e-4;
const LOADERS = fixture('loaders');

interface TiSpec {
  prompts: string[];
  negative_prompt: string;
  token_passed: string;
  converted_prompts: string[];
  added_tokens: Record<string, number>;
  len_tokenizer_after: number;
  config_vocab_size_after: number;
}

function assertComponent(ours: ArrayLike<number>, ref: ArrayLike<number>, what: string): void {
  const { diff, ref: m } = maxDiff(ours, ref);
  assert.ok(diff <= COMPONENT_RTOL * m, `${what}: max diff ${diff} > ${COMPONENT_RTOL} × max|ref| ${m}`);
}

async function freshPipeline(): Promise<PIAPipeline> {
  const motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
  return PIAPipeline.fromPretrained(fixture('models', 'mini-sd'), { motionAdapter });
}

const CASES = [
  { file: 'kitestyle.a1111.pt', golden: 'ti_a1111' },
  { file: 'kitestyle.a1111.safetensors', golden: 'ti_a1111' },
  { file: join('ti-diffusers-kitestyle', 'learned_embeds.safetensors'), golden: 'ti_diffusers' },
  // The folder, as diffusers takes it: learned_embeds.safetensors inside.
  { file: 'ti-diffusers-kitestyle', golden: 'ti_diffusers' },
];

for (const { file, golden: goldenName } of CASES) {
  describe(`textual inversion: ${file} against diffusers (${goldenName})`, () => {
    const spec = JSON.parse(readFileSync(fixture('loaders', 'golden', `${goldenName}.json`), 'utf8')) as TiSpec;
    const golden = readSafetensors(fixture('loaders', 'golden', `${goldenName}.safetensors`));
    let pipe: PIAPipeline;
    const tokenizer = () => pipe.tokenizer as CLIPTokenizer;
    const text = () => pipe.textEncoder as CLIPTextModel;

    before(async () => {
      pipe = await freshPipeline();
      await pipe.loadTextualInversion(join(LOADERS, file), { token: spec.token_passed });
    });
    after(() => pipe?.dispose());

    test('tokens added in order from 49408; vocabulary and embedding table grow together', () => {
      const names = Object.keys(spec.added_tokens);
      assert.deepEqual(tokenizer().convertTokensToIds(names), names.map((n) => spec.added_tokens[n]));
      assert.equal(tokenizer().length, spec.len_tokenizer_after);
      assert.equal(text().config.vocab_size, spec.config_vocab_size_after);
    });

    test('new embedding rows equal the file vectors', () => {
      const ids = Object.values(spec.added_tokens);
      const rows = text().tokenEmbeddingRows(ids);
      const ref = golden.get('new_token_embedding_rows');
      assert.deepEqual(rows.shape, ref.shape);
      assert.deepEqual(Array.from(rows.data), Array.from(ref.toFloat32()));
    });

    test('prompts expand multi-vector tokens and tokenize to the golden ids', () => {
      spec.prompts.forEach((prompt, i) => {
        const expanded = pipe.maybeConvertPrompt(prompt);
        assert.equal(expanded, spec.converted_prompts[i]);
        const { inputIds } = tokenizer().encode(expanded, { padding: 'max_length', maxLength: 77, truncation: true });
        assert.deepEqual(inputIds[0], Array.from(golden.get(`input_ids_${i}`).toFloat32()));
      });
    });

    test('encode_prompt: prompt and negative embeds', async () => {
      for (let i = 0; i < spec.prompts.length; i++) {
        const enc = await pipe.encodePrompt(spec.prompts[i], { negativePrompt: spec.negative_prompt });
        assertComponent(enc.promptEmbeds.data, golden.get(`prompt_embeds_${i}`).toFloat32(), `prompt_embeds_${i}`);
        assertComponent(enc.negativePromptEmbeds!.data, golden.get('negative_embeds').toFloat32(), `negative_embeds (${i})`);
      }
    });

    test('an already-present token is refused, and nothing grows', async () => {
      const rows = text().config.vocab_size;
      const len = tokenizer().length;
      await assert.rejects(pipe.loadTextualInversion(join(LOADERS, file), { token: spec.token_passed }), (e: unknown) => {
        assert.ok(e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT', String(e));
        assert.match(e.message, /already in tokenizer vocabulary/);
        return true;
      });
      assert.equal(text().config.vocab_size, rows);
      assert.equal(tokenizer().length, len);
    });
  });
}

describe('textual inversion: token names and refusals (diffusers rules)', () => {
  let pipe: PIAPipeline;
  before(async () => {
    pipe = await freshPipeline();
  });
  after(() => pipe?.dispose());

  test('without token: the A1111 name, the diffusers key, and `emb_params` for a bare safetensors', async () => {
    const tok = pipe.tokenizer as CLIPTokenizer;
    const base = tok.length;
    await pipe.loadTextualInversion(join(LOADERS, 'kitestyle.a1111.pt'));
    assert.deepEqual(tok.convertTokensToIds(['kitestyle', 'kitestyle_1']), [base, base + 1]);
    await pipe.loadTextualInversion(join(LOADERS, 'ti-diffusers-kitestyle', 'learned_embeds.safetensors'));
    assert.equal(tok.convertTokensToIds('<kitestyle>'), base + 2);
    // diffusers treats a one-key dict as {token: embedding}, so kohya's key itself becomes the token.
    await pipe.loadTextualInversion(join(LOADERS, 'kitestyle.a1111.safetensors'));
    assert.deepEqual(tok.convertTokensToIds(['emb_params', 'emb_params_1']), [base + 3, base + 4]);
    assert.equal((pipe.textEncoder as CLIPTextModel).config.vocab_size, base + 5);
  });

  test('a base-vocabulary token, a taken `<tok>_1`, a bare tensor without token, a wrong width and missing files are refused', async () => {
    const code = (c: string) => (e: unknown) => e instanceof PiaError && e.code === c;
    await assert.rejects(pipe.loadTextualInversion(join(LOADERS, 'kitestyle.a1111.pt'), { token: '<|endoftext|>' }), code('E_INVALID_ARGUMENT'));
    // A multi-vector token is refused when its `<tok>_1` is taken, even if `<tok>` itself is free.
    await pipe.loadTextualInversion({ data: new Float32Array(64), shape: [64] }, { token: '<zq>_1' });
    await assert.rejects(pipe.loadTextualInversion({ data: new Float32Array(128), shape: [2, 64] }, { token: '<zq>' }), (e: unknown) =>
      e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT' && /Multi-vector Token <zq>_1/.test(e.message));
    await assert.rejects(pipe.loadTextualInversion({ data: new Float32Array(64), shape: [64] }), code('E_INVALID_ARGUMENT'));
    await assert.rejects(pipe.loadTextualInversion({ data: new Float32Array(32), shape: [32] }, { token: 'narrow' }), code('E_WEIGHTS_MISMATCH'));
    await assert.rejects(pipe.loadTextualInversion(join(LOADERS, 'nope.pt'), { token: 'x1' }), code('E_MODEL_NOT_FOUND'));
    await assert.rejects(pipe.loadTextualInversion(LOADERS, { token: 'x1' }), code('E_MODEL_NOT_FOUND')); // no learned_embeds.* there
  });

  test('maybe_convert_prompt follows the added tokens (`<tok>_1` loaded separately counts), replacing substrings as diffusers does', async () => {
    await pipe.loadTextualInversion({ data: new Float32Array(64), shape: [64] }, { token: '<qq>' });
    assert.equal(pipe.maybeConvertPrompt('a <qq> cat'), 'a <qq> cat');
    await pipe.loadTextualInversion({ data: new Float32Array(64), shape: [64] }, { token: '<qq>_1' });
    assert.equal(pipe.maybeConvertPrompt('a <qq> cat'), 'a <qq> <qq>_1 cat');
    // str.replace also hits `<qq>` inside `<qq>_1`: diffusers' own result for an already expanded prompt.
    assert.equal(pipe.maybeConvertPrompt('<qq> <qq>_1'), '<qq> <qq>_1 <qq> <qq>_1_1');
    assert.deepEqual(pipe.maybeConvertPrompt(['<qq>', 'plain']), ['<qq> <qq>_1', 'plain']);
  });

  test('a folder with only learned_embeds.bin (torch pickle, what older diffusers scripts save) loads like the .safetensors', async () => {
    const f = readSafetensors(join(LOADERS, 'ti-diffusers-kitestyle', 'learned_embeds.safetensors'));
    const vec = f.get('<kitestyle>').toFloat32();
    f.close();
    const dir = tempDir('pia-ti-bin-');
    const storage = { key: '0', dtype: 'F32' as const, bytes: new Uint8Array(Float32Array.from(vec).buffer) };
    writeFileSync(join(dir, 'learned_embeds.bin'), torchSaveZip({ '<kitebin>': tensor({ storage, shape: [vec.length] }) }));
    await pipe.loadTextualInversion(dir);
    const te = pipe.textEncoder as CLIPTextModel;
    const id = (pipe.tokenizer as CLIPTokenizer).convertTokensToIds('<kitebin>');
    assert.equal(id, te.config.vocab_size - 1);
    assert.deepEqual(Array.from(te.tokenEmbeddingRows([id]).data), Array.from(vec));
  });

  test('ordinary prompts are unaffected by loaded embeddings (shared text golden)', async () => {
    const textIn = readSafetensors(fixture('golden', 'components', 'mini-sd_text_encoder.safetensors'));
    const t = textIn.get('input_ids');
    const flat = Array.from(t.toFloat32());
    const [b, s] = t.shape;
    const ids = Array.from({ length: b }, (_, i) => flat.slice(i * s, (i + 1) * s));
    const out = await (pipe.textEncoder as CLIPTextModel).encode(ids);
    const ref = textIn.get('last_hidden_state').toFloat32();
    assertComponent(out.lastHiddenState.data, ref, 'last_hidden_state after loading embeddings');
  });
});
