// The reverse of the LDM → diffusers key maps, for messages only: when a network needs a diffusers key
// that a single-file checkpoint lacks, the error also names the tensor the file should have held.
import type { CheckpointView } from './checkpoint_view.js';
import { TEXT_PREFIX } from './ldm_to_diffusers_text.js';
import { countIndexed, UNET_PREFIX } from './ldm_to_diffusers_unet.js';

const RESNET_BACK: Record<string, string> = {
  norm1: 'in_layers.0',
  conv1: 'in_layers.2',
  time_emb_proj: 'emb_layers.1',
  norm2: 'out_layers.0',
  conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

function unetLdmKey(key: string, view: CheckpointView): string | undefined {
  const keys = view.keysUnder(UNET_PREFIX);
  let lpb = countIndexed(keys, 'input_blocks.') - 1;
  for (let n = 1; n < lpb + 1; n++) {
    if (view.has(`${UNET_PREFIX}input_blocks.${n}.0.op.weight`)) {
      lpb = n - 1;
      break;
    }
  }
  const fixed: Record<string, string> = {
    'time_embedding.linear_1.': 'time_embed.0.',
    'time_embedding.linear_2.': 'time_embed.2.',
    'conv_in.': 'input_blocks.0.0.',
    'conv_norm_out.': 'out.0.',
    'conv_out.': 'out.2.',
  };
  for (const [from, to] of Object.entries(fixed)) if (key.startsWith(from)) return to + key.slice(from.length);
  const resnet = (rest: string): string | undefined => {
    const m = /^([a-z_0-9]+)\.(.+)$/.exec(rest);
    return m && RESNET_BACK[m[1]] ? `${RESNET_BACK[m[1]]}.${m[2]}` : undefined;
  };
  let m = /^(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    const [dir, b, kind, l, rest] = [m[1], Number(m[2]), m[3], Number(m[4]), m[5]];
    const base = dir === 'down' ? 1 + b * (lpb + 1) : b * (lpb + 1);
    const list = dir === 'down' ? 'input_blocks' : 'output_blocks';
    if (kind === 'resnets') {
      const r = resnet(rest);
      return r && `${list}.${base + l}.0.${r}`;
    }
    if (kind === 'attentions') return `${list}.${base + l}.1.${rest}`;
    if (kind === 'downsamplers') return rest.startsWith('conv.') ? `${list}.${base + lpb}.0.op.${rest.slice(5)}` : undefined;
    const n = base + lpb;
    return `${list}.${n}.${view.has(`${UNET_PREFIX}${list}.${n}.1.proj_in.weight`) ? 2 : 1}.${rest}`;
  }
  m = /^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(key);
  if (m) {
    if (m[1] === 'attentions') return `middle_block.1.${m[3]}`;
    const r = resnet(m[3]);
    return r && `middle_block.${2 * Number(m[2])}.${r}`;
  }
  return undefined;
}

const ATTENTION_BACK: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

function vaeLdmKey(key: string, view: CheckpointView, prefix: string): string {
  const levels = countIndexed(view.keysUnder(prefix), 'encoder.down.');
  const shortcut = (r: string): string => r.replace(/^conv_shortcut\./, 'nin_shortcut.');
  let m = /^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.+)$/.exec(key);
  if (m) {
    const level = m[1] === 'encoder' ? Number(m[3]) : levels - 1 - Number(m[3]);
    const inner = m[5] !== undefined ? `block.${m[5]}.${shortcut(m[6])}` : `${m[2] === 'down' ? 'downsample' : 'upsample'}.${m[6]}`;
    return `${m[1]}.${m[2]}.${level}.${inner}`;
  }
  m = /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$/.exec(key);
  if (m) return `${m[1]}.mid.block_${Number(m[2]) + 1}.${shortcut(m[3])}`;
  m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)$/.exec(key);
  if (m) return `${m[1]}.mid.attn_1.${ATTENTION_BACK[m[2]]}.${m[3]}`;
  return key.replace(/^(encoder|decoder)\.conv_norm_out\./, '$1.norm_out.');
}

/** The name (inside the state_dict wrapper) a diffusers key of `component` has in an LDM checkpoint. */
export function ldmKeyForDiffusers(component: 'unet' | 'vae' | 'text', key: string, view: CheckpointView, prefix: string): string | undefined {
  if (component === 'text') return TEXT_PREFIX + key;
  if (component === 'vae') return prefix + vaeLdmKey(key, view, prefix);
  const k = unetLdmKey(key, view);
  return k === undefined ? undefined : UNET_PREFIX + k;
}
