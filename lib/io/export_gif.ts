import gifenc from 'gifenc';
import { invalidArgument, throwIfAborted } from '../errors.js';
import type { Frame } from './image.js';
import { checkFps, checkFrames, checkLoop } from './export_frames.js';
import { writeFileAtomic } from './atomic_write.js';

const { GIFEncoder, quantize, applyPalette, nearestColorIndex } = gifenc;

export interface GifOptions {
  /** Frames per second (default 8). GIF stores delays in 1/100 s, so 8 fps is stored as 13 cs (125 ms rounded). */
  fps?: number;
  /** How many times the animation plays; 0 = forever (default). */
  loop?: number;
  /** One 256-colour palette per frame (default; best colours) or one for the whole animation (smaller file, no flicker). */
  palette?: 'per-frame' | 'global';
  /** Floyd–Steinberg error diffusion against the palette (default off: dithering makes frames shimmer). */
  dither?: boolean;
  signal?: AbortSignal;
}

/** RGBA copy owning its own ArrayBuffer (gifenc reads `.buffer` through a Uint32Array view). */
function toRgba(rgb: Uint8Array, pixels: number, out = new Uint8Array(pixels * 4), at = 0): Uint8Array {
  for (let i = 0, o = at * 4; i < pixels; i++, o += 4) {
    out[o] = rgb[i * 3];
    out[o + 1] = rgb[i * 3 + 1];
    out[o + 2] = rgb[i * 3 + 2];
    out[o + 3] = 255;
  }
  return out;
}

/** Floyd–Steinberg: each pixel takes its nearest palette colour; the error is pushed to unvisited neighbours. */
function ditherToPalette(rgb: Uint8Array, width: number, height: number, palette: number[][]): Uint8Array {
  const err = new Float32Array(rgb.length);
  for (let i = 0; i < rgb.length; i++) err[i] = rgb[i];
  const index = new Uint8Array(width * height);
  const px = [0, 0, 0];
  // Nearest-colour search scans the whole palette; diffused pixels repeat a lot, so remember answers.
  const nearest = new Map<number, number>();
  const spread = (x: number, y: number, e: number[], w: number) => {
    if (x < 0 || x >= width || y >= height) return;
    const o = (y * width + x) * 3;
    err[o] += e[0] * w;
    err[o + 1] += e[1] * w;
    err[o + 2] += e[2] * w;
  };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) px[c] = Math.min(255, Math.max(0, Math.round(err[o + c])));
      const key = (px[0] << 16) | (px[1] << 8) | px[2];
      let k = nearest.get(key);
      if (k === undefined) {
        k = nearestColorIndex(palette, px);
        nearest.set(key, k);
      }
      index[y * width + x] = k;
      const e = [err[o] - palette[k][0], err[o + 1] - palette[k][1], err[o + 2] - palette[k][2]];
      spread(x + 1, y, e, 7 / 16);
      spread(x - 1, y + 1, e, 3 / 16);
      spread(x, y + 1, e, 5 / 16);
      spread(x + 1, y + 1, e, 1 / 16);
    }
  }
  return index;
}

/** Encodes frames as an animated GIF (in memory). */
export function encodeGif(frames: readonly Frame[], options: Omit<GifOptions, 'signal'> = {}): Uint8Array {
  const { fps = 8, loop = 0, palette: paletteMode = 'per-frame', dither = false } = options;
  const { width, height } = checkFrames(frames);
  checkFps(fps);
  checkLoop(loop);
  if (paletteMode !== 'per-frame' && paletteMode !== 'global') throw invalidArgument('palette', `must be 'per-frame' or 'global' (got ${String(paletteMode)})`);
  if (width > 65535 || height > 65535) throw invalidArgument('frames', `GIF frames are at most 65535 pixels a side (got ${width}×${height})`);
  const pixels = width * height;

  let globalPalette: number[][] | undefined;
  if (paletteMode === 'global') {
    // One palette from every frame's pixels: the quantizer bins colours, so memory grows with the
    // pixel count only through this one RGBA buffer.
    const all = new Uint8Array(pixels * frames.length * 4);
    frames.forEach((f, i) => toRgba(f.data, pixels, all, i * pixels));
    globalPalette = quantize(all, 256);
  }

  const gif = GIFEncoder();
  // gifenc's repeat: -1 = no loop block (plays once), 0 = forever, n = n extra plays.
  const repeat = loop === 0 ? 0 : loop - 1 === 0 ? -1 : loop - 1;
  const delay = 1000 / fps;
  const rgba = new Uint8Array(pixels * 4);
  frames.forEach((f, i) => {
    toRgba(f.data, pixels, rgba);
    const palette = globalPalette ?? quantize(rgba, 256);
    const index = dither ? ditherToPalette(f.data, width, height, palette) : applyPalette(rgba, palette);
    // With a global palette, frame 0 writes it as the global colour table and later frames reuse it.
    gif.writeFrame(index, width, height, { palette: globalPalette && i > 0 ? undefined : palette, delay, repeat });
  });
  gif.finish();
  return gif.bytesView();
}

/** Writes frames as an animated GIF via gifenc (quantize + applyPalette), atomically. */
export async function exportToGif(frames: readonly Frame[], path: string, options: GifOptions = {}): Promise<string> {
  const { signal, ...rest } = options;
  throwIfAborted(signal);
  const bytes = encodeGif(frames, rest);
  throwIfAborted(signal);
  await writeFileAtomic(path, bytes);
  return path;
}
