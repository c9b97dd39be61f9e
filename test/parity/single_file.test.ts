// Real-world weight formats (issue 6 items 2-3): an original SD-1.x single-file checkpoint through
// PIAPipeline.fromSingleFile and PIA's original motion checkpoint through MotionAdapter.fromSingleFile,
// against the diffusers v0.26.3 goldens of ../shared/fixtures/loaders (README sections 1, 2, 5), plus
// derived formats written to a temp folder and the refusals.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PiaError } from '../../lib/errors.js';
import { f32ToF16, f16ToF32, narrowBF16, narrowF16 } from '../../lib/io/float16.js';
import { readSafetensors, saveSafetensors, type RawTensor, type SaveableTensor } from '../../lib/io/safetensors.js';
import { CheckpointView, readCheckpointHeader } from '../../lib/loaders/checkpoint_view.js';
import { ldmKeyForDiffusers } from '../../lib/loaders/ldm_from_diffusers.js';
import { convertLdmCheckpoint } from '../../lib/loaders/ldm_to_diffusers.js';
import { piaOriginalToDiffusers } from '../../lib/loaders/pia_original.js';
import { AutoencoderKL } from '../../lib/models/autoencoder_kl.js';
import { CLIPTextModel } from '../../lib/models/clip_text_model.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { UNetMotionModel } from '../../lib/models/unet_motion_model.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { bytesOf, tensor as pyTensor, torchSaveZip, type PyValue, type TorchDtype } from '../helpers/torch_pickle.js';

const SINGLE_FILE = fixture('loaders', 'mini-sd.single-file.safetensors');
const PIA_ORIGINAL = fixture('loaders', 'mini-sd-motion-adapter.pia-original.safetensors');
const MINI_SD = fixture('models', 'mini-sd');

// The goldens are float32 math on the fp16-rounded weights (the rounding is IN the goldens), so what is
// left is float32 op-order noise: ~1e-6 relative for the shared component goldens. 1e-4 × max|ref|
// is still 10× below the smallest fp16 effect (the README: text 2.9e-3, VAE 7.1e-3, UNet 1.2e-3 max
// abs between fp16-rounded and fp32 weights), so a mis-mapped or unrounded weight fails.
const REL_TOL = 1e-4;

