// The `device` and `dtype` options of the loaders (PIAPipeline.fromPretrained/fromSingleFile and the
// model classes): checked before any file is read, so a bad value fails at once with a reason, and
// resolved here ('auto' included) so that the addon is only ever told 'cpu' or 'cuda:N'.
import { AsyncLocalStorage } from 'node:async_hooks';
import { backends } from '../backends.js';
import { PiaError, invalidArgument } from '../errors.js';

export type PipelineDevice = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export type PipelineDtype = 'float32' | 'float16' | 'bfloat16';

export const DTYPES: readonly PipelineDtype[] = ['float32', 'float16', 'bfloat16'];

/**
 * Where a network runs. The CPU computes in float32 whatever the dtype (fp16/bf16 weights are
 * widened); a GPU keeps weights and activations in `dtype` with float32 accumulation.
 */
export interface ResolvedPlacement {
  device: 'cpu' | `cuda:${number}`;
  dtype: PipelineDtype;
}

/** The device/dtype options a model loader takes. */
export interface PlacementOptions {
  device?: PipelineDevice;
  dtype?: PipelineDtype;
}

/**
 * Checks `device` ('auto' | 'cpu' | 'cuda' | 'cuda:N') and `dtype` (default float32, as diffusers'
 * torch_dtype). 'auto' (the default) is the first GPU when CUDA is usable, else the CPU, unless the
 * environment variable PIA_DEVICE names a device for it (the test runner pins the CPU-parity suites
 * with PIA_DEVICE=cpu). 'cuda' where CUDA cannot run is E_UNSUPPORTED saying why
 * (backends().cuda.reason: no driver, no GPU, a build without CUDA).
 */
export function resolvePlacement(device: unknown, dtype: unknown): ResolvedPlacement {
  if (dtype !== undefined && !DTYPES.includes(dtype as PipelineDtype)) {
    throw invalidArgument('dtype', `must be one of ${DTYPES.map((d) => `'${d}'`).join(', ')}, got ${JSON.stringify(dtype)}`);
  }
  const dt = (dtype ?? 'float32') as PipelineDtype;
  if (device === undefined || device === 'auto') {
    const pinned = process.env.PIA_DEVICE;
    if (pinned && pinned !== 'auto') return resolvePlacement(pinned, dt);
    return backends().cuda.available ? { device: 'cuda:0', dtype: dt } : { device: 'cpu', dtype: dt };
  }
  if (device === 'cpu') return { device: 'cpu', dtype: dt };
  const m = typeof device === 'string' ? /^cuda(?::(\d+))?$/.exec(device) : null;
  if (!m) throw invalidArgument('device', `must be 'auto', 'cpu', 'cuda' or 'cuda:N', got ${JSON.stringify(device)}`);
  const cuda = backends().cuda;
  if (!cuda.available) {
    throw new PiaError('E_UNSUPPORTED', `device '${device}': CUDA is not available (${cuda.reason ?? 'no reason given'})`, { option: 'device' });
  }
  const index = m[1] === undefined ? 0 : Number(m[1]);
  const count = cuda.devices?.length ?? 0;
  if (index >= count) {
    throw invalidArgument('device', `'${device}': this machine has ${count} CUDA device${count === 1 ? '' : 's'}`);
  }
  return { device: `cuda:${index}`, dtype: dt };
}

// A pipeline loader places every component it builds, including those built deep inside the
// single-file loaders; the placement travels with the async call rather than through each signature.
const pipelineScope = new AsyncLocalStorage<ResolvedPlacement>();

/** Runs `load` with `placement` as the default of every model loader it calls. */
export function withPipelinePlacement<T>(placement: ResolvedPlacement, load: () => Promise<T>): Promise<T> {
  return pipelineScope.run(placement, load);
}

/**
 * The placement of one model: its own options when given, else the enclosing pipeline loader's,
 * else 'auto'. `forceUpcast` (an AutoencoderKL config's force_upcast, true by default in diffusers):
 * SD-1.5's VAE overflows in float16, so a pipeline placing it in float16 keeps it in float32, as
 * diffusers' pipelines upcast it before decoding. An explicit model-level dtype is kept.
 */
export function modelPlacement(options: PlacementOptions | undefined, forceUpcast = false): ResolvedPlacement {
  if (options?.device !== undefined || options?.dtype !== undefined) {
    const inherited = pipelineScope.getStore();
    return resolvePlacement(options.device ?? inherited?.device, options.dtype ?? inherited?.dtype);
  }
  const p = pipelineScope.getStore() ?? resolvePlacement(undefined, undefined);
  if (forceUpcast && p.device !== 'cpu' && p.dtype === 'float16') return { device: p.device, dtype: 'float32' };
  return p;
}
