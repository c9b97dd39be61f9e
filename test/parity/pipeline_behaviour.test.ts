// diffusers' generic pipeline behaviours, on the tiny family: a batch equals its items run singly,
// FreeInit changes the result and disabling it restores it exactly, VAE slicing/tiling do not
// change the frames beyond float noise; and every option is validated before any work.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { PIAPipeline, type PIAGenerateOptions } from '../../lib/pipelines/pia.js';
import { Generator } from '../../lib/random/generator.js';
import { PiaError } from '../../lib/errors.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';
import { assertClose, maxDiff } from '../helpers/compare.js';

describe('PIAPipeline behaviours (tiny)', () => {
  let pipe: PIAPipeline;
  const image = fixture('golden/pipeline/input_64x64.png');
  const base = (o: Partial<PIAGenerateOptions> = {}): PIAGenerateOptions => ({
    image, prompt: 'a red ball', negativePrompt: 'blurry', numFrames: 4, height: 32, width: 32,
    numInferenceSteps: 3, generator: new Generator().manualSeed(5), outputType: 'tensor', ...o,
  });
  before(async () => {
    const motionAdapter = await MotionAdapter.fromPretrained(fixture('models/tiny-motion-adapter'));
    pipe = await PIAPipeline.fromPretrained(fixture('models/tiny'), { motionAdapter });
  });
  after(() => pipe?.dispose());

  test('a batch of two prompts equals the two prompts run singly (given the same starting latents)', async () => {
    // With one generator the batch draws its latents in one randn call; hand each run the same
    // latents so only the batching differs, as diffusers' test_inference_batch_single_identical does.
    const latents = new Generator().manualSeed(11).randn([2, 4, 4, 16, 16]);
    const half = latents.data.length / 2;
    const batch = (await pipe.generate(base({ prompt: ['a red ball', 'a blue cube'], negativePrompt: ['blurry', 'dark'], latents, outputType: 'latent', generator: new Generator().manualSeed(3) }))).frames as Tensor;
    for (const [k, p, n] of [[0, 'a red ball', 'blurry'], [1, 'a blue cube', 'dark']] as const) {
      const single = (await pipe.generate(base({
        prompt: p, negativePrompt: n, outputType: 'latent', generator: new Generator().manualSeed(3),
        latents: { data: latents.data.slice(k * half, (k + 1) * half), shape: [1, 4, 4, 16, 16] },
      }))).frames as Tensor;
      // Same math on a different batch size: only float32 op-order noise may differ.
      assertClose(batch.data.subarray(k * half, (k + 1) * half), single.data, 1e-4, 1e-4, `batch item ${k}`);
    }
  });

  test('FreeInit changes the output; disabling it gives the plain run back exactly', async () => {
    const plain = (await pipe.generate(base())).frames as Tensor;
    pipe.enableFreeInit({ numIters: 2, generator: new Generator().manualSeed(9) });
    const withFreeInit = (await pipe.generate(base())).frames as Tensor;
    pipe.disableFreeInit();
    const again = (await pipe.generate(base())).frames as Tensor;
    assert.ok(maxDiff(withFreeInit.data, plain.data).diff > 1e-3, 'FreeInit must change the frames');
    assert.deepEqual(again.data, plain.data);
  });

  test('VAE slicing and tiling give the same frames as the plain decoder', async () => {
    const plain = (await pipe.generate(base({ height: 64, width: 64 }))).frames as Tensor;
    pipe.enableVaeSlicing();
    const sliced = (await pipe.generate(base({ height: 64, width: 64 }))).frames as Tensor;
    pipe.disableVaeSlicing();
    pipe.enableVaeTiling();
    const tiled = (await pipe.generate(base({ height: 64, width: 64 }))).frames as Tensor;
    pipe.disableVaeTiling();
    assertClose(sliced.data, plain.data, 1e-5, 0, 'sliced');
    // Tiling blends overlapping tiles, so it is not the same computation: diffusers' own test
    // accepts a visible difference. Tiles of the tiny VAE (sample_size 32) overlap by 25%.
    const { diff } = maxDiff(tiled.data, plain.data);
    assert.ok(diff < 0.5, `tiled frames differ by ${diff}`);
  });

  test('a decode that runs out of memory is retried one frame at a time, with the same frames', async () => {
    const plain = (await pipe.generate(base())).frames as Tensor;
    // What a GPU without room for the whole batch does: the full-batch decode fails with E_OUT_OF_MEMORY.
    const vae = pipe.vae;
    const decode = vae.decode.bind(vae);
    const calls: (boolean | undefined)[] = [];
    vae.decode = async (z, options) => {
      calls.push(options?.slicing);
      if (!options?.slicing) throw new PiaError('E_OUT_OF_MEMORY', 'cuda allocation: CUDA out of memory (test)');
      return decode(z, options);
    };
    try {
      const retried = (await pipe.generate(base())).frames as Tensor;
      assert.deepEqual(calls, [undefined, true]);
      assertClose(retried.data, plain.data, 1e-5, 0, 'frames decoded one at a time');
      assert.equal(vae.useSlicing, false, "the model's own slicing setting is left as it was");
      // Any other error is not retried.
      vae.decode = async () => { throw new PiaError('E_BACKEND', 'broken (test)'); };
      await assert.rejects(pipe.generate(base()), (e: unknown) => e instanceof PiaError && e.code === 'E_BACKEND');
    } finally {
      vae.decode = decode;
    }
  });

  test('onStepEnd may replace the latents; onProgress counts the steps', async () => {
    const seen: number[] = [];
    const out = (await pipe.generate(base({
      outputType: 'latent',
      onStepEnd: (i, _t, { latents }) => (i === 2 ? { latents: { data: new Float32Array(latents.data.length).fill(0.25), shape: latents.shape } } : undefined),
      onProgress: (p) => seen.push(p.step),
    }))).frames as Tensor;
    assert.ok(out.data.every((v) => v === 0.25));
    assert.deepEqual(seen, [1, 2, 3]);
  });

  test('an aborted signal rejects with AbortError between steps', async () => {
    const ac = new AbortController();
    await assert.rejects(
      pipe.generate(base({ signal: ac.signal, onStepEnd: (i) => { if (i === 0) ac.abort(); } })),
      (e: unknown) => e instanceof DOMException && e.name === 'AbortError',
    );
    // The pipeline is still usable afterwards.
    await pipe.generate(base({ numInferenceSteps: 1 }));
  });

  test('bad options are typed errors before any work', async () => {
    const bad: Array<[Partial<PIAGenerateOptions>, string]> = [
      [{ height: 30 }, 'height'],
      [{ width: 0 }, 'width'],
      [{ motionScale: 9 }, 'motionScale'],
      [{ motionScale: 1.5 }, 'motionScale'],
      [{ numFrames: 33 }, 'numFrames'],
      [{ numFrames: 0 }, 'numFrames'],
      [{ strength: 1.5 }, 'strength'],
      [{ strength: 0 }, 'strength'],
      [{ numInferenceSteps: 0 }, 'numInferenceSteps'],
      [{ promptEmbeds: { data: new Float32Array(77 * 32), shape: [1, 77, 32] } }, 'prompt'],
      [{ prompt: undefined }, 'prompt'],
      [{ prompt: undefined, negativePrompt: undefined, promptEmbeds: { data: new Float32Array(77 * 32), shape: [1, 77, 32] }, negativePromptEmbeds: { data: new Float32Array(76 * 32), shape: [1, 76, 32] } }, 'negativePromptEmbeds'],
      [{ negativePrompt: ['a', 'b'] }, 'negativePrompt'],
      [{ negativePromptEmbeds: { data: new Float32Array(77 * 32), shape: [1, 77, 32] } }, 'negativePrompt'],
      [{ outputType: 'pil' as 'frames' }, 'outputType'],
      [{ clipSkip: 5 }, 'clipSkip'],
      [{ latents: { data: new Float32Array(4), shape: [1, 1, 1, 2, 2] } }, 'latents'],
    ];
    for (const [o, option] of bad) {
      await assert.rejects(pipe.generate(base(o)), (e: unknown) => {
        assert.ok(e instanceof PiaError, `${JSON.stringify(Object.keys(o))}: ${e}`);
        assert.equal(e.code, 'E_INVALID_ARGUMENT', e.message);
        assert.equal(e.option, option, e.message);
        return true;
      });
    }
    await assert.rejects(pipe.generate(base({ image: fixture('README.md') })), (e: unknown) => e instanceof PiaError && e.code === 'E_IMAGE');
  });
});
