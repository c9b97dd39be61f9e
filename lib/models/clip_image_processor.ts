// transformers' CLIPImageProcessor (image_processing_clip.py + image_transforms.py, v4.38) with the
// defaults diffusers' load_ip_adapter creates it with (no preprocessor_config.json is read).
import { PiaError, invalidArgument } from '../errors.js';
import { loadImage, type ImageInput, type RgbImage } from '../io/image.js';
import { BICUBIC, resizePillow } from '../io/lanczos.js';
import type { Tensor } from '../tensor.js';

/** OPENAI_CLIP_MEAN / OPENAI_CLIP_STD. */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

export interface CLIPImageProcessorOptions {
  /** size.shortest_edge (default 224). */
  shortestEdge?: number;
  /** crop_size height and width (default 224). */
  cropSize?: number;
  imageMean?: number[];
  imageStd?: number[];
}

/**
 * The options of a preprocessor_config.json (a pipeline's feature_extractor/ folder). Only what this
 * processor computes is accepted: a config that turns a step off or asks for another resample filter is
 * E_UNSUPPORTED rather than silently preprocessed differently.
 */
export function clipImageProcessorOptions(config: Record<string, unknown>, file = 'preprocessor_config.json'): CLIPImageProcessorOptions {
  const unsupported = (key: string, why: string) => new PiaError('E_UNSUPPORTED', `${file}: ${key} ${why}`, { file, option: key });
  for (const key of ['do_resize', 'do_center_crop', 'do_rescale', 'do_normalize']) {
    if (config[key] === false) throw unsupported(key, 'false is not supported (CLIPImageProcessor always resizes, crops, rescales and normalises)');
  }
  if (config.resample !== undefined && config.resample !== 3) throw unsupported('resample', `${JSON.stringify(config.resample)} is not supported (3, bicubic)`);
  if (config.rescale_factor !== undefined && Math.abs(Number(config.rescale_factor) - 1 / 255) > 1e-12) {
    throw unsupported('rescale_factor', `${JSON.stringify(config.rescale_factor)} is not supported (1/255)`);
  }
  const o: CLIPImageProcessorOptions = {};
  // Old configs give sizes as one number, newer ones as {shortest_edge} / {height, width}.
  const size = config.size as number | { shortest_edge?: number } | undefined;
  if (typeof size === 'number') o.shortestEdge = size;
  else if (size && typeof size === 'object') {
    if (typeof size.shortest_edge !== 'number') throw unsupported('size', `${JSON.stringify(size)} is not supported ({shortest_edge: n})`);
    o.shortestEdge = size.shortest_edge;
  }
  const crop = config.crop_size as number | { height?: number; width?: number } | undefined;
  if (typeof crop === 'number') o.cropSize = crop;
  else if (crop && typeof crop === 'object') {
    if (crop.height !== crop.width || typeof crop.height !== 'number') throw unsupported('crop_size', `${JSON.stringify(crop)} is not supported (a square crop)`);
    o.cropSize = crop.height;
  }
  if (Array.isArray(config.image_mean)) o.imageMean = config.image_mean as number[];
  if (Array.isArray(config.image_std)) o.imageStd = config.image_std as number[];
  return o;
}

export class CLIPImageProcessor {
  readonly shortestEdge: number;
  readonly cropSize: number;
  readonly imageMean: readonly number[];
  readonly imageStd: readonly number[];

  constructor(options: CLIPImageProcessorOptions = {}) {
    this.shortestEdge = options.shortestEdge ?? 224;
    this.cropSize = options.cropSize ?? 224;
    this.imageMean = Object.freeze([...(options.imageMean ?? CLIP_MEAN)]);
    this.imageStd = Object.freeze([...(options.imageStd ?? CLIP_STD)]);
    for (const [k, v] of [['shortestEdge', this.shortestEdge], ['cropSize', this.cropSize]] as const) {
      if (!Number.isInteger(v) || v < 1) throw invalidArgument(k, `must be a positive integer (got ${v})`);
    }
    for (const [k, v] of [['imageMean', this.imageMean], ['imageStd', this.imageStd]] as const) {
      if (v.length !== 3 || !v.every((x) => Number.isFinite(x))) throw invalidArgument(k, 'must hold three finite numbers');
    }
  }

  /** The resize target (width, height): shortest edge → shortestEdge, long edge int(size · long / short). */
  resizedSize(width: number, height: number): { width: number; height: number } {
    // get_resize_output_image_size(default_to_square=False): Python's int() truncates the float quotient.
    const s = this.shortestEdge;
    if (width <= height) return { width: s, height: Math.trunc((s * height) / width) };
    return { width: Math.trunc((s * width) / height), height: s };
  }

  /** The resized 8-bit image (Pillow BICUBIC on uint8, antialiased when shrinking; a same-size resize is a copy). */
  resize(img: RgbImage): RgbImage {
    const { width, height } = this.resizedSize(img.width, img.height);
    return resizePillow(img, width, height, BICUBIC);
  }

  /**
   * `feature_extractor(image, return_tensors="pt").pixel_values`: convert('RGB'), resize, centre crop,
   * rescale by 1/255 (in float64, then float32), normalise in float32 → `{ pixelValues }` [1, 3, crop, crop].
   */
  async preprocess(image: ImageInput, options: { signal?: AbortSignal } = {}): Promise<{ pixelValues: Tensor }> {
    const rgb = await loadImage(image, { signal: options.signal });
    return { pixelValues: this.preprocessRgb(rgb) };
  }

  /** preprocess() on an already decoded RGB image (synchronous). */
  preprocessRgb(rgb: RgbImage): Tensor {
    const r = this.resize(rgb);
    const c = this.cropSize;
    if (r.width < c || r.height < c) {
      throw invalidArgument('image', `${rgb.width}×${rgb.height} resizes to ${r.width}×${r.height}, smaller than the ${c}×${c} crop`);
    }
    // center_crop: top = (h - crop) // 2, left = (w - crop) // 2.
    const top = Math.floor((r.height - c) / 2), left = Math.floor((r.width - c) / 2);
    const out = new Float32Array(3 * c * c);
    const scale = 1 / 255; // rescale_factor, a Python float: uint8 · scale is float64, then cast to float32
    for (let ch = 0; ch < 3; ch++) {
      const mean = Math.fround(this.imageMean[ch]), std = Math.fround(this.imageStd[ch]);
      for (let y = 0; y < c; y++) {
        const row = ((top + y) * r.width + left) * 3 + ch;
        const o = (ch * c + y) * c;
        for (let x = 0; x < c; x++) {
          const v = Math.fround(r.data[row + x * 3] * scale);
          // normalize in float32: (x - mean) / std with float32 mean and std.
          out[o + x] = Math.fround(Math.fround(v - mean) / std);
        }
      }
    }
    return { data: out, shape: [1, 3, c, c] };
  }
}
