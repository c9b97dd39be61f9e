// The tensor names, shapes and dtypes of an original (CompVis/LDM) SD-1.x single-file checkpoint and of
// PIA's original motion checkpoint, built from the architecture's numbers (openaimodel.py UNetModel with
// SpatialTransformer, the LDM autoencoder's Encoder/Decoder, HF CLIPTextModel; PIA's VanillaTemporalModule).
// Written independently of lib/loaders' key maps so the benchmark's file is a real test of them; checked
// against the shared fixtures' mini-sd files (same generator, mini-sd numbers → identical names and shapes).

export type LayoutDtype = 'F16' | 'F32' | 'I64';
export interface LayoutEntry {
  name: string;
  shape: number[];
  dtype: LayoutDtype;
}

export interface Sd1Architecture {
  /** UNet model_channels × channel_mult = diffusers block_out_channels */
  unetChannels: number[];
  /** levels with a SpatialTransformer (SD-1: the first three) */
  unetAttention: boolean[];
  layersPerBlock: number;
  contextDim: number;
  vaeChannels: number[];
  vaeLayersPerBlock: number;
  latentChannels: number;
  textHidden: number;
  textIntermediate: number;
  textLayers: number;
  vocabSize: number;
  maxPositions: number;
}

/** runwayml/stable-diffusion-v1-5 (v1-inference.yaml + openai/clip-vit-large-patch14's text tower). */
export const SD15: Sd1Architecture = {
  unetChannels: [320, 640, 1280, 1280],
  unetAttention: [true, true, true, false],
  layersPerBlock: 2,
  contextDim: 768,
  vaeChannels: [128, 256, 512, 512],
  vaeLayersPerBlock: 2,
  latentChannels: 4,
  textHidden: 768,
  textIntermediate: 3072,
  textLayers: 12,
  vocabSize: 49408,
  maxPositions: 77,
};

/** The shared fixtures' mini-sd (models/mini-sd configs, loaders/mini-sd.ldm.yaml). */
export const MINI_SD: Sd1Architecture = {
  unetChannels: [32, 64, 128, 128],
  unetAttention: [true, true, true, false],
  layersPerBlock: 2,
  contextDim: 64,
  vaeChannels: [32, 64, 64, 64],
  vaeLayersPerBlock: 2,
  latentChannels: 4,
  textHidden: 64,
  textIntermediate: 128,
  textLayers: 3,
  vocabSize: 49408,
  maxPositions: 77,
};

/** LatentDiffusion's registered DDPM schedule buffers, present in real SD-1.x files (loaders ignore them). */
const DDPM_BUFFERS = [
  'betas', 'alphas_cumprod', 'alphas_cumprod_prev', 'sqrt_alphas_cumprod', 'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod', 'sqrt_recip_alphas_cumprod', 'sqrt_recipm1_alphas_cumprod', 'posterior_variance',
  'posterior_log_variance_clipped', 'posterior_mean_coef1', 'posterior_mean_coef2',
];

class Layout {
  readonly entries: LayoutEntry[] = [];
  constructor(private readonly dtype: LayoutDtype) {}
  add(name: string, shape: number[], dtype: LayoutDtype = this.dtype): void {
    this.entries.push({ name, shape, dtype });
  }
  norm(p: string, c: number): void {
    this.add(`${p}.weight`, [c]);
    this.add(`${p}.bias`, [c]);
  }
  linear(p: string, out: number, inp: number, bias = true): void {
    this.add(`${p}.weight`, [out, inp]);
    if (bias) this.add(`${p}.bias`, [out]);
  }
  conv(p: string, out: number, inp: number, k: number): void {
    this.add(`${p}.weight`, [out, inp, k, k]);
    this.add(`${p}.bias`, [out]);
  }
}

// openaimodel.py ResBlock (time-conditioned).
function unetResBlock(l: Layout, p: string, cin: number, cout: number, temb: number): void {
  l.norm(`${p}.in_layers.0`, cin);
  l.conv(`${p}.in_layers.2`, cout, cin, 3);
  l.linear(`${p}.emb_layers.1`, cout, temb);
  l.norm(`${p}.out_layers.0`, cout);
  l.conv(`${p}.out_layers.3`, cout, cout, 3);
  if (cin !== cout) l.conv(`${p}.skip_connection`, cout, cin, 1);
}

