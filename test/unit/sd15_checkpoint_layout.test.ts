// The real-size SD-1.5 and PIA checkpoint layouts the single-file benchmark writes (bench/ldm_checkpoint_layout.ts):
// the generator reproduces the shared fixtures' mini-sd files exactly, and at SD-1.5 size our loaders infer
// runwayml/stable-diffusion-v1-5's and openmmlab/PIA-condition-adapter's configs from the shapes alone and map
// every tensor — without writing the 2 GB file (the header is all the key maps read).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { CheckpointView } from '../../lib/loaders/checkpoint_view.js';
import { convertLdmCheckpoint } from '../../lib/loaders/ldm_to_diffusers.js';
import { piaOriginalToDiffusers } from '../../lib/loaders/pia_original.js';
import { MINI_SD, piaOriginalLayout, SD15, sd1SingleFileLayout, type LayoutEntry } from '../../bench/ldm_checkpoint_layout.js';
import { fixture } from '../helpers/fixtures.js';

function viewOf(entries: readonly LayoutEntry[], path = 'sd15.safetensors'): CheckpointView {
  const byName = new Map(entries.map((e) => [e.name, e]));
  return new CheckpointView({ path, at: [], names: () => [...byName.keys()], shape: (n) => byName.get(n)?.shape, dtype: (n) => byName.get(n)?.dtype });
}

function assertSameHeader(file: string, entries: readonly LayoutEntry[]): void {
  const f = readSafetensors(file);
  try {
    const have = f.names().sort();
    assert.deepEqual(have, entries.map((e) => e.name).sort());
    for (const e of entries) assert.deepEqual({ ...f.info(e.name) }, { dtype: e.dtype, shape: e.shape }, e.name);
  } finally {
    f.close();
  }
}

test('the layout generator reproduces the mini-sd single file and PIA original checkpoint (names, shapes, dtypes)', () => {
  assertSameHeader(fixture('loaders', 'mini-sd.single-file.safetensors'), sd1SingleFileLayout(MINI_SD));
  assertSameHeader(fixture('loaders', 'mini-sd-motion-adapter.pia-original.safetensors'), piaOriginalLayout(MINI_SD.unetChannels));
});

test('SD-1.5 size: configs inferred from shapes are SD-1.5\'s, and every tensor is mapped', () => {
  const entries = sd1SingleFileLayout(SD15);
  const ldm = convertLdmCheckpoint(viewOf(entries));
  const count = (prefix: string) => entries.filter((e) => e.name.startsWith(prefix)).length;
  // runwayml/stable-diffusion-v1-5 unet/vae configs and openai/clip-vit-large-patch14's text config.
  const unet = ldm.unet.config;
  assert.deepEqual([unet.block_out_channels, unet.layers_per_block, unet.cross_attention_dim, unet.sample_size, unet.in_channels],
    [[320, 640, 1280, 1280], 2, 768, 64, 4]);
  assert.deepEqual(unet.down_block_types, ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
  assert.deepEqual(unet.up_block_types, ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
  assert.deepEqual([ldm.vae!.config.block_out_channels, ldm.vae!.config.layers_per_block, ldm.vae!.config.latent_channels], [[128, 256, 512, 512], 2, 4]);
  const text = ldm.textEncoder!.config;
  assert.deepEqual([text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.num_attention_heads, text.vocab_size],
    [768, 3072, 12, 12, 49408]);
  assert.equal(ldm.unet.keyMap.keys.size, count('model.diffusion_model.'));
  assert.equal(ldm.vae!.keyMap.keys.size, count('first_stage_model.'));
  assert.equal(ldm.textEncoder!.keyMap.keys.size, count('cond_stage_model.transformer.') - 1); // position_ids is a buffer
});

test('PIA original checkpoint at SD-1.5 size: openmmlab/PIA-condition-adapter\'s config, every parameter mapped', () => {
  const entries = piaOriginalLayout(SD15.unetChannels);
  const { config, keyMap } = piaOriginalToDiffusers(viewOf(entries, 'pia.safetensors'));
  assert.deepEqual(
    { ...config },
    { _class_name: 'MotionAdapter', block_out_channels: [320, 640, 1280, 1280], motion_layers_per_block: 2, use_motion_mid_block: false,
      motion_mid_block_layers_per_block: 1, motion_num_attention_heads: 8, motion_norm_num_groups: 32, motion_max_seq_length: 32, conv_in_channels: 9 },
  );
  // diffusers recomputes pos_encoder.pe (convert_animatediff_motion_module_to_diffusers drops it).
  assert.equal(keyMap.keys.size, entries.filter((e) => !e.name.endsWith('.pos_encoder.pe')).length);
});
