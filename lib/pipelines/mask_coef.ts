// PIA's per-frame condition strengths (diffusers pipeline_pia.py RANGE_LIST and
// prepare_mask_coef_by_statistics): 0–2 small/moderate/large motion, 3–5 looping, 6–8 style transfer.
import { invalidArgument } from '../errors.js';

export const RANGE_LIST: readonly (readonly number[])[] = [
  [1.0, 0.9, 0.85, 0.85, 0.85, 0.8],
  [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75],
  [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5],
  [1.0, 0.9, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85, 0.9, 1.0],
  [1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75, 0.75, 0.75, 0.75, 0.75, 0.78, 0.79, 0.8, 0.8, 1.0],
  [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8, 1.0],
  [0.5, 0.4, 0.4, 0.4, 0.35, 0.3],
  [0.5, 0.4, 0.4, 0.4, 0.35, 0.35, 0.3, 0.25, 0.2],
  [0.5, 0.2],
];

export function prepareMaskCoefByStatistics(numFrames: number, condFrame: number, motionScale: number): number[] {
  if (!Number.isInteger(numFrames) || numFrames < 1) throw invalidArgument('numFrames', 'must be a positive integer');
  if (!Number.isInteger(condFrame) || condFrame < 0 || condFrame >= numFrames) throw invalidArgument('condFrame', 'must be in 0..numFrames-1');
  if (!Number.isInteger(motionScale) || motionScale < 0 || motionScale >= RANGE_LIST.length) {
    throw invalidArgument('motionScale', `must be an integer in 0..${RANGE_LIST.length - 1}`);
  }
  const base = RANGE_LIST[motionScale];
  const padded = [...base, ...Array(Math.max(0, numFrames - base.length)).fill(base[base.length - 1])];
  return Array.from({ length: numFrames }, (_, i) => padded[Math.abs(i - condFrame)]);
}
