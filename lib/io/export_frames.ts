import { invalidArgument } from '../errors.js';
import type { Frame } from './image.js';

/** Checks an animation's frames: at least one, all RGB of one size. Returns that size. */
export function checkFrames(frames: readonly Frame[]): { width: number; height: number } {
  if (!Array.isArray(frames) || frames.length === 0) throw invalidArgument('frames', 'expected a non-empty array of frames');
  const { width, height } = frames[0] ?? {};
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw invalidArgument('frames', `frame 0: width and height must be positive integers (got ${width}×${height})`);
  }
  frames.forEach((f, i) => {
    if (f === null || typeof f !== 'object' || !(f.data instanceof Uint8Array)) {
      throw invalidArgument('frames', `frame ${i}: expected { data: Uint8Array (RGB HWC), width, height }`);
    }
    if (f.width !== width || f.height !== height) {
      throw invalidArgument('frames', `frame ${i} is ${f.width}×${f.height}, frame 0 is ${width}×${height}: all frames must have one size`);
    }
    if (f.data.length !== width * height * 3) {
      throw invalidArgument('frames', `frame ${i}: data has ${f.data.length} bytes; ${width}×${height} RGB needs ${width * height * 3}`);
    }
  });
  return { width, height };
}

export function checkFps(fps: number): number {
  if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0) throw invalidArgument('fps', `must be a positive number (got ${fps})`);
  return fps;
}

/** `loop`: how many times the animation plays; 0 = forever. */
export function checkLoop(loop: number): number {
  if (!Number.isInteger(loop) || loop < 0 || loop > 65535) throw invalidArgument('loop', `must be an integer in 0..65535, 0 = forever (got ${loop})`);
  return loop;
}

export function checkIntInRange(option: string, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw invalidArgument(option, `must be an integer in ${lo}..${hi} (got ${v})`);
  return v;
}
