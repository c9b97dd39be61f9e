// AutoencoderKL against diffusers v0.26.3 on both fixture families: encode (mean, logvar, std, the
// seeded sample), decode, and the sliced and tiled paths; plus the load errors of a broken folder.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { narrowBF16, widenBF16 } from '../../lib/io/float16.js';
import { readSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { AutoencoderKL } from '../../lib/models/autoencoder_kl.js';
import { Generator } from '../../lib/random/generator.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

// float32 op-order noise only. The fixtures measured the VAE decode's fp32-vs-fp64 difference at
// 3.5e-6 (tiny) / 1.1e-5 (mini-sd) on outputs of magnitude ~1-3, and slicing alone (a different
// batch in the same convolutions) moves it by up to 2.2e-5. 1e-4 of the largest reference
// magnitude sits above that and far below any real bug (tiling vs no tiling differs by 0.4-2.7).
const REL_TOL = 1e-4;

function assertClose(actual: Tensor, expected: { shape: number[]; toFloat32(): Float32Array } | Tensor, what: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const ref = 'toFloat32' in expected ? expected.toFloat32() : expected.data;
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

function tensorOf(golden: ReturnType<typeof readSafetensors>, name: string): Tensor {
  const t = golden.get(name);
  return { data: t.toFloat32(), shape: t.shape };
}

// x[:, :, :h, :w] of an NCHW tensor.
function crop(x: Tensor, h: number, w: number): Tensor {
  const [n, c, H, W] = x.shape;
  const out = new Float32Array(n * c * h * w);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) out.set(x.data.subarray((p * H + y) * W, (p * H + y) * W + w), (p * h + y) * w);
  }
  return { data: out, shape: [n, c, h, w] };
}

for (const fam of ['tiny', 'mini-sd'] as const) {
  describe(`AutoencoderKL parity (${fam})`, () => {
    let vae: AutoencoderKL;
    const golden = readSafetensors(fixture('golden', 'components', `${fam}_vae.safetensors`));
    const tiled = readSafetensors(fixture('golden', 'components', `${fam}_vae_tiled.safetensors`));

    before(async () => {
      vae = await AutoencoderKL.fromPretrained(fixture('models', fam, 'vae'));
    });
    after(() => vae.dispose());

    test('config', () => {
      const meta = JSON.parse(readFileSync(fixture('golden', 'components', `${fam}_vae.json`), 'utf8'));
      assert.equal(vae.config.scaling_factor, meta.scaling_factor);
      assert.equal(vae.config.scalingFactor, meta.scaling_factor);
      assert.equal(vae.scaleFactor, meta.vae_scale_factor);
    });

    test('encode: mean, logvar, std and the seeded sample', async () => {
      const dist = await vae.encode(tensorOf(golden, 'image'));
      assertClose(dist.mean, golden.get('mean'), 'mean');
      assertClose(dist.logvar, golden.get('logvar'), 'logvar');
      assertClose(dist.std, golden.get('std'), 'std');
      // latent_dist.sample(torch.Generator().manual_seed(12))
      assertClose(dist.sample(new Generator().manualSeed(12)), golden.get('sample_seeded'), 'sample_seeded');
      assertClose(dist.sample([new Generator().manualSeed(12)]), golden.get('sample_seeded'), 'sample_seeded (list of one)');
      assert.throws(() => dist.sample([new Generator(), new Generator()]), { code: 'E_INVALID_ARGUMENT' });
    });

    test('decode', async () => {
      assertClose(await vae.decode(tensorOf(golden, 'decode_input')), golden.get('decode_output'), 'decode_output');
    });

    test('untiled encode/decode of the larger inputs; slicing', async () => {
      const x = tensorOf(tiled, 'encode_input');
      const dist = await vae.encode(x);
      assertClose(dist.mean, tiled.get('encode_mean'), 'encode_mean');
      assertClose(dist.logvar, tiled.get('encode_logvar'), 'encode_logvar');
      const z = tensorOf(tiled, 'decode_input');
      assertClose(await vae.decode(z), tiled.get('decode_output'), 'decode_output');
      vae.enableSlicing();
      try {
        assertClose(await vae.decode(z), tiled.get('sliced_decode_output'), 'sliced_decode_output');
      } finally {
        vae.disableSlicing();
      }
      // A signal stops a running call between blocks (the native side polls a cancel token).
      for (const slicing of [false, true]) {
        if (slicing) vae.enableSlicing();
        try {
          const ac = new AbortController();
          const pending = vae.decode(z, { signal: ac.signal });
          ac.abort();
          await assert.rejects(pending, { name: 'AbortError' });
        } finally {
          vae.disableSlicing();
        }
      }
      const aborted = AbortSignal.abort();
      await assert.rejects(vae.encode(x, { signal: aborted }), { name: 'AbortError' });
    });

    test('tiled encode and decode (diffusers tiled_encode / tiled_decode)', async () => {
      vae.enableTiling();
      try {
        const dist = await vae.encode(tensorOf(tiled, 'encode_input'));
        assertClose(dist.mean, tiled.get('tiled_encode_mean'), 'tiled_encode_mean');
        assertClose(dist.logvar, tiled.get('tiled_encode_logvar'), 'tiled_encode_logvar');
        assertClose(await vae.decode(tensorOf(tiled, 'decode_input')), tiled.get('tiled_decode_output'), 'tiled_decode_output');
      } finally {
        vae.disableTiling();
      }
    });

    test('tiling applies only to inputs larger than a tile (AutoencoderKL._decode)', async () => {
      // tile_latent_min_size = sample_size / vae_scale_factor; a latent of exactly that size is
      // decoded in one piece, one column more is tiled.
      const t = (vae.config.sample_size as number) / vae.scaleFactor;
      const z = tensorOf(tiled, 'decode_input');
      const plainAt = async (w: number) => {
        const c = crop(z, t, w);
        vae.disableTiling();
        const plain = await vae.decode(c);
        vae.enableTiling();
        try {
          return { plain, tiledOut: await vae.decode(c) };
        } finally {
          vae.disableTiling();
        }
      };
      const fits = await plainAt(t);
      assert.deepEqual(fits.tiledOut.data, fits.plain.data);
      const over = await plainAt(t + 1);
      assert.notDeepEqual(over.tiledOut.data, over.plain.data);
    });

    test('bad inputs are E_INVALID_ARGUMENT', async () => {
      await assert.rejects(vae.decode({ data: new Float32Array(3 * 4), shape: [1, 3, 2, 2] }), { code: 'E_INVALID_ARGUMENT' });
      await assert.rejects(vae.encode({ data: new Float32Array(4), shape: [1, 4] }), { code: 'E_INVALID_ARGUMENT' });
    });
  });
}

