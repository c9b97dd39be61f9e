// The VAE of an original SD checkpoint (`first_stage_model.*`, or a bare LDM VAE file such as
// vae-ft-mse-840000: `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`) → diffusers
// AutoencoderKL keys (diffusers v0.26.3 convert_ldm_vae_checkpoint) and the config its shapes imply.
import { PiaError } from '../errors.js';
import type { CheckpointView } from './checkpoint_view.js';
import { KeyMap } from './key_map.js';
import { countIndexed } from './ldm_to_diffusers_unet.js';

export const VAE_PREFIX = 'first_stage_model.';

// Mid-block attention (AttnBlock): 1×1 convs q/k/v/proj_out → Linear to_q/to_k/to_v/to_out.0.
const ATTENTION_RENAMES: Record<string, string> = {
  norm: 'group_norm',
  q: 'to_q',
  k: 'to_k',
  v: 'to_v',
  proj_out: 'to_out.0',
};

function resnet(rest: string): string {
  return rest.startsWith('nin_shortcut.') ? 'conv_shortcut.' + rest.slice('nin_shortcut.'.length) : rest;
}

/**
 * One LDM VAE key (prefix stripped) → [diffusers key, squeeze] or undefined. `levels` = number of
 * resolutions: LDM numbers the decoder's `up.i` from the LOWEST resolution, diffusers' up_blocks
 * from the highest, so up.i = up_blocks.(levels - 1 - i).
 */
export function vaeDiffusersKey(key: string, levels: number): [string, boolean] | undefined {
  for (const same of ['quant_conv.', 'post_quant_conv.', 'encoder.conv_in.', 'encoder.conv_out.', 'decoder.conv_in.', 'decoder.conv_out.']) {
    if (key.startsWith(same)) return [key, false];
  }
  const m = /^(encoder|decoder)\.(.+)$/.exec(key);
  if (!m) return undefined;
  const [part, rest] = [m[1], m[2]];
  if (rest.startsWith('norm_out.')) return [`${part}.conv_norm_out.${rest.slice('norm_out.'.length)}`, false];
  let r = /^mid\.block_([12])\.(.+)$/.exec(rest);
  if (r) return [`${part}.mid_block.resnets.${Number(r[1]) - 1}.${resnet(r[2])}`, false];
  r = /^mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(rest);
  if (r) return [`${part}.mid_block.attentions.0.${ATTENTION_RENAMES[r[1]]}.${r[2]}`, r[1] !== 'norm' && r[2] === 'weight'];
  const dir = part === 'encoder' ? 'down' : 'up';
  r = new RegExp(`^${dir}\\.(\\d+)\\.(block\\.(\\d+)|downsample|upsample)\\.(.+)$`).exec(rest);
  if (!r) return undefined;
  const level = Number(r[1]);
  const block = part === 'encoder' ? level : levels - 1 - level;
  if (block < 0) return undefined;
  const name = `${part}.${dir}_blocks.${block}`;
  if (r[3] !== undefined) return [`${name}.resnets.${r[3]}.${resnet(r[4])}`, false];
  if (r[2] === 'downsample' && part === 'encoder') return [`${name}.downsamplers.0.${r[4]}`, false];
  if (r[2] === 'upsample' && part === 'decoder') return [`${name}.upsamplers.0.${r[4]}`, false];
  return undefined;
}

export interface LdmVae {
  config: Record<string, unknown>;
  keyMap: KeyMap;
}

/** The VAE under `prefix` ('first_stage_model.' in a full checkpoint, '' in a VAE file). */
export function convertLdmVae(view: CheckpointView, prefix: string): LdmVae {
  const keys = view.keysUnder(prefix).filter((k) => /^(encoder|decoder|quant_conv|post_quant_conv)\./.test(k));
  const shape = (k: string): number[] | undefined => view.shape(prefix + k);
  const missing = (what: string): never => {
    throw new PiaError('E_WEIGHTS_MISMATCH', `${view.path}: no VAE ${what} (${prefix}${what})`, { file: view.path, key: prefix + what });
  };
  const convIn = shape('encoder.conv_in.weight') ?? missing('encoder.conv_in.weight');
  const decIn = shape('decoder.conv_in.weight') ?? missing('decoder.conv_in.weight');
  const convOut = shape('decoder.conv_out.weight') ?? missing('decoder.conv_out.weight');
  const levels = countIndexed(keys, 'encoder.down.');
  if (levels === 0) missing('encoder.down.0');
  const blockOut: number[] = [];
  for (let i = 0; i < levels; i++) blockOut.push((shape(`encoder.down.${i}.block.0.conv1.weight`) ?? missing(`encoder.down.${i}.block.0.conv1.weight`))[0]);
  const config: Record<string, unknown> = {
    _class_name: 'AutoencoderKL',
    act_fn: 'silu',
    block_out_channels: blockOut,
    down_block_types: blockOut.map(() => 'DownEncoderBlock2D'),
    up_block_types: blockOut.map(() => 'UpDecoderBlock2D'),
    in_channels: convIn[1],
    out_channels: convOut[0],
    latent_channels: decIn[1],
    layers_per_block: countIndexed(keys, 'encoder.down.0.block.'),
    norm_num_groups: 32,
    // diffusers' image_size for SD-1.x single files, and LDM_VAE_DEFAULT_SCALING_FACTOR.
    sample_size: 512,
    scaling_factor: 0.18215,
    force_upcast: true,
  };
  const keyMap = new KeyMap();
  for (const k of keys) {
    const d = vaeDiffusersKey(k, levels);
    if (!d) {
      throw new PiaError('E_WEIGHTS_MISMATCH', `${view.path}: '${prefix}${k}' is not a tensor of an LDM AutoencoderKL`, {
        file: view.path,
        key: prefix + k,
      });
    }
    keyMap.set(d[0], view.fileKey(prefix + k), d[1]);
  }
  return { config, keyMap };
}
