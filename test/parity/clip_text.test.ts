// CLIPTextModel against transformers 4.37's CLIPTextModel (the fixtures' stand-in reproduces its
// eager math) on both fixture families, plus the load errors of a broken weight folder.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { narrowF16, widenF16 } from '../../lib/io/float16.js';
import { readSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { CLIPTextModel } from '../../lib/models/clip_text_model.js';
import { CLIPTokenizer } from '../../lib/tokenizers/clip_tokenizer.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

// float32 op-order noise only: the fixtures measured fp32-vs-fp64 differences of ~1e-6 on outputs
// of magnitude ~1-4 (README "Observed numerical tolerances"); we allow 1e-4 relative to the
// largest reference magnitude, two orders above that, and far below any real bug (a swapped
// weight or a wrong activation moves values by O(0.1-1)).
const REL_TOL = 1e-4;

function assertClose(actual: Tensor, expected: { shape: number[]; toFloat32(): Float32Array }, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const ref = expected.toFloat32();
  let maxRef = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
    const d = Math.abs(actual.data[i] - ref[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
  }
  const tol = REL_TOL * maxRef;
  if (process.env.PIA_TEST_VERBOSE) console.log(`${what}: max diff ${maxDiff.toExponential(2)}, max ref ${maxRef.toFixed(3)}`);
  assert.ok(maxDiff <= tol, `${what}: max |diff| ${maxDiff} > ${tol} (max |ref| ${maxRef})`);
}

function idsOf(golden: ReturnType<typeof readSafetensors>, name: string): number[][] {
  const t = golden.get(name);
  const data = t.data as BigInt64Array;
  const [b, s] = t.shape;
  return Array.from({ length: b }, (_, i) => Array.from(data.subarray(i * s, (i + 1) * s), Number));
}

for (const fam of ['tiny', 'mini-sd'] as const) {
  describe(`CLIPTextModel parity (${fam})`, () => {
    let model: CLIPTextModel;
    const golden = readSafetensors(fixture('golden', 'components', `${fam}_text_encoder.safetensors`));
    const meta = JSON.parse(readFileSync(fixture('golden', 'components', `${fam}_text_encoder.json`), 'utf8'));

    before(async () => {
      model = await CLIPTextModel.fromPretrained(fixture('models', fam, 'text_encoder'));
    });
    after(() => model.dispose());

    test('last_hidden_state, pooler_output and every hidden state', async () => {
      const ids = idsOf(golden, 'input_ids');
      const out = await model.encode(ids, { outputHiddenStates: true });
      assertClose(out.lastHiddenState, golden.get('last_hidden_state'), 'last_hidden_state');
      assertClose(out.poolerOutput, golden.get('pooler_output'), 'pooler_output');
      const layers = model.config.num_hidden_layers;
      assert.equal(out.hiddenStates?.length, layers + 1);
      for (let j = 0; j <= layers; j++) assertClose(out.hiddenStates![j], golden.get(`hidden_states_${j}`), `hidden_states_${j}`);
    });

    test('clipSkip 1 = final_layer_norm(hidden_states[-2])', async () => {
      const out = await model.encode(idsOf(golden, 'input_ids'), { clipSkip: 1 });
      assertClose(out.lastHiddenState, golden.get('clip_skip1_embeds'), 'clip_skip1_embeds');
      assert.equal(out.hiddenStates, undefined);
    });

    test("encode_prompt's embeddings from the tokenizer's ids", async () => {
      const tokenizer = await CLIPTokenizer.fromPretrained(fixture('models', fam, 'tokenizer'));
      const tok = (text: string) => tokenizer.encode([text], { padding: 'max_length', maxLength: 77, truncation: true }).inputIds;
      assert.equal(meta.prompts[0], 'a photo of a cat');
      const prompt = tok('a photo of a cat');
      const negative = tok('A painting of a squirrel eating a burger');
      assertClose((await model.encode(prompt)).lastHiddenState, golden.get('encode_prompt_cfg_prompt_embeds'), 'prompt_embeds');
      assertClose((await model.encode(negative)).lastHiddenState, golden.get('encode_prompt_cfg_negative_embeds'), 'negative_embeds');
      assertClose((await model.encode(prompt, { clipSkip: 1 })).lastHiddenState, golden.get('encode_prompt_clip_skip1'), 'clip_skip1');
    });

    test('bad inputs are E_INVALID_ARGUMENT', async () => {
      await assert.rejects(model.encode([[49408]]), { code: 'E_INVALID_ARGUMENT', option: 'inputIds' });
      await assert.rejects(model.encode([[1, 2], [3]]), { code: 'E_INVALID_ARGUMENT' });
      await assert.rejects(model.encode([new Array(78).fill(1)]), { code: 'E_INVALID_ARGUMENT' });
      await assert.rejects(model.encode([[1, 2]], { clipSkip: model.config.num_hidden_layers + 1 }), { code: 'E_INVALID_ARGUMENT', option: 'clipSkip' });
    });
  });
}

describe('CLIPTextModel load errors', () => {
  const src = fixture('models', 'tiny', 'text_encoder');
  const srcWeights = join(src, 'model.safetensors');

  function folder(name: string): string {
    const dir = join(tempDir('pia-clip-'), name);
    mkdirSync(dir);
    copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
    return dir;
  }

  function rewrite(dir: string, edit: (tensors: Record<string, { dtype: any; shape: number[]; data: any }>) => void): void {
    const f = readSafetensors(srcWeights);
    const tensors: Record<string, { dtype: any; shape: number[]; data: any }> = {};
    for (const n of f.names()) {
      const t = f.get(n);
      tensors[n] = { dtype: t.dtype, shape: t.shape, data: t.data };
    }
    f.close();
    edit(tensors);
    saveSafetensors(join(dir, 'model.safetensors'), tensors);
  }

  test('a missing folder or weight file is E_MODEL_NOT_FOUND', async () => {
    await assert.rejects(CLIPTextModel.fromPretrained(join(src, 'nope')), { code: 'E_MODEL_NOT_FOUND' });
    const dir = folder('empty');
    await assert.rejects(CLIPTextModel.fromPretrained(dir), (e: any) => {
      assert.equal(e.code, 'E_MODEL_NOT_FOUND');
      assert.match(e.message, /model\.safetensors/);
      return true;
    });
  });

  test('a truncated weight file is E_WEIGHTS_CORRUPT', async () => {
    const dir = folder('truncated');
    copyFileSync(srcWeights, join(dir, 'model.safetensors'));
    truncateSync(join(dir, 'model.safetensors'), statSync(srcWeights).size - 1000);
    await assert.rejects(CLIPTextModel.fromPretrained(dir), { code: 'E_WEIGHTS_CORRUPT' });
  });

  test('a missing key is E_WEIGHTS_MISMATCH naming it', async () => {
    const dir = folder('missing');
    const key = 'text_model.encoder.layers.3.mlp.fc1.bias';
    rewrite(dir, (t) => delete t[key]);
    await assert.rejects(CLIPTextModel.fromPretrained(dir), { code: 'E_WEIGHTS_MISMATCH', key });
  });

  test('a wrong shape is E_WEIGHTS_MISMATCH naming the key', async () => {
    const dir = folder('shape');
    const key = 'text_model.encoder.layers.1.self_attn.k_proj.weight';
    rewrite(dir, (t) => {
      t[key] = { dtype: 'F32', shape: [32, 31], data: new Float32Array(32 * 31) };
    });
    await assert.rejects(CLIPTextModel.fromPretrained(dir), { code: 'E_WEIGHTS_MISMATCH', key });
  });

  test('an unexpected key is E_WEIGHTS_MISMATCH; the position_ids buffer is allowed', async () => {
    const dir = folder('extra');
    rewrite(dir, (t) => {
      t['text_model.embeddings.position_ids'] = { dtype: 'I64', shape: [1, 77], data: new BigInt64Array(77).map((_, i) => BigInt(i)) };
    });
    const m = await CLIPTextModel.fromPretrained(dir);
    m.dispose();
    const dir2 = folder('extra2');
    rewrite(dir2, (t) => {
      t['text_projection.weight'] = { dtype: 'F32', shape: [32, 32], data: new Float32Array(32 * 32) };
    });
    await assert.rejects(CLIPTextModel.fromPretrained(dir2), { code: 'E_WEIGHTS_MISMATCH', key: 'text_projection.weight' });
  });

  test('F16 weights are widened exactly: same result as the F32 file holding the same values', async () => {
    const f16Dir = folder('f16');
    const f32Dir = folder('f16-as-f32');
    const narrowed: Record<string, Uint16Array> = {};
    rewrite(f16Dir, (t) => {
      for (const [k, v] of Object.entries(t)) {
        narrowed[k] = narrowF16(v.data as Float32Array);
        t[k] = { dtype: 'F16', shape: v.shape, data: narrowed[k] };
      }
    });
    rewrite(f32Dir, (t) => {
      for (const [k, v] of Object.entries(t)) t[k] = { dtype: 'F32', shape: v.shape, data: widenF16(narrowed[k]) };
    });
    const golden = readSafetensors(fixture('golden', 'components', 'tiny_text_encoder.safetensors'));
    const ids = idsOf(golden, 'input_ids');
    const a = await CLIPTextModel.fromPretrained(f16Dir);
    const b = await CLIPTextModel.fromPretrained(f32Dir);
    try {
      const outA = await a.encode(ids);
      const outB = await b.encode(ids);
      const asRef = (t: Tensor) => ({ shape: t.shape, toFloat32: () => t.data });
      assertClose(outA.lastHiddenState, asRef(outB.lastHiddenState), 'f16 last_hidden_state');
      // ...and rounding the weights to f16 really changed something (the comparison is not vacuous).
      assert.notDeepEqual(outB.lastHiddenState.data, golden.get('last_hidden_state').toFloat32());
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  test('pooling: eos_token_id 2 takes argmax(ids), any other id its first position (same rows here)', async () => {
    const dir = folder('eos');
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    assert.equal(config.eos_token_id, 2);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, eos_token_id: 49407 }));
    copyFileSync(srcWeights, join(dir, 'model.safetensors'));
    const golden = readSafetensors(fixture('golden', 'components', 'tiny_text_encoder.safetensors'));
    const m = await CLIPTextModel.fromPretrained(dir);
    try {
      const ids = idsOf(golden, 'input_ids');
      assertClose((await m.encode(ids)).poolerOutput, golden.get('pooler_output'), 'pooler (eos 49407)');
      // Without any EOS the rules part: the first-position rule falls back to 0 (argmax of an
      // all-false mask), argmax(ids) picks the largest id, which we move to position 3.
      const row = ids[0].map((id) => (id === 49407 || id === 49406 ? 320 : id));
      row[3] = 49406;
      const legacy = await CLIPTextModel.fromPretrained(src);
      try {
        const d = legacy.config.hidden_size;
        const rowAt = (t: Tensor, pos: number) => t.data.subarray(pos * d, (pos + 1) * d);
        const outNew = await m.encode([row]);
        const outOld = await legacy.encode([row]);
        assert.deepEqual(outNew.poolerOutput.data, rowAt(outNew.lastHiddenState, 0));
        assert.deepEqual(outOld.poolerOutput.data, rowAt(outOld.lastHiddenState, 3));
        assert.notDeepEqual(outOld.poolerOutput.data, outNew.poolerOutput.data);
      } finally {
        legacy.dispose();
      }
    } finally {
      m.dispose();
    }
  });

  test('an unsupported hidden_act is E_UNSUPPORTED; a disposed model refuses work', async () => {
    const dir = folder('relu');
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, hidden_act: 'relu' }));
    copyFileSync(srcWeights, join(dir, 'model.safetensors'));
    await assert.rejects(CLIPTextModel.fromPretrained(dir), { code: 'E_UNSUPPORTED', key: 'hidden_act' });
    const m = await CLIPTextModel.fromPretrained(src);
    m.dispose();
    m.dispose();
    await assert.rejects(m.encode([[1]]), { code: 'E_INVALID_ARGUMENT' });
  });
});
