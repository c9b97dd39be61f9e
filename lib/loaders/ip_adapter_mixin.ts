// The pipeline side of IP-Adapter (diffusers IPAdapterMixin: load_ip_adapter, set_ip_adapter_scale,
// unload_ip_adapter) together with the image encoding PIAPipeline does for it (encode_image and
// v0.27's prepare_ip_adapter_image_embeds). PIAPipeline holds one of these and delegates to it.
import { join } from 'node:path';
import { PiaError, invalidArgument, throwIfAborted } from '../errors.js';
import type { ImageInput } from '../io/image.js';
import { CLIPImageProcessor } from '../models/clip_image_processor.js';
import { CLIPVisionModelWithProjection } from '../models/clip_vision_model.js';
import type { UNetMotionModel } from '../models/unet_motion_model.js';
import { catBatch } from '../pipelines/video_tensors.js';
import { assertTensor, type Tensor } from '../tensor.js';
import { IPAdapter, ipAdapterKind, readIpAdapterStateDict, resolveIpAdapterFile } from './ip_adapter.js';
import { isFile, resolveModel } from './hub.js';

export interface LoadIpAdapterOptions {
  /** Folder inside `pathOrRepo` holding the weight file and `image_encoder/` (h94/IP-Adapter: 'models'). */
  subfolder?: string;
  /** The adapter file, e.g. 'ip-adapter_sd15.safetensors' or 'ip-adapter-plus_sd15.bin'. */
  weightName: string;
  revision?: string;
  signal?: AbortSignal;
}

export interface ImageEmbeds {
  imageEmbeds: Tensor;
  negativeImageEmbeds: Tensor;
}

/** An already preprocessed `pixel_values` tensor (encode_image uses a torch.Tensor as is). */
export function isPixelValues(image: unknown): image is Tensor {
  return typeof image === 'object' && image !== null && 'shape' in image && (image as Tensor).data instanceof Float32Array;
}

export class IPAdapterMixin {
  imageEncoder: CLIPVisionModelWithProjection | null = null;
  featureExtractor: CLIPImageProcessor | null = null;
  #adapter: IPAdapter | undefined;

  get adapter(): IPAdapter | undefined {
    return this.#adapter;
  }

  /**
   * load_ip_adapter: the image encoder from `<pathOrRepo>/<subfolder>/image_encoder` when there is none yet,
   * a default CLIPImageProcessor when there is none, then the adapter file attached to the UNet's 16 spatial
   * cross-attention layers with scale 1.0. A second load replaces the first adapter (v0.26.3 holds one).
   */
  async load(unet: UNetMotionModel, pathOrRepo: string, options: LoadIpAdapterOptions): Promise<void> {
    if (!options || typeof options !== 'object') throw invalidArgument('options', 'loadIpAdapter(pathOrRepo, { subfolder, weightName })');
    const { signal } = options;
    throwIfAborted(signal);
    const file = resolveIpAdapterFile(pathOrRepo, options);
    // Read (and check) the adapter before loading an encoder for it.
    const sd = readIpAdapterStateDict(file);
    ipAdapterKind(sd.imageProj, file);
    let encoder = this.imageEncoder;
    const newEncoder = !encoder;
    if (!encoder) {
      const dir = resolveModel(pathOrRepo, { subfolder: options.subfolder || undefined, revision: options.revision, what: 'IP-Adapter', option: 'pathOrRepo' });
      const encDir = join(dir, 'image_encoder');
      if (!isFile(join(encDir, 'config.json'))) {
        throw new PiaError('E_MODEL_NOT_FOUND', `IP-Adapter: the pipeline has no image encoder and ${encDir} holds none (config.json missing)`, { file: encDir });
      }
      encoder = await CLIPVisionModelWithProjection.fromPretrained(encDir, { signal, device: unet.placement.device, dtype: unet.placement.dtype });
    }
    let adapter: IPAdapter;
    try {
      const { image_size: size, patch_size: patch } = encoder.config;
      adapter = await IPAdapter.load(sd, unet, (Math.floor(size / patch)) ** 2 + 1, { file, signal });
    } catch (e) {
      if (newEncoder) encoder.dispose();
      throw e;
    }
    const previous = this.#adapter;
    unet.setIpAdapter(adapter);
    previous?.dispose();
    this.#adapter = adapter;
    this.imageEncoder = encoder;
    this.featureExtractor ??= new CLIPImageProcessor();
  }

