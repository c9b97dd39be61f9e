// diffusers' UNet2DConditionModel as a folder: PIA never runs the 2-D UNet by itself, so this holds
// its config and weight files until UNetMotionModel.fromUnet2d combines them with a MotionAdapter.
import { PiaError, throwIfAborted } from '../errors.js';
import { readModelFolder, type FromPretrainedOptions } from './model_files.js';
import { sourcePaths, type WeightSource } from '../loaders/key_map.js';

/** UNet2DConditionModel config.json, as saved (diffusers fills missing keys with __init__ defaults natively). */
export interface UNet2DConditionConfig {
  block_out_channels?: number[];
  cross_attention_dim?: number;
  in_channels?: number;
  sample_size?: number | null;
  [key: string]: unknown;
}

export class UNet2DConditionModel {
  readonly config: UNet2DConditionConfig;
  readonly dir: string;
  readonly configJson: string;
  readonly weightPaths: readonly string[];
  /** The weight files with their key maps where they are not diffusers-named (a single-file checkpoint). */
  readonly weightSources: readonly WeightSource[];

  private constructor(dir: string, configJson: string, weightSources: WeightSource[], config: UNet2DConditionConfig) {
    this.dir = dir;
    this.configJson = configJson;
    this.weightSources = Object.freeze([...weightSources]);
    this.weightPaths = Object.freeze(sourcePaths(weightSources));
    this.config = Object.freeze({ ...config });
  }

  /**
   * A UNet from a config object and weight sources (files with key maps, e.g. the `model.diffusion_model.*`
   * tensors of a single-file checkpoint; lib/loaders/single_file.ts). `origin` names it in messages.
   */
  static fromWeightSources(config: UNet2DConditionConfig, sources: WeightSource[], origin: string): UNet2DConditionModel {
    return new UNet2DConditionModel(origin, JSON.stringify(config), sources, config);
  }

  /**
   * Reads `config.json` and `diffusion_pytorch_model[.<variant>].safetensors` (or its shards) from a folder,
   * or from a repo id in the Hugging Face cache (`revision`, `subfolder: 'unet'` as in diffusers).
   */
  static async fromPretrained(dirOrRepo: string, options: FromPretrainedOptions = {}): Promise<UNet2DConditionModel> {
    const folder = await readModelFolder(dirOrRepo, {
      weightNames: ['diffusion_pytorch_model'],
      variant: options.variant,
      revision: options.revision,
      subfolder: options.subfolder,
      what: 'unet',
      signal: options.signal,
    });
    throwIfAborted(options.signal);
    const cls = folder.config._class_name;
    if (cls !== undefined && cls !== 'UNet2DConditionModel') {
      throw new PiaError('E_UNSUPPORTED', `${folder.configPath}: _class_name is ${JSON.stringify(cls)}, expected "UNet2DConditionModel"`, {
        file: folder.configPath,
      });
    }
    return new UNet2DConditionModel(folder.dir, folder.configJson, folder.weightPaths, folder.config);
  }
}
