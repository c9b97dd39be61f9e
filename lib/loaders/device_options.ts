// The `device` and `dtype` options of the pipeline loaders (fromPretrained, fromSingleFile):
// checked before any file is read, so a bad value fails at once with a reason.
import { backends } from '../backends.js';
import { PiaError, invalidArgument } from '../errors.js';

export type PipelineDevice = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export type PipelineDtype = 'float32' | 'float16' | 'bfloat16';

export const DTYPES: readonly PipelineDtype[] = ['float32', 'float16', 'bfloat16'];

/** What the networks will run on. The CPU computes in float32 whatever the dtype (fp16/bf16 weights are widened). */
export interface ResolvedPlacement {
  device: 'cpu';
  dtype: PipelineDtype;
}

/**
 * Checks `device` ('auto' | 'cpu' | 'cuda' | 'cuda:N') and `dtype`. 'auto' is the CPU for now; 'cuda'
 * where CUDA cannot run says why (backends().cuda.reason); where it can, E_UNSUPPORTED until the
 * models run on the CUDA backend.
 */
export function resolvePlacement(device: unknown, dtype: unknown): ResolvedPlacement {
  if (dtype !== undefined && !DTYPES.includes(dtype as PipelineDtype)) {
    throw invalidArgument('dtype', `must be one of ${DTYPES.map((d) => `'${d}'`).join(', ')}, got ${JSON.stringify(dtype)}`);
  }
  const dt = (dtype ?? 'float32') as PipelineDtype;
  if (device === undefined || device === 'auto' || device === 'cpu') return { device: 'cpu', dtype: dt };
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
  throw new PiaError('E_UNSUPPORTED', `device '${device}': the pipeline's models run on the CPU only in this version; use device 'cpu' or 'auto'`, {
    option: 'device',
  });
}
