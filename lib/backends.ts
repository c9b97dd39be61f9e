import { fromNativeError, invalidArgument } from './errors.js';
import { addon } from './native/addon.js';
import type { BackendsInfo } from './native/types.js';

export type { BackendsInfo, CudaDeviceInfo } from './native/types.js';

/** What this machine can run: CPU threads and SIMD features, and whether CUDA is usable (and why not). */
export function backends(): BackendsInfo {
  try {
    return addon().backends();
  } catch (e) {
    throw fromNativeError(e);
  }
}

/**
 * Size of the native thread pool (default: PIA_NUM_THREADS or the number of cores).
 * Pass 0 to go back to the default. Returns the size in effect.
 */
export function setNumThreads(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 1024) throw invalidArgument('threads', 'must be an integer in 0..1024');
  return addon().setNumThreads(n);
}
