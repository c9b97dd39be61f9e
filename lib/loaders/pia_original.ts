// PIA's released motion checkpoint (open-mmlab/PIA `pia.ckpt`: its UNet3DConditionModel's trainable
// part, `conv_in.*` + `*.motion_modules.*`) and AnimateDiff motion modules in the same original
// layout → diffusers MotionAdapter keys and config. The renames are those of diffusers v0.26.3
// scripts/convert_animatediff_motion_module_to_diffusers.py (convert_motion_module).
import { PiaError } from '../errors.js';
import type { CheckpointView } from './checkpoint_view.js';
import { KeyMap } from './key_map.js';
import { countIndexed } from './ldm_to_diffusers_unet.js';

const RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['.norms.0.', '.norm1.'],
  ['.norms.1.', '.norm2.'],
  ['.ff_norm.', '.norm3.'],
  ['.attention_blocks.0.', '.attn1.'],
  ['.attention_blocks.1.', '.attn2.'],
  ['.temporal_transformer.', '.'],
];

/** One original motion-module key → its diffusers MotionAdapter key (undefined: not a motion-module tensor). */
export function motionModuleDiffusersKey(key: string): string | undefined {
  if (!/^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\./.test(key)) return undefined;
  let out = key;
  for (const [from, to] of RENAMES) out = out.split(from).join(to);
  return out;
}

export interface PiaOriginal {
  config: Record<string, unknown>;
  keyMap: KeyMap;
}

export function piaOriginalToDiffusers(view: CheckpointView): PiaOriginal {
  // Checkpoints saved from DataParallel/DDP keep `module.` in front (PIA's train.py strips it; others do not).
  const strip = view.keys.length > 0 && view.keys.every((k) => k.startsWith('module.')) ? 'module.' : '';
  const keys = view.keysUnder(strip);
  const shape = (k: string): number[] | undefined => view.shape(strip + k);
  const keyMap = new KeyMap();
  let peLength: number | undefined;
  for (const k of keys) {
    if (k.endsWith('.pos_encoder.pe')) {
      // diffusers recomputes the sinusoid table (same formula) in every transformer block: skipped.
      peLength ??= shape(k)?.[1];
      continue;
    }
    const d = k === 'conv_in.weight' || k === 'conv_in.bias' ? k : motionModuleDiffusersKey(k);
    if (d !== undefined) keyMap.set(d, view.fileKey(strip + k));
  }
  const levels = countIndexed(keys, 'down_blocks.');
  const blockOut: number[] = [];
  for (let b = 0; b < levels; b++) {
    const proj = shape(`down_blocks.${b}.motion_modules.0.temporal_transformer.proj_in.weight`);
    if (!proj) break;
    blockOut.push(proj[1]);
  }
  if (blockOut.length === 0) {
    throw new PiaError('E_UNSUPPORTED',
      `${view.path}: no motion modules (down_blocks.N.motion_modules.M.temporal_transformer.*): not a PIA / AnimateDiff motion checkpoint`,
      { file: view.path });
  }
  const mid = countIndexed(keys, 'mid_block.motion_modules.');
  const convIn = shape('conv_in.weight');
  const config: Record<string, unknown> = {
    _class_name: 'MotionAdapter',
    block_out_channels: blockOut,
    motion_layers_per_block: countIndexed(keys, 'down_blocks.0.motion_modules.'),
    use_motion_mid_block: mid > 0,
    motion_mid_block_layers_per_block: Math.max(mid, 1),
    // openmmlab/PIA-condition-adapter (and AnimateDiff): 8 heads, 32 groups; max_len 32 without a pe table.
    motion_num_attention_heads: 8,
    motion_norm_num_groups: 32,
    motion_max_seq_length: peLength ?? 32,
    conv_in_channels: convIn ? convIn[1] : null,
  };
  return { config, keyMap };
}
