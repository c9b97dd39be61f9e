import sharp from 'sharp';
import { PiaError, throwIfAborted } from '../errors.js';
import type { Frame } from './image.js';
import { checkFps, checkFrames, checkIntInRange, checkLoop } from './export_frames.js';
import { writeFileAtomic } from './atomic_write.js';

export interface WebpOptions {
  /** Frames per second (default 8). */
  fps?: number;
  /** How many times the animation plays; 0 = forever (default). */
  loop?: number;
  /** Lossy quality 1..100 (default 90). */
  quality?: number;
  /** Lossless encoding (default false). */
  lossless?: boolean;
  signal?: AbortSignal;
}

/** Encodes frames as an animated WebP (in memory). */
export async function encodeWebp(frames: readonly Frame[], options: Omit<WebpOptions, 'signal'> = {}): Promise<Uint8Array> {
  const { fps = 8, loop = 0, quality = 90, lossless = false } = options;
  const { width, height } = checkFrames(frames);
  checkFps(fps);
  checkLoop(loop);
  checkIntInRange('quality', quality, 1, 100);
  // WebP's canvas is at most 16383 pixels a side (libwebp's limit); each frame must fit.
  if (width > 16383 || height > 16383) throw new PiaError('E_INVALID_ARGUMENT', `WebP frames are at most 16383 pixels a side (got ${width}×${height})`, { option: 'frames' });
  // sharp reads an animation as one tall image whose pages are `pageHeight` rows each.
  const tall = Buffer.allocUnsafe(width * height * 3 * frames.length);
  frames.forEach((f, i) => tall.set(f.data, i * width * height * 3));
  const delay = Math.max(1, Math.round(1000 / fps));
  const out = await sharp(tall, {
    raw: { width, height: height * frames.length, channels: 3, pageHeight: height },
    limitInputPixels: false,
  })
    .webp({ loop, delay: frames.map(() => delay), quality, lossless })
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Writes frames as an animated WebP via sharp, atomically. */
export async function exportToWebp(frames: readonly Frame[], path: string, options: WebpOptions = {}): Promise<string> {
  const { signal, ...rest } = options;
  throwIfAborted(signal);
  const bytes = await encodeWebp(frames, rest);
  throwIfAborted(signal);
  await writeFileAtomic(path, bytes);
  return path;
}
