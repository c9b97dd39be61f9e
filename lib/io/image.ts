import { readFile } from 'node:fs/promises';
import sharp, { type Metadata, type Sharp } from 'sharp';
import { PiaError, invalidArgument, throwIfAborted } from '../errors.js';
import { resizeLanczos } from './lanczos.js';

/** 8-bit RGB pixels, row-major HWC (no padding between rows). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** One video frame: 8-bit RGB, HWC (what `generate()` returns for outputType 'frames' and the exporters take). */
export type Frame = RgbImage;

/** What `loadImage` accepts: a file path, an encoded image in memory, or already decoded RGB. */
export type ImageInput = string | Buffer | Uint8Array | RgbImage;

export interface LoadImageOptions {
  /** Largest width × height accepted (checked from the header, before decoding). Default 8192 × 8192. */
  maxPixels?: number;
  signal?: AbortSignal;
}

export const DEFAULT_MAX_PIXELS = 8192 * 8192;

function isRgbImage(x: unknown): x is RgbImage {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'data' in x && 'width' in x && 'height' in x;
}

function checkMaxPixels(maxPixels: number): void {
  if (!Number.isInteger(maxPixels) || maxPixels < 1) throw invalidArgument('maxPixels', `must be a positive integer (got ${maxPixels})`);
}

function tooLarge(width: number, height: number, maxPixels: number, file?: string): PiaError {
  return new PiaError(
    'E_IMAGE',
    `image ${file ? `${file} ` : ''}is ${width}×${height} = ${width * height} pixels, over the limit of ${maxPixels} (maxPixels)`,
    { file },
  );
}

/**
 * Decodes an image to 8-bit RGB the way diffusers sees it: diffusers.utils.load_image, i.e.
 * `PIL.Image.open(...)`, `ImageOps.exif_transpose`, then `convert('RGB')`.
 *
 * PIL's convert('RGB') DROPS alpha (an RGBA pixel (10, 20, 30, 0) becomes (10, 20, 30)); it does not
 * composite over a background, and neither do we. Greyscale is replicated to three channels; palette
 * images become their palette colours (a tRNS transparency is dropped like any alpha).
 * PIL also ignores embedded ICC profiles, hence `ignoreIcc`.
 *
 * 16-bit inputs: RGB(A) and grey+alpha keep the high byte of each sample in both. 16-bit greyscale
 * WITHOUT alpha is a PIL quirk we copy on purpose: PIL opens it as mode "I" / "I;16" and convert('RGB')
 * CLIPS each value to 255 (it does not scale), so such images are mostly white for diffusers too.
 *
 * Where sharp and PIL may still differ (rare inputs): CMYK JPEGs (PIL inverts channels naively, sharp
 * converts through a CMYK profile), and JPEG/WebP decoding itself (PIL's libjpeg-turbo vs sharp's mozjpeg,
 * two libwebp builds): byte-identical on every file test/unit/image_io.test.ts tries against a live
 * Pillow (4:2:0, 4:4:4, progressive, EXIF-rotated JPEG, lossy WebP), but not guaranteed for all.
 */
