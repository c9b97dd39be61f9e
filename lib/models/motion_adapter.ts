// diffusers' MotionAdapter: the AnimateDiff / PIA motion modules (and PIA's 9-channel conv_in) as a
// diffusers folder. The weights are bound when UNetMotionModel.fromUnet2d builds the network.
import { PiaError, throwIfAborted } from '../errors.js';
import { readModelFolder, type FromPretrainedOptions } from './model_files.js';
import { sourcePaths, type WeightSource } from '../loaders/key_map.js';
import { CheckpointView, readCheckpointHeader } from '../loaders/checkpoint_view.js';
import { piaOriginalToDiffusers } from '../loaders/pia_original.js';

/** MotionAdapter config.json (diffusers keys; defaults of MotionAdapter.__init__ filled in). */
export interface MotionAdapterConfig {
  block_out_channels: number[];
  motion_layers_per_block: number;
  motion_mid_block_layers_per_block: number;
  motion_num_attention_heads: number;
  motion_norm_num_groups: number;
  motion_max_seq_length: number;
  use_motion_mid_block: boolean;
  /** PIA: 9 (latents, mask, masked image); null for plain AnimateDiff adapters. */
  conv_in_channels: number | null;
  [key: string]: unknown;
}

// diffusers v0.26.3 MotionAdapter.__init__ defaults.
const DEFAULTS: MotionAdapterConfig = {
  block_out_channels: [320, 640, 1280, 1280],
  motion_layers_per_block: 2,
  motion_mid_block_layers_per_block: 1,
  motion_num_attention_heads: 8,
  motion_norm_num_groups: 32,
  motion_max_seq_length: 32,
  use_motion_mid_block: true,
  conv_in_channels: null,
};

function positiveInt(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

function adapterConfig(raw: Record<string, unknown>, file: string): MotionAdapterConfig {
  if (raw._class_name !== undefined && raw._class_name !== 'MotionAdapter') {
    throw new PiaError('E_UNSUPPORTED', `${file}: _class_name is ${JSON.stringify(raw._class_name)}, expected "MotionAdapter"`, { file });
  }
  const out: Record<string, unknown> = { ...raw };
  for (const [k, v] of Object.entries(DEFAULTS)) if (out[k] === undefined || (out[k] === null && k !== 'conv_in_channels')) out[k] = v;
  const bad = (key: string, what: string): never => {
    throw new PiaError('E_UNSUPPORTED', `${file}: ${key} ${what} (got ${JSON.stringify(out[key])})`, { file, option: key });
  };
  const boc = out.block_out_channels;
  if (!Array.isArray(boc) || boc.length === 0 || !boc.every(positiveInt)) bad('block_out_channels', 'must be a list of positive integers');
  for (const k of ['motion_layers_per_block', 'motion_mid_block_layers_per_block', 'motion_num_attention_heads',
    'motion_norm_num_groups', 'motion_max_seq_length']) {
    if (!positiveInt(out[k])) bad(k, 'must be a positive integer');
  }
  if (typeof out.use_motion_mid_block !== 'boolean') bad('use_motion_mid_block', 'must be true or false');
  if (out.conv_in_channels === 0) out.conv_in_channels = null;
  if (out.conv_in_channels !== null && (!positiveInt(out.conv_in_channels) || (out.conv_in_channels as number) < 4)) {
    bad('conv_in_channels', 'must be null or an integer ≥ 4');
  }
  return Object.freeze(out) as MotionAdapterConfig;
}

export class MotionAdapter {
  readonly config: MotionAdapterConfig;
  /** The folder it was read from, its config.json text and weight files (handed to the native loader). */
  readonly dir: string;
  readonly configJson: string;
  readonly weightPaths: readonly string[];
  /** The weight files with their key maps where they are not diffusers-named (a single-file checkpoint). */
  readonly weightSources: readonly WeightSource[];

  private constructor(dir: string, configJson: string, weightSources: WeightSource[], config: MotionAdapterConfig) {
    this.dir = dir;
    this.configJson = configJson;
    this.weightSources = Object.freeze([...weightSources]);
    this.weightPaths = Object.freeze(sourcePaths(weightSources));
    this.config = config;
  }

  /**
   * Reads `config.json` and `diffusion_pytorch_model[.<variant>].safetensors` (or its shards) from a folder,
   * or from a repo id in the Hugging Face cache (`openmmlab/PIA-condition-adapter`; `revision`, `subfolder`).
   */
  static async fromPretrained(dirOrRepo: string, options: FromPretrainedOptions = {}): Promise<MotionAdapter> {
    const folder = await readModelFolder(dirOrRepo, {
      weightNames: ['diffusion_pytorch_model'],
      variant: options.variant,
      revision: options.revision,
      subfolder: options.subfolder,
      what: 'motion adapter',
      signal: options.signal,
    });
    throwIfAborted(options.signal);
    return new MotionAdapter(folder.dir, folder.configJson, folder.weightPaths, adapterConfig(folder.config, folder.configPath));
  }

  /**
   * PIA's / AnimateDiff's original motion checkpoint (`pia.ckpt` layout: `down_blocks.N.motion_modules.M.
   * temporal_transformer.*`, PIA's 9-channel `conv_in`), renamed as diffusers'
   * convert_animatediff_motion_module_to_diffusers.py does, with the config read from the shapes
   * (lib/loaders/pia_original.ts).
   */
  static async fromSingleFile(path: string, options: { signal?: AbortSignal } = {}): Promise<MotionAdapter> {
    throwIfAborted(options.signal);
    const view = new CheckpointView(await readCheckpointHeader(path));
    const { config, keyMap } = piaOriginalToDiffusers(view);
    throwIfAborted(options.signal);
    return new MotionAdapter(path, JSON.stringify(config), [keyMap.source(path, view.at)], adapterConfig(config, path));
  }
}
