// FreeInit (arXiv 2312.07537) as diffusers v0.26.3's PIAPipeline does it: a 3-D low-pass filter
// over (frames, h, w) that keeps the low frequencies of the re-noised latents and takes the high
// ones from fresh noise.
import { complexFromReal, fftn, fftshift } from './fft.js';
import { invalidArgument } from './errors.js';
import type { Generator } from './random/generator.js';
import type { Tensor } from './tensor.js';

export type FreeInitMethod = 'butterworth' | 'gaussian' | 'ideal';

export interface FreeInitOptions {
  numIters?: number;
  useFastSampling?: boolean;
  method?: FreeInitMethod;
  order?: number;
  spatialStopFrequency?: number;
  temporalStopFrequency?: number;
  generator?: Generator;
}

export type ResolvedFreeInit = Required<Omit<FreeInitOptions, 'generator'>> & { generator?: Generator };

/** enable_free_init's defaults, validated. */
export function resolveFreeInit(o: FreeInitOptions = {}): ResolvedFreeInit {
  const r: ResolvedFreeInit = {
    numIters: o.numIters ?? 3,
    useFastSampling: o.useFastSampling ?? false,
    method: o.method ?? 'butterworth',
    order: o.order ?? 4,
    spatialStopFrequency: o.spatialStopFrequency ?? 0.25,
    temporalStopFrequency: o.temporalStopFrequency ?? 0.25,
    generator: o.generator,
  };
  if (!Number.isInteger(r.numIters) || r.numIters < 1 || r.numIters > 100) throw invalidArgument('numIters', 'must be an integer in 1..100');
  if (!['butterworth', 'gaussian', 'ideal'].includes(r.method)) throw invalidArgument('method', "must be 'butterworth', 'gaussian' or 'ideal'");
  if (!(r.order > 0) || !Number.isFinite(r.order)) throw invalidArgument('order', 'must be a positive number');
  for (const k of ['spatialStopFrequency', 'temporalStopFrequency'] as const) {
    if (!(r[k] >= 0 && r[k] <= 1)) throw invalidArgument(k, 'must be in [0, 1]');
  }
  return r;
}

/**
 * diffusers' _get_freeinit_freq_filter for shape [..., T, H, W] (one [T, H, W] filter; the leading
 * dims repeat it). Python-float math, stored as float32.
 */
export function freeInitFilter(
  t: number, h: number, w: number,
  method: FreeInitMethod, order: number, spatialStopFrequency: number, temporalStopFrequency: number,
): Float32Array {
  const mask = new Float32Array(t * h * w);
  const ds = spatialStopFrequency, dt = temporalStopFrequency;
  if (ds === 0 || dt === 0) return mask;
  const retrieve =
    method === 'butterworth' ? (x: number) => 1 / (1 + (x / ds ** 2) ** order)
    : method === 'gaussian' ? (x: number) => Math.exp((-1 / (2 * ds ** 2)) * x)
    // diffusers compares with ds * 2, not ds²: copied as is.
    : (x: number) => (x <= ds * 2 ? 1 : 0);
  for (let i = 0; i < t; i++) {
    for (let j = 0; j < h; j++) {
      for (let k = 0; k < w; k++) {
        const d2 = ((ds / dt) * ((2 * i) / t - 1)) ** 2 + ((2 * j) / h - 1) ** 2 + ((2 * k) / w - 1) ** 2;
        mask[(i * h + j) * w + k] = retrieve(d2);
      }
    }
  }
  return mask;
}

/**
 * diffusers' _freq_mix_3d: low frequencies of x, high frequencies of noise, over the last three
 * dims of [..., T, H, W]; `lpf` is one [T, H, W] filter applied to every leading index.
 */
export function freqMix3d(x: Tensor, noise: Tensor, lpf: Float32Array): Tensor {
  const shape = x.shape;
  const [t, h, w] = shape.slice(-3);
  const block = t * h * w;
  if (lpf.length !== block) throw invalidArgument('lpf', 'filter size does not match the latents');
  const out = new Float32Array(x.data.length);
  const localShape = [t, h, w];
  const axes = [0, 1, 2];
  for (let off = 0; off < x.data.length; off += block) {
    const xf = fftshift(fftn(complexFromReal(x.data.subarray(off, off + block)), localShape, axes), localShape, axes);
    const nf = fftshift(fftn(complexFromReal(noise.data.subarray(off, off + block)), localShape, axes), localShape, axes);
    for (let i = 0; i < block; i++) {
      const lp = lpf[i], hp = Math.fround(1 - lp);
      xf.re[i] = xf.re[i] * lp + nf.re[i] * hp;
      xf.im[i] = xf.im[i] * lp + nf.im[i] * hp;
    }
    const mixed = fftn(fftshift(xf, localShape, axes, true), localShape, axes, true);
    for (let i = 0; i < block; i++) out[off + i] = mixed.re[i];
  }
  return { data: out, shape: [...shape] };
}