// attention.py SpatialTransformer, depth 1, SD-1 conv projections.
function spatialTransformer(l: Layout, p: string, c: number, context: number): void {
  l.norm(`${p}.norm`, c);
  l.conv(`${p}.proj_in`, c, c, 1);
  const b = `${p}.transformer_blocks.0`;
  for (const attn of ['attn1', 'attn2']) {
    const kv = attn === 'attn1' ? c : context;
    l.linear(`${b}.${attn}.to_q`, c, c, false);
    l.linear(`${b}.${attn}.to_k`, c, kv, false);
    l.linear(`${b}.${attn}.to_v`, c, kv, false);
    l.linear(`${b}.${attn}.to_out.0`, c, c);
  }
  l.linear(`${b}.ff.net.0.proj`, 8 * c, c); // GEGLU: two 4c halves
  l.linear(`${b}.ff.net.2`, c, 4 * c);
  for (const n of ['norm1', 'norm2', 'norm3']) l.norm(`${b}.${n}`, c);
  l.conv(`${p}.proj_out`, c, c, 1);
}

function unet(l: Layout, a: Sd1Architecture, prefix: string): void {
  const c0 = a.unetChannels[0];
  const temb = 4 * c0;
  const levels = a.unetChannels.length;
  l.linear(`${prefix}time_embed.0`, temb, c0);
  l.linear(`${prefix}time_embed.2`, temb, temb);
  l.conv(`${prefix}input_blocks.0.0`, c0, 4, 3);
  const skips = [c0];
  let ch = c0;
  let n = 1;
  for (let i = 0; i < levels; i++) {
    const cout = a.unetChannels[i];
    for (let j = 0; j < a.layersPerBlock; j++, n++) {
      unetResBlock(l, `${prefix}input_blocks.${n}.0`, ch, cout, temb);
      ch = cout;
      if (a.unetAttention[i]) spatialTransformer(l, `${prefix}input_blocks.${n}.1`, ch, a.contextDim);
      skips.push(ch);
    }
    if (i < levels - 1) {
      l.conv(`${prefix}input_blocks.${n}.0.op`, ch, ch, 3);
      skips.push(ch);
      n++;
    }
  }
  unetResBlock(l, `${prefix}middle_block.0`, ch, ch, temb);
  spatialTransformer(l, `${prefix}middle_block.1`, ch, a.contextDim);
  unetResBlock(l, `${prefix}middle_block.2`, ch, ch, temb);
  n = 0;
  for (let i = levels - 1; i >= 0; i--) {
    const cout = a.unetChannels[i];
    for (let j = 0; j <= a.layersPerBlock; j++, n++) {
      unetResBlock(l, `${prefix}output_blocks.${n}.0`, ch + skips.pop()!, cout, temb);
      ch = cout;
      let k = 1;
      if (a.unetAttention[i]) spatialTransformer(l, `${prefix}output_blocks.${n}.${k++}`, ch, a.contextDim);
      if (i > 0 && j === a.layersPerBlock) l.conv(`${prefix}output_blocks.${n}.${k}.conv`, ch, ch, 3);
    }
  }
  l.norm(`${prefix}out.0`, c0);
  l.conv(`${prefix}out.2`, 4, c0, 3);
}

// ldm/modules/diffusionmodules/model.py ResnetBlock (no time embedding in the autoencoder).
function vaeResBlock(l: Layout, p: string, cin: number, cout: number): void {
  l.norm(`${p}.norm1`, cin);
  l.conv(`${p}.conv1`, cout, cin, 3);
  l.norm(`${p}.norm2`, cout);
  l.conv(`${p}.conv2`, cout, cout, 3);
  if (cin !== cout) l.conv(`${p}.nin_shortcut`, cout, cin, 1);
}

function vaeMid(l: Layout, p: string, c: number): void {
  vaeResBlock(l, `${p}.mid.block_1`, c, c);
  l.norm(`${p}.mid.attn_1.norm`, c);
  for (const x of ['q', 'k', 'v', 'proj_out']) l.conv(`${p}.mid.attn_1.${x}`, c, c, 1); // 1×1 convs in LDM
  vaeResBlock(l, `${p}.mid.block_2`, c, c);
}

