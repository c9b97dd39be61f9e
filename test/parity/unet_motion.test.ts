// UNetMotionModel (from_unet2d with PIA's 9-channel conv_in) against diffusers v0.26.3 goldens
// (../shared/fixtures/golden/components/<family>_unet_motion), plus load errors.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { narrowBF16, narrowF16, widenBF16, widenF16 } from '../../lib/io/float16.js';
import { readSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { UNet2DConditionModel } from '../../lib/models/unet_2d_condition_model.js';
import { UNetMotionModel } from '../../lib/models/unet_motion_model.js';
import { PiaError } from '../../lib/errors.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';

interface GoldenRun {
  key: string;
  frames: number;
  timestep: number;
  freeu: boolean;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// The reference is float32 torch on one thread; our kernels sum in another order (blocked GEMM,
// tiled attention, GroupNorm statistics). Observed: max|out - ref| ≤ 2.2e-6 on outputs with
// max|ref| ≈ 1.2–1.5 (≤ 1.7e-6 relative), the same size as diffusers' own fp32-vs-fp64 difference
// (~1e-6, fixtures README). 2e-5 × max|ref| leaves ~10× room for kernel changes and still catches
// real errors: e.g. giving UpBlockMotion's motion modules the UNet's 2 groups instead of diffusers'
// 32 moves the tiny outputs by 0.1.
const RELATIVE_TOLERANCE = 2e-5;

for (const family of ['tiny', 'mini-sd'] as const) {
  describe(`UNetMotionModel parity: ${family}`, () => {
    let model: UNetMotionModel;
    const golden = readSafetensors(fixture('golden', 'components', `${family}_unet_motion.safetensors`));
    const spec = JSON.parse(readFileSync(fixture('golden', 'components', `${family}_unet_motion.json`), 'utf8')) as { runs: GoldenRun[] };
    const get = (name: string): Tensor => {
      const t = golden.get(name);
      return { data: t.toFloat32(), shape: [...t.shape] };
    };

    before(async () => {
      const adapter = await MotionAdapter.fromPretrained(fixture('models', `${family}-motion-adapter`));
      model = await UNetMotionModel.fromUnet2d(fixture('models', family, 'unet'), adapter);
    });
    after(() => model?.dispose());

    test('config as from_unet2d derives it', () => {
      assert.equal(model.config.in_channels, 9);
      assert.equal(model.config.use_motion_mid_block, family === 'tiny');
      assert.deepEqual(model.config.down_block_types.at(-1), 'DownBlockMotion');
    });

    // 64×96 px with mini-sd's VAE gives an 8×12 latent: 12 -> 6 -> 3 -> 2 going down, so diffusers
    // passes upsample_size and the first upsampler must produce 3 rows from 2 (no golden at this size:
    // the mini-sd_nonsquare_64x96 pipeline run checks the numbers end to end).
    test('latent sizes that are not a multiple of the total downsampling (upsample_size)', async () => {
      // tiny (one upsampler): 5×7 -> 3×4 and back up to 5×7.
      const [B, F, H, W] = family === 'tiny' ? [1, 2, 5, 7] : [1, 2, 8, 12];
      const sample = { data: new Float32Array(B * 9 * F * H * W).map((_, i) => Math.sin(i * 0.37)), shape: [B, 9, F, H, W] };
      const D = model.config.cross_attention_dim;
      const ehs = { data: new Float32Array(B * 77 * D).map((_, i) => Math.cos(i * 0.11)), shape: [B, 77, D] };
      model.disableFreeU();
      const out = await model.forward(sample, 500, ehs);
      assert.deepEqual(out.shape, [B, 4, F, H, W]);
      assert.ok(out.data.every(Number.isFinite));
    });

    test('an aborted signal rejects with AbortError', async () => {
      const sample = get('f4_sample');
      const ehs = get('f4_encoder_hidden_states');
      const controller = new AbortController();
      const pending = model.forward(sample, 500, ehs, { signal: controller.signal });
      controller.abort();
      await assert.rejects(pending, { name: 'AbortError' });
      await assert.rejects(model.forward(sample, 500, ehs, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    });

    for (const run of spec.runs) {
      test(`${run.key} (F=${run.frames}, t=${run.timestep}${run.freeu ? ', FreeU' : ''})`, async () => {
        const sample = get(`f${run.frames}_sample`);
        const ehs = get(`f${run.frames}_encoder_hidden_states`);
        const ref = get(run.key);
        if (run.freeu) model.enableFreeU({ s1: 0.9, s2: 0.2, b1: 1.2, b2: 1.4 });
        else model.disableFreeU();
        const out = await model.forward(sample, run.timestep, ehs);
        assert.deepEqual(out.shape, ref.shape);
        const diff = maxAbsDiff(out.data, ref.data);
        const tol = RELATIVE_TOLERANCE * maxAbs(ref.data);
        if (process.env.PIA_PRINT_DIFFS) console.log(`${family} ${run.key}: max diff ${diff.toExponential(3)}, max|ref| ${maxAbs(ref.data).toFixed(3)}`);
        assert.ok(diff <= tol, `${run.key}: max|out - ref| = ${diff.toExponential(3)} > ${tol.toExponential(3)}`);
      });
    }
  });
}

describe('UNetMotionModel load errors', () => {
  let dir: string;
  const unetDir = fixture('models', 'tiny', 'unet');
  const unetWeights = join(unetDir, 'diffusion_pytorch_model.safetensors');

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pia-unet-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // A copy of the tiny UNet folder (same config.json) whose weights went through `edit`.
  function brokenUnet(name: string, edit: (tensors: Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>) => void): string {
    const src = readSafetensors(unetWeights);
    const tensors = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
    for (const n of src.names()) {
      const t = src.get(n);
      tensors.set(n, { dtype: 'F32', shape: [...t.shape], data: t.toFloat32() });
    }
    edit(tensors);
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    copyFileSync(join(unetDir, 'config.json'), join(folder, 'config.json'));
    saveSafetensors(join(folder, 'diffusion_pytorch_model.safetensors'), Object.fromEntries(tensors));
    return folder;
  }

  async function loadError(unet: string): Promise<PiaError> {
    const adapter = await MotionAdapter.fromPretrained(fixture('models', 'tiny-motion-adapter'));
    const err = await UNetMotionModel.fromUnet2d(await UNet2DConditionModel.fromPretrained(unet), adapter).then(
      (m) => {
        m.dispose();
        return undefined;
      },
      (e: unknown) => e,
    );
    assert.ok(err instanceof PiaError, `expected a PiaError, got ${String(err)}`);
    return err;
  }

  // The tiny UNet folder with config.json edited by `edit` (weights linked from the fixture, unchanged).
  function editedConfig(name: string, edit: (config: Record<string, unknown>) => void): string {
    const config = JSON.parse(readFileSync(join(unetDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit(config);
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'config.json'), JSON.stringify(config));
    symlinkSync(unetWeights, join(folder, 'diffusion_pytorch_model.safetensors'));
    return folder;
  }

  test('configs UNetMotionModel cannot represent are E_UNSUPPORTED', async () => {
    for (const [name, edit] of [
      ['layers2', (c: Record<string, unknown>) => (c.transformer_layers_per_block = 2)],
      ['scale_shift', (c: Record<string, unknown>) => (c.resnet_time_scale_shift = 'scale_shift')],
      ['class_embed', (c: Record<string, unknown>) => (c.class_embed_type = 'timestep')],
      ['simple_block', (c: Record<string, unknown>) => (c.down_block_types = ['SimpleCrossAttnDownBlock2D', 'DownBlock2D'])],
      ['channels', (c: Record<string, unknown>) => (c.block_out_channels = [32, 32])],
    ] as const) {
      const err = await loadError(editedConfig(name, edit));
      assert.equal(err.code, 'E_UNSUPPORTED', `${name}: ${err.message}`);
    }
  });

  test('an AnimateDiff adapter without conv_in keeps the UNet\'s 4-channel conv_in', async () => {
    const adapterDir = fixture('models', 'tiny-motion-adapter');
    const src = readSafetensors(join(adapterDir, 'diffusion_pytorch_model.safetensors'));
    const tensors: Record<string, { data: Float32Array; shape: number[] }> = {};
    for (const n of src.names()) if (!n.startsWith('conv_in.')) tensors[n] = { data: src.get(n).toFloat32(), shape: [...src.get(n).shape] };
    const folder = join(dir, 'animatediff-adapter');
    mkdirSync(folder, { recursive: true });
    const config = JSON.parse(readFileSync(join(adapterDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    config.conv_in_channels = null;
    writeFileSync(join(folder, 'config.json'), JSON.stringify(config));
    saveSafetensors(join(folder, 'diffusion_pytorch_model.safetensors'), tensors);
    const model = await UNetMotionModel.fromUnet2d(unetDir, await MotionAdapter.fromPretrained(folder));
    try {
      assert.equal(model.config.in_channels, 4);
      const sample = { data: new Float32Array(1 * 4 * 2 * 4 * 4).fill(0.5), shape: [1, 4, 2, 4, 4] };
      const ehs = { data: new Float32Array(77 * 32).fill(0.1), shape: [1, 77, 32] };
      const out = await model.forward(sample, 10, ehs);
      assert.deepEqual(out.shape, [1, 4, 2, 4, 4]);
      await assert.rejects(model.forward({ data: new Float32Array(9 * 2 * 16), shape: [1, 9, 2, 4, 4] }, 10, ehs), {
        code: 'E_INVALID_ARGUMENT',
      });
    } finally {
      model.dispose();
    }
  });

  // fp16 / bf16 checkpoints (diffusers' `variant="fp16"`) are widened exactly at load: a model from
  // half-precision files must equal, bit for bit, one from f32 files holding the widened values.
  test('f16 and bf16 weight files give exactly the widened-f32 result', async () => {
    const adapterDir = fixture('models', 'tiny-motion-adapter');
    const sample = { data: new Float32Array(2 * 9 * 2 * 4 * 4).map((_, i) => Math.sin(i)), shape: [2, 9, 2, 4, 4] };
    const ehs = { data: new Float32Array(2 * 77 * 32).map((_, i) => Math.cos(i * 0.3)), shape: [2, 77, 32] };
    async function run(tag: string, dtype: 'F16' | 'BF16' | 'F32'): Promise<Float32Array> {
      const write = (srcDir: string, name: string) => {
        const src = readSafetensors(join(srcDir, 'diffusion_pytorch_model.safetensors'));
        const tensors: Record<string, { dtype: 'F16' | 'BF16' | 'F32'; data: Uint16Array | Float32Array; shape: number[] }> = {};
        for (const n of src.names()) {
          const values = src.get(n).toFloat32();
          const half = dtype === 'BF16' ? narrowBF16(values) : narrowF16(values);
          const shape = [...src.get(n).shape];
          tensors[n] = dtype === 'F32'
            ? { dtype, shape, data: tag.endsWith('bf16') ? widenBF16(narrowBF16(values)) : widenF16(narrowF16(values)) }
            : { dtype, shape, data: half };
        }
        const folder = join(dir, `${tag}-${name}`);
        mkdirSync(folder, { recursive: true });
        copyFileSync(join(srcDir, 'config.json'), join(folder, 'config.json'));
        saveSafetensors(join(folder, 'diffusion_pytorch_model.safetensors'), tensors);
        return folder;
      };
      const model = await UNetMotionModel.fromUnet2d(write(unetDir, 'unet'), await MotionAdapter.fromPretrained(write(adapterDir, 'adapter')));
      try {
        return (await model.forward(sample, 321, ehs)).data;
      } finally {
        model.dispose();
      }
    }
    for (const half of ['F16', 'BF16'] as const) {
      const fromHalf = await run(half.toLowerCase(), half);
      const fromWidened = await run(`widened-${half.toLowerCase()}`, 'F32');
      assert.ok(fromHalf.every(Number.isFinite));
      assert.deepEqual(fromHalf, fromWidened, `${half} weights`);
    }
  });

  test('a truncated weight file is E_WEIGHTS_CORRUPT naming the file', async () => {
    const folder = join(dir, 'truncated');
    mkdirSync(folder, { recursive: true });
    copyFileSync(join(unetDir, 'config.json'), join(folder, 'config.json'));
    const bytes = readFileSync(unetWeights);
    const file = join(folder, 'diffusion_pytorch_model.safetensors');
    writeFileSync(file, bytes.subarray(0, bytes.length - 1000));
    const err = await loadError(folder);
    assert.equal(err.code, 'E_WEIGHTS_CORRUPT');
    assert.equal(err.file, file);
  });

  test('a missing key is E_WEIGHTS_MISMATCH naming it', async () => {
    const key = 'up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight';
    const folder = brokenUnet('missing', (t) => t.delete(key));
    const err = await loadError(folder);
    assert.equal(err.code, 'E_WEIGHTS_MISMATCH');
    assert.equal(err.key, key);
  });

  test('a wrong shape is E_WEIGHTS_MISMATCH naming the key', async () => {
    const key = 'down_blocks.1.resnets.0.conv1.weight';
    const folder = brokenUnet('shape', (t) => {
      const w = t.get(key)!;
      t.set(key, { dtype: 'F32', shape: [w.shape[0], w.shape[1], 1, 9], data: w.data });
    });
    const err = await loadError(folder);
    assert.equal(err.code, 'E_WEIGHTS_MISMATCH');
    assert.equal(err.key, key);
  });

  test('an unexpected key is E_WEIGHTS_MISMATCH naming it', async () => {
    const key = 'class_embedding.linear_1.weight';
    const folder = brokenUnet('unexpected', (t) => t.set(key, { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }));
    const err = await loadError(folder);
    assert.equal(err.code, 'E_WEIGHTS_MISMATCH');
    assert.equal(err.key, key);
  });
});
