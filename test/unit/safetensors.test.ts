import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, safeOpen, saveSafetensors, PiaError } from '../../lib/index.js';
import { fixturesDir } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { safetensorsBytes } from '../helpers/safetensors_bytes.js';

const dir = tempDir();
let counter = 0;
function writeTemp(bytes: Uint8Array): string {
  const p = join(dir, `f${counter++}.safetensors`);
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

const ELEMENT_SIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

describe('saveSafetensors / readSafetensors round trip', () => {
  test('f32, raw dtypes, 0-dim and empty tensors, metadata', () => {
    const p = join(dir, 'round.safetensors');
    const a = new Float32Array([1, -2.5, 3e-8, Infinity, -0]);
    const h = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]); // f16 1, -2, 65504, smallest subnormal
    const b = new Uint16Array([0x3f80, 0xc0a0]); // bf16 1, -5
    const ids = new BigInt64Array([49406n, -1n, 9007199254740993n]);
    saveSafetensors(
      p,
      {
        a: { data: a, shape: [5] },
        half: { dtype: 'F16', data: h, shape: [2, 2] },
        bf: { dtype: 'BF16', data: b, shape: [2] },
        ids: { dtype: 'I64', data: ids, shape: [1, 3] },
        scalar: { data: new Float32Array([7]), shape: [] },
        empty: { data: new Float32Array(0), shape: [0, 3] },
        mask: { dtype: 'BOOL', data: new Uint8Array([1, 0, 1]), shape: [3] },
      },
      { format: 'pt', note: 'é ✓' },
    );
    const f = readSafetensors(p);
    assert.deepEqual(f.names(), ['a', 'bf', 'empty', 'half', 'ids', 'mask', 'scalar']);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'é ✓' });
    assert.deepEqual(f.get('a').data, a);
    assert.deepEqual(f.get('half').toFloat32(), new Float32Array([1, -2, 65504, 2 ** -24]));
    assert.deepEqual(f.get('bf').toFloat32(), new Float32Array([1, -5]));
    assert.deepEqual(f.get('ids').data, ids);
    assert.deepEqual(f.get('scalar').shape, []);
    assert.deepEqual(f.get('scalar').data, new Float32Array([7]));
    assert.deepEqual(f.info('empty'), { dtype: 'F32', shape: [0, 3] });
    assert.equal(f.get('empty').data.length, 0);
    assert.deepEqual(f.get('mask').data, new Uint8Array([1, 0, 1]));
    // Header padded to 8 bytes so the data starts aligned.
    const raw = readFileSync(p);
    assert.equal(Number(raw.readBigUInt64LE(0)) % 8, 0);
    f.close();
  });

  test('writes atomically: no temp files left, an existing file is replaced whole', () => {
    const sub = join(dir, 'atomic');
    const p = join(dir, 'atomic.safetensors');
    saveSafetensors(p, { x: { data: new Float32Array([1]), shape: [1] } });
    saveSafetensors(p, { y: { data: new Float32Array([2, 3]), shape: [2] } });
    assert.deepEqual(readSafetensors(p).names(), ['y']);
    assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp')), []);
    assert.equal(existsSync(sub), false);
  });

  test('refuses inconsistent input', () => {
    const p = join(dir, 'bad.safetensors');
    expectCode(() => saveSafetensors(p, { x: { data: new Float32Array(3), shape: [2] } }), 'E_INVALID_ARGUMENT');
    expectCode(() => saveSafetensors(p, { __metadata__: { data: new Float32Array(1), shape: [1] } }), 'E_INVALID_ARGUMENT');
    expectCode(() => saveSafetensors(p, { x: { data: new Float32Array(1), shape: [1] } }, { k: 1 as unknown as string }), 'E_INVALID_ARGUMENT');
    assert.equal(existsSync(p), false);
  });
});

const TORCH_DTYPES: Record<string, string> = {
  float32: 'F32', float16: 'F16', bfloat16: 'BF16', float64: 'F64', int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL',
};