describe('AutoencoderKL load errors', () => {
  const src = fixture('models', 'tiny', 'vae');
  const srcWeights = join(src, 'diffusion_pytorch_model.safetensors');

  function folder(name: string): string {
    const dir = join(tempDir('pia-vae-'), name);
    mkdirSync(dir);
    copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
    return dir;
  }

  type Raw = { dtype: any; shape: number[]; data: any };
  function rewrite(dir: string, edit: (tensors: Record<string, Raw>) => void): void {
    const f = readSafetensors(srcWeights);
    const tensors: Record<string, Raw> = {};
    for (const n of f.names()) {
      const t = f.get(n);
      tensors[n] = { dtype: t.dtype, shape: t.shape, data: t.data };
    }
    f.close();
    edit(tensors);
    saveSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), tensors);
  }

  test('a missing weight file is E_MODEL_NOT_FOUND saying where it looked', async () => {
    await assert.rejects(AutoencoderKL.fromPretrained(folder('empty')), (e: any) => {
      assert.equal(e.code, 'E_MODEL_NOT_FOUND');
      assert.match(e.message, /diffusion_pytorch_model\.safetensors/);
      return true;
    });
  });

  test('a truncated weight file is E_WEIGHTS_CORRUPT', async () => {
    const dir = folder('truncated');
    const dst = join(dir, 'diffusion_pytorch_model.safetensors');
    copyFileSync(srcWeights, dst);
    truncateSync(dst, statSync(srcWeights).size - 4096);
    await assert.rejects(AutoencoderKL.fromPretrained(dir), { code: 'E_WEIGHTS_CORRUPT' });
  });

  test('a missing key is E_WEIGHTS_MISMATCH naming it', async () => {
    const dir = folder('missing');
    const key = 'decoder.mid_block.attentions.0.to_v.bias';
    rewrite(dir, (t) => delete t[key]);
    await assert.rejects(AutoencoderKL.fromPretrained(dir), { code: 'E_WEIGHTS_MISMATCH', key });
  });

  test('a wrong shape is E_WEIGHTS_MISMATCH naming the key', async () => {
    const dir = folder('shape');
    const key = 'encoder.down_blocks.1.resnets.0.conv1.weight';
    rewrite(dir, (t) => {
      t[key] = { dtype: 'F32', shape: [64, 32, 1, 1], data: new Float32Array(64 * 32) };
    });
    await assert.rejects(AutoencoderKL.fromPretrained(dir), { code: 'E_WEIGHTS_MISMATCH', key });
  });

  test('old attention key names (query/key/value/proj_attn) load like diffusers converts them; BF16 weights', async () => {
    const renamed = folder('deprecated');
    const names: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
    rewrite(renamed, (t) => {
      for (const k of Object.keys(t)) {
        const m = /^(.*\.mid_block\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)(\.(weight|bias))$/.exec(k);
        if (!m) continue;
        t[m[1] + names[m[2]] + m[3]] = t[k];
        delete t[k];
      }
    });
    const bf16 = folder('bf16');
    const bf16AsF32 = folder('bf16-as-f32');
    const narrowed: Record<string, Uint16Array> = {};
    rewrite(bf16, (t) => {
      for (const [k, v] of Object.entries(t)) {
        narrowed[k] = narrowBF16(v.data as Float32Array);
        t[k] = { dtype: 'BF16', shape: v.shape, data: narrowed[k] };
      }
    });
    rewrite(bf16AsF32, (t) => {
      for (const [k, v] of Object.entries(t)) t[k] = { dtype: 'F32', shape: v.shape, data: widenBF16(narrowed[k]) };
    });
    const golden = readSafetensors(fixture('golden', 'components', 'tiny_vae.safetensors'));
    const z = crop(tensorOf(golden, 'decode_input'), 8, 8);
    const models = await Promise.all([src, renamed, bf16, bf16AsF32].map((d) => AutoencoderKL.fromPretrained(d)));
    try {
      const [ref, old, b16, b16f32] = await Promise.all(models.map((m) => m.decode(z)));
      assert.deepEqual(old.data, ref.data);
      assertClose(b16, b16f32, 'bf16 decode');
      assert.notDeepEqual(b16f32.data, ref.data);
    } finally {
      for (const m of models) m.dispose();
    }
  });

  test('an unsupported block type is E_UNSUPPORTED', async () => {
    const dir = folder('attn');
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, down_block_types: ['AttnDownEncoderBlock2D', 'DownEncoderBlock2D'] }));
    copyFileSync(srcWeights, join(dir, 'diffusion_pytorch_model.safetensors'));
    await assert.rejects(AutoencoderKL.fromPretrained(dir), { code: 'E_UNSUPPORTED', key: 'down_block_types' });
  });
});
