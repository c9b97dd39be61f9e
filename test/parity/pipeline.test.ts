// Every run in ../shared/fixtures/golden/pipeline through our PIAPipeline, against what diffusers
// v0.26.3 produced: final latents (and per-step latents where recorded), frames.
import { describe, test, before, after } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import { Generator } from '../../lib/random/generator.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { schedulerFromConfig } from '../../lib/schedulers/index.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';
import { assertClose } from '../helpers/compare.js';
import { parseConfigJson } from '../../lib/config_json.js';

// Tolerances from the fixtures README: the random UNet is not a denoiser, so latents grow to
// std ~7-10 and float32 op-order noise grows with them; frames pass through the decoder.
const LATENT_ATOL = 1e-3, LATENT_RTOL = 1e-4, FRAME_ATOL = 1e-3;

interface GoldenCall {
  prompt: string | string[];
  negative_prompt: string | string[] | null;
  strength: number;
  num_frames: number;
  height: number;
  width: number;
  num_inference_steps: number;
  guidance_scale: number;
  num_videos_per_prompt: number;
  eta: number;
  generator: string;
  motion_scale: number;
  output_type: 'np' | 'latent';
  clip_skip: number | null;
  image: string;
}

interface GoldenRun {
  call: GoldenCall;
  scheduler: { cls: string; config: Record<string, unknown> };
  free_init: null | { num_iters: number; use_fast_sampling: boolean; method: 'butterworth' | 'gaussian' | 'ideal'; order: number; spatial_stop_frequency: number; temporal_stop_frequency: number; generator: string };
  freeu: null | { s1: number; s2: number; b1: number; b2: number };
  tensors: Record<string, { shape: number[] }>;
}

function seedOf(desc: string): bigint {
  const m = /manual_seed\((\d+)\)/.exec(desc);
  assert.ok(m, `cannot read the seed from ${desc}`);
  return BigInt(m[1]);
}

for (const family of ['tiny', 'mini-sd'] as const) {
  const index = JSON.parse(readFileSync(fixture(`golden/pipeline/index_${family}.json`), 'utf8')) as Array<{ file: string }>;
  describe(`PIAPipeline parity: ${family}`, () => {
    let pipe: PIAPipeline;
    before(async () => {
      const motionAdapter = await MotionAdapter.fromPretrained(fixture(`models/${family}-motion-adapter`));
      pipe = await PIAPipeline.fromPretrained(fixture(`models/${family}`), { motionAdapter });
    });
    after(() => pipe?.dispose());

    for (const { file } of index) {
      test(file, { timeout: 600_000 }, async () => {
        const run = parseConfigJson(readFileSync(fixture(`golden/pipeline/${file}.json`), 'utf8')) as GoldenRun;
        const golden = readSafetensors(fixture(`golden/pipeline/${file}.safetensors`));
        const c = run.call;
        pipe.scheduler = schedulerFromConfig(run.scheduler.config, run.scheduler.cls);
        if (run.freeu) pipe.enableFreeU(run.freeu);
        else pipe.disableFreeU();
        if (run.free_init) {
          const f = run.free_init;
          pipe.enableFreeInit({
            numIters: f.num_iters, useFastSampling: f.use_fast_sampling, method: f.method, order: f.order,
            spatialStopFrequency: f.spatial_stop_frequency, temporalStopFrequency: f.temporal_stop_frequency,
            generator: new Generator().manualSeed(seedOf(f.generator)),
          });
        } else {
          pipe.disableFreeInit();
        }
        const steps: Tensor[] = [];
        const out = await pipe.generate({
          image: fixture(c.image.split(' ')[0]),
          prompt: c.prompt,
          negativePrompt: c.negative_prompt ?? undefined,
          strength: c.strength,
          numFrames: c.num_frames,
          height: c.height,
          width: c.width,
          numInferenceSteps: c.num_inference_steps,
          guidanceScale: c.guidance_scale,
          numVideosPerPrompt: c.num_videos_per_prompt,
          eta: c.eta,
          generator: new Generator().manualSeed(seedOf(c.generator)),
          motionScale: c.motion_scale,
          clipSkip: c.clip_skip ?? undefined,
          outputType: c.output_type === 'latent' ? 'latent' : 'tensor',
          onStepEnd: (_i, _t, { latents }) => {
            steps.push({ data: Float32Array.from(latents.data), shape: [...latents.shape] });
          },
        });
        const frames = out.frames as Tensor;
        for (const name of golden.names().filter((n) => /^step\d+_latents$/.test(n))) {
          const i = Number(/\d+/.exec(name)![0]);
          assert.ok(steps[i], `${name}: only ${steps.length} steps ran`);
          assertClose(steps[i].data, golden.get(name).toFloat32(), LATENT_ATOL, LATENT_RTOL, name);
        }
        const finalLatents = steps[steps.length - 1];
        assert.deepEqual(finalLatents.shape, golden.info('final_latents').shape);
        assertClose(finalLatents.data, golden.get('final_latents').toFloat32(), LATENT_ATOL, LATENT_RTOL, 'final_latents');
        if (c.output_type === 'latent') {
          assert.deepEqual(frames.shape, golden.info('latent_output').shape);
          assertClose(frames.data, golden.get('latent_output').toFloat32(), LATENT_ATOL, LATENT_RTOL, 'latent_output');
        } else {
          assert.deepEqual(frames.shape, golden.info('frames').shape);
          assertClose(frames.data, golden.get('frames').toFloat32(), FRAME_ATOL, 0, 'frames');
        }
        golden.close();
      });
    }
  });
}
