// LoRA (kohya and diffusers files) against diffusers v0.26.3 goldens (../shared/fixtures/loaders/golden/
// lora_components, lora_pipeline_ddim3), plus the loader behaviours: per-call scales, fuse/unfuse, unload,
// save → load, key errors.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PiaError } from '../../lib/errors.js';
import { readSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { MotionAdapter } from '../../lib/models/motion_adapter.js';
import { CLIPTextModel } from '../../lib/models/clip_text_model.js';
import { UNetMotionModel } from '../../lib/models/unet_motion_model.js';
import { PIAPipeline } from '../../lib/pipelines/pia.js';
import { Generator } from '../../lib/random/generator.js';
import { schedulerFromConfig } from '../../lib/schedulers/index.js';
import { parseConfigJson } from '../../lib/config_json.js';
import { copyTensor, type Tensor } from '../../lib/tensor.js';
import { assertClose, maxDiff } from '../helpers/compare.js';
import { fixture } from '../helpers/fixtures.js';

// Component tolerance (task spec): max|ours - ref| ≤ 1e-4 · max|ref|. diffusers' own hand-merged
// reference differs from its LoRA path by ≤ 1.9e-6 (fp32 op order); the LoRA moves outputs by 1–2.2,
// so a wrong alpha, scale or module is ~1e4× over this bound.
const COMPONENT_RTOL = 1e-4;
// Pipeline tolerances of the fixtures README (latents grow to std ~5–10 with a random UNet).
const LATENT_ATOL = 1e-3, LATENT_RTOL = 1e-4, FRAME_ATOL = 1e-3;

const LOADERS = fixture('loaders');
const KOHYA = 'mini-sd-lora.kohya.safetensors';
const DIFFUSERS = 'mini-sd-lora.diffusers.safetensors';
const UNET_KEYS = ['f4_t999_out', 'f4_t500_out', 'f4_t957.375_out', 'f8_t500_out'];

function toTensor(file: ReturnType<typeof readSafetensors>, name: string): Tensor {
  return copyTensor(file.get(name));
}

function assertComponent(ours: Float32Array, ref: Float32Array, what: string): void {
  const { diff, ref: m } = maxDiff(ours, ref);
  assert.ok(diff <= COMPONENT_RTOL * m, `${what}: max diff ${diff} > ${COMPONENT_RTOL} × max|ref| ${m}`);
}

function assertRelative(ours: Float32Array, ref: Float32Array, rtol: number, what: string): void {
  const { diff, ref: m } = maxDiff(ours, ref);
  assert.ok(diff <= rtol * m, `${what}: max diff ${diff} > ${rtol} × max|ref| ${m}`);
}

describe('LoRA: components against diffusers', () => {
  let pipe: PIAPipeline;
  const golden = readSafetensors(fixture('loaders', 'golden', 'lora_components.safetensors'));
  const spec = JSON.parse(readFileSync(fixture('loaders', 'golden', 'lora_components.json'), 'utf8')) as {
    prompt: string; negative_prompt: string;
  };
  const textIn = readSafetensors(fixture('golden', 'components', 'mini-sd_text_encoder.safetensors'));
  const unetIn = readSafetensors(fixture('golden', 'components', 'mini-sd_unet_motion.safetensors'));
  const unetSpec = JSON.parse(readFileSync(fixture('golden', 'components', 'mini-sd_unet_motion.json'), 'utf8')) as {
    runs: { key: string; frames: number; timestep: number }[];
  };
  const ids = (() => {
    const t = textIn.get('input_ids');
    const flat = Array.from(t.toFloat32());
    const [b, s] = t.shape;
    return Array.from({ length: b }, (_, i) => flat.slice(i * s, (i + 1) * s));
  })();
  const unet = () => pipe.unet as UNetMotionModel;
  const text = () => pipe.textEncoder as CLIPTextModel;
  const runUnet = async (key: string, loraScale?: number): Promise<Float32Array> => {
    const run = unetSpec.runs.find((r) => r.key === key)!;
    const f = `f${run.frames}`;
    const out = await unet().forward(toTensor(unetIn, `${f}_sample`), run.timestep, toTensor(unetIn, `${f}_encoder_hidden_states`),
      loraScale === undefined ? {} : { loraScale });
    return out.data;
  };
  const runText = async (loraScale?: number) => (await text().encode(ids, loraScale === undefined ? {} : { loraScale })).lastHiddenState.data;
  const baseline = new Map<string, Float32Array>();
  let tmp: string;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pia-lora-'));
    const motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
    pipe = await PIAPipeline.fromPretrained(fixture('models', 'mini-sd'), { motionAdapter });
    baseline.set('text', await runText());
    baseline.set('unet', await runUnet('f4_t500_out'));
    assert.equal(await pipe.loadLoraWeights(LOADERS, { weightName: KOHYA }), 'default_0');
  });
  after(() => {
    pipe?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('targets: every UNet Transformer2DModel module and the CLIP projections, scale flags as diffusers passes it', () => {
    const targets = unet().loraTargets();
    const proj = targets.find((t) => t.name === 'mid_block.attentions.0.proj_in')!;
    assert.deepEqual({ kind: proj.kind, scaled: proj.scaled }, { kind: 'conv', scaled: true });
    // Plain DownBlockMotion / motion modules / conv_out get no cross_attention_kwargs in diffusers.
    assert.equal(targets.find((t) => t.name === 'down_blocks.3.resnets.0.conv1')!.scaled, false);
    assert.equal(targets.find((t) => t.name === 'down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q')!.scaled, false);
    assert.equal(targets.find((t) => t.name === 'down_blocks.0.resnets.0.conv1')!.scaled, true);
    assert.ok(text().loraTargets().some((t) => t.name === 'text_model.encoder.layers.2.mlp.fc2'));
  });

  test('text encoder at scale 1 and 0.5; encode_prompt at 0.5; the text scale is sticky', async () => {
    assertComponent(await runText(), golden.get('text_last_hidden_state_scale1').toFloat32(), 'text scale 1');
    const enc = await pipe.encodePrompt(spec.prompt, { negativePrompt: spec.negative_prompt, loraScale: 0.5 });
    assertComponent(enc.promptEmbeds.data, golden.get('encode_prompt_lora_scale0.5_prompt_embeds').toFloat32(), 'prompt embeds 0.5');
    assertComponent(enc.negativePromptEmbeds!.data, golden.get('encode_prompt_lora_scale0.5_negative_embeds').toFloat32(), 'negative embeds 0.5');
    assertComponent(await runText(0.5), golden.get('text_last_hidden_state_scale0.5').toFloat32(), 'text scale 0.5');
    // diffusers' non-PEFT path keeps the last lora_scale: encode_prompt without one still uses 0.5.
    const again = await pipe.encodePrompt(spec.prompt, { negativePrompt: spec.negative_prompt });
    assert.deepEqual(again.promptEmbeds.data, enc.promptEmbeds.data);
    await pipe.encodePrompt(spec.prompt, { loraScale: 1 });
  });

  test('generate({loraScale}) reaches encode_prompt and every UNet call; without it the UNet gets 1 and the text scale stays', async () => {
    // PIAPipeline.__call__ (v0.26.3): cross_attention_kwargs['scale'] is encode_prompt's lora_scale, and the
    // same cross_attention_kwargs go to every self.unet(...) call in _denoise_loop. None → UNet scale 1.0,
    // text scale untouched (sticky, non-PEFT path).
    const u = unet();
    const calls: { scale: number | undefined; ehs: Float32Array }[] = [];
    const forward = u.forward.bind(u);
    u.forward = ((sample: Tensor, t: number, ehs: Tensor, opts: { loraScale?: number } = {}, ...rest: unknown[]) => {
      calls.push({ scale: opts.loraScale, ehs: Float32Array.from(ehs.data) });
      return (forward as (...a: unknown[]) => Promise<Tensor>)(sample, t, ehs, opts, ...rest);
    }) as typeof u.forward;
    const negative = golden.get('encode_prompt_lora_scale0.5_negative_embeds').toFloat32();
    const positive = golden.get('encode_prompt_lora_scale0.5_prompt_embeds').toFloat32();
    const cfgBatch = new Float32Array(negative.length + positive.length);
    cfgBatch.set(negative);
    cfgBatch.set(positive, negative.length);
    const run = (loraScale?: number) => pipe.generate({
      image: fixture('golden', 'pipeline', 'input_64x64.png'), prompt: spec.prompt, negativePrompt: spec.negative_prompt,
      numFrames: 2, numInferenceSteps: 2, generator: new Generator().manualSeed(0), outputType: 'latent',
      ...(loraScale === undefined ? {} : { loraScale }),
    });
    try {
      await run(0.5);
      assert.equal(calls.length, 2);
      for (const c of calls) {
        assert.equal(c.scale, 0.5);
        assertComponent(c.ehs, cfgBatch, 'UNet encoder_hidden_states at lora scale 0.5');
      }
      calls.length = 0;
      await run();
      assert.equal(calls.length, 2);
      for (const c of calls) {
        assert.ok(c.scale === undefined || c.scale === 1, `UNet scale ${c.scale}`);
        assert.deepEqual(c.ehs, calls[0].ehs);
        assertComponent(c.ehs, cfgBatch, 'sticky text scale 0.5');
      }
    } finally {
      u.forward = forward;
      await pipe.encodePrompt(spec.prompt, { loraScale: 1 });
    }
  });

  for (const key of UNET_KEYS) {
    test(`UNet ${key} at scale 1 and 0.5`, async () => {
      assertComponent(await runUnet(key), golden.get(`unet_motion_${key}_scale1`).toFloat32(), `${key} scale 1`);
      assertComponent(await runUnet(key, 0.5), golden.get(`unet_motion_${key}_scale0.5`).toFloat32(), `${key} scale 0.5`);
    });
  }

  test('scale 0 equals no LoRA (bitwise)', async () => {
    assert.deepEqual(await runUnet('f4_t500_out', 0), baseline.get('unet'));
    assert.deepEqual(await runText(0), baseline.get('text'));
  });

  test('fuse_lora merges at its scale (the per-call scale then no longer applies); unfuse restores the branches', async () => {
    const before = await runUnet('f4_t500_out');
    const beforeText = await runText();
    await pipe.fuseLora({ loraScale: 0.5 });
    assert.equal(pipe.getListAdapters().fused, true);
    assertComponent(await runUnet('f4_t500_out'), golden.get('unet_motion_f4_t500_out_scale0.5').toFloat32(), 'fused 0.5');
    assertComponent(await runUnet('f4_t500_out', 0), golden.get('unet_motion_f4_t500_out_scale0.5').toFloat32(), 'fused 0.5, call scale 0');
    assertComponent(await runText(), golden.get('text_last_hidden_state_scale0.5').toFloat32(), 'fused text 0.5');
    await pipe.unfuseLora();
    assertRelative(await runUnet('f4_t500_out'), before, 1e-6, 'unfused unet');
    assertRelative(await runText(), beforeText, 1e-6, 'unfused text');
  });

  test('the diffusers-format file gives the same outputs as the kohya file', async () => {
    await pipe.loadLoraWeights(join(LOADERS, DIFFUSERS), { adapterName: 'diffusers' });
    await pipe.setAdapters('diffusers');
    assertComponent(await runUnet('f4_t999_out'), golden.get('unet_motion_f4_t999_out_scale1').toFloat32(), 'diffusers file unet');
    assertComponent(await runText(0.5), golden.get('text_last_hidden_state_scale0.5').toFloat32(), 'diffusers file text');
    // Both at weight 0.5 each = one at 1 (the two files hold the same LoRA).
    await pipe.setAdapters(['default_0', 'diffusers'], [0.5, 0.5]);
    assertComponent(await runUnet('f4_t999_out'), golden.get('unet_motion_f4_t999_out_scale1').toFloat32(), 'two adapters at 0.5');
    await assert.rejects(pipe.setAdapters('nope'), { code: 'E_INVALID_ARGUMENT' });
    await assert.rejects(pipe.loadLoraWeights(join(LOADERS, DIFFUSERS), { adapterName: 'diffusers' }), { code: 'E_INVALID_ARGUMENT' });
    await pipe.setAdapters('default_0');
  });

  test('save → load round trip (kohya alphas folded into up) within 1e-5 relative', async () => {
    await assert.rejects(async () => pipe.saveLoraWeights(tmp), { code: 'E_INVALID_ARGUMENT' }); // two adapters loaded
    const file = pipe.saveLoraWeights(join(tmp, 'saved.safetensors'), { adapterName: 'default_0' });
    const saved = readSafetensors(file);
    assert.equal(saved.names().length, 420);
    assert.ok(saved.names().includes('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora.up.weight'));
    assert.ok(saved.names().includes('text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.down.weight'));
    saved.close();
    const ref = await runUnet('f8_t500_out');
    const refText = await runText();
    await pipe.unloadLoraWeights();
    await pipe.loadLoraWeights(file, { adapterName: 'saved' });
    assertRelative(await runUnet('f8_t500_out'), ref, 1e-5, 'reloaded unet');
    assertRelative(await runText(), refText, 1e-5, 'reloaded text');
  });

  test('unload restores the no-LoRA outputs exactly', async () => {
    await pipe.unloadLoraWeights();
    assert.deepEqual(pipe.getListAdapters().loaded, []);
    assert.deepEqual(await runUnet('f4_t500_out'), baseline.get('unet'));
    assert.deepEqual(await runText(), baseline.get('text'));
  });

  test('keys that match no module, wrong shapes and LyCORIS files are refused, naming the key', async () => {
    const src = readSafetensors(join(LOADERS, KOHYA));
    const all: Record<string, { dtype: 'F16'; data: Uint16Array; shape: number[] }> = {};
    for (const n of src.names()) {
      const t = src.get(n);
      all[n] = { dtype: 'F16', data: t.data as Uint16Array, shape: t.shape };
    }
    src.close();
    const bad = join(tmp, 'bad.safetensors');
    const k = 'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn9_to_q';
    saveSafetensors(bad, { ...all, [`${k}.lora_down.weight`]: all['lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight'], [`${k}.lora_up.weight`]: all['lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight'] });
    await assert.rejects(pipe.loadLoraWeights(bad), (e: PiaError) => e.code === 'E_WEIGHTS_MISMATCH' && e.message.includes(k));
    const q = 'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q';
    saveSafetensors(bad, { ...all, [`${q}.lora_up.weight`]: all['lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight'] });
    await assert.rejects(pipe.loadLoraWeights(bad), (e: PiaError) => e.code === 'E_WEIGHTS_MISMATCH' && e.message.includes(q));
    saveSafetensors(bad, { ...all, 'lora_unet_mid_block_attentions_0_proj_in.hada_w1_a': all[`${q}.lora_up.weight`] });
    await assert.rejects(pipe.loadLoraWeights(bad), { code: 'E_UNSUPPORTED' });
    writeFileSync(join(tmp, 'x.bin'), 'x');
    await assert.rejects(pipe.loadLoraWeights(join(tmp, 'x.bin')), { code: 'E_UNSUPPORTED' });
    assert.deepEqual(pipe.getListAdapters().loaded, []);
    assert.deepEqual(await runUnet('f4_t500_out'), baseline.get('unet'));
  });
});

describe('LoRA: full pipeline run against diffusers (DDIM, 3 steps)', () => {
  test('per-step latents and frames (kohya file)', { timeout: 600_000 }, async () => {
    const run = parseConfigJson(readFileSync(fixture('loaders', 'golden', 'lora_pipeline_ddim3.json'), 'utf8')) as {
      call: { prompt: string; negative_prompt: string; num_frames: number; height: number; width: number; num_inference_steps: number; guidance_scale: number; motion_scale: number; strength: number };
      scheduler: { cls: string; config: Record<string, unknown> };
    };
    const golden = readSafetensors(fixture('loaders', 'golden', 'lora_pipeline_ddim3.safetensors'));
    const motionAdapter = await MotionAdapter.fromPretrained(fixture('models', 'mini-sd-motion-adapter'));
    const pipe = await PIAPipeline.fromPretrained(fixture('models', 'mini-sd'), { motionAdapter });
    try {
      await pipe.loadLoraWeights(LOADERS, { weightName: KOHYA });
      pipe.scheduler = schedulerFromConfig(run.scheduler.config, run.scheduler.cls);
      const c = run.call;
      const steps: Tensor[] = [];
      const out = await pipe.generate({
        image: fixture('golden', 'pipeline', 'input_64x64.png'),
        prompt: c.prompt, negativePrompt: c.negative_prompt, strength: c.strength, numFrames: c.num_frames,
        height: c.height, width: c.width, numInferenceSteps: c.num_inference_steps, guidanceScale: c.guidance_scale,
        motionScale: c.motion_scale, generator: new Generator().manualSeed(42), outputType: 'tensor',
        onStepEnd: (_i, _t, { latents }) => {
          steps.push({ data: Float32Array.from(latents.data), shape: [...latents.shape] });
        },
      });
      assert.equal(steps.length, 3);
      for (let i = 0; i < 3; i++) {
        const name = `step0${i}_latents`;
        assertClose(steps[i].data, golden.get(name).toFloat32(), LATENT_ATOL, LATENT_RTOL, name);
      }
      assertClose(steps[2].data, golden.get('final_latents').toFloat32(), LATENT_ATOL, LATENT_RTOL, 'final_latents');
      const frames = out.frames as Tensor;
      assert.deepEqual(frames.shape, golden.info('frames').shape);
      assertClose(frames.data, golden.get('frames').toFloat32(), FRAME_ATOL, 0, 'frames');
    } finally {
      pipe.dispose();
      golden.close();
    }
  });
});
