// Every run in ../shared/fixtures/golden/pipeline through our PIAPipeline, against what diffusers
// v0.26.3 produced: final latents (and per-step latents where recorded), frames.
import { describe, test, before, after } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { fixture } from '../helpers/fixtures.js';
import { assertClose } from '../helpers/compare.js';
import { readGoldenRun, replayGoldenRun } from '../helpers/pipeline_golden.js';

// Tolerances from the fixtures README: the random UNet is not a denoiser, so latents grow to
// std ~7-10 and float32 op-order noise grows with them; frames pass through the decoder.
const LATENT_ATOL = 1e-3, LATENT_RTOL = 1e-4, FRAME_ATOL = 1e-3;

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
        const run = readGoldenRun(file);
        const golden = readSafetensors(fixture(`golden/pipeline/${file}.safetensors`));
        const c = run.call;
        const { output: frames, steps } = await replayGoldenRun(pipe, run);
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
