import { PiaError, fromNativeError, invalidArgument } from '../errors.js';
import { addon } from '../native/addon.js';
import type { NativeSafetensorsFile } from '../native/types.js';
import { widenF16, widenBF16 } from './float16.js';
import { writeFileAtomicSync } from './atomic_write.js';

export type SafetensorsDtype =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E4M3' | 'F8_E5M2' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

export type RawTensorData =
  | Float32Array | Float64Array | Uint16Array | Int16Array | Uint8Array | Int8Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** A tensor as stored in the file: F16/BF16 keep their raw bits in a Uint16Array. */
export interface RawTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: RawTensorData;
  /** The values as float32 (F32 data is returned as is; integers are converted). */
  toFloat32(): Float32Array;
}

export interface SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  names(): string[];
  info(name: string): { dtype: SafetensorsDtype; shape: number[] };
  get(name: string): RawTensor;
  close(): void;
  [Symbol.dispose](): void;
}

const ARRAYS: Record<SafetensorsDtype, new (b: ArrayBuffer) => RawTensorData> = {
  BOOL: Uint8Array, U8: Uint8Array, I8: Int8Array, F8_E4M3: Uint8Array, F8_E5M2: Uint8Array,
  I16: Int16Array, U16: Uint16Array, F16: Uint16Array, BF16: Uint16Array,
  I32: Int32Array, U32: Uint32Array, F32: Float32Array, F64: Float64Array, I64: BigInt64Array, U64: BigUint64Array,
};

function toFloat32(dtype: SafetensorsDtype, data: RawTensorData): Float32Array {
  if (dtype === 'F32') return data as Float32Array;
  if (dtype === 'F16') return widenF16(data as Uint16Array);
  if (dtype === 'BF16') return widenBF16(data as Uint16Array);
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    throw new PiaError('E_UNSUPPORTED', `toFloat32: ${dtype} tensors are not supported`);
  }
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return out;
}

class SafetensorsFileImpl implements SafetensorsFile {
  readonly metadata: Record<string, string>;
  #native: NativeSafetensorsFile;

  constructor(readonly path: string, native: NativeSafetensorsFile) {
    this.#native = native;
    this.metadata = native.metadata();
  }

  names(): string[] {
    return this.#call(() => this.#native.names());
  }

  info(name: string): { dtype: SafetensorsDtype; shape: number[] } {
    const i = this.#call(() => this.#native.info(name));
    return { dtype: i.dtype as SafetensorsDtype, shape: i.shape };
  }

  get(name: string): RawTensor {
    const { dtype, shape } = this.info(name);
    const bytes = this.#call(() => this.#native.read(name));
    const data = new ARRAYS[dtype](bytes);
    return { dtype, shape, data, toFloat32: () => toFloat32(dtype, data) };
  }

  close(): void {
    this.#native.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #call<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw fromNativeError(e);
    }
  }
}

/**
 * Opens a .safetensors file: the header is validated in full (offsets, sizes, dtypes) before
 * anything is returned, and tensors are read from a memory mapping on demand.
 * Violations throw PiaError E_WEIGHTS_CORRUPT naming the file and tensor.
 */
export function safeOpen(path: string): SafetensorsFile {
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument('path', 'must be a non-empty string');
  let native: NativeSafetensorsFile;
  try {
    native = new (addon().SafetensorsFile)(path);
  } catch (e) {
    throw fromNativeError(e);
  }
  return new SafetensorsFileImpl(path, native);
}

/** Same as safeOpen: the mapping is lazy, so reading everything costs only what is used. */
export const readSafetensors = safeOpen;

export type SaveableTensor =
  | { data: Float32Array; shape: readonly number[] }
  | { dtype: SafetensorsDtype; data: RawTensorData; shape: readonly number[] };

const ELEMENT_SIZE: Record<SafetensorsDtype, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4,
  F64: 8, I64: 8, U64: 8,
};

/**
 * Writes tensors (Float32Array data is stored as F32; give `dtype` for raw data of another type)
 * to a temporary file beside `path`, then renames it over `path`: readers never see half a file.
 */
export function saveSafetensors(path: string, tensors: Record<string, SaveableTensor>, metadata?: Record<string, string>): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw invalidArgument('metadata', `value of '${k}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__' || name.length === 0) throw invalidArgument('tensors', `invalid tensor name '${name}'`);
    const t = tensors[name];
    const dtype: SafetensorsDtype = 'dtype' in t ? t.dtype : 'F32';
    if (!(dtype in ELEMENT_SIZE)) throw invalidArgument('tensors', `${name}: unknown dtype ${dtype}`);
    if (!('dtype' in t) && !(t.data instanceof Float32Array)) {
      throw invalidArgument('tensors', `${name}: data must be a Float32Array unless a dtype is given`);
    }
    const shape = [...t.shape];
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw invalidArgument('tensors', `${name}: bad shape [${shape}]`);
    const count = shape.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (bytes.byteLength !== count * ELEMENT_SIZE[dtype]) {
      throw invalidArgument('tensors', `${name}: ${bytes.byteLength} bytes of data do not fit shape [${shape}] of ${dtype}`);
    }
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  const json = JSON.stringify(header);
  // Pad with spaces so the byte buffer starts 8-aligned (what the reference writer does).
  const headerBytes = Buffer.from(json, 'utf8');
  const padded = Buffer.alloc(Math.ceil(headerBytes.length / 8) * 8, 0x20);
  headerBytes.copy(padded);
  const lengthField = Buffer.alloc(8);
  lengthField.writeBigUInt64LE(BigInt(padded.length));

  writeFileAtomicSync(path, [lengthField, padded, ...chunks]);
}
