/** Stable error codes (see API.md). */
export type PiaErrorCode =
  | 'E_WEIGHTS_CORRUPT'
  | 'E_WEIGHTS_MISMATCH'
  | 'E_UNSAFE_PICKLE'
  | 'E_MODEL_NOT_FOUND'
  | 'E_UNSUPPORTED'
  | 'E_INVALID_ARGUMENT'
  | 'E_IMAGE'
  | 'E_OUT_OF_MEMORY'
  | 'E_BACKEND';

export interface PiaErrorDetails {
  key?: string;
  file?: string;
  option?: string;
  cause?: unknown;
}

/** Every error this package raises on bad input or a backend failure. */
export class PiaError extends Error {
  readonly code: PiaErrorCode;
  key?: string;
  file?: string;
  option?: string;

  constructor(code: PiaErrorCode, message: string, details: PiaErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PiaError';
    this.code = code;
    if (details.key !== undefined) this.key = details.key;
    if (details.file !== undefined) this.file = details.file;
    if (details.option !== undefined) this.option = details.option;
  }
}

export function invalidArgument(option: string, message: string): PiaError {
  return new PiaError('E_INVALID_ARGUMENT', `${option}: ${message}`, { option });
}

/** E_INVALID_ARGUMENT naming `option` unless `x` is a finite number (Number.isFinite: no coercion). */
export function assertFiniteNumber(x: unknown, option: string): asserts x is number {
  if (!Number.isFinite(x)) throw invalidArgument(option, 'must be a finite number');
}

/** What Node's own APIs reject with when an AbortSignal fires. */
export function abortError(signal?: AbortSignal): DOMException {
  const reason = signal?.reason;
  if (reason instanceof DOMException && reason.name === 'AbortError') return reason;
  return new DOMException('The operation was aborted', 'AbortError');
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * Native errors arrive as plain Errors carrying `code` (and maybe `key`/`file`);
 * turn them into PiaError so callers can rely on `instanceof`.
 */
export function fromNativeError(err: unknown): unknown {
  if (err instanceof PiaError || !(err instanceof Error)) return err;
  const e = err as Error & { code?: string; key?: string; file?: string };
  if (typeof e.code === 'string' && e.code.startsWith('E_')) {
    return new PiaError(e.code as PiaErrorCode, e.message, { key: e.key, file: e.file, cause: err });
  }
  return err;
}
