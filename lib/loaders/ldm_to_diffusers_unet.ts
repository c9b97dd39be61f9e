// The UNet of an original (CompVis/LDM) SD-1.x checkpoint: `model.diffusion_model.*` names → diffusers
// UNet2DConditionModel keys, and the config its tensor shapes imply (diffusers v0.26.3
// single_file_utils convert_ldm_unet_checkpoint / create_unet_diffusers_config, which read the
// numbers from the LDM yaml; real SD-1.5 files ship none, so we read them from the shapes).
import { PiaError } from '../errors.js';
import type { CheckpointView } from './checkpoint_view.js';
import { KeyMap } from './key_map.js';

export const UNET_PREFIX = 'model.diffusion_model.';

// ResBlock (openaimodel.py) → ResnetBlock2D.
const RESNET_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['in_layers.0.', 'norm1.'],
  ['in_layers.2.', 'conv1.'],
  ['emb_layers.1.', 'time_emb_proj.'],
  ['out_layers.0.', 'norm2.'],
  ['out_layers.3.', 'conv2.'],
  ['skip_connection.', 'conv_shortcut.'],
];

function resnetKey(rest: string): string | undefined {
  for (const [from, to] of RESNET_RENAMES) if (rest.startsWith(from)) return to + rest.slice(from.length);
  return undefined;
}

/** `<a>.<b>.rest` → [a, b, rest] for two leading integers. */
function twoIndices(s: string): [number, number, string] | undefined {
  const m = /^(\d+)\.(\d+)\.(.+)$/.exec(s);
  return m ? [Number(m[1]), Number(m[2]), m[3]] : undefined;
}

/**
 * One LDM UNet key (prefix stripped) → its diffusers key, or undefined for a name SD-1.x UNets do
 * not have. `lpb` = layers_per_block: input_blocks 1.. come in groups of lpb resnets (+ attention)
 * and one downsampler, output_blocks in groups of lpb + 1 (+ attention, + upsampler in the last).
 * Spatial transformers keep diffusers' inner names (proj_in, transformer_blocks.*, norm, proj_out).
 */
export function unetDiffusersKey(key: string, lpb: number): string | undefined {
  const simple: Record<string, string> = {
    'time_embed.0.': 'time_embedding.linear_1.',
    'time_embed.2.': 'time_embedding.linear_2.',
    'input_blocks.0.0.': 'conv_in.',
    'out.0.': 'conv_norm_out.',
    'out.2.': 'conv_out.',
  };
  for (const [from, to] of Object.entries(simple)) if (key.startsWith(from)) return to + key.slice(from.length);
  if (key.startsWith('input_blocks.')) {
    const p = twoIndices(key.slice('input_blocks.'.length));
    if (!p || p[0] === 0) return undefined;
    const [n, k, rest] = p;
    const block = Math.floor((n - 1) / (lpb + 1));
    const layer = (n - 1) % (lpb + 1);
    if (layer === lpb) {
      return k === 0 && rest.startsWith('op.') ? `down_blocks.${block}.downsamplers.0.conv.${rest.slice(3)}` : undefined;
    }
    if (k === 0) {
      const r = resnetKey(rest);
      return r && `down_blocks.${block}.resnets.${layer}.${r}`;
    }
    return k === 1 ? `down_blocks.${block}.attentions.${layer}.${rest}` : undefined;
  }
  if (key.startsWith('middle_block.')) {
    const m = /^middle_block\.(\d+)\.(.+)$/.exec(key);
    if (!m) return undefined;
    const [i, rest] = [Number(m[1]), m[2]];
    if (i === 1) return `mid_block.attentions.0.${rest}`;
    const r = resnetKey(rest);
    return (i === 0 || i === 2) && r ? `mid_block.resnets.${i / 2}.${r}` : undefined;
  }
  if (key.startsWith('output_blocks.')) {
    const p = twoIndices(key.slice('output_blocks.'.length));
    if (!p) return undefined;
    const [n, k, rest] = p;
    const block = Math.floor(n / (lpb + 1));
    const layer = n % (lpb + 1);
    if (k === 0) {
      const r = resnetKey(rest);
      return r && `up_blocks.${block}.resnets.${layer}.${r}`;
    }
    // The upsampler is the block's last module: index 1 without attention, 2 with.
    if (rest.startsWith('conv.')) return layer === lpb ? `up_blocks.${block}.upsamplers.0.${rest}` : undefined;
    return k === 1 ? `up_blocks.${block}.attentions.${layer}.${rest}` : undefined;
  }
  return undefined;
}