export async function loadImage(input: ImageInput, options: LoadImageOptions = {}): Promise<RgbImage> {
  const { maxPixels = DEFAULT_MAX_PIXELS, signal } = options;
  checkMaxPixels(maxPixels);
  throwIfAborted(signal);

  if (isRgbImage(input)) return checkRgbImage(input, maxPixels);

  let bytes: Uint8Array;
  let file: string | undefined;
  if (typeof input === 'string') {
    file = input;
    try {
      bytes = await readFile(input, { signal });
    } catch (e) {
      throwIfAborted(signal);
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not an image file' : (e as Error).message;
      throw new PiaError('E_IMAGE', `cannot read image ${input}: ${why}`, { file, cause: e });
    }
  } else if (input instanceof Uint8Array) {
    bytes = input;
  } else {
    throw invalidArgument('image', 'expected a file path, a Buffer/Uint8Array of an encoded image, or { data, width, height } RGB');
  }
  if (bytes.length === 0) throw new PiaError('E_IMAGE', `${file ? `image ${file}` : 'image buffer'} is empty`, { file });

  const where = file ? `image ${file}` : 'image buffer';
  // failOn 'error': reject corrupt or truncated pixel data (PIL raises "image file is truncated" too),
  // but not files libvips merely warns about. limitInputPixels guards the decoder itself.
  const open = (limitInputPixels: number | false) =>
    sharp(bytes, { failOn: 'error', limitInputPixels, ignoreIcc: true, pages: 1 });
  let meta: Metadata;
  try {
    // The header alone: our own limit check below gives the clearer message.
    meta = await open(false).metadata();
  } catch (e) {
    throw new PiaError('E_IMAGE', `${where} cannot be decoded: ${(e as Error).message}`, { file, cause: e });
  }
  throwIfAborted(signal);
  if (meta.width === undefined || meta.height === undefined) {
    throw new PiaError('E_IMAGE', `${where} has no size in its header`, { file });
  }
  // Multi-page inputs (animated GIF/WebP, TIFF) report the page height as pageHeight; we read page 0 only, like PIL.
  const h0 = meta.pageHeight ?? meta.height;
  if (meta.width * h0 > maxPixels) throw tooLarge(meta.width, h0, maxPixels, file);

  try {
    if (meta.channels === 1 && (meta.depth === 'ushort' || meta.depth === 'short')) return await greyI16(open(maxPixels), signal);
    const { data, info } = await open(maxPixels)
      .rotate() // EXIF orientation, as diffusers.utils.load_image's exif_transpose
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    throwIfAborted(signal);
    if (info.channels !== 3) throw new Error(`decoder gave ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (e) {
    if (e instanceof PiaError || (e instanceof DOMException && e.name === 'AbortError')) throw e;
    throw new PiaError('E_IMAGE', `${where} cannot be decoded: ${(e as Error).message}`, { file, cause: e });
  }
}

/** PIL's 16-bit greyscale ("I;16") → convert('RGB'): values above 255 saturate, others keep their low byte. */
async function greyI16(img: Sharp, signal?: AbortSignal): Promise<RgbImage> {
  const { data, info } = await img.rotate().toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  throwIfAborted(signal);
  if (info.channels !== 1) throw new Error(`decoder gave ${info.channels} channels, expected 1`);
  const n = info.width * info.height;
  const out = new Uint8Array(n * 3);
  // sharp's raw 16-bit output is in machine byte order, which a Uint16Array view reads as is.
  const aligned = data.byteOffset % 2 === 0 ? data : Buffer.from(data);
  const samples = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const v = samples[i];
    out.fill(v > 255 ? 255 : v, i * 3, i * 3 + 3);
  }
  return { data: out, width: info.width, height: info.height };
}

function checkRgbImage(img: RgbImage, maxPixels: number): RgbImage {
  const { data, width, height } = img;
  if (!(data instanceof Uint8Array)) throw invalidArgument('image', 'data must be a Uint8Array of RGB bytes (HWC)');
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw invalidArgument('image', `width and height must be positive integers (got ${width}×${height})`);
  }
  if (width * height > maxPixels) throw tooLarge(width, height, maxPixels);
  if (data.length !== width * height * 3) {
    throw invalidArgument('image', `data has ${data.length} bytes; ${width}×${height} RGB needs ${width * height * 3}`);
  }
  return { data, width, height };
}

/**
 * VaeImageProcessor.preprocess on a PIL image: `np.array(img).astype(np.float32) / 255.0`, then
 * normalize `2.0 * x - 1.0`, NCHW. Each step is one float32 operation in numpy/torch, so we round
 * to float32 after each (v / 255 and 2x - 1 are exact in double before that rounding).
 */
export function rgbToTensor(img: RgbImage): { data: Float32Array; shape: [1, 3, number, number] } {
  const { data, width, height } = checkRgbImage(img, Number.MAX_SAFE_INTEGER);
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.fround(2 * Math.fround(v / 255) - 1);
  for (let i = 0; i < plane; i++) {
    out[i] = lut[data[i * 3]];
    out[plane + i] = lut[data[i * 3 + 1]];
    out[2 * plane + i] = lut[data[i * 3 + 2]];
  }
  return { data: out, shape: [1, 3, height, width] };
}

export interface PreprocessImageOptions {
  /** 2 ** (len(vae.config.block_out_channels) - 1): 8 for Stable Diffusion's VAE. */
  vaeScaleFactor?: number;
  /** Target size; default: the image's own, rounded down to a multiple of vaeScaleFactor. */
  height?: number;
  width?: number;
}

/**
 * VaeImageProcessor.preprocess on one PIL image, as PIAPipeline.prepare_masked_condition calls it
 * (`preprocess(image)`, no height/width: the condition image keeps ITS OWN size, independent of the
 * video's). get_default_height_width rounds that size DOWN to a multiple of vae_scale_factor, and
 * resize (resample "lanczos") is a no-op copy when the size already fits (PIL's Image.resize returns a
 * copy for an unchanged size), so Pillow's Lanczos only runs for sizes like 100×100 → 96×96.
 * Then rgbToTensor: [1, 3, H, W] in [-1, 1].
 */
export function preprocessImage(img: RgbImage, options: PreprocessImageOptions = {}): { data: Float32Array; shape: [1, 3, number, number] } {
  const { vaeScaleFactor = 8 } = options;
  checkRgbImage(img, Number.MAX_SAFE_INTEGER);
  if (!Number.isInteger(vaeScaleFactor) || vaeScaleFactor < 1) throw invalidArgument('vaeScaleFactor', `must be a positive integer (got ${vaeScaleFactor})`);
  const height = (options.height ?? img.height) - ((options.height ?? img.height) % vaeScaleFactor);
  const width = (options.width ?? img.width) - ((options.width ?? img.width) % vaeScaleFactor);
  if (height < 1 || width < 1) {
    throw new PiaError('E_IMAGE', `image ${img.width}×${img.height} is smaller than the VAE scale factor ${vaeScaleFactor}: no size fits`);
  }
  const sized = width === img.width && height === img.height ? img : resizeLanczos(img, width, height);
  return rgbToTensor(sized);
}

/** numpy's np.round: half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x); // half up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Video frames `[B, F, H, W, 3]` in [0, 1] (the pipeline's 'tensor' output, diffusers' 'np') to 8-bit
 * frames, as VaeImageProcessor.numpy_to_pil: `(images * 255).round().astype("uint8")` after the clamp
 * to [0, 1] that postprocess applies. The product is rounded to float32 first (numpy float32 math),
 * then rounded half to even. NaN becomes 0.
 */
export function framesFromTensor(video: { data: Float32Array; shape: readonly number[] }): Frame[][] {
  const { data, shape } = video;
  if (!(data instanceof Float32Array)) throw invalidArgument('video', 'data must be a Float32Array');
  if (shape.length !== 5 || shape[4] !== 3 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw invalidArgument('video', `expected shape [B, F, H, W, 3], got [${shape.join(', ')}]`);
  }
  const [b, f, h, w] = shape;
  const frameLen = h * w * 3;
  if (data.length !== b * f * frameLen) throw invalidArgument('video', `data has ${data.length} values; shape [${shape.join(', ')}] needs ${b * f * frameLen}`);
  const videos: Frame[][] = [];
  for (let bi = 0; bi < b; bi++) {
    const frames: Frame[] = [];
    for (let fi = 0; fi < f; fi++) {
      const base = (bi * f + fi) * frameLen;
      const out = new Uint8Array(frameLen);
      for (let i = 0; i < frameLen; i++) {
        let x = data[base + i];
        x = x > 1 ? 1 : x >= 0 ? x : 0; // NaN lands on 0 too
        out[i] = roundHalfEven(Math.fround(x * 255));
      }
      frames.push({ data: out, width: w, height: h });
    }
    videos.push(frames);
  }
  return videos;
}
