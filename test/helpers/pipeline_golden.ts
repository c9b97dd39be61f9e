// The runs of ../shared/fixtures/golden/pipeline as PIAPipeline calls: the CPU parity suite and the
// GPU suite replay them the same way (scheduler, FreeU, FreeInit, then generate with the run's
// arguments), recording the latents after every step.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { parseConfigJson } from '../../lib/config_json.js';
import type { PIAPipeline } from '../../lib/pipelines/pia.js';
import { Generator } from '../../lib/random/generator.js';
import { schedulerFromConfig } from '../../lib/schedulers/index.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from './fixtures.js';

export interface GoldenCall {
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

export interface GoldenRun {
  call: GoldenCall;
  scheduler: { cls: string; config: Record<string, unknown> };
  free_init: null | { num_iters: number; use_fast_sampling: boolean; method: 'butterworth' | 'gaussian' | 'ideal'; order: number; spatial_stop_frequency: number; temporal_stop_frequency: number; generator: string };
  freeu: null | { s1: number; s2: number; b1: number; b2: number };
  tensors: Record<string, { shape: number[] }>;
}

/** The seed of a generator description such as `torch.Generator('cpu').manual_seed(42)`. */
export function seedOf(desc: string): bigint {
  const m = /manual_seed\((\d+)\)/.exec(desc);
  assert.ok(m, `cannot read the seed from ${desc}`);
  return BigInt(m[1]);
}

export function readGoldenRun(file: string): GoldenRun {
  return parseConfigJson(readFileSync(fixture(`golden/pipeline/${file}.json`), 'utf8')) as GoldenRun;
}

/**
 * Replays `run` on `pipe`: its output (frames as a [B, F, H, W, 3] tensor in [0, 1], or the final
 * latents for output_type 'latent') and the latents after every step.
 */
export async function replayGoldenRun(pipe: PIAPipeline, run: GoldenRun): Promise<{ output: Tensor; steps: Tensor[] }> {
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
  return { output: out.frames as Tensor, steps };
}
