// Seconds per denoising step of the whole PIAPipeline on the mini-sd fixture family (CPU), the
// figure issue 4 asks for. Not a test: run by hand,
//   node --import tsx bench/pipeline_step_time.ts [frames=8] [size=64] [steps=8]
// The step time is the mean of onStepEnd intervals after the first step (the first one includes the
// prompt and image encodings); the whole run, with VAE decode, is reported too.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { MotionAdapter } from '../lib/models/motion_adapter.js';
import { PIAPipeline } from '../lib/pipelines/pia.js';
import { Generator } from '../lib/random/generator.js';
import { backends } from '../lib/backends.js';
import { fixturesDir, repoRoot } from '../test/helpers/fixtures.js';

const frames = Number(process.argv[2] ?? 8);
const size = Number(process.argv[3] ?? 64);
const steps = Number(process.argv[4] ?? 8);

const motionAdapter = await MotionAdapter.fromPretrained(join(fixturesDir, 'models', 'mini-sd-motion-adapter'));
const pipe = await PIAPipeline.fromPretrained(join(fixturesDir, 'models', 'mini-sd'), { motionAdapter, device: 'cpu' });

const stamps: number[] = [];
const t0 = performance.now();
await pipe.generate({
  image: join(repoRoot, 'assets', 'demo-input.png'),
  prompt: 'a ball rolling on the grass',
  negativePrompt: 'low quality',
  numFrames: frames,
  height: size,
  width: size,
  numInferenceSteps: steps,
  guidanceScale: 7.5,
  generator: new Generator().manualSeed(0),
  outputType: 'tensor',
  onStepEnd: () => {
    stamps.push(performance.now());
  },
});
const total = (performance.now() - t0) / 1e3;
pipe.dispose();

const intervals = stamps.slice(1).map((t, i) => (t - stamps[i]) / 1e3);
const perStep = intervals.reduce((a, b) => a + b, 0) / Math.max(intervals.length, 1);
const load = (await import('node:os')).loadavg()[0];
console.log(
  `mini-sd PIAPipeline, ${frames} frames ${size}x${size}, ${steps} steps DDIM, CFG, ${backends().cpu.threads} threads ` +
    `(load average ${load.toFixed(1)}): ${perStep.toFixed(3)} s/step, ${total.toFixed(2)} s in all`,
);
