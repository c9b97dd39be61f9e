// diffusers' UNet2DConditionModel as a folder: PIA never runs the 2-D UNet by itself, so this holds
// its config and weight files until UNetMotionModel.fromUnet2d combines them with a MotionAdapter.
import { PiaError, throwIfAborted } from '../errors.js';
import { readModelFolder } from './model_files.js';

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

  private constructor(dir: string, configJson: string, weightPaths: string[], config: UNet2DConditionConfig) {
    this.dir = dir;
    this.configJson = configJson;
    this.weightPaths = Object.freeze([...weightPaths]);
    this.config = Object.freeze({ ...config });
  }

  /** Reads `<dir>/config.json` and `<dir>/diffusion_pytorch_model.safetensors` (or its shards). */
  static async fromPretrained(dir: string, options: { signal?: AbortSignal; variant?: string } = {}): Promise<UNet2DConditionModel> {
    const folder = await readModelFolder(dir, {
      weightNames: ['diffusion_pytorch_model'],
      variant: options.variant,
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