function assertNear(got: Tensor, ref: Tensor, what: string, rel = REL_TOL): void {
  assert.deepEqual(got.shape, ref.shape, `${what}: shape`);
  let diff = 0, maxRef = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(got.data[i] - ref.data[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    maxRef = Math.max(maxRef, Math.abs(ref.data[i]));
  }
  if (process.env.PIA_TEST_VERBOSE) console.log(`${what}: max diff ${diff.toExponential(2)}, max |ref| ${maxRef.toFixed(3)}`);
  assert.ok(diff <= rel * maxRef, `${what}: max |diff| ${diff} > ${rel} × max|ref| ${maxRef}`);
}

function tensorOf(file: ReturnType<typeof readSafetensors>, name: string): Tensor {
  const t = file.get(name);
  return { data: t.toFloat32(), shape: [...t.shape] };
}

function idsOf(file: ReturnType<typeof readSafetensors>, name: string): number[][] {
  const t = file.get(name);
  const data = t.data as BigInt64Array;
  const [b, s] = t.shape;
  return Array.from({ length: b }, (_, i) => Array.from(data.subarray(i * s, (i + 1) * s), Number));
}

interface Run { key: string; frames: number; timestep: number; freeu: boolean }
const unetInputs = readSafetensors(fixture('golden', 'components', 'mini-sd_unet_motion.safetensors'));
const unetRuns = (JSON.parse(readFileSync(fixture('golden', 'components', 'mini-sd_unet_motion.json'), 'utf8')) as { runs: Run[] })
  .runs.filter((r) => !r.freeu);

/** Rewrites a safetensors file tensor by tensor (dropping, renaming or re-typing some). */
function rewrite(src: string, dst: string, edit: (name: string, t: RawTensor) => [string, SaveableTensor] | null): void {
  const f = readSafetensors(src);
  const out: Record<string, SaveableTensor> = {};
  for (const n of f.names()) {
    const r = edit(n, f.get(n));
    if (r) out[r[0]] = r[1];
  }
  f.close();
  saveSafetensors(dst, out);
}

const keep = (t: RawTensor): SaveableTensor => ({ dtype: t.dtype, shape: t.shape, data: t.data });
const isFloat = (t: RawTensor): boolean => t.dtype === 'F16' || t.dtype === 'BF16' || t.dtype === 'F32';

describe('LDM single file → diffusers keys (mini-sd.single-file.safetensors)', () => {
  const view = new CheckpointView({ path: '', at: [], names: () => [], shape: () => undefined, dtype: () => undefined });
  let conv: ReturnType<typeof convertLdmCheckpoint>;
  let fileView: CheckpointView;
  before(async () => {
    fileView = new CheckpointView(await readCheckpointHeader(SINGLE_FILE));
    conv = convertLdmCheckpoint(fileView);
  });

  test('an empty view is refused (no UNet)', () => {
    assert.throws(() => convertLdmCheckpoint(view), (e: PiaError) => e.code === 'E_UNSUPPORTED');
  });

  test('every component tensor maps onto its diffusers key, value for value (fp16 of the folder tensor)', () => {
    const file = readSafetensors(SINGLE_FILE);
    const cases = [
      ['unet', conv.unet.keyMap, 'unet/diffusion_pytorch_model.safetensors', 686],
      ['vae', conv.vae!.keyMap, 'vae/diffusion_pytorch_model.safetensors', 244],
      ['text_encoder', conv.textEncoder!.keyMap, 'text_encoder/model.safetensors', 52],
    ] as const;
    for (const [what, map, rel, count] of cases) {
      const ref = readSafetensors(join(MINI_SD, rel));
      assert.deepEqual([...map.keys.keys()].sort(), ref.names().sort(), `${what}: key set`);
      assert.equal(map.size, count);
      for (const k of ref.names()) {
        const want = ref.get(k).toFloat32();
        const got = file.get(map.fileKey(k)!).toFloat32();
        assert.equal(got.length, want.length, `${what} ${k}: size`);
        // Shape-equal tensors (the VAE's three 64-channel up blocks, q/k/v) only match when the map is right.
        for (let i = 0; i < want.length; i++) {
          if (got[i] !== f16ToF32(f32ToF16(want[i]))) assert.fail(`${what} ${k} ← ${map.fileKey(k)}: element ${i} differs`);
        }
      }
    }
    assert.deepEqual([...conv.vae!.keyMap.squeeze].sort(), [
      'decoder.mid_block.attentions.0.to_k.weight', 'decoder.mid_block.attentions.0.to_out.0.weight',
      'decoder.mid_block.attentions.0.to_q.weight', 'decoder.mid_block.attentions.0.to_v.weight',
      'encoder.mid_block.attentions.0.to_k.weight', 'encoder.mid_block.attentions.0.to_out.0.weight',
      'encoder.mid_block.attentions.0.to_q.weight', 'encoder.mid_block.attentions.0.to_v.weight',
    ]);
  });

  test('configs inferred from shapes equal mini-sd\'s where shapes tell', () => {
    const unet = JSON.parse(readFileSync(join(MINI_SD, 'unet', 'config.json'), 'utf8'));
    for (const k of ['block_out_channels', 'layers_per_block', 'down_block_types', 'up_block_types', 'cross_attention_dim',
      'in_channels', 'out_channels', 'use_linear_projection', 'attention_head_dim', 'transformer_layers_per_block', 'mid_block_type']) {
      assert.deepEqual(conv.unet.config[k], unet[k], `unet ${k}`);
    }
    const vae = JSON.parse(readFileSync(join(MINI_SD, 'vae', 'config.json'), 'utf8'));
    for (const k of ['block_out_channels', 'layers_per_block', 'latent_channels', 'in_channels', 'out_channels', 'down_block_types', 'scaling_factor']) {
      assert.deepEqual(conv.vae!.config[k], vae[k], `vae ${k}`);
    }
    const text = JSON.parse(readFileSync(join(MINI_SD, 'text_encoder', 'config.json'), 'utf8'));
    for (const k of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'max_position_embeddings', 'hidden_act']) {
      assert.deepEqual(conv.textEncoder!.config[k], text[k], `text ${k}`);
    }
    // The head count is not in the shapes: openai CLIP's 64-wide heads (mini-sd has 4 of 16: `config` supplies it).
    assert.equal(conv.textEncoder!.config.num_attention_heads, 1);
  });

  test('the reverse map (error messages) names each tensor\'s own key', () => {
    for (const [component, map, prefix] of [['unet', conv.unet.keyMap, ''], ['vae', conv.vae!.keyMap, 'first_stage_model.'],
      ['text', conv.textEncoder!.keyMap, '']] as const) {
      for (const [d, f] of map.keys) assert.equal(ldmKeyForDiffusers(component, d, fileView, prefix), f, `${component} ${d}`);
    }
  });
});

