// transformers' CLIPVisionModelWithProjection (the IP-Adapter image encoder) over the native network
// (native/nn/clip_vision_model.cpp).
import { PiaError, fromNativeError, invalidArgument, throwIfAborted } from '../errors.js';
import { addon } from '../native/addon.js';
import { loadNativeHandle } from '../native/load_handle.js';
import type { NativeModelHandle } from '../native/types.js';
import { assertTensor, type Tensor } from '../tensor.js';
import { readModelFolder, type FromPretrainedOptions } from './model_files.js';
import { modelPlacement, type ResolvedPlacement } from '../loaders/device_options.js';

/** config.json of the image encoder (Hugging Face keys; the fields the network reads, and the rest). */
export interface CLIPVisionConfig {
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  hidden_act: string;
  layer_norm_eps: number;
  [key: string]: unknown;
}

export interface CLIPVisionModelOutput {
  /** [B, projection_dim]: visual_projection(post_layernorm(last_hidden_state[:, 0])). */
  imageEmbeds: Tensor;
  /** [B, 1 + (image_size / patch_size)², hidden]: the last layer's output (no final norm). */
  lastHiddenState: Tensor;
  /** With `outputHiddenStates`: pre_layrnorm(embeddings), then each layer's output. */
  hiddenStates?: Tensor[];
}

// transformers CLIPVisionConfig defaults (v4.38).
const DEFAULTS = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
};

function visionConfig(raw: Record<string, unknown>): CLIPVisionConfig {
  // A whole CLIPModel config: CLIPVisionConfig.from_pretrained uses its vision_config.
  const isClip = raw.model_type === 'clip' && raw.vision_config && typeof raw.vision_config === 'object';
  const src = isClip ? { projection_dim: raw.projection_dim, ...(raw.vision_config as Record<string, unknown>) } : raw;
  const out: Record<string, unknown> = { ...src };
  for (const [k, v] of Object.entries(DEFAULTS)) if (out[k] === undefined || out[k] === null) out[k] = v;
  return Object.freeze(out) as CLIPVisionConfig;
}

export class CLIPVisionModelWithProjection {
  readonly config: CLIPVisionConfig;
  /** Where it runs (lib/loaders/device_options.ts). */
  readonly placement: ResolvedPlacement;
  #handle: NativeModelHandle | undefined;

  private constructor(handle: NativeModelHandle, config: CLIPVisionConfig, placement: ResolvedPlacement) {
    this.#handle = handle;
    this.placement = placement;
    this.config = config;
  }

  /**
   * Loads `config.json` and `model[.<variant>].safetensors` (or its shards) from a folder, or from a repo
   * id in the Hugging Face cache (`subfolder: 'image_encoder'`, as h94/IP-Adapter's `models/image_encoder`).
   * A missing, unexpected or misshapen key is E_WEIGHTS_MISMATCH naming the key. f16 files are computed in float32.
   */
  static async fromPretrained(dirOrRepo: string, options: FromPretrainedOptions = {}): Promise<CLIPVisionModelWithProjection> {
    const folder = await readModelFolder(dirOrRepo, {
      weightNames: ['model'],
      variant: options.variant,
      revision: options.revision,
      subfolder: options.subfolder,
      what: 'image encoder',
      signal: options.signal,
    });
    throwIfAborted(options.signal);
    const placement = modelPlacement(options);
    const handle = await loadNativeHandle(() => addon().clipVisionModel.load(folder.configJson, folder.weightPaths, placement), (h) => addon().clipVisionModel.dispose(h), options.signal);
    return new CLIPVisionModelWithProjection(handle, visionConfig(folder.config), placement);
  }

  /** Runs the encoder on `pixelValues` [B, num_channels, image_size, image_size] (CLIPImageProcessor's output). */
  async forward(
    pixelValues: Tensor, options: { outputHiddenStates?: boolean; signal?: AbortSignal } = {},
  ): Promise<CLIPVisionModelOutput> {
    const handle = this.#live();
    throwIfAborted(options.signal);
    assertTensor(pixelValues, 'pixelValues', 4);
    const { num_channels: c, image_size: s } = this.config;
    const [b, pc, ph, pw] = pixelValues.shape;
    if (b < 1 || pc !== c || ph !== s || pw !== s) {
      throw invalidArgument('pixelValues', `expected [B, ${c}, ${s}, ${s}], got [${pixelValues.shape.join(', ')}]`);
    }
    const outputHiddenStates = options.outputHiddenStates === true;
    let out;
    try {
      out = await addon().clipVisionModel.forward(handle, pixelValues, outputHiddenStates);
    } catch (e) {
      throw fromNativeError(e);
    }
    throwIfAborted(options.signal);
    const result: CLIPVisionModelOutput = { imageEmbeds: out.imageEmbeds, lastHiddenState: out.lastHiddenState };
    if (outputHiddenStates) result.hiddenStates = out.hiddenStates ?? [];
    return result;
  }

  /** Frees the native weights; further calls fail. Safe to call twice. */
  dispose(): void {
    if (this.#handle) addon().clipVisionModel.dispose(this.#handle);
    this.#handle = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): NativeModelHandle {
    if (!this.#handle) throw new PiaError('E_INVALID_ARGUMENT', 'CLIPVisionModelWithProjection: the model was disposed');
    return this.#handle;
  }
}
