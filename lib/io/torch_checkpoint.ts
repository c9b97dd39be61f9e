import { PiaError, fromNativeError, invalidArgument } from '../errors.js';
import { addon } from '../native/addon.js';
import type { NativePickleValue, NativeTorchCheckpoint } from '../native/types.js';
import { widenBF16, widenF16 } from './float16.js';
import type { RawTensor, RawTensorData } from './safetensors.js';

/** Dtypes of torch's storage classes, in safetensors spelling. */
export type TorchDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** A tensor of a checkpoint: `data` (row-major, a copy) is read from the file on first use. */
export interface TorchTensor extends RawTensor {
  dtype: TorchDtype;
  readonly requiresGrad: boolean;
  readonly isTorchTensor: true;
}

/** A global the pickle names without calling it (only torch's allow-listed names can appear). */
export interface TorchGlobal {
  readonly torchGlobal: string;
}

/**
 * A checkpoint's object tree: Python dicts become objects (a Map when a key is not a string),
 * lists and tuples arrays, ints numbers (bigint beyond 2^53), bytes Uint8Array.
 */
export type PickleValue =
  | null | boolean | number | bigint | string | Uint8Array | TorchTensor | TorchGlobal
  | PickleValue[] | { [key: string]: PickleValue } | Map<PickleValue, PickleValue>;

export interface TorchCheckpoint {
  readonly path: string;
  readonly root: PickleValue;
  close(): void;
  [Symbol.dispose](): void;
}

const ARRAYS: Record<TorchDtype, new (b: ArrayBuffer) => RawTensorData> = {
  F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, F64: Float64Array, I64: BigInt64Array, I32: Int32Array,
  I16: Int16Array, I8: Int8Array, U8: Uint8Array, BOOL: Uint8Array,
};

function widen(dtype: TorchDtype, data: RawTensorData): Float32Array {
  if (dtype === 'F32') return data as Float32Array;
  if (dtype === 'F16') return widenF16(data as Uint16Array);
  if (dtype === 'BF16') return widenBF16(data as Uint16Array);
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return out;
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNativeError(e);
  }
}

class TorchTensorImpl implements TorchTensor {
  readonly isTorchTensor = true as const;
  readonly dtype: TorchDtype;
  readonly shape: number[];
  readonly requiresGrad: boolean;
  #data?: RawTensorData;

  constructor(private readonly native: NativeTorchCheckpoint, private readonly index: number) {
    const info = call(() => native.tensorInfo(index));
    this.dtype = info.dtype as TorchDtype;
    this.shape = info.shape;
    this.requiresGrad = info.requiresGrad;
  }

  get data(): RawTensorData {
    this.#data ??= new ARRAYS[this.dtype](call(() => this.native.readTensor(this.index)));
    return this.#data;
  }

  toFloat32(): Float32Array {
    return widen(this.dtype, this.data);
  }
}

function unwrap(native: NativeTorchCheckpoint, v: NativePickleValue, seen: Map<object, PickleValue>): PickleValue {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
  const done = seen.get(v);
  if (done !== undefined) return done; // shared sub-trees stay shared
  let out: PickleValue;
  switch (v.t) {
    case 'tensor':
      out = new TorchTensorImpl(native, v.index);
      break;
    case 'global':
      out = { torchGlobal: v.name };
      break;
    case 'storage':
      // A bare storage outside a tensor: torch would return a TypedStorage; we keep its key.
      out = { torchGlobal: `storage:${v.key}` };
      break;
    case 'list':
    case 'tuple':
      out = v.items.map((x) => unwrap(native, x, seen));
      break;
    case 'dict': {
      const keys = v.keys.map((x) => unwrap(native, x, seen));
      const values = v.values.map((x) => unwrap(native, x, seen));
      if (keys.every((k) => typeof k === 'string')) {
        const o: { [key: string]: PickleValue } = {};
        keys.forEach((k, i) => Object.defineProperty(o, k as string, { value: values[i], enumerable: true, writable: true, configurable: true }));
        out = o;
      } else {
        out = new Map(keys.map((k, i) => [k, values[i]]));
      }
      break;
    }
  }
  seen.set(v, out);
  return out;
}

export function isTorchTensor(v: unknown): v is TorchTensor {
  return v instanceof TorchTensorImpl;
}

/**
 * Opens a PyTorch checkpoint (.ckpt / .pt / .bin: torch.save's zip format or the legacy pre-1.6
 * pickle) WITHOUT executing it: the pickle runs in a restricted reader that knows only the names
 * torch uses to rebuild tensors. Any other global is PiaError E_UNSAFE_PICKLE (naming it) before
 * anything could run; a malformed file is E_WEIGHTS_CORRUPT. Tensor bytes are read on demand.
 */
export function readTorchCheckpoint(path: string): TorchCheckpoint {
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument('path', 'must be a non-empty string');
  const native = call(() => new (addon().TorchCheckpoint)(path));
  let root: PickleValue;
  try {
    root = unwrap(native, call(() => native.root()), new Map());
  } catch (e) {
    native.close();
    throw e instanceof PiaError ? e : fromNativeError(e);
  }
  return {
    path,
    root,
    close: () => native.close(),
    [Symbol.dispose]: () => native.close(),
  };
}