describe('PIAPipeline.fromSingleFile (config: mini-sd) against golden/single_file_components', () => {
  let pipe: PIAPipeline;
  const golden = readSafetensors(fixture('loaders', 'golden', 'single_file_components.safetensors'));
  before(async () => {
    const motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
    pipe = await PIAPipeline.fromSingleFile(SINGLE_FILE, { motionAdapter, config: MINI_SD });
  });
  after(() => pipe?.dispose());

  test('text encoder: last_hidden_state and pooler_output', async () => {
    const inputs = readSafetensors(fixture('golden', 'components', 'mini-sd_text_encoder.safetensors'));
    const out = await (pipe.textEncoder as CLIPTextModel).encode(idsOf(inputs, 'input_ids'));
    assertNear(out.lastHiddenState, tensorOf(golden, 'text_encoder_last_hidden_state'), 'last_hidden_state');
    assertNear(out.poolerOutput, tensorOf(golden, 'text_encoder_pooler_output'), 'pooler_output');
  });

  test('VAE: encode mean/logvar and decode', async () => {
    const inputs = readSafetensors(fixture('golden', 'components', 'mini-sd_vae.safetensors'));
    const dist = await (pipe.vae as AutoencoderKL).encode(tensorOf(inputs, 'image'));
    assertNear(dist.mean, tensorOf(golden, 'vae_encode_mean'), 'encode mean');
    assertNear(dist.logvar, tensorOf(golden, 'vae_encode_logvar'), 'encode logvar');
    assertNear(await pipe.vae.decode(tensorOf(inputs, 'decode_input')), tensorOf(golden, 'vae_decode_output'), 'decode');
  });

  for (const run of unetRuns) {
    test(`UNetMotion ${run.key}`, async () => {
      const out = await pipe.unet.forward(tensorOf(unetInputs, `f${run.frames}_sample`), run.timestep,
        tensorOf(unetInputs, `f${run.frames}_encoder_hidden_states`));
      assertNear(out, tensorOf(golden, `unet_motion_${run.key}`), run.key);
    });
  }

  test('stock scheduler without config is DDIM with PIA\'s linear betas', async () => {
    assert.equal(pipe.scheduler.config.beta_schedule, 'linear');
  });
});

describe('MotionAdapter.fromSingleFile (PIA original layout) against golden/pia_original_ckpt_unet_motion', () => {
  let model: UNetMotionModel;
  let adapter: MotionAdapter;
  const golden = readSafetensors(fixture('loaders', 'golden', 'pia_original_ckpt_unet_motion.safetensors'));
  before(async () => {
    adapter = await MotionAdapter.fromSingleFile(PIA_ORIGINAL);
    model = await UNetMotionModel.fromUnet2d(join(MINI_SD, 'unet'), adapter);
  });
  after(() => model?.dispose());

  test('config read from the shapes equals the diffusers folder\'s', () => {
    const ref = JSON.parse(readFileSync(fixture('models', 'mini-sd-motion-adapter', 'config.json'), 'utf8'));
    for (const k of ['block_out_channels', 'conv_in_channels', 'motion_layers_per_block', 'motion_max_seq_length',
      'motion_mid_block_layers_per_block', 'motion_norm_num_groups', 'motion_num_attention_heads', 'use_motion_mid_block']) {
      assert.deepEqual(adapter.config[k], ref[k], k);
    }
    // 522 = 520 motion-module parameters + conv_in weight and bias; the 40 pos_encoder.pe buffers are skipped.
    const conv = piaOriginalToDiffusers(new CheckpointView({
      path: PIA_ORIGINAL, at: [], names: () => readSafetensors(PIA_ORIGINAL).names(), shape: (n) => readSafetensors(PIA_ORIGINAL).info(n).shape, dtype: () => 'F16',
    }));
    assert.equal(conv.keyMap.size, 522);
  });

  for (const run of unetRuns) {
    test(`UNetMotion ${run.key}`, async () => {
      const out = await model.forward(tensorOf(unetInputs, `f${run.frames}_sample`), run.timestep,
        tensorOf(unetInputs, `f${run.frames}_encoder_hidden_states`));
      assertNear(out, tensorOf(golden, `unet_motion_${run.key}`), run.key);
    });
  }
});

