import { PiaError } from './errors.js';

/** Row-major float32 tensor in diffusers' layouts (NCHW; video latents [B, C, F, H, W]). */
export interface Tensor {
  data: Float32Array;
  shape: number[];
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function tensor(data: Float32Array, shape: readonly number[]): Tensor {
  if (data.length !== numel(shape)) {
    throw new PiaError('E_INVALID_ARGUMENT', `tensor data has ${data.length} values, shape [${shape.join(', ')}] needs ${numel(shape)}`);
  }
  return { data, shape: [...shape] };
}

export function zeros(shape: readonly number[]): Tensor {
  return { data: new Float32Array(numel(shape)), shape: [...shape] };
}

/** A `{ data: Float32Array, shape: number[] }` object (sizes unchecked: assertTensor checks them). */
export function isTensor(x: unknown): x is Tensor {
  return x !== null && typeof x === 'object' && (x as Tensor).data instanceof Float32Array && Array.isArray((x as Tensor).shape);
}

/**
 * An owned float32 copy of a stored tensor (a safetensors or pickle view), which stays valid after its
 * file is closed or unmapped.
 */
export function copyTensor(stored: { toFloat32(): Float32Array; shape: readonly number[] }): Tensor {
  return { data: Float32Array.from(stored.toFloat32()), shape: [...stored.shape] };
}

/** Checks that `x` is a Tensor-shaped object; `name` is the option reported in the error. */
export function assertTensor(x: unknown, name: string, rank?: number): asserts x is Tensor {
  const t = x as Partial<Tensor> | null;
  const ok =
    t !== null && typeof t === 'object' && t.data instanceof Float32Array && Array.isArray(t.shape) &&
    t.shape.every((d) => Number.isInteger(d) && d >= 0) && numel(t.shape) === t.data.length;
  if (!ok) {
    throw new PiaError('E_INVALID_ARGUMENT', `${name}: expected { data: Float32Array, shape: number[] } with matching sizes`, { option: name });
  }
  if (rank !== undefined && t.shape!.length !== rank) {
    throw new PiaError('E_INVALID_ARGUMENT', `${name}: expected a rank-${rank} tensor, got shape [${t.shape!.join(', ')}]`, { option: name });
  }
}