  /** set_ip_adapter_scale: the weight of the image branch (scale 0 reproduces the no-adapter output). */
  setScale(unet: UNetMotionModel, scale: number): void {
    if (!this.#adapter) throw invalidArgument('setIpAdapterScale', 'no IP-Adapter is loaded (loadIpAdapter first)');
    unet.setIpAdapterScale(scale);
  }

  /** unload_ip_adapter: the adapter, the image encoder and the feature extractor go, as in diffusers. */
  unload(unet: UNetMotionModel | undefined): void {
    unet?.setIpAdapter(undefined);
    this.#adapter?.dispose();
    this.#adapter = undefined;
    this.imageEncoder?.dispose();
    this.imageEncoder = null;
    this.featureExtractor = null;
  }

  /**
   * encode_image: base adapters (and no adapter) take the projected class token, `image_embeds`, with zeros
   * as the negative; plus adapters the penultimate encoder layer's hidden states (all tokens, no final
   * norm), with the negative from an all-zero pixel_values tensor (the mean colour, not zero embeddings).
   */
  async encodeImage(
    image: ImageInput | Tensor, options: { outputHiddenStates?: boolean; signal?: AbortSignal } = {},
  ): Promise<ImageEmbeds> {
    const encoder = this.imageEncoder;
    if (!encoder) throw invalidArgument('encodeImage', 'no image encoder (loadIpAdapter loads one)');
    const { signal } = options;
    const hidden = options.outputHiddenStates ?? this.#adapter?.kind === 'plus';
    let pixelValues: Tensor;
    if (isPixelValues(image)) {
      assertTensor(image, 'image', 4);
      pixelValues = image;
    } else {
      pixelValues = (await (this.featureExtractor ?? new CLIPImageProcessor()).preprocess(image, { signal })).pixelValues;
    }
    throwIfAborted(signal);
    if (!hidden) {
      const { imageEmbeds } = await encoder.forward(pixelValues, { signal });
      return { imageEmbeds, negativeImageEmbeds: { data: new Float32Array(imageEmbeds.data.length), shape: [...imageEmbeds.shape] } };
    }
    const penultimate = async (px: Tensor): Promise<Tensor> => {
      const states = (await encoder.forward(px, { outputHiddenStates: true, signal })).hiddenStates!;
      if (states.length < 2) throw new PiaError('E_UNSUPPORTED', 'encodeImage: the image encoder has no penultimate layer');
      return states[states.length - 2];
    };
    const imageEmbeds = await penultimate(pixelValues);
    const negativeImageEmbeds = await penultimate({ data: new Float32Array(pixelValues.data.length), shape: [...pixelValues.shape] });
    return { imageEmbeds, negativeImageEmbeds };
  }

  /**
   * prepare_ip_adapter_image_embeds (diffusers v0.27, the fixed PIA path): what every UNet call gets as
   * `added_cond_kwargs['image_embeds']`: cat([negative, image]) under classifier-free guidance, the image
   * embeds alone otherwise. With several prompts each row is repeated per prompt (diffusers stops there on
   * a batch mismatch; the same image for every prompt is what such a call asks for).
   */
  async prepareImageEmbeds(image: ImageInput | Tensor, doClassifierFreeGuidance: boolean, batch: number, signal?: AbortSignal): Promise<Tensor> {
    const { imageEmbeds, negativeImageEmbeds } = await this.encodeImage(image, { signal });
    const rep = (t: Tensor) => (batch === 1 ? t : catBatch(Array(batch).fill(t)));
    return doClassifierFreeGuidance ? catBatch([rep(negativeImageEmbeds), rep(imageEmbeds)]) : rep(imageEmbeds);
  }

  dispose(): void {
    this.unload(undefined);
  }
}
