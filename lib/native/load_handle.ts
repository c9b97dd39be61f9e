// The tail every native model loader shares: the addon's errors become PiaErrors, and a load that
// completes after its signal aborted is disposed at once instead of leaking its weights.
import { abortError, fromNativeError, throwIfAborted } from '../errors.js';
import type { NativeModelHandle } from './types.js';

export async function loadNativeHandle(
  load: () => Promise<NativeModelHandle>,
  dispose: (handle: NativeModelHandle) => void,
  signal: AbortSignal | undefined,
): Promise<NativeModelHandle> {
  throwIfAborted(signal);
  let handle: NativeModelHandle;
  try {
    handle = await load();
  } catch (e) {
    throw fromNativeError(e);
  }
  if (signal?.aborted) {
    dispose(handle);
    throw abortError(signal);
  }
  return handle;
}