/** Highest N + 1 among `<prefix>N.` names (0 when none). */
export function countIndexed(keys: Iterable<string>, prefix: string): number {
  let n = 0;
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const m = /^(\d+)\./.exec(k.slice(prefix.length));
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

// SD-1.5's unet/config.json (runwayml/stable-diffusion-v1-5) for what the shapes cannot tell.
const SD15_UNET: Record<string, unknown> = {
  _class_name: 'UNet2DConditionModel',
  act_fn: 'silu',
  attention_head_dim: 8,
  center_input_sample: false,
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  sample_size: 64,
};

export interface LdmUnet {
  config: Record<string, unknown>;
  keyMap: KeyMap;
}

function unsupported(msg: string, view: CheckpointView, key?: string): never {
  throw new PiaError('E_UNSUPPORTED', `${view.path}: ${msg}`, { file: view.path, key });
}

/** The UNet's diffusers config and key map (SD-2.x / SDXL / inpainting are refused by the caller first). */
export function convertLdmUnet(view: CheckpointView): LdmUnet {
  const keys = view.keysUnder(UNET_PREFIX);
  const shape = (k: string): number[] | undefined => view.shape(UNET_PREFIX + k);
  const convIn = shape('input_blocks.0.0.weight');
  if (!convIn || convIn.length !== 4) unsupported('no UNet conv_in (model.diffusion_model.input_blocks.0.0.weight)', view);
  const nInput = countIndexed(keys, 'input_blocks.');
  const downsamplers: number[] = [];
  for (let n = 1; n < nInput; n++) if (shape(`input_blocks.${n}.0.op.weight`)) downsamplers.push(n);
  // input_blocks = conv_in, then per level lpb layers and (except the last level) a downsampler.
  const lpb = downsamplers.length ? downsamplers[0] - 1 : nInput - 1;
  const levels = downsamplers.length + 1;
  if (lpb < 1 || nInput !== 1 + levels * (lpb + 1) - 1) {
    unsupported(`UNet input_blocks (${nInput}) do not form a diffusers UNet2DConditionModel down path`, view);
  }
  const blockOut: number[] = [];
  const downTypes: string[] = [];
  const upTypes: string[] = [];
  let crossDim: number | undefined;
  let transformerDepth = 1;
  for (let b = 0; b < levels; b++) {
    const first = 1 + b * (lpb + 1);
    const conv2 = shape(`input_blocks.${first}.0.out_layers.3.weight`);
    if (!conv2) unsupported(`no resnet at model.diffusion_model.input_blocks.${first}.0`, view);
    blockOut.push(conv2[0]);
    const attn = shape(`input_blocks.${first}.1.proj_in.weight`) !== undefined;
    downTypes.push(attn ? 'CrossAttnDownBlock2D' : 'DownBlock2D');
    if (attn) {
      crossDim ??= shape(`input_blocks.${first}.1.transformer_blocks.0.attn2.to_k.weight`)?.[1];
      transformerDepth = countIndexed(keys, `input_blocks.${first}.1.transformer_blocks.`);
    }
    const up = b * (lpb + 1);
    upTypes.push(shape(`output_blocks.${up}.1.proj_in.weight`) ? 'CrossAttnUpBlock2D' : 'UpBlock2D');
  }
  if (crossDim === undefined) unsupported('no cross-attention (attn2.to_k) in the UNet: not a text-conditioned SD-1.x model', view);
  const projIn = keys.find((k) => k.endsWith('.proj_in.weight'));
  const convOut = shape('out.2.weight');
  const config: Record<string, unknown> = {
    ...SD15_UNET,
    in_channels: convIn[1],
    out_channels: convOut ? convOut[0] : 4,
    block_out_channels: blockOut,
    layers_per_block: lpb,
    down_block_types: downTypes,
    up_block_types: upTypes,
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    cross_attention_dim: crossDim,
    transformer_layers_per_block: transformerDepth,
    use_linear_projection: projIn !== undefined && shape(projIn)!.length === 2,
  };
  const keyMap = new KeyMap();
  for (const k of keys) {
    const d = unetDiffusersKey(k, lpb);
    if (d === undefined) {
      throw new PiaError('E_WEIGHTS_MISMATCH', `${view.path}: '${UNET_PREFIX}${k}' is not a tensor of an SD-1.x UNet`, {
        file: view.path,
        key: UNET_PREFIX + k,
      });
    }
    keyMap.set(d, view.fileKey(UNET_PREFIX + k));
  }
  return { config, keyMap };
}