function vae(l: Layout, a: Sd1Architecture, prefix: string): void {
  const chs = a.vaeChannels;
  const levels = chs.length;
  const z = a.latentChannels;
  const e = `${prefix}encoder`;
  l.conv(`${e}.conv_in`, chs[0], 3, 3);
  let ch = chs[0];
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < a.vaeLayersPerBlock; j++) {
      vaeResBlock(l, `${e}.down.${i}.block.${j}`, ch, chs[i]);
      ch = chs[i];
    }
    if (i < levels - 1) l.conv(`${e}.down.${i}.downsample.conv`, ch, ch, 3);
  }
  vaeMid(l, e, ch);
  l.norm(`${e}.norm_out`, ch);
  l.conv(`${e}.conv_out`, 2 * z, ch, 3);
  const d = `${prefix}decoder`;
  ch = chs[levels - 1];
  l.conv(`${d}.conv_in`, ch, z, 3);
  vaeMid(l, d, ch);
  for (let i = levels - 1; i >= 0; i--) {
    for (let j = 0; j <= a.vaeLayersPerBlock; j++) {
      vaeResBlock(l, `${d}.up.${i}.block.${j}`, ch, chs[i]);
      ch = chs[i];
    }
    if (i > 0) l.conv(`${d}.up.${i}.upsample.conv`, ch, ch, 3);
  }
  l.norm(`${d}.norm_out`, ch);
  l.conv(`${d}.conv_out`, 3, ch, 3);
  l.conv(`${prefix}quant_conv`, 2 * z, 2 * z, 1);
  l.conv(`${prefix}post_quant_conv`, z, z, 1);
}

function clipText(l: Layout, a: Sd1Architecture, prefix: string): void {
  const h = a.textHidden;
  const t = `${prefix}text_model`;
  l.add(`${t}.embeddings.token_embedding.weight`, [a.vocabSize, h]);
  l.add(`${t}.embeddings.position_embedding.weight`, [a.maxPositions, h]);
  l.add(`${t}.embeddings.position_ids`, [1, a.maxPositions], 'I64');
  for (let i = 0; i < a.textLayers; i++) {
    const p = `${t}.encoder.layers.${i}`;
    for (const x of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) l.linear(`${p}.self_attn.${x}`, h, h);
    l.norm(`${p}.layer_norm1`, h);
    l.linear(`${p}.mlp.fc1`, a.textIntermediate, h);
    l.linear(`${p}.mlp.fc2`, h, a.textIntermediate);
    l.norm(`${p}.layer_norm2`, h);
  }
  l.norm(`${t}.final_layer_norm`, h);
}

/** Every tensor of an SD-1.x single file as model sites ship it (UNet, VAE, CLIP text, DDPM buffers). */
export function sd1SingleFileLayout(a: Sd1Architecture, dtype: LayoutDtype = 'F16'): LayoutEntry[] {
  const l = new Layout(dtype);
  unet(l, a, 'model.diffusion_model.');
  vae(l, a, 'first_stage_model.');
  clipText(l, a, 'cond_stage_model.transformer.');
  for (const b of DDPM_BUFFERS) l.add(b, [1000]);
  return l.entries;
}

/**
 * PIA's original motion checkpoint (the trainable subset its train.py saves: 9-channel conv_in + the
 * VanillaTemporalModule of every down/up block; no mid-block module), as in pia.ckpt.
 */
export function piaOriginalLayout(unetChannels: number[], layersPerBlock = 2, maxLen = 32, dtype: LayoutDtype = 'F16'): LayoutEntry[] {
  const l = new Layout(dtype);
  l.conv('conv_in', unetChannels[0], 9, 3);
  const module = (p: string, c: number) => {
    const t = `${p}.temporal_transformer`;
    l.norm(`${t}.norm`, c);
    l.linear(`${t}.proj_in`, c, c);
    const b = `${t}.transformer_blocks.0`;
    for (const k of [0, 1]) {
      const a = `${b}.attention_blocks.${k}`;
      for (const x of ['to_q', 'to_k', 'to_v']) l.linear(`${a}.${x}`, c, c, false);
      l.linear(`${a}.to_out.0`, c, c);
      l.add(`${a}.pos_encoder.pe`, [1, maxLen, c]);
    }
    l.norm(`${b}.norms.0`, c);
    l.norm(`${b}.norms.1`, c);
    l.linear(`${b}.ff.net.0.proj`, 8 * c, c);
    l.linear(`${b}.ff.net.2`, c, 4 * c);
    l.norm(`${b}.ff_norm`, c);
    l.linear(`${t}.proj_out`, c, c);
  };
  unetChannels.forEach((c, i) => {
    for (let j = 0; j < layersPerBlock; j++) module(`down_blocks.${i}.motion_modules.${j}`, c);
  });
  [...unetChannels].reverse().forEach((c, i) => {
    for (let j = 0; j <= layersPerBlock; j++) module(`up_blocks.${i}.motion_modules.${j}`, c);
  });
  return l.entries;
}

export function layoutBytes(entries: readonly LayoutEntry[]): number {
  const size = { F16: 2, F32: 4, I64: 8 } as const;
  return entries.reduce((s, e) => s + e.shape.reduce((a, b) => a * b, 1) * size[e.dtype], 0);
}