describe('every fixture file reads correctly', () => {
  const files: string[] = [];
  (function walk(d: string) {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith('.safetensors')) files.push(p);
    }
  })(fixturesDir);

  test(`all ${files.length} .safetensors files under ../shared/fixtures`, () => {
    assert.ok(files.length > 50, `expected the fixture set, found ${files.length} files`);
    let tensors = 0;
    for (const p of files) {
      const f = safeOpen(p);
      const size = statSync(p).size;
      const headerLen = Number(readFileSync(p).readBigUInt64LE(0));
      let bytes = 0;
      for (const name of f.names()) {
        const t = f.get(name);
        const n = t.shape.reduce((a, b) => a * b, 1);
        assert.equal(t.data.length, n, `${p}:${name}`);
        bytes += t.data.byteLength;
        assert.equal(t.data.byteLength, n * ELEMENT_SIZE[t.dtype]);
        tensors++;
      }
      assert.equal(8 + headerLen + bytes, size, `${p}: tensors must cover the data exactly`);
      // Golden files list every tensor's dtype and shape in their sibling JSON: check against it.
      const sibling = p.replace(/\.safetensors$/, '.json');
      if (existsSync(sibling)) {
        // Python's json writes NaN/Infinity literals; they only occur in values we do not check here.
        const text = readFileSync(sibling, 'utf8').replace(/-?\bInfinity\b|\bNaN\b/g, 'null');
        const listed = JSON.parse(text).tensors as Record<string, { dtype: string; shape: number[] }> | undefined;
        if (listed && typeof listed === 'object' && !Array.isArray(listed)) {
          for (const [name, meta] of Object.entries(listed)) {
            if (!meta || typeof meta !== 'object' || !('shape' in meta)) continue;
            const info = f.info(name);
            assert.deepEqual(info.shape, meta.shape, `${p}:${name}`);
            assert.equal(info.dtype, TORCH_DTYPES[String(meta.dtype).replace(/^torch\./, '')] ?? meta.dtype, `${p}:${name}`);
          }
        }
      }
    }
    assert.ok(tensors > 1000);
  });
});

