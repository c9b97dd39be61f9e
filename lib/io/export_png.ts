import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { invalidArgument, throwIfAborted } from '../errors.js';
import type { Frame } from './image.js';
import { checkFrames } from './export_frames.js';
import { writeFileAtomic } from './atomic_write.js';

export interface PngsOptions {
  /** File name prefix (default 'frame_'): frame_0000.png, frame_0001.png, … */
  prefix?: string;
  signal?: AbortSignal;
}

/**
 * Writes one PNG per frame into `dir` (created if needed), each file atomically.
 * Resolves to the paths written, in frame order.
 */
export async function exportToPngs(frames: readonly Frame[], dir: string, options: PngsOptions = {}): Promise<string[]> {
  const { prefix = 'frame_', signal } = options;
  const { width, height } = checkFrames(frames);
  if (typeof prefix !== 'string' || /[/\\\0]/.test(prefix)) throw invalidArgument('prefix', 'must be a file name prefix without path separators');
  throwIfAborted(signal);
  await mkdir(dir, { recursive: true });
  const digits = Math.max(4, String(frames.length - 1).length);
  const paths: string[] = [];
  for (let i = 0; i < frames.length; i++) {
    throwIfAborted(signal);
    const png = await sharp(frames[i].data, { raw: { width, height, channels: 3 }, limitInputPixels: false }).png().toBuffer();
    const p = join(dir, `${prefix}${String(i).padStart(digits, '0')}.png`);
    await writeFileAtomic(p, png);
    paths.push(p);
  }
  return paths;
}