describe('single files in other formats and precisions (derived in a temp folder)', () => {
  const dir = tempDir('pia-single-file-');
  let motionAdapter: MotionAdapter;
  const golden = readSafetensors(fixture('loaders', 'golden', 'single_file_components.safetensors'));
  const textInputs = readSafetensors(fixture('golden', 'components', 'mini-sd_text_encoder.safetensors'));
  before(async () => {
    motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
  });

  test('float32 copy: outputs bit for bit those of the fp16 file (the CPU widens fp16 exactly)', async () => {
    const f32 = join(dir, 'mini-sd.f32.safetensors');
    rewrite(SINGLE_FILE, f32, (n, t) => [n, isFloat(t) ? { data: t.toFloat32(), shape: t.shape } : keep(t)]);
    const a = await PIAPipeline.fromSingleFile(f32, { motionAdapter, config: MINI_SD });
    const b = await PIAPipeline.fromSingleFile(SINGLE_FILE, { motionAdapter, config: MINI_SD });
    try {
      const ids = idsOf(textInputs, 'input_ids');
      assert.deepEqual((await a.textEncoder.encode(ids)).lastHiddenState.data, (await b.textEncoder.encode(ids)).lastHiddenState.data);
      const z = tensorOf(readSafetensors(fixture('golden', 'components', 'mini-sd_vae.safetensors')), 'decode_input');
      assert.deepEqual((await a.vae.decode(z)).data, (await b.vae.decode(z)).data);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  test('bfloat16 copy loads and runs; outputs move by bf16 rounding only', async () => {
    const bf16 = join(dir, 'mini-sd.bf16.safetensors');
    rewrite(SINGLE_FILE, bf16, (n, t) => [n, isFloat(t) ? { dtype: 'BF16', shape: t.shape, data: narrowBF16(t.toFloat32()) } : keep(t)]);
    const pipe = await PIAPipeline.fromSingleFile(bf16, { motionAdapter, config: MINI_SD });
    try {
      const out = await pipe.textEncoder.encode(idsOf(textInputs, 'input_ids'));
      // bf16 keeps 8 significant bits (relative rounding ≤ 2^-9 per weight, vs fp16's 2^-11): measured
      // 1.44e-2 max abs on |ref| ≤ 3.4 (4e-3 relative); 2e-2 relative bounds that, and a wrong tensor moves it by O(1).
      assertNear(out.lastHiddenState, tensorOf(golden, 'text_encoder_last_hidden_state'), 'bf16 last_hidden_state', 2e-2);
    } finally {
      pipe.dispose();
    }
  });

  test('a UNet tensor missing from the file: E_WEIGHTS_MISMATCH naming the diffusers key and the file\'s', async () => {
    const cut = join(dir, 'mini-sd.cut.safetensors');
    const gone = 'model.diffusion_model.input_blocks.1.0.in_layers.0.weight';
    rewrite(SINGLE_FILE, cut, (n, t) => (n === gone ? null : [n, keep(t)]));
    await assert.rejects(PIAPipeline.fromSingleFile(cut, { motionAdapter, config: MINI_SD }), (e: PiaError) => {
      assert.equal(e.code, 'E_WEIGHTS_MISMATCH');
      assert.equal(e.key, 'down_blocks.0.resnets.0.norm1.weight');
      assert.match(e.message, /input_blocks\.1\.0\.in_layers\.0\.weight/);
      return true;
    });
  });

  test('an external VAE (vae option) as a bare LDM VAE file replaces the checkpoint\'s', async () => {
    // A vae-ft-mse-style file: the checkpoint's first_stage_model.* tensors under bare names, here scaled by 2
    // in conv_out so the decode proves which VAE ran.
    const vaeFile = join(dir, 'vae-bare.safetensors');
    rewrite(SINGLE_FILE, vaeFile, (n, t) => {
      if (!n.startsWith('first_stage_model.')) return null;
      const name = n.slice('first_stage_model.'.length);
      // ×2 is exact in fp16.
      return [name, name.startsWith('decoder.conv_out.') ? { dtype: 'F16', shape: t.shape, data: narrowF16(t.toFloat32().map((v) => 2 * v)) } : keep(t)];
    });
    const pipe = await PIAPipeline.fromSingleFile(SINGLE_FILE, { motionAdapter, config: MINI_SD, vae: vaeFile });
    try {
      const z = tensorOf(readSafetensors(fixture('golden', 'components', 'mini-sd_vae.safetensors')), 'decode_input');
      const ref = tensorOf(golden, 'vae_decode_output');
      assertNear(await pipe.vae.decode(z), { data: ref.data.map((v) => 2 * v), shape: ref.shape }, 'decode with the external VAE');
    } finally {
      pipe.dispose();
    }
  });
});

describe('.ckpt (torch.save zip) files', () => {
  const dir = tempDir('pia-single-file-ckpt-');
  const PIA_ORIGINAL_CKPT = fixture('loaders', 'mini-sd-motion-adapter.pia-original.ckpt');

  test('MotionAdapter.fromSingleFile(pia-original .ckpt) gives the .safetensors adapter\'s outputs', async () => {
    const golden = readSafetensors(fixture('loaders', 'golden', 'pia_original_ckpt_unet_motion.safetensors'));
    const adapter = await MotionAdapter.fromSingleFile(PIA_ORIGINAL_CKPT);
    const model = await UNetMotionModel.fromUnet2d(join(MINI_SD, 'unet'), adapter);
    try {
      for (const run of unetRuns.filter((r) => r.frames === 4)) {
        const out = await model.forward(tensorOf(unetInputs, `f${run.frames}_sample`), run.timestep,
          tensorOf(unetInputs, `f${run.frames}_encoder_hidden_states`));
        assertNear(out, tensorOf(golden, `unet_motion_${run.key}`), `ckpt ${run.key}`);
      }
    } finally {
      model.dispose();
    }
  });

  test('a single file saved as {state_dict: ..., global_step} (.ckpt, as model sites ship SD-1.5) loads through the wrapper', async () => {
    // torch.save({'state_dict': sd, 'global_step': 470000}): diffusers unwraps with `while "state_dict" in checkpoint`.
    const src = readSafetensors(SINGLE_FILE);
    const sd: Record<string, PyValue> = {};
    src.names().forEach((n, i) => {
      const t = src.get(n);
      sd[n] = pyTensor({ storage: { key: String(i), dtype: t.dtype as TorchDtype, bytes: bytesOf(t.data) }, shape: [...t.shape] });
    });
    const ckpt = join(dir, 'mini-sd.ckpt');
    writeFileSync(ckpt, torchSaveZip({ state_dict: sd, global_step: 470000 }, { archive: 'mini-sd' }));
    const motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
    const pipe = await PIAPipeline.fromSingleFile(ckpt, { motionAdapter, config: MINI_SD });
    const golden = readSafetensors(fixture('loaders', 'golden', 'single_file_components.safetensors'));
    try {
      const ids = idsOf(readSafetensors(fixture('golden', 'components', 'mini-sd_text_encoder.safetensors')), 'input_ids');
      assertNear((await pipe.textEncoder.encode(ids)).lastHiddenState, tensorOf(golden, 'text_encoder_last_hidden_state'), 'ckpt text');
      const vaeIn = readSafetensors(fixture('golden', 'components', 'mini-sd_vae.safetensors'));
      assertNear(await pipe.vae.decode(tensorOf(vaeIn, 'decode_input')), tensorOf(golden, 'vae_decode_output'), 'ckpt vae decode');
      const run = unetRuns[0];
      const out = await pipe.unet.forward(tensorOf(unetInputs, `f${run.frames}_sample`), run.timestep, tensorOf(unetInputs, `f${run.frames}_encoder_hidden_states`));
      assertNear(out, tensorOf(golden, `unet_motion_${run.key}`), `ckpt ${run.key}`);
    } finally {
      pipe.dispose();
    }
  });
});

describe('refusals: other Stable Diffusion families', () => {
  const dir = tempDir('pia-single-file-refuse-');
  let motionAdapter: MotionAdapter;
  before(async () => {
    motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
  });
  const zeros = (shape: number[]): SaveableTensor => ({ dtype: 'F16', shape, data: new Uint16Array(shape.reduce((a, b) => a * b, 1)) });
  // The UNet telltales of an LDM file, SD-1.x sized unless overridden.
  const unet = (o: { inChannels?: number; context?: number; linear?: boolean } = {}): Record<string, SaveableTensor> => ({
    'model.diffusion_model.input_blocks.0.0.weight': zeros([8, o.inChannels ?? 4, 3, 3]),
    'model.diffusion_model.input_blocks.1.1.proj_in.weight': zeros(o.linear ? [8, 8] : [8, 8, 1, 1]),
    'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight': zeros([8, o.context ?? 768]),
  });
  const cases: Array<[string, Record<string, SaveableTensor>, RegExp]> = [
    ['SDXL (conditioner.embedders)', { ...unet({ context: 2048 }), 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias': zeros([8]) }, /SDXL/],
    ['SDXL (label_emb only)', { ...unet(), 'model.diffusion_model.label_emb.0.0.weight': zeros([8, 16]) }, /SDXL/],
    ['SD-2.x (OpenCLIP text tower)', { ...unet({ context: 1024, linear: true }), 'cond_stage_model.model.token_embedding.weight': zeros([16, 8]) }, /2\.x/],
    ['SD-2.x (1024-wide context)', unet({ context: 1024 }), /2\.x/],
    ['SD-2.x (linear proj_in)', unet({ linear: true }), /2\.x/],
    ['inpainting (9-channel conv_in)', unet({ inChannels: 9 }), /inpainting/],
    ['a VAE file', { 'encoder.conv_in.weight': zeros([8, 3, 3, 3]), 'encoder.down.0.block.0.conv1.weight': zeros([8, 8, 3, 3]) }, /only a VAE/],
    ['a diffusers-named UNet file', { 'conv_in.weight': zeros([8, 4, 3, 3]) }, /fromPretrained/],
  ];
  for (const [what, tensors, message] of cases) {
    test(`${what} → E_UNSUPPORTED`, async () => {
      const path = join(dir, `${what.replace(/\W+/g, '_')}.safetensors`);
      saveSafetensors(path, tensors);
      await assert.rejects(PIAPipeline.fromSingleFile(path, { motionAdapter }), (e: PiaError) => {
        assert.equal(e.code, 'E_UNSUPPORTED');
        assert.match(e.message, message);
        return true;
      });
    });
  }

  test('MotionAdapter.fromSingleFile of a file without motion modules → E_UNSUPPORTED', async () => {
    await assert.rejects(MotionAdapter.fromSingleFile(SINGLE_FILE), (e: PiaError) => e.code === 'E_UNSUPPORTED');
  });

  test('missing files and a missing motionAdapter are refused before anything is read', async () => {
    await assert.rejects(PIAPipeline.fromSingleFile(join(dir, 'nope.safetensors'), { motionAdapter }), (e: PiaError) => e.code === 'E_MODEL_NOT_FOUND');
    await assert.rejects(PIAPipeline.fromSingleFile(SINGLE_FILE, {} as never), (e: PiaError) => e.code === 'E_INVALID_ARGUMENT');
    await assert.rejects(PIAPipeline.fromSingleFile(SINGLE_FILE, { motionAdapter, config: join(dir, 'no-folder') }),
      (e: PiaError) => e.code === 'E_MODEL_NOT_FOUND');
  });
});

describe('pia animate with single files (--model FILE, --adapter FILE, --vae)', () => {
  const dir = tempDir('pia-single-file-cli-');
  const image = fixture('golden', 'pipeline', 'input_64x64.png');
  const pia = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib/cli/main.ts'), ...args], { cwd: repoRoot, encoding: 'utf8' });

  test('a single-file model and PIA\'s original adapter file', () => {
    const out = join(dir, 'a') + '/';
    const r = pia('animate', image, '-p', 'a red ball', '--model', SINGLE_FILE, '--adapter', PIA_ORIGINAL, '--steps', '2', '--frames', '2',
      '--json', '-o', out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).ok, true);
    assert.deepEqual(readdirSync(out).sort(), ['frame_0000.png', 'frame_0001.png']);
  });

  test('--vae with a folder model; --revision with a single file is refused', () => {
    const out = join(dir, 'b') + '/';
    const r = pia('animate', image, '-p', 'x', '--model', MINI_SD, '--adapter', PIA_ORIGINAL, '--vae', SINGLE_FILE, '--steps', '1',
      '--frames', '2', '-q', '-o', out);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readdirSync(out).length, 2);
    const bad = pia('animate', image, '-p', 'x', '--model', SINGLE_FILE, '--revision', 'main', '--adapter', PIA_ORIGINAL, '-q', '-o', join(dir, 'c') + '/');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /revision/);
  });
});