describe('rejects corrupt files with E_WEIGHTS_CORRUPT', () => {
  const t = (dtype: string, shape: number[], off: [number, number]) => ({ dtype, shape, data_offsets: off });
  const data8 = new Uint8Array(8);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty file', new Uint8Array(0), /shorter than/],
    ['only 5 bytes', new Uint8Array(5), /shorter than/],
    ['header longer than the file', safetensorsBytes({}, data8, { headerLength: 1000n }), /past the end/],
    ['header length beyond the cap', safetensorsBytes({}, data8, { headerLength: 1n << 40n }), /limit/],
    ['header length of 2^64-1', safetensorsBytes({}, data8, { headerLength: (1n << 64n) - 1n }), /limit/],
    ['header not starting with {', safetensorsBytes(null, new Uint8Array(0), { rawHeader: ' {}' }), /start/],
    ['invalid JSON', safetensorsBytes(null, new Uint8Array(0), { rawHeader: '{"a":' }), /JSON/],
    ['header is an array', safetensorsBytes(null, new Uint8Array(0), { rawHeader: '[]      ' }), /start/],
    ['duplicate key', safetensorsBytes(null, data8, { rawHeader: `{"a":${JSON.stringify(t('F32', [2], [0, 8]))},"a":${JSON.stringify(t('F32', [2], [0, 8]))}}` }), /duplicate/],
    ['deep nesting', safetensorsBytes(null, new Uint8Array(0), { rawHeader: '{"__metadata__":' + '['.repeat(5000) + ']'.repeat(5000) + '}' }), /deep|JSON/],
    ['unknown dtype', safetensorsBytes({ a: t('F33', [2], [0, 8]) }, data8), /unknown dtype/],
    ['shape does not match bytes', safetensorsBytes({ a: t('F32', [3], [0, 8]) }, data8), /does not match/],
    ['offsets past the data', safetensorsBytes({ a: t('F32', [4], [0, 16]) }, data8), /past the data/],
    ['begin > end', safetensorsBytes({ a: t('U8', [0], [8, 4]) }, data8), /begin > end/],
    ['overlap', safetensorsBytes({ a: t('F32', [2], [0, 8]), b: t('F32', [1], [4, 8]) }, data8), /overlap|does not match|hole/],
    ['hole', safetensorsBytes({ a: t('F32', [1], [4, 8]) }, data8), /hole/],
    ['trailing bytes', safetensorsBytes({ a: t('F32', [1], [0, 4]) }, data8), /trailing/],
    ['negative shape', safetensorsBytes({ a: t('F32', [-2], [0, 8]) }, data8), /shape/],
    ['fractional offset', safetensorsBytes({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, data8), /data_offsets/],
    ['huge shape overflowing', safetensorsBytes({ a: t('F64', [4294967296, 4294967296, 16], [0, 8]) }, data8), /does not match|shape/],
    ['missing data_offsets', safetensorsBytes({ a: { dtype: 'F32', shape: [2] } }, data8), /data_offsets/],
    ['extra field', safetensorsBytes({ a: { ...t('F32', [2], [0, 8]), extra: 1 } }, data8), /unexpected/],
    ['metadata not strings', safetensorsBytes({ __metadata__: { a: 1 } }, new Uint8Array(0)), /metadata/],
    ['entry not an object', safetensorsBytes({ a: 5 }, new Uint8Array(0)), /not an object/],
    ['invalid UTF-8 in a name', safetensorsBytes(null, data8, { rawHeader: Buffer.from('{"a\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 'latin1') }), /UTF-8/],
  ];
  for (const [name, bytes, re] of cases) {
    test(name, () => {
      const p = writeTemp(bytes);
      const err = expectCode(() => readSafetensors(p), 'E_WEIGHTS_CORRUPT', re);
      assert.equal(err.file, p);
    });
  }

  test('the error names the tensor', () => {
    const p = writeTemp(safetensorsBytes({ 'down.0.weight': t('F32', [3], [0, 8]) }, data8));
    const err = expectCode(() => readSafetensors(p), 'E_WEIGHTS_CORRUPT', /down\.0\.weight/);
    assert.equal(err.key, 'down.0.weight');
  });

  test('a missing file is E_MODEL_NOT_FOUND; an unknown tensor is E_WEIGHTS_MISMATCH', () => {
    expectCode(() => readSafetensors(join(dir, 'nope.safetensors')), 'E_MODEL_NOT_FOUND', /nope/);
    const p = writeTemp(safetensorsBytes({ a: t('F32', [2], [0, 8]) }, data8));
    expectCode(() => readSafetensors(p).get('b'), 'E_WEIGHTS_MISMATCH', /'b'/);
    expectCode(() => readSafetensors(dir), 'E_WEIGHTS_CORRUPT', /regular file/);
  });
});

describe('fuzz', () => {
  // A deterministic xorshift stream so a failure can be replayed.
  let s = 0x9e3779b9;
  const rnd = (n: number) => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s % n;
  };

  test('mutated headers and truncations give valid tensors or E_WEIGHTS_CORRUPT, never a crash or hang', { timeout: 120_000 }, () => {
    const base = join(dir, 'fuzz-base.safetensors');
    saveSafetensors(
      base,
      {
        'a.weight': { data: new Float32Array([1, 2, 3, 4, 5, 6]), shape: [2, 3] },
        'b.bias': { dtype: 'F16', data: new Uint16Array([0x3c00, 0x4000, 0x4200]), shape: [3] },
        ids: { dtype: 'I64', data: new BigInt64Array([1n, 2n]), shape: [2] },
      },
      { format: 'pt' },
    );
    const valid = readFileSync(base);
    const headerLen = Number(valid.readBigUInt64LE(0));
    const interesting = [...'{}[]",:0123456789-.eE \\'].map((c) => c.charCodeAt(0)).concat([0, 0xff, 0x80]);
    const t0 = Date.now();
    let ok = 0, rejected = 0;
    const N = 3000;
    for (let i = 0; i < N; i++) {
      const b = Buffer.from(valid);
      let bytes: Buffer = b;
      switch (rnd(5)) {
        case 0: // flip bytes in the header
          for (let k = 0, n = 1 + rnd(4); k < n; k++) b[8 + rnd(headerLen)] = interesting[rnd(interesting.length)];
          break;
        case 1: // truncate anywhere
          bytes = b.subarray(0, rnd(b.length));
          break;
        case 2: // change the header length field
          b.writeBigUInt64LE(BigInt(Math.max(0, headerLen + rnd(64) - 32)), 0);
          break;
        case 3: { // splice digits into offsets/shapes
          const pos = 8 + rnd(headerLen);
          bytes = Buffer.concat([b.subarray(0, pos), Buffer.from(String(rnd(100000))), b.subarray(pos)]);
          bytes.writeBigUInt64LE(BigInt(headerLen + (bytes.length - b.length)), 0);
          break;
        }
        default: // random bytes anywhere, including the length field
          for (let k = 0, n = 1 + rnd(8); k < n; k++) b[rnd(b.length)] = rnd(256);
      }
      const p = join(dir, 'fuzz.safetensors');
      writeFileSync(p, bytes);
      // Not `using`: esbuild (tsx) lowers `using` inside try/catch in a loop so that the catch runs twice.
      try {
        const f = readSafetensors(p);
        try {
          for (const name of f.names()) {
            const { dtype, shape } = f.info(name);
            const tt = f.get(name);
            assert.equal(tt.data.byteLength, shape.reduce((x, y) => x * y, 1) * ELEMENT_SIZE[dtype]);
          }
        } finally {
          f.close();
        }
        ok++;
      } catch (e) {
        assert.ok(e instanceof PiaError, `case ${i}: ${e}`);
        assert.equal(e.code, 'E_WEIGHTS_CORRUPT', `case ${i}: ${e.message}`);
        rejected++;
      }
    }
    assert.equal(ok + rejected, N);
    assert.ok(rejected > N / 2, `most mutations must be rejected (${rejected}/${N})`);
    assert.ok(Date.now() - t0 < 100_000);
  });
});
