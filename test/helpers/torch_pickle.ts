// Writes torch.save's file layouts by hand (TEST ONLY): pickle protocol 2 bytes, the zip container
// of torch >= 1.6 and the legacy pre-1.6 stream, so tests can derive checkpoints the shared
// fixtures do not hold (legacy files, wrappers, bf16/int64, strided tensors) and crafted malicious
// pickles. Layouts follow torch/serialization.py (_save, _legacy_save) and Lib/pickle.py.

export type TorchDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const STORAGE_CLASS: Record<TorchDtype, string> = {
  F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', F64: 'DoubleStorage', I64: 'LongStorage',
  I32: 'IntStorage', I16: 'ShortStorage', I8: 'CharStorage', U8: 'ByteStorage', BOOL: 'BoolStorage',
};
export const ELEMENT_SIZE: Record<TorchDtype, number> = {
  F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Pickle opcodes by their Lib/pickle.py names. */
export const OP = {
  MARK: 0x28, STOP: 0x2e, BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, NONE: 0x4e, BINPERSID: 0x51, REDUCE: 0x52,
  BINUNICODE: 0x58, APPEND: 0x61, BUILD: 0x62, GLOBAL: 0x63, EMPTY_DICT: 0x7d, APPENDS: 0x65, BINGET: 0x68, INST: 0x69,
  EMPTY_LIST: 0x5d, BINPUT: 0x71, SETITEM: 0x73, TUPLE: 0x74, EMPTY_TUPLE: 0x29, SETITEMS: 0x75, BINFLOAT: 0x47,
  PROTO: 0x80, NEWOBJ: 0x81, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87, NEWTRUE: 0x88, NEWFALSE: 0x89, LONG1: 0x8a,
  SHORT_BINUNICODE: 0x8c, STACK_GLOBAL: 0x93, MEMOIZE: 0x94, FRAME: 0x95,
} as const;

export class PickleWriter {
  readonly bytes: number[] = [];

  op(...codes: number[]): this {
    this.bytes.push(...codes);
    return this;
  }
  raw(b: Uint8Array | number[]): this {
    for (const x of b) this.bytes.push(x);
    return this;
  }
  proto(v = 2): this {
    return this.op(OP.PROTO, v);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.op(OP.BINUNICODE);
    this.u32(b.length);
    return this.raw(b);
  }
  int(n: number | bigint): this {
    const v = BigInt(n);
    if (v >= 0n && v < 256n) return this.op(OP.BININT1, Number(v));
    if (v >= 0n && v < 65536n) return this.op(OP.BININT2, Number(v) & 0xff, Number(v) >> 8);
    if (v >= -(2n ** 31n) && v < 2n ** 31n) {
      this.op(OP.BININT);
      return this.u32(Number(BigInt.asUintN(32, v)));
    }
    // LONG1: little-endian two's complement, as short as the sign allows.
    const out: number[] = [];
    let x = v;
    for (;;) {
      out.push(Number(BigInt.asUintN(8, x)));
      x >>= 8n;
      const signBit = (out[out.length - 1] & 0x80) !== 0;
      if ((x === 0n && !signBit) || (x === -1n && signBit)) break;
    }
    return this.op(OP.LONG1, out.length).raw(out);
  }
  float(f: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(f);
    return this.op(OP.BINFLOAT).raw(b);
  }
  global(module: string, name: string): this {
    return this.op(OP.GLOBAL).raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  u32(n: number): this {
    return this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  toBytes(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

export interface Storage {
  key: string;
  dtype: TorchDtype;
  /** Raw little-endian bytes; numel = bytes / element size. */
  bytes: Uint8Array;
}

/** A Python value to pickle. Plain objects are dicts; arrays lists. */
export type PyValue =
  | null | boolean | number | bigint | string | PyValue[] | { [key: string]: PyValue }
  | { $tuple: PyValue[] }
  | { $float: number }
  | { $ordered: [string, PyValue][] }
  | { $tensor: TensorSpec }
  | { $parameter: TensorSpec }
  | { $raw: (w: PickleWriter, ctx: PickleContext) => void };

export interface TensorSpec {
  storage: Storage;
  shape: number[];
  /** Defaults to contiguous. */
  strides?: number[];
  offset?: number;
  requiresGrad?: boolean;
  /** Legacy format only: the tensor's storage is this view of `storage` (view_metadata). */
  view?: { key: string; offset: number; numel: number };
}

export interface PickleContext {
  legacy: boolean;
  /** Storages in order of first use. */
  storages: Map<string, Storage>;
  writeValue(v: PyValue): void;
}

export const tuple = (...items: PyValue[]): PyValue => ({ $tuple: items });
export const tensor = (spec: TensorSpec): PyValue => ({ $tensor: spec });

export function contiguousStrides(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

function isTagged<K extends string>(v: object, k: K): v is Record<K, unknown> {
  return Object.prototype.hasOwnProperty.call(v, k);
}

/** Pickles `v` (protocol 2, no memo) as torch's Pickler would, storages as persistent ids. */
export function pickleObject(v: PyValue, legacy: boolean, storages = new Map<string, Storage>()): Uint8Array {
  const w = new PickleWriter().proto(2);
  const ctx: PickleContext = { legacy, storages, writeValue: (x) => write(x) };
  const writeTensor = (t: TensorSpec) => {
    const numel = t.storage.bytes.length / ELEMENT_SIZE[t.storage.dtype];
    if (!storages.has(t.storage.key)) storages.set(t.storage.key, t.storage);
    w.global('torch._utils', '_rebuild_tensor_v2');
    w.op(OP.MARK);
    // persistent id: ('storage', storage_type, key, location, numel[, view_metadata])
    w.op(OP.MARK).str('storage').global('torch', STORAGE_CLASS[t.storage.dtype]).str(t.storage.key).str('cpu').int(numel);
    if (legacy) {
      if (t.view) w.str(t.view.key).int(t.view.offset).int(t.view.numel).op(OP.TUPLE3);
      else w.op(OP.NONE);
    }
    w.op(OP.TUPLE, OP.BINPERSID);
    w.int(t.offset ?? 0);
    write({ $tuple: t.shape });
    write({ $tuple: t.strides ?? contiguousStrides(t.shape) });
    w.op(t.requiresGrad ? OP.NEWTRUE : OP.NEWFALSE);
    w.global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.REDUCE);
    w.op(OP.TUPLE, OP.REDUCE);
  };
  const write = (x: PyValue): void => {
    if (x === null) w.op(OP.NONE);
    else if (x === true) w.op(OP.NEWTRUE);
    else if (x === false) w.op(OP.NEWFALSE);
    else if (typeof x === 'number') {
      if (!Number.isInteger(x)) w.float(x);
      else w.int(x);
    } else if (typeof x === 'bigint') w.int(x);
    else if (typeof x === 'string') w.str(x);
    else if (Array.isArray(x)) {
      w.op(OP.EMPTY_LIST);
      if (x.length) {
        w.op(OP.MARK);
        x.forEach(write);
        w.op(OP.APPENDS);
      }
    } else if (isTagged(x, '$tuple')) {
      w.op(OP.MARK);
      (x.$tuple as PyValue[]).forEach(write);
      w.op(OP.TUPLE);
    } else if (isTagged(x, '$float')) w.float(x.$float as number);
    else if (isTagged(x, '$tensor')) writeTensor(x.$tensor as TensorSpec);
    else if (isTagged(x, '$parameter')) {
      w.global('torch._utils', '_rebuild_parameter');
      writeTensor(x.$parameter as TensorSpec);
      w.op(OP.NEWTRUE).global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.REDUCE, OP.TUPLE3, OP.REDUCE);
    } else if (isTagged(x, '$raw')) (x.$raw as (w: PickleWriter, c: PickleContext) => void)(w, ctx);
    else if (isTagged(x, '$ordered')) {
      // A state_dict: OrderedDict() then SETITEMS, and its `_metadata` attribute through BUILD.
      w.global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.REDUCE);
      const items = x.$ordered as [string, PyValue][];
      if (items.length) {
        w.op(OP.MARK);
        for (const [k, val] of items) {
          w.str(k);
          write(val);
        }
        w.op(OP.SETITEMS);
      }
      w.op(OP.EMPTY_DICT).str('_metadata').op(OP.EMPTY_DICT, OP.SETITEM, OP.BUILD);
    } else {
      w.op(OP.EMPTY_DICT);
      const entries = Object.entries(x);
      if (entries.length) {
        w.op(OP.MARK);
        for (const [k, val] of entries) {
          w.str(k);
          write(val);
        }
        w.op(OP.SETITEMS);
      }
    }
  };
  write(v);
  w.op(OP.STOP);
  return w.toBytes();
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A zip of stored entries, each entry's data aligned to `align` bytes by padding the local header's
 * extra field (what torch's PyTorchStreamWriter does with 64). `zip64` writes every size and offset
 * through zip64 records, as torch does for archives past 4 GiB.
 */
export function zipStored(records: { name: string; data: Uint8Array }[], align = 64, zip64 = false): Uint8Array {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const r of records) {
    const name = Buffer.from(r.name, 'utf8');
    const crc = crc32(r.data);
    const z64Local = zip64 ? 20 : 0; // id, length, size, compressed size
    const headerLen = 30 + name.length + z64Local;
    const pad = align > 1 ? (align - ((offset + headerLen + 4) % align)) % align : 0;
    const extraLen = z64Local + (align > 1 ? 4 + pad : 0);
    const local = Buffer.alloc(30 + name.length + extraLen);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(zip64 ? 45 : 20, 4);
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(zip64 ? 0xffffffff : r.data.length, 18);
    local.writeUInt32LE(zip64 ? 0xffffffff : r.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extraLen, 28);
    name.copy(local, 30);
    let x = 30 + name.length;
    if (zip64) {
      local.writeUInt16LE(1, x);
      local.writeUInt16LE(16, x + 2);
      local.writeBigUInt64LE(BigInt(r.data.length), x + 4);
      local.writeBigUInt64LE(BigInt(r.data.length), x + 12);
      x += 20;
    }
    if (align > 1) {
      local.writeUInt16LE(0x5946, x); // 'FB' padding record, as torch writes
      local.writeUInt16LE(pad, x + 2);
    }
    const cdExtra = zip64 ? 28 : 0;
    const cd = Buffer.alloc(46 + name.length + cdExtra);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(zip64 ? 45 : 20, 4);
    cd.writeUInt16LE(zip64 ? 45 : 20, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(zip64 ? 0xffffffff : r.data.length, 20);
    cd.writeUInt32LE(zip64 ? 0xffffffff : r.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(cdExtra, 30);
    cd.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    name.copy(cd, 46);
    if (zip64) {
      const e = 46 + name.length;
      cd.writeUInt16LE(1, e);
      cd.writeUInt16LE(24, e + 2);
      cd.writeBigUInt64LE(BigInt(r.data.length), e + 4); // uncompressed
      cd.writeBigUInt64LE(BigInt(r.data.length), e + 12); // compressed
      cd.writeBigUInt64LE(BigInt(offset), e + 20); // local header offset
    }
    central.push(cd);
    parts.push(local, Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength));
    offset += local.length + r.data.length;
  }
  const cdBytes = Buffer.concat(central);
  const tail: Buffer[] = [];
  if (zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(records.length), 24);
    rec.writeBigUInt64LE(BigInt(records.length), 32);
    rec.writeBigUInt64LE(BigInt(cdBytes.length), 40);
    rec.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cdBytes.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : records.length, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : records.length, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cdBytes.length, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  return new Uint8Array(Buffer.concat([...parts, cdBytes, ...tail, eocd]));
}

/** torch.save (>= 1.6) of `obj`: `<archive>/data.pkl`, `<archive>/data/<key>`, `<archive>/version`. */
export function torchSaveZip(
  obj: PyValue, options: { archive?: string; align?: number; byteorder?: string; zip64?: boolean } = {},
): Uint8Array {
  const archive = options.archive ?? 'archive';
  const storages = new Map<string, Storage>();
  const pkl = pickleObject(obj, false, storages);
  const records = [{ name: `${archive}/data.pkl`, data: pkl }];
  if (options.byteorder) records.push({ name: `${archive}/byteorder`, data: Buffer.from(options.byteorder) });
  for (const s of storages.values()) records.push({ name: `${archive}/data/${s.key}`, data: s.bytes });
  records.push({ name: `${archive}/version`, data: Buffer.from('3\n') });
  return zipStored(records, options.align ?? 64, options.zip64 ?? false);
}

/** A pickle of a raw data.pkl in a torch zip (for crafted pickles). */
export function torchZipWithPickle(pkl: Uint8Array, storages: Storage[] = [], archive = 'archive'): Uint8Array {
  return zipStored([
    { name: `${archive}/data.pkl`, data: pkl },
    ...storages.map((s) => ({ name: `${archive}/data/${s.key}`, data: s.bytes })),
    { name: `${archive}/version`, data: Buffer.from('3\n') },
  ]);
}

/**
 * torch._legacy_save: pickled magic number, protocol version 1001 and sys info, then the object
 * (persistent ids with view metadata), the sorted storage keys, and each storage as an int64
 * element count followed by its bytes.
 */
export function torchSaveLegacy(obj: PyValue, mainPickle?: Uint8Array): Uint8Array {
  const storages = new Map<string, Storage>();
  const main = mainPickle ?? pickleObject(obj, true, storages);
  const magic = new PickleWriter().proto(2).int(0x1950a86a20f9469cfc6cn).op(OP.STOP).toBytes();
  const version = new PickleWriter().proto(2).int(1001).op(OP.STOP).toBytes();
  const sysInfo = pickleObject(
    { protocol_version: 1001, little_endian: true, type_sizes: { short: 2, int: 4, long: 4 } }, true);
  const keys = [...storages.keys()].sort();
  const keyList = pickleObject(keys, true);
  const parts: Uint8Array[] = [magic, version, sysInfo, main, keyList];
  for (const k of keys) {
    const s = storages.get(k)!;
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(s.bytes.length / ELEMENT_SIZE[s.dtype]));
    parts.push(n, s.bytes);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Bytes of a typed array, as a storage would hold them. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}
