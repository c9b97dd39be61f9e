// The tiny fixture family's PIAPipeline on CUDA: in float32 against diffusers' goldens at the CPU
// parity tolerances, in float16/bfloat16 against our own CPU run (frames PSNR ≥ 40 dB), never a NaN
// or a black frame; 'auto' picks the GPU; model CPU offload changes nothing in the result.
// Skipped, with the reason, where CUDA is unusable (no driver, no GPU, a build without CUDA).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends } from '../../lib/backends.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { UNetMotionModel } from '../../lib/models/unet_motion_model.js';
import { AutoencoderKL } from '../../lib/models/autoencoder_kl.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import type { PipelineDtype } from '../../lib/loaders/device_options.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';
import { readGoldenRun, replayGoldenRun, type GoldenRun } from '../helpers/pipeline_golden.js';
import { assertClose } from '../helpers/compare.js';

const LATENT_ATOL = 1e-3, LATENT_RTOL = 1e-4, FRAME_ATOL = 1e-3;
const MIN_PSNR_DB = 40;

const cuda = backends().cuda;
const skip = cuda.available ? false : `no usable GPU: ${cuda.reason ?? 'CUDA unavailable'}`;

// A golden run replayed on `pipe` (test/helpers/pipeline_golden.ts): frames and final latents.
async function runGolden(pipe: PIAPipeline, run: GoldenRun): Promise<{ frames: Tensor; latents: Tensor }> {
  const { output, steps } = await replayGoldenRun(pipe, run);
  return { frames: output, latents: steps[steps.length - 1] };
}

const readRun = readGoldenRun;

/** PSNR of frames in [0, 1]. */
function psnr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10(1 / mse);
}

// Every value finite, and no frame of one colour (a VAE that overflowed decodes to black or NaN).
function assertSaneFrames(frames: Tensor, what: string): void {
  const [B, F, H, W, C] = frames.shape;
  const per = H * W * C;
  for (let i = 0; i < frames.data.length; i++) {
    if (!Number.isFinite(frames.data[i])) assert.fail(`${what}: element ${i} is ${frames.data[i]}`);
  }
  for (let f = 0; f < B * F; f++) {
    let lo = Infinity, hi = -Infinity, sum = 0;
    for (let i = f * per; i < (f + 1) * per; i++) {
      lo = Math.min(lo, frames.data[i]);
      hi = Math.max(hi, frames.data[i]);
      sum += frames.data[i];
    }
    assert.ok(hi - lo > 1e-3 && sum / per > 1e-3, `${what}: frame ${f} is flat (min ${lo}, max ${hi}, mean ${sum / per})`);
  }
}

describe('PIAPipeline on CUDA (tiny family)', { skip }, () => {
  let motionAdapter: MotionAdapter;
  before(async () => {
    motionAdapter = await MotionAdapter.fromPretrained(fixture('models/tiny-motion-adapter'));
  });

  describe('float32 against the diffusers goldens', () => {
    let pipe: PIAPipeline;
    before(async () => {
      pipe = await PIAPipeline.fromPretrained(fixture('models/tiny'), { motionAdapter, device: 'cuda', dtype: 'float32' });
    });
    after(() => pipe?.dispose());

    for (const file of ['tiny_ddim_cfg1', 'tiny_euler', 'tiny_freeu', 'tiny_ddim_default_trace']) {
      test(file, { timeout: 600_000 }, async () => {
        const golden = readSafetensors(fixture(`golden/pipeline/${file}.safetensors`));
        const { frames, latents } = await runGolden(pipe, readRun(file));
        assertClose(latents.data, golden.get('final_latents').toFloat32(), LATENT_ATOL, LATENT_RTOL, 'final_latents');
        assertClose(frames.data, golden.get('frames').toFloat32(), FRAME_ATOL, 0, 'frames');
        assertSaneFrames(frames, file);
        golden.close();
      });
    }
  });

  describe('float16 and bfloat16 against the CPU', () => {
    const file = 'tiny_ddim_cfg1';
    let reference: Tensor;
    before(async () => {
      const cpu = await PIAPipeline.fromPretrained(fixture('models/tiny'), { motionAdapter, device: 'cpu' });
      try {
        reference = (await runGolden(cpu, readRun(file))).frames;
      } finally {
        cpu.dispose();
      }
    });

    for (const dtype of ['float16', 'bfloat16'] as PipelineDtype[]) {
      test(`${dtype}: frames PSNR ≥ ${MIN_PSNR_DB} dB, no NaN or black frame`, { timeout: 600_000 }, async () => {
        const pipe = await PIAPipeline.fromPretrained(fixture('models/tiny'), { motionAdapter, device: 'cuda:0', dtype });
        try {
          assert.equal((pipe.unet as UNetMotionModel).placement.dtype, dtype);
          // SD-1.5's VAE overflows in float16: the pipeline keeps it in float32 (force_upcast).
          assert.equal((pipe.vae as AutoencoderKL).placement.dtype, dtype === 'float16' ? 'float32' : dtype);
          const { frames } = await runGolden(pipe, readRun(file));
          assertSaneFrames(frames, dtype);
          const db = psnr(frames.data, reference.data);
          assert.ok(db >= MIN_PSNR_DB, `${dtype}: PSNR ${db.toFixed(1)} dB against the CPU`);
        } finally {
          pipe.dispose();
        }
      });
    }
  });

  test("'auto' places every network on the GPU", async () => {
    const saved = process.env.PIA_DEVICE;
    delete process.env.PIA_DEVICE;
    try {
      const pipe = await PIAPipeline.fromPretrained(fixture('models/tiny'), { motionAdapter });
      try {
        assert.equal((pipe.unet as UNetMotionModel).placement.device, 'cuda:0');
        assert.equal((pipe.vae as AutoencoderKL).placement.device, 'cuda:0');
      } finally {
        pipe.dispose();
      }
    } finally {
      if (saved !== undefined) process.env.PIA_DEVICE = saved;
    }
  });

  test('enableModelCpuOffload gives the same video', { timeout: 600_000 }, async () => {
    const file = 'tiny_ddim_cfg1';
    const pipe = await PIAPipeline.fromPretrained(fixture('models/tiny'), { motionAdapter, device: 'cuda', dtype: 'float32' });
    try {
      const plain = await runGolden(pipe, readRun(file));
      pipe.enableModelCpuOffload();
      const offloaded = await runGolden(pipe, readRun(file));
      assertClose(offloaded.frames.data, plain.frames.data, 1e-5, 0, 'frames with model CPU offload');
      // A second job: every network has been moved out and back at least once.
      const again = await runGolden(pipe, readRun(file));
      assertClose(again.frames.data, plain.frames.data, 1e-5, 0, 'frames of a second job with offload');
    } finally {
      pipe.dispose();
    }
  });
});
