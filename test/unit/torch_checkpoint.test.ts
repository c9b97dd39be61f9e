import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PiaError } from '../../lib/errors.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { readTorchCheckpoint, isTorchTensor } from '../../lib/io/torch_checkpoint.js';
import type { PickleValue, TorchTensor } from '../../lib/io/torch_checkpoint.js';
import { readStateDict } from '../../lib/io/state_dict.js';
import { fixture } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import {
  OP, PickleWriter, bytesOf, pickleObject, tensor, torchSaveLegacy, torchSaveZip, torchZipWithPickle, tuple, zipStored,
} from '../helpers/torch_pickle.js';
import type { PyValue, Storage, TorchDtype } from '../helpers/torch_pickle.js';

const dir = tempDir('pia-ckpt-');
const hasPython = spawnSync('python3', ['-c', 'import pickle'], { encoding: 'utf8' }).status === 0;
let counter = 0;
function writeTemp(bytes: Uint8Array, ext = '.ckpt'): string {
  const p = join(dir, `f${counter++}${ext}`);
  writeFileSync(p, bytes);
  return p;
}

function expectCode(fn: () => unknown, code: string, re?: RegExp): PiaError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PiaError, `expected PiaError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${code}`);
}

const bytes = (t: { data: ArrayBufferView }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
const dict = (v: PickleValue) => v as { [k: string]: PickleValue };

function storage(key: string, dtype: TorchDtype, data: ArrayBufferView): Storage {
  return { key, dtype, bytes: bytesOf(data) };
}

describe('shared fixtures', () => {
  test('PIA original .ckpt equals the .safetensors bitwise (562 tensors)', () => {
    const ckpt = readStateDict(fixture('loaders', 'mini-sd-motion-adapter.pia-original.ckpt'));
    const st = readSafetensors(fixture('loaders', 'mini-sd-motion-adapter.pia-original.safetensors'));
    try {
      assert.equal(ckpt.format, 'torch');
      assert.deepEqual(ckpt.names(), st.names());
      assert.equal(ckpt.names().length, 562);
      for (const name of st.names()) {
        const a = ckpt.get(name);
        const b = st.get(name);
        assert.equal(a.dtype, 'F16', name);
        assert.equal(a.dtype, b.dtype, name);
        assert.deepEqual(a.shape, b.shape, name);
        assert.ok(bytes(a).equals(bytes(b)), `${name}: bytes differ`);
      }
      assert.deepEqual(ckpt.info('conv_in.weight'), { dtype: 'F16', shape: [32, 9, 3, 3] });
    } finally {
      ckpt.close();
      st.close();
    }
  });

  test('A1111 kitestyle.pt: the whole object, and string_to_param equals the .safetensors emb_params', () => {
    const ck = readTorchCheckpoint(fixture('loaders', 'kitestyle.a1111.pt'));
    const st = readSafetensors(fixture('loaders', 'kitestyle.a1111.safetensors'));
    try {
      const root = dict(ck.root);
      assert.deepEqual(Object.keys(root), ['string_to_token', 'string_to_param', 'name', 'step', 'sd_checkpoint', 'sd_checkpoint_name']);
      assert.deepEqual(root.string_to_token, { '*': 265 });
      assert.equal(root.name, 'kitestyle');
      assert.equal(root.step, 1500);
      assert.equal(root.sd_checkpoint, '1a2b3c4d');
      assert.equal(root.sd_checkpoint_name, 'mini-sd');
      const emb = dict(root.string_to_param)['*'] as TorchTensor;
      assert.ok(isTorchTensor(emb));
      assert.equal(emb.dtype, 'F32');
      assert.deepEqual(emb.shape, [2, 64]);
      assert.equal(emb.requiresGrad, true);
      // The .pt holds the float32 of fp16-exact values: widening the f16 file gives the same numbers.
      assert.deepEqual(emb.toFloat32(), st.get('emb_params').toFloat32());
    } finally {
      ck.close();
      st.close();
    }
    const sd = readStateDict(fixture('loaders', 'kitestyle.a1111.pt'), { at: ['string_to_param'] });
    assert.deepEqual(sd.names(), ['*']);
    assert.deepEqual(sd.info('*'), { dtype: 'F32', shape: [2, 64] });
    sd.close();
    // The top level holds no tensors directly.
    const top = readStateDict(fixture('loaders', 'kitestyle.a1111.pt'));
    assert.deepEqual(top.names(), []);
    top.close();
  });

  test('readStateDict reads .safetensors the same way', () => {
    const sd = readStateDict(fixture('loaders', 'kitestyle.a1111.safetensors'));
    assert.equal(sd.format, 'safetensors');
    assert.deepEqual(sd.names(), ['emb_params']);
    assert.deepEqual(sd.info('emb_params'), { dtype: 'F16', shape: [2, 64] });
    expectCode(() => sd.get('nope'), 'E_WEIGHTS_MISMATCH');
    sd.close();
  });
});

// A small state dict taken from the PIA fixture, to derive other layouts from.
function sampleTensors(): { name: string; dtype: TorchDtype; shape: number[]; data: Uint8Array }[] {
  const st = readSafetensors(fixture('loaders', 'mini-sd-motion-adapter.pia-original.safetensors'));
  try {
    return st.names().slice(0, 12).map((name) => {
      const t = st.get(name);
      return { name, dtype: t.dtype as TorchDtype, shape: t.shape, data: bytesOf(t.data) };
    });
  } finally {
    st.close();
  }
}

function stateDictValue(ts: ReturnType<typeof sampleTensors>): PyValue {
  return { $ordered: ts.map((t, i) => [t.name, tensor({ storage: { key: String(i), dtype: t.dtype, bytes: t.data }, shape: t.shape })]) };
}

function expectSameTensors(path: string, ts: ReturnType<typeof sampleTensors>, at?: string[]) {
  const sd = readStateDict(path, { at });
  try {
    assert.deepEqual(sd.names(), ts.map((t) => t.name).sort());
    for (const t of ts) {
      const got = sd.get(t.name);
      assert.equal(got.dtype, t.dtype);
      assert.deepEqual(got.shape, t.shape);
      assert.ok(bytes(got).equals(Buffer.from(t.data)), t.name);
    }
  } finally {
    sd.close();
  }
}

describe('derived layouts', () => {
  const ts = sampleTensors();

  test('our zip writer round-trips (and unaligned entries are copied, not misread)', () => {
    expectSameTensors(writeTemp(torchSaveZip(stateDictValue(ts))), ts);
    expectSameTensors(writeTemp(torchSaveZip(stateDictValue(ts), { align: 1, byteorder: 'little', archive: 'x' })), ts);
  });

  test('zip64 records (torch writes them past 4 GiB)', () => {
    expectSameTensors(writeTemp(torchSaveZip(stateDictValue(ts), { zip64: true })), ts);
  });

  test('the format is chosen by content, not by extension', () => {
    expectSameTensors(writeTemp(torchSaveZip(stateDictValue(ts)), '.safetensors'), ts);
    expectSameTensors(writeTemp(torchSaveLegacy(stateDictValue(ts)), '.safetensors'), ts);
    const st = readStateDict(writeTemp(readFileSync(fixture('loaders', 'kitestyle.a1111.safetensors')), '.ckpt'));
    assert.equal(st.format, 'safetensors');
    st.close();
  });

  // The helper's bytes are what Python's own pickle and zipfile read (stub globals: no torch needed),
  // so these tests exercise the real formats, not a private dialect.
  test('control: Python reads the helper\'s zip and legacy files the same way', { skip: !hasPython && 'python3 not found' }, () => {
    const v: PyValue = { sd: stateDictValue(ts.slice(0, 2)), step: 3, t: tuple('a', null), f: { $float: 0.25 }, big: 2n ** 70n };
    const script = `
import pickle, zipfile, io, struct, sys, json, collections
class U(pickle.Unpickler):
    def find_class(self, m, n):
        if (m, n) == ('collections', 'OrderedDict'): return collections.OrderedDict
        return lambda *a: {'call': m + '.' + n, 'args': a}
    def persistent_load(self, pid): return {'pid': list(pid[:4]) + [pid[4]]}
def plain(x):
    if isinstance(x, dict): return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)): return [plain(v) for v in x]
    if isinstance(x, int) and abs(x) > 2**53: return str(x)
    if isinstance(x, (int, float, str, type(None))): return x
    return repr(x)
z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None
a = plain(U(io.BytesIO(z.read('archive/data.pkl'))).load())
f = open(sys.argv[2], 'rb')
magic, version, info = pickle.load(f), pickle.load(f), pickle.load(f)
assert magic == 0x1950a86a20f9469cfc6c and version == 1001 and info['little_endian']
b = plain(U(f).load())
keys = pickle.load(f)
sizes = []
for k in keys:
    n, = struct.unpack('<q', f.read(8)); f.read(n * 2); sizes.append(n)
assert f.read() == b''
print(json.dumps({'zip': a, 'legacy': b, 'sizes': sizes, 'names': z.namelist()}))
`;
    const r = spawnSync('python3', ['-c', script, writeTemp(torchSaveZip(v)), writeTemp(torchSaveLegacy(v))], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.names, ['archive/data.pkl', 'archive/data/0', 'archive/data/1', 'archive/version']);
    assert.equal(out.zip.step, 3);
    assert.equal(out.zip.big, String(2n ** 70n));
    assert.deepEqual(out.zip.t, ['a', null]);
    const first = out.zip.sd[ts[0].name];
    assert.equal(first.call, 'torch._utils._rebuild_tensor_v2');
    assert.deepEqual(first.args[0].pid, ['storage', first.args[0].pid[1], '0', 'cpu', ts[0].data.length / 2]);
    assert.deepEqual(first.args[2], ts[0].shape);
    assert.deepEqual(out.sizes, [ts[0].data.length / 2, ts[1].data.length / 2]);
    assert.equal(out.legacy.step, 3);
  });

  test('legacy (pre-1.6, non-zip) checkpoint', () => {
    const p = writeTemp(torchSaveLegacy(stateDictValue(ts)));
    assert.notEqual(readFileSync(p)[0], 0x50); // not a zip
    expectSameTensors(p, ts);
  });

  test('legacy storage views (view_metadata) and a shared storage', () => {
    const all = new Float32Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const root = storage('140', 'F32', all);
    const v = {
      a: tensor({ storage: root, shape: [4], view: { key: '141', offset: 2, numel: 6 } }),
      b: tensor({ storage: root, shape: [2, 2], offset: 1, view: { key: '141', offset: 2, numel: 6 } }),
      c: tensor({ storage: root, shape: [10] }),
    };
    const sd = readStateDict(writeTemp(torchSaveLegacy(v)));
    assert.deepEqual(sd.get('a').toFloat32(), new Float32Array([2, 3, 4, 5]));
    assert.deepEqual(sd.get('b').toFloat32(), new Float32Array([3, 4, 5, 6]));
    assert.deepEqual(sd.get('c').toFloat32(), all);
    sd.close();
  });

  test("{'state_dict': ...} wrapper is kept as is (unwrapping is the single-file loader's job)", () => {
    const p = writeTemp(torchSaveZip({ state_dict: stateDictValue(ts), global_step: 470000, epoch: 6 }));
    const top = readStateDict(p);
    assert.deepEqual(top.names(), []);
    top.close();
    expectSameTensors(p, ts, ['state_dict']);
    const ck = readTorchCheckpoint(p);
    assert.equal(dict(ck.root).global_step, 470000);
    assert.equal(Object.keys(dict(dict(ck.root).state_dict)).length, ts.length);
    ck.close();
    expectCode(() => readStateDict(p, { at: ['model'] }), 'E_UNSUPPORTED', /no dict of tensors at \['model'\]/);
  });

  test('bf16, int64, bool, f64 tensors, parameters, scalars and odd values', () => {
    const ids = new BigInt64Array(77).map((_, i) => BigInt(i));
    const bf = new Uint16Array([0x3f80, 0xc0a0, 0x7f80]); // 1, -5, inf
    const v: PyValue = {
      'cond_stage_model.transformer.text_model.embeddings.position_ids': tensor({ storage: storage('ids', 'I64', ids), shape: [1, 77] }),
      'w.bf16': tensor({ storage: storage('bf', 'BF16', bf), shape: [3] }),
      mask: tensor({ storage: storage('m', 'BOOL', new Uint8Array([1, 0])), shape: [2] }),
      f64: tensor({ storage: storage('d', 'F64', new Float64Array([0.1, -2])), shape: [2] }),
      param: { $parameter: { storage: storage('p', 'F32', new Float32Array([7])), shape: [] } },
      big: 2n ** 70n, neg: -(2n ** 40n), neg60: -(2n ** 60n), small: -3, pi: 3.5, half: { $float: 2 }, none: null, flags: [true, false],
      pair: tuple('a', 1), nested: { deeper: { list: [1, 'x', [2]] } },
    };
    for (const bytesOfFile of [torchSaveZip(v), torchSaveLegacy(v)]) {
      const ck = readTorchCheckpoint(writeTemp(bytesOfFile));
      const r = dict(ck.root);
      const pos = r['cond_stage_model.transformer.text_model.embeddings.position_ids'] as TorchTensor;
      assert.equal(pos.dtype, 'I64');
      assert.deepEqual(pos.shape, [1, 77]);
      assert.deepEqual(pos.data, ids);
      assert.deepEqual((r['w.bf16'] as TorchTensor).toFloat32(), new Float32Array([1, -5, Infinity]));
      assert.deepEqual((r.mask as TorchTensor).data, new Uint8Array([1, 0]));
      assert.deepEqual((r.f64 as TorchTensor).data, new Float64Array([0.1, -2]));
      const param = r.param as TorchTensor;
      assert.deepEqual(param.shape, []);
      assert.equal(param.requiresGrad, true);
      assert.deepEqual(param.toFloat32(), new Float32Array([7]));
      assert.equal(r.big, 2n ** 70n);
      assert.equal(r.neg, -(2 ** 40)); // within 2^53: a number
      assert.equal(r.neg60, -(2n ** 60n));
      assert.equal(r.small, -3);
      assert.equal(r.pi, 3.5);
      assert.equal(r.half, 2);
      assert.equal(r.none, null);
      assert.deepEqual(r.flags, [true, false]);
      assert.deepEqual(r.pair, ['a', 1]);
      assert.deepEqual(r.nested, { deeper: { list: [1, 'x', [2]] } });
      ck.close();
    }
  });

  test('non-contiguous (transposed) and offset tensors are gathered row-major', () => {
    const s = storage('0', 'F32', new Float32Array([9, 1, 2, 3, 4, 5, 6])); // a [2,3] matrix after one element
    const v = {
      t: tensor({ storage: s, shape: [3, 2], strides: [1, 3], offset: 1 }), // its transpose
      row: tensor({ storage: s, shape: [3], offset: 4 }),
      col: tensor({ storage: s, shape: [2], strides: [3], offset: 2 }),
      bcast: tensor({ storage: s, shape: [2, 3], strides: [0, 1], offset: 1 }),
    };
    for (const b of [torchSaveZip(v), torchSaveLegacy(v)]) {
      const sd = readStateDict(writeTemp(b));
      assert.deepEqual(sd.get('t').toFloat32(), new Float32Array([1, 4, 2, 5, 3, 6]));
      assert.deepEqual(sd.get('row').toFloat32(), new Float32Array([4, 5, 6]));
      assert.deepEqual(sd.get('col').toFloat32(), new Float32Array([2, 5]));
      assert.deepEqual(sd.get('bcast').toFloat32(), new Float32Array([1, 2, 3, 1, 2, 3]));
      sd.close();
    }
  });
});

describe('corrupt and unsupported files', () => {
  const s = storage('0', 'F32', new Float32Array([1, 2, 3, 4]));
  const good = torchSaveZip({ w: tensor({ storage: s, shape: [2, 2] }) });

  test('tensor extents, missing records and files', () => {
    expectCode(() => readStateDict(writeTemp(torchSaveZip({ w: tensor({ storage: s, shape: [2, 3] }) }))), 'E_WEIGHTS_CORRUPT', /reach past/);
    expectCode(() => readStateDict(writeTemp(torchSaveZip({ w: tensor({ storage: s, shape: [2, 2], strides: [2, 2] }) }))), 'E_WEIGHTS_CORRUPT');
    expectCode(() => readStateDict(writeTemp(torchSaveZip({ w: tensor({ storage: s, shape: [1], offset: 4 }) }))), 'E_WEIGHTS_CORRUPT');
    expectCode(() => readStateDict(writeTemp(torchSaveZip({ w: tensor({ storage: s, shape: [2 ** 40, 2 ** 20], strides: [0, 0] }) }))),
      'E_WEIGHTS_CORRUPT', /larger than the file/);
    const pkl = pickleObject({ w: tensor({ storage: s, shape: [4] }) }, false);
    expectCode(() => readStateDict(writeTemp(torchZipWithPickle(pkl, []))), 'E_WEIGHTS_CORRUPT', /archive\/data\/0' is missing/);
    expectCode(() => readStateDict(writeTemp(zipStored([{ name: 'a/b.txt', data: new Uint8Array(3) }]))), 'E_WEIGHTS_CORRUPT', /data\.pkl/);
    expectCode(() => readTorchCheckpoint(join(dir, 'missing.ckpt')), 'E_MODEL_NOT_FOUND', /missing\.ckpt/);
    expectCode(() => readTorchCheckpoint(writeTemp(Buffer.from('hello world'))), 'E_WEIGHTS_CORRUPT', /not a PyTorch checkpoint/);
    const e = expectCode(() => readTorchCheckpoint(writeTemp(good.subarray(0, good.length - 30))), 'E_WEIGHTS_CORRUPT');
    assert.match(e.message, /\.ckpt/);
  });

  test('compressed entries and big-endian files are E_UNSUPPORTED', () => {
    const b = Buffer.from(good);
    // Mark every entry deflated (method 8) in its local header and its central directory record.
    for (let i = 0; i + 4 <= b.length; i++) {
      if (b.readUInt32LE(i) === 0x04034b50) b.writeUInt16LE(8, i + 8);
      if (b.readUInt32LE(i) === 0x02014b50) b.writeUInt16LE(8, i + 10);
    }
    expectCode(() => readStateDict(writeTemp(b)), 'E_UNSUPPORTED', /compressed/);
    expectCode(() => readStateDict(writeTemp(torchSaveZip({ w: tensor({ storage: s, shape: [4] }) }, { byteorder: 'big' }))),
      'E_UNSUPPORTED', /byte order/);
  });

  test('self-containing and deeply nested objects, bad opcodes', () => {
    const cyc = new PickleWriter().proto(2).op(OP.EMPTY_LIST, OP.BINPUT, 0, OP.BINGET, 0, OP.APPEND, OP.STOP).toBytes();
    expectCode(() => readTorchCheckpoint(writeTemp(torchZipWithPickle(cyc))), 'E_WEIGHTS_CORRUPT', /contains itself/);
    const deep = new PickleWriter().proto(2);
    for (let i = 0; i < 5000; i++) deep.op(OP.EMPTY_LIST);
    for (let i = 0; i < 4999; i++) deep.op(OP.APPEND);
    expectCode(() => readTorchCheckpoint(writeTemp(torchZipWithPickle(deep.op(OP.STOP).toBytes()))), 'E_WEIGHTS_CORRUPT', /nested/);
    const text = new PickleWriter().proto(2).op(0x49).raw(Buffer.from('1\n')).op(OP.STOP).toBytes(); // protocol-0 INT
    expectCode(() => readTorchCheckpoint(writeTemp(torchZipWithPickle(text))), 'E_WEIGHTS_CORRUPT', /opcode 0x49/);
    const huge = new PickleWriter().proto(2).op(OP.BINUNICODE).u32(0xfffffff0).op(OP.STOP).toBytes();
    expectCode(() => readTorchCheckpoint(writeTemp(torchZipWithPickle(huge))), 'E_WEIGHTS_CORRUPT', /truncated/);
    const underflow = new PickleWriter().proto(2).op(OP.MARK, OP.SETITEM, OP.STOP).toBytes();
    expectCode(() => readTorchCheckpoint(writeTemp(torchZipWithPickle(underflow))), 'E_WEIGHTS_CORRUPT', /underflow/);
  });
});

describe('malicious pickles are refused and nothing runs', () => {
  const marker = join(dir, 'pwned');

  // GLOBAL module\nname, then a REDUCE of it with one string argument.
  const call = (w: PickleWriter, module: string, name: string, arg: PyValue) => {
    w.global(module, name);
    w.bytes.push(...pickleObject(tuple(arg), false).subarray(2, -1));
    w.op(OP.REDUCE);
  };
  const payload = (module: string, name: string, arg: PyValue) => {
    const w = new PickleWriter().proto(2);
    call(w, module, name, arg);
    return w.op(OP.STOP).toBytes();
  };
  const cases: { label: string; global: string; pkl: Uint8Array; legacyPkl?: Uint8Array }[] = [
    { label: 'os.system', global: 'os.system', pkl: payload('os', 'system', `touch ${marker}`) },
    { label: 'posix.system', global: 'posix.system', pkl: payload('posix', 'system', `touch ${marker}`) },
    { label: 'nt.system', global: 'nt.system', pkl: payload('nt', 'system', `touch ${marker}`) },
    { label: 'builtins.eval', global: 'builtins.eval', pkl: payload('builtins', 'eval', `open(${JSON.stringify(marker)}, 'w')`) },
    { label: 'builtins.exec', global: 'builtins.exec', pkl: payload('builtins', 'exec', `open(${JSON.stringify(marker)}, 'w')`) },
    { label: '__builtin__.eval', global: '__builtin__.eval', pkl: payload('__builtin__', 'eval', `open(${JSON.stringify(marker)}, 'w')`) },
    { label: 'builtins.getattr', global: 'builtins.getattr', pkl: payload('builtins', 'getattr', 'x') },
    { label: 'subprocess.Popen', global: 'subprocess.Popen', pkl: payload('subprocess', 'Popen', ['touch', marker]) },
    { label: 'numpy reconstruct', global: 'numpy.core.multiarray._reconstruct', pkl: payload('numpy.core.multiarray', '_reconstruct', 0) },
  ];
  // STACK_GLOBAL (protocol 4 spelling) of os.system.
  {
    const w = new PickleWriter().proto(4).op(OP.SHORT_BINUNICODE, 2).raw(Buffer.from('os'))
      .op(OP.SHORT_BINUNICODE, 6).raw(Buffer.from('system')).op(OP.STACK_GLOBAL);
    w.bytes.push(...pickleObject(tuple(`touch ${marker}`), false).subarray(2, -1));
    cases.push({ label: 'STACK_GLOBAL os.system', global: 'os.system', pkl: w.op(OP.REDUCE, OP.STOP).toBytes() });
  }
  // Hidden inside a tensor rebuild: the storage argument, then the size, are os.system(...) calls.
  const s = storage('0', 'F32', new Float32Array(4));
  const hidden = (where: 'storage' | 'size', legacy = false) => pickleObject({
    'w': { $raw: (w: PickleWriter, ctx) => {
      w.global('torch._utils', '_rebuild_tensor_v2').op(OP.MARK);
      if (where === 'storage') call(w, 'os', 'system', `touch ${marker}`);
      else ctx.writeValue(tensor({ storage: s, shape: [4] })); // a real tensor first, so the reader is mid-way
      w.int(0);
      if (where === 'size') call(w, 'os', 'system', `touch ${marker}`);
      else ctx.writeValue(tuple(4));
      ctx.writeValue(tuple(1));
      w.op(OP.NEWFALSE).global('collections', 'OrderedDict').op(OP.EMPTY_TUPLE, OP.REDUCE, OP.TUPLE, OP.REDUCE);
    } },
  }, legacy);
  cases.push({ label: 'inside _rebuild_tensor_v2 storage', global: 'os.system', pkl: hidden('storage'), legacyPkl: hidden('storage', true) });
  cases.push({ label: 'inside _rebuild_tensor_v2 size', global: 'os.system', pkl: hidden('size'), legacyPkl: hidden('size', true) });

  for (const c of cases) {
    test(`${c.label}: E_UNSAFE_PICKLE naming '${c.global}' (zip, legacy and bare pickle)`, () => {
      const files = [
        writeTemp(torchZipWithPickle(c.pkl, [s])),
        writeTemp(torchSaveLegacy(null, c.legacyPkl ?? c.pkl), '.pt'),
        writeTemp(c.pkl, '.bin'),
      ];
      for (const p of files) {
        for (const open of [() => readTorchCheckpoint(p), () => readStateDict(p)]) {
          const e = expectCode(open, 'E_UNSAFE_PICKLE');
          assert.ok(e.message.includes(`'${c.global}'`), e.message);
          assert.equal(e.key, c.global);
          assert.ok(e.message.includes(p), e.message);
        }
      }
      assert.equal(existsSync(marker), false, 'the payload ran');
    });
  }

  test('INST (a class named inline, protocol 0) is refused too', () => {
    const w = new PickleWriter().proto(2).op(OP.MARK).str(`touch ${marker}`).op(OP.INST).raw(Buffer.from('os\nsystem\n')).op(OP.STOP);
    expectCode(() => readTorchCheckpoint(writeTemp(torchZipWithPickle(w.toBytes()))), 'E_UNSAFE_PICKLE');
    assert.equal(existsSync(marker), false);
  });

  // The payloads are real: Python's own unpickler runs them (in a child process, on a marker of its own).
  test('control: Python\'s pickle executes the same os.system payload', { skip: !hasPython && 'python3 not found' }, () => {
    const other = join(dir, 'python-ran');
    const p = writeTemp(payload('os', 'system', `touch ${other}`), '.pkl');
    const r = spawnSync('python3', ['-c', 'import pickle,sys; pickle.loads(open(sys.argv[1],"rb").read())', p], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(existsSync(other), true);
    unlinkSync(other);
  });
});

describe('fuzz', () => {
  // xorshift32: deterministic, so a failing case can be replayed by its index.
  let seed = 0x2545f491;
  const rnd = (n: number) => {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const v: PyValue = {
    state_dict: {
      $ordered: [
        ['a.weight', tensor({ storage: storage('0', 'F16', new Uint16Array([0x3c00, 0x4000, 0x4200, 0x4400])), shape: [2, 2] })],
        ['b.t', tensor({ storage: storage('1', 'F32', new Float32Array([1, 2, 3, 4, 5, 6])), shape: [3, 2], strides: [1, 3] })],
        ['ids', tensor({ storage: storage('2', 'I64', new BigInt64Array([1n, 2n, 3n])), shape: [1, 3] })],
        ['p', { $parameter: { storage: storage('3', 'BF16', new Uint16Array([0x3f80])), shape: [1] } }],
      ],
    },
    global_step: 12, name: 'x', lr: { $float: 0.5 }, hist: [1, tuple(2, 3)],
  };
  const ELEMENT: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
  const CODES = new Set(['E_WEIGHTS_CORRUPT', 'E_UNSAFE_PICKLE', 'E_UNSUPPORTED']);
  // Bytes that matter to a pickle or a zip: opcodes, small ints, signature bytes.
  const interesting = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x28, 0x2e, 0x4b, 0x51, 0x52, 0x58, 0x61, 0x62, 0x63, 0x68, 0x71,
    0x73, 0x74, 0x75, 0x7d, 0x5d, 0x85, 0x86, 0x87, 0x8a, 0x93, 0x94, 0x95, 0x50, 0x4b, 0x03, 0x04];

  function exercise(p: string) {
    const ck = readTorchCheckpoint(p);
    try {
      const visit = (x: PickleValue, depth: number) => {
        if (depth > 200) return;
        if (isTorchTensor(x)) {
          assert.equal(x.data.byteLength, x.shape.reduce((a, b) => a * b, 1) * ELEMENT[x.dtype]);
          x.toFloat32();
        } else if (Array.isArray(x)) x.forEach((y) => visit(y, depth + 1));
        else if (x instanceof Map) x.forEach((y) => visit(y, depth + 1));
        else if (x !== null && typeof x === 'object' && !(x instanceof Uint8Array)) Object.values(x).forEach((y) => visit(y as PickleValue, depth + 1));
      };
      visit(ck.root, 0);
    } finally {
      ck.close();
    }
    try {
      readStateDict(p, { at: ['state_dict'] }).close();
    } catch (e) {
      if (!(e instanceof PiaError) || !CODES.has(e.code)) throw e;
    }
  }

  for (const [label, valid] of [['zip', Buffer.from(torchSaveZip(v))], ['legacy', Buffer.from(torchSaveLegacy(v))]] as const) {
    test(`${label}: mutated and truncated files give tensors or a typed PiaError, never a crash or hang`, { timeout: 120_000 }, () => {
      exercise(writeTemp(valid)); // the unmutated file reads
      const t0 = Date.now();
      let ok = 0, rejected = 0, prev = '';
      const N = 2500;
      for (let i = 0; i < N && Date.now() - t0 < 60_000; i++) {
        const b = Buffer.from(valid);
        let out: Buffer = b;
        switch (rnd(4)) {
          case 0: // interesting bytes anywhere
            for (let k = 0, n = 1 + rnd(3); k < n; k++) b[rnd(b.length)] = interesting[rnd(interesting.length)];
            break;
          case 1: // truncate
            out = b.subarray(0, rnd(b.length));
            break;
          case 2: { // delete or duplicate a span
            const at = rnd(b.length), len = 1 + rnd(16);
            out = rnd(2) ? Buffer.concat([b.subarray(0, at), b.subarray(at + len)])
              : Buffer.concat([b.subarray(0, at + len), b.subarray(at)]);
            break;
          }
          default: // random bytes
            for (let k = 0, n = 1 + rnd(8); k < n; k++) b[rnd(b.length)] = rnd(256);
        }
        if (prev) unlinkSync(prev); // a new file each time: never truncate a file that might still be mapped
        const p = join(dir, `fuzz-${label}-${i}.ckpt`);
        writeFileSync(p, out);
        prev = p;
        try {
          exercise(p);
          ok++;
        } catch (e) {
          assert.ok(e instanceof PiaError, `case ${i}: ${e}`);
          assert.ok(CODES.has(e.code), `case ${i}: ${e.code} ${e.message}`);
          rejected++;
        }
      }
      assert.ok(ok + rejected >= 1000, `only ${ok + rejected} cases in the time budget`);
      assert.ok(rejected > 0 && ok > 0, `ok ${ok}, rejected ${rejected}`);
    });
  }
});
