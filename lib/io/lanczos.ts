import { invalidArgument } from '../errors.js';
import type { RgbImage } from './image.js';

/**
 * Pillow's `Image.resize((w, h), Image.LANCZOS | Image.BICUBIC)` on 8-bit RGB, bit for bit.
 *
 * diffusers' VaeImageProcessor.resize (resample="lanczos") calls it on the condition image and
 * transformers' CLIPImageProcessor (resample=BICUBIC) on the IP-Adapter image, and no sharp/libvips
 * kernel gives the same bytes, so we follow Pillow's libImaging/Resample.c:
 * a separable filter (horizontal pass first, over only the rows the vertical pass will read),
 * double-precision weights normalised to sum 1, then converted to fixed point with 22 fractional
 * bits (32 - 8 - 2: 8 for the pixel, 2 of headroom for the negative lobes), accumulated in 32-bit
 * integers starting from one half, and clipped back to 0..255 after EACH pass (the intermediate
 * image is 8-bit too).
 */

const PRECISION_BITS = 32 - 8 - 2;

/** A Resample.c filter: its kernel and its support (half-width, in input samples at scale 1). */
export interface ResampleFilter {
  support: number;
  kernel(x: number): number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

export const LANCZOS: ResampleFilter = {
  support: 3,
  kernel: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0),
};

/** Resample.c bicubic_filter: Keys' cubic convolution with a = -0.5. */
export const BICUBIC: ResampleFilter = {
  support: 2,
  kernel: (x) => {
    const a = -0.5;
    const t = Math.abs(x);
    if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
    return 0;
  },
};

interface Coefficients {
  /** Weights per output sample, `ksize` slots each, fixed point. */
  weights: Int32Array;
  /** First input index and number of input samples per output sample. */
  first: Int32Array;
  count: Int32Array;
  ksize: number;
}

/** One axis: which inputs feed each output and with what weights (Resample.c precompute_coeffs + normalize_coeffs_8bpc). */
function coefficients(inSize: number, outSize: number, filter: ResampleFilter): Coefficients {
  const scale = inSize / outSize;
  // Shrinking widens the kernel so that it low-passes; enlarging keeps its natural width.
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const weights = new Int32Array(outSize * ksize);
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float64Array(ksize);
  const inv = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; Math.trunc does the same.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = filter.kernel((x + xmin - center + 0.5) * inv);
      sum += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = sum !== 0 ? w[x] / sum : w[x];
      // Round half away from zero, as the C code's (int)(k * 2^22 ± 0.5).
      weights[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { weights, first, count, ksize };
}

/** The C code's clip8: drop the fraction (arithmetic shift) and saturate to 0..255. */
function clip8(acc: number): number {
  const v = acc >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

const HALF = 1 << (PRECISION_BITS - 1);

export function resizeLanczos(img: RgbImage, width: number, height: number): RgbImage {
  return resizePillow(img, width, height, LANCZOS);
}

/** `Image.resize((width, height), <filter>)` of Pillow on 8-bit RGB. */
export function resizePillow(img: RgbImage, width: number, height: number, filter: ResampleFilter): RgbImage {
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v < 1) throw invalidArgument(name, `must be a positive integer (got ${v})`);
  }
  const { width: inW, height: inH, data } = img;
  if (data.length !== inW * inH * 3) throw invalidArgument('image', `data length ${data.length} is not ${inW}×${inH}×3`);
  if (width === inW && height === inH) return { data: data.slice(), width, height };

  const vert = coefficients(inH, height, filter);
  // Rows of the source the vertical pass reads; the horizontal pass only produces those.
  const rowFirst = vert.first[0];
  const rowEnd = vert.first[height - 1] + vert.count[height - 1];

  let src = data;
  let srcW = inW;
  let srcRow0 = 0; // source row that row 0 of `src` corresponds to
  if (width !== inW) {
    const hor = coefficients(inW, width, filter);
    const rows = rowEnd - rowFirst;
    const tmp = new Uint8Array(width * rows * 3);
    for (let y = 0; y < rows; y++) {
      const inRow = (y + rowFirst) * inW * 3;
      const outRow = y * width * 3;
      for (let xx = 0; xx < width; xx++) {
        const k0 = xx * hor.ksize;
        const x0 = hor.first[xx];
        const n = hor.count[xx];
        let r = HALF, g = HALF, b = HALF;
        for (let x = 0; x < n; x++) {
          const k = hor.weights[k0 + x];
          const p = inRow + (x0 + x) * 3;
          r += data[p] * k;
          g += data[p + 1] * k;
          b += data[p + 2] * k;
        }
        const o = outRow + xx * 3;
        tmp[o] = clip8(r);
        tmp[o + 1] = clip8(g);
        tmp[o + 2] = clip8(b);
      }
    }
    src = tmp;
    srcW = width;
    srcRow0 = rowFirst;
  }
  if (height === inH) return { data: src, width, height };

  const out = new Uint8Array(width * height * 3);
  for (let yy = 0; yy < height; yy++) {
    const k0 = yy * vert.ksize;
    const y0 = vert.first[yy] - srcRow0;
    const n = vert.count[yy];
    const outRow = yy * width * 3;
    for (let xx = 0; xx < width; xx++) {
      let r = HALF, g = HALF, b = HALF;
      for (let y = 0; y < n; y++) {
        const k = vert.weights[k0 + y];
        const p = ((y0 + y) * srcW + xx) * 3;
        r += src[p] * k;
        g += src[p + 1] * k;
        b += src[p + 2] * k;
      }
      const o = outRow + xx * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { data: out, width, height };
}
