import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { loadImage, rgbToTensor, preprocessImage, framesFromTensor, resizeLanczos } from '../../lib/io/index.js';
import { PiaError } from '../../lib/errors.js';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('pia-image-');

function isPiaError(code: string) {
  return (e: unknown) => e instanceof PiaError && e.code === code;
}

/** Four pixels whose alpha runs 0, 255, 128, 7: convert('RGB') must keep the colour channels untouched. */
const RGBA = Uint8Array.from([10, 20, 30, 0, 200, 100, 50, 255, 1, 2, 3, 128, 4, 5, 6, 7]);
const RGB_OF_RGBA = [10, 20, 30, 200, 100, 50, 1, 2, 3, 4, 5, 6];

// --- a minimal PNG writer, for colour types sharp does not emit on request (exact palettes, 16-bit) ---
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function png(width: number, height: number, bitDepth: number, colourType: number, rows: Uint8Array[], extra: Buffer[] = []): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  const raw = Buffer.concat(rows.map((r) => Buffer.concat([Buffer.from([0]), r]))); // filter type 0 per row
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...extra,
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

describe('loadImage', () => {
  test('PNG with alpha: alpha dropped, not blended (PIL convert("RGB"))', async () => {
    const p = join(dir, 'rgba.png');
    await sharp(RGBA, { raw: { width: 2, height: 2, channels: 4 } }).png().toFile(p);
    const img = await loadImage(p);
    assert.equal(img.width, 2);
    assert.equal(img.height, 2);
    assert.deepEqual([...img.data], RGB_OF_RGBA);
  });

  test('PNG without alpha, from a path and from a Buffer, equal', async () => {
    const rgb = Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 29) % 256);
    const buf = await sharp(rgb, { raw: { width: 5, height: 3, channels: 3 } }).png().toBuffer();
    const p = join(dir, 'rgb.png');
    writeFileSync(p, buf);
    const a = await loadImage(p);
    const b = await loadImage(buf);
    const c = await loadImage(new Uint8Array(buf)); // plain Uint8Array too
    assert.deepEqual([...a.data], [...rgb]);
    assert.deepEqual(b, a);
    assert.deepEqual(c, a);
  });

  test('lossless WebP with alpha (exact: keeps colour under alpha 0)', async () => {
    const buf = await sharp(RGBA, { raw: { width: 2, height: 2, channels: 4 } }).webp({ lossless: true, exact: true }).toBuffer();
    const img = await loadImage(buf);
    assert.deepEqual([...img.data], RGB_OF_RGBA);
  });

  test('JPEG: decodes to RGB of the right size, close to its source', async () => {
    const w = 16, h = 8;
    // A smooth ramp, which JPEG keeps well (no chroma subsampling, quality 95).
    const rgb = Uint8Array.from({ length: w * h * 3 }, (_, i) => {
      const c = i % 3, x = Math.floor(i / 3) % w, y = Math.floor(i / 3 / w);
      return 60 + 4 * x + 3 * y + 20 * c;
    });
    const buf = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer();
    const img = await loadImage(buf);
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    assert.equal(img.data.length, w * h * 3);
    // Tolerance: lossy coding of a smooth ramp at quality 95 moves a value by a few levels at most.
    let maxDiff = 0;
    for (let i = 0; i < rgb.length; i++) maxDiff = Math.max(maxDiff, Math.abs(img.data[i] - rgb[i]));
    assert.ok(maxDiff <= 6, `max JPEG error ${maxDiff}`);
  });

  test('greyscale and greyscale+alpha are replicated to RGB', async () => {
    const g = Uint8Array.from([0, 100, 200, 255]);
    const grey = await loadImage(await sharp(g, { raw: { width: 2, height: 2, channels: 1 } }).png().toBuffer());
    assert.deepEqual([...grey.data], [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
    const la = png(2, 1, 8, 4, [Uint8Array.from([50, 0, 150, 255])]);
    const img = await loadImage(la);
    assert.deepEqual([...img.data], [50, 50, 50, 150, 150, 150]);
  });

  test('palette PNG with tRNS: palette colours, transparency dropped', async () => {
    const plte = chunk('PLTE', Uint8Array.from([10, 20, 30, 40, 50, 60, 250, 0, 128]));
    const trns = chunk('tRNS', Uint8Array.from([0, 255, 64]));
    const buf = png(3, 1, 8, 3, [Uint8Array.from([2, 0, 1])], [plte, trns]);
    const img = await loadImage(buf);
    assert.deepEqual([...img.data], [250, 0, 128, 10, 20, 30, 40, 50, 60]);
  });

  test('16-bit RGB PNG keeps the high byte (PIL mode "RGB" from rawmode "RGB;16B")', async () => {
    const row = Buffer.alloc(12);
    [0x1234, 0xff00, 0x01ff, 0x80ff, 0x00ff, 0xffff].forEach((v, i) => row.writeUInt16BE(v, i * 2));
    const img = await loadImage(png(2, 1, 16, 2, [row]));
    assert.deepEqual([...img.data], [0x12, 0xff, 0x01, 0x80, 0x00, 0xff]);
  });

  // Expected values below were checked against Pillow 9.4's Image.open(...).convert('RGB') on the same bytes.
  test('16-bit greyscale clips at 255 like PIL mode "I" (not scaled)', async () => {
    const row = Buffer.alloc(10);
    [0x0010, 0x00ff, 0x0100, 0x8000, 0xffff].forEach((v, i) => row.writeUInt16BE(v, i * 2));
    const img = await loadImage(png(5, 1, 16, 0, [row]));
    assert.deepEqual([...img.data], [16, 16, 16, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]);
  });

  test('16-bit grey+alpha and RGBA keep the high byte; 1-bit is 0/255', async () => {
    const vals = [0x0010, 0x00ff, 0x0100, 0x8000, 0xffff];
    const la = Buffer.alloc(20);
    vals.forEach((v, i) => {
      la.writeUInt16BE(v, i * 4);
      la.writeUInt16BE(0x1234, i * 4 + 2);
    });
    assert.deepEqual([...(await loadImage(png(5, 1, 16, 4, [la]))).data], [0, 0, 0, 0, 0, 0, 1, 1, 1, 128, 128, 128, 255, 255, 255]);
    const rgba = Buffer.alloc(40);
    vals.forEach((v, i) => [v, 0x01ff, 0x80ff, 0].forEach((s, c) => rgba.writeUInt16BE(s, i * 8 + c * 2)));
    assert.deepEqual([...(await loadImage(png(5, 1, 16, 6, [rgba]))).data], [0, 1, 128, 0, 1, 128, 1, 1, 128, 128, 1, 128, 255, 1, 128]);
    const bits = await loadImage(png(5, 1, 1, 0, [Uint8Array.from([0b10100000])]));
    assert.deepEqual([...bits.data], [255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0]);
  });

  test('EXIF orientation is applied (diffusers.utils.load_image exif_transpose)', async () => {
    const rgb = Uint8Array.from({ length: 40 * 20 * 3 }, (_, i) => (i * 7) % 256);
    const p = join(dir, 'rotated.jpg');
    await sharp(rgb, { raw: { width: 40, height: 20, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toFile(p);
    const meta = await sharp(p).metadata();
    assert.equal(meta.orientation, 6);
    assert.equal(meta.width, 40);
    const img = await loadImage(p);
    assert.equal(img.width, 20);
    assert.equal(img.height, 40);
  });

  test('EXIF orientation moves pixels the right way (6 = rotate 90° clockwise to display)', async () => {
    // A 2x1 PNG: left pixel red, right pixel blue. Displayed with orientation 6 it is 1x2, red on top.
    const p = join(dir, 'rot6.png');
    await sharp(Uint8Array.from([255, 0, 0, 0, 0, 255]), { raw: { width: 2, height: 1, channels: 3 } })
      .png()
      .withMetadata({ orientation: 6 })
      .toFile(p);
    const img = await loadImage(p);
    assert.equal(img.width, 1);
    assert.equal(img.height, 2);
    assert.deepEqual([...img.data], [255, 0, 0, 0, 0, 255]);
  });

  test('corrupt, truncated, empty and missing inputs are E_IMAGE naming the file', async () => {
    const rgb = Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 13) % 256);
    const jpg = await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).jpeg().toBuffer();
    const pngBuf = await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer();
    await assert.rejects(loadImage(jpg.subarray(0, jpg.length - 100)), isPiaError('E_IMAGE'));
    await assert.rejects(loadImage(pngBuf.subarray(0, pngBuf.length - 40)), isPiaError('E_IMAGE'));
    await assert.rejects(loadImage(Buffer.from('not an image at all')), isPiaError('E_IMAGE'));
    await assert.rejects(loadImage(Buffer.alloc(0)), isPiaError('E_IMAGE'));
    const bad = join(dir, 'corrupt.png');
    writeFileSync(bad, Buffer.concat([pngBuf.subarray(0, 60), Buffer.alloc(200, 0xab)]));
    await assert.rejects(loadImage(bad), (e: unknown) => isPiaError('E_IMAGE')(e) && (e as PiaError).file === bad);
    const missing = join(dir, 'nope.png');
    await assert.rejects(loadImage(missing), (e: unknown) => {
      assert.ok(isPiaError('E_IMAGE')(e));
      assert.equal((e as PiaError).file, missing);
      assert.match((e as Error).message, /nope\.png.*no such file/);
      return true;
    });
    const folder = join(dir, 'a-folder');
    mkdirSync(folder);
    await assert.rejects(loadImage(folder), isPiaError('E_IMAGE'));
  });

  test('pixel limit: over maxPixels is E_IMAGE (files, buffers and raw input)', async () => {
    const buf = await sharp({ create: { width: 30, height: 20, channels: 3, background: '#808080' } }).png().toBuffer();
    await assert.rejects(loadImage(buf, { maxPixels: 599 }), (e: unknown) => {
      assert.ok(isPiaError('E_IMAGE')(e));
      assert.match((e as Error).message, /30×20 = 600 pixels, over the limit of 599/);
      return true;
    });
    assert.equal((await loadImage(buf, { maxPixels: 600 })).width, 30);
    const raw = { data: new Uint8Array(30 * 20 * 3), width: 30, height: 20 };
    await assert.rejects(loadImage(raw, { maxPixels: 599 }), isPiaError('E_IMAGE'));
    await assert.rejects(loadImage(buf, { maxPixels: 0 }), isPiaError('E_INVALID_ARGUMENT'));
  });

  test('raw RGB input is validated and passed through', async () => {
    const data = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => i);
    const img = await loadImage({ data, width: 2, height: 3 });
    assert.equal(img.data, data);
    assert.equal(img.width, 2);
    await assert.rejects(loadImage({ data: new Uint8Array(17), width: 2, height: 3 }), isPiaError('E_INVALID_ARGUMENT'));
    await assert.rejects(loadImage({ data: new Uint8Array(0), width: 0, height: 0 }), isPiaError('E_INVALID_ARGUMENT'));
    await assert.rejects(loadImage({ data: new Uint8Array(6), width: 1.5, height: 4 }), isPiaError('E_INVALID_ARGUMENT'));
    await assert.rejects(loadImage({ data: [1, 2, 3] as unknown as Uint8Array, width: 1, height: 1 }), isPiaError('E_INVALID_ARGUMENT'));
    await assert.rejects(loadImage(42 as unknown as string), isPiaError('E_INVALID_ARGUMENT'));
  });

  test('an aborted signal rejects with AbortError', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(loadImage(fixture('golden', 'pipeline', 'input_64x64.png'), { signal: ac.signal }), { name: 'AbortError' });
  });

  test('the golden condition images decode to their size', async () => {
    const img = await loadImage(fixture('golden', 'pipeline', 'input_96x96.png'));
    assert.equal(img.width, 96);
    assert.equal(img.height, 96);
    assert.equal(img.data.length, 96 * 96 * 3);
  });
});

describe('rgbToTensor', () => {
  test('[1, 3, H, W] in [-1, 1], float32 rounding of x / 255 then 2x - 1', () => {
    const data = Uint8Array.from([0, 128, 255, 1, 254, 51]);
    const t = rgbToTensor({ data, width: 2, height: 1 });
    assert.deepEqual(t.shape, [1, 3, 1, 2]);
    const f32 = (x: number) => Math.fround(x);
    const expect = (v: number) => f32(2 * f32(v / 255) - 1);
    // planar: R plane (0, 1), G plane (128, 254), B plane (255, 51)
    assert.deepEqual([...t.data], [0, 1, 128, 254, 255, 51].map(expect));
    assert.equal(t.data[0], -1);
    assert.equal(t.data[4], 1);
    // 128/255 in float32 is 0.501960813999176; 2x - 1 then rounds to float32 0.003921627998352051 (not 1/255 exactly).
    assert.equal(t.data[2], 0.003921627998352051);
  });
});

describe('preprocessImage (VaeImageProcessor.preprocess as prepare_masked_condition calls it)', () => {
  test('a size that is a multiple of 8 is kept as is (the golden 96×96 input is NOT resized to the video size)', async () => {
    const img = await loadImage(fixture('golden', 'pipeline', 'input_96x96.png'));
    const t = preprocessImage(img);
    assert.deepEqual(t.shape, [1, 3, 96, 96]);
    assert.deepEqual(t.data, rgbToTensor(img).data);
  });

  test('other sizes round DOWN to a multiple of 8 through Pillow Lanczos', () => {
    const data = Uint8Array.from({ length: 100 * 75 * 3 }, (_, i) => (i * 31 + (i >> 7)) % 256);
    const img = { data, width: 100, height: 75 };
    const t = preprocessImage(img);
    assert.deepEqual(t.shape, [1, 3, 72, 96]);
    assert.deepEqual(t.data, rgbToTensor(resizeLanczos(img, 96, 72)).data);
    assert.deepEqual(preprocessImage(img, { height: 64, width: 65 }).shape, [1, 3, 64, 64]);
    assert.throws(() => preprocessImage({ data: new Uint8Array(5 * 5 * 3), width: 5, height: 5 }), isPiaError('E_IMAGE'));
  });
});

describe('framesFromTensor', () => {
  test('round(clamp(x) * 255) with numpy float32 rounding: half to even, clamped, NaN → 0', () => {
    const vals = [
      0.5 / 255, // 0.5 exactly after * 255 in float32? (x*255 rounds to 0.5) → half to even → 0
      1.5 / 255, // → 2
      2.5 / 255, // → 2
      Math.fround(0.5 / 255) * 1.0001, // just above half → 1
      -0.3, 1.7, Number.NaN, 1, 0, 0.5,
    ];
    const data = Float32Array.from([...vals, 0, 0]); // 12 values = 1 video, 1 frame, 2x2... use shape [1,1,1,4,3]
    const [[frame]] = framesFromTensor({ data, shape: [1, 1, 1, 4, 3] });
    assert.equal(frame.width, 4);
    assert.equal(frame.height, 1);
    const expected = data.map((x) => {
      const c = Number.isNaN(x) ? 0 : Math.min(1, Math.max(0, x));
      const y = Math.fround(c * 255);
      const r = Math.round(y);
      return r - y === 0.5 && r % 2 === 1 ? r - 1 : r;
    });
    assert.deepEqual([...frame.data], [...expected]);
    // Spot values, computed by hand from the float32 products.
    assert.equal(Math.fround(Math.fround(0.5 / 255) * 255), 0.5);
    assert.equal(frame.data[0], 0);
    assert.equal(Math.fround(Math.fround(2.5 / 255) * 255), 2.5);
    assert.equal(frame.data[2], 2);
    assert.equal(frame.data[3], 1);
    assert.deepEqual([frame.data[4], frame.data[5], frame.data[6], frame.data[7], frame.data[8]], [0, 255, 0, 255, 0]);
    assert.equal(frame.data[9], 128); // 127.5 → 128 (even)
  });

  test('layout: [B, F, H, W, 3] → one array of frames per video', () => {
    const shape = [2, 3, 2, 1, 3];
    const data = Float32Array.from({ length: 36 }, (_, i) => i / 35);
    const videos = framesFromTensor({ data, shape });
    assert.equal(videos.length, 2);
    assert.equal(videos[0].length, 3);
    assert.equal(videos[1][2].data[5], Math.round((35 * 255) / 35));
    assert.equal(videos[1][0].data[0], Math.round(Math.fround(Math.fround(18 / 35) * 255)));
    assert.throws(() => framesFromTensor({ data, shape: [2, 3, 2, 2, 3] }), isPiaError('E_INVALID_ARGUMENT'));
    assert.throws(() => framesFromTensor({ data, shape: [6, 2, 1, 3] }), isPiaError('E_INVALID_ARGUMENT'));
  });
});

describe('resizeLanczos (Pillow Image.LANCZOS)', () => {
  interface Case { seed?: number; fixture?: string; width: number; height: number; outWidth: number; outHeight: number; out: string }
  const refs = JSON.parse(readFileSync(join(repoRoot, 'test', 'data', 'pillow_lanczos.json'), 'utf8')) as { pillow: string; cases: Case[] };

  /** Twin of pattern() in test/data/make_pillow_lanczos.py (glibc-style LCG mod 2^31). */
  function pattern(w: number, h: number, seed: number): Uint8Array {
    let s = seed;
    const px = new Uint8Array(w * h * 3);
    let i = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) {
          s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
          let v: number;
          if ((Math.floor(x / 3) + Math.floor(y / 5) + c) % 4 === 0) v = (s >> 16) & 255;
          else if ((x + y) % 7 < 3) v = c === 1 ? 0 : 255;
          else v = (x * 37 + y * 11 + c * 50) % 256;
          px[i++] = v;
        }
      }
    }
    return px;
  }

  for (const c of refs.cases) {
    const name = c.fixture ?? `pattern seed ${c.seed}`;
    test(`${name}: ${c.width}×${c.height} → ${c.outWidth}×${c.outHeight} equals Pillow ${refs.pillow} byte for byte`, async () => {
      const src = c.fixture
        ? await loadImage(fixture(...c.fixture.split('/')))
        : { data: pattern(c.width, c.height, c.seed!), width: c.width, height: c.height };
      assert.equal(src.width, c.width);
      const out = resizeLanczos(src, c.outWidth, c.outHeight);
      const ref = Buffer.from(c.out, 'base64');
      assert.equal(out.width, c.outWidth);
      assert.equal(out.height, c.outHeight);
      assert.equal(out.data.length, ref.length);
      let diff = 0;
      for (let i = 0; i < ref.length; i++) if (out.data[i] !== ref[i]) diff++;
      assert.equal(diff, 0, `${diff} of ${ref.length} bytes differ from Pillow`);
    });
  }

  test('same size is a copy; bad sizes are E_INVALID_ARGUMENT', () => {
    const img = { data: pattern(4, 3, 9), width: 4, height: 3 };
    const same = resizeLanczos(img, 4, 3);
    assert.notEqual(same.data, img.data);
    assert.deepEqual(same.data, img.data);
    assert.throws(() => resizeLanczos(img, 0, 3), isPiaError('E_INVALID_ARGUMENT'));
    assert.throws(() => resizeLanczos(img, 2.5, 3), isPiaError('E_INVALID_ARGUMENT'));
    assert.throws(() => resizeLanczos({ data: new Uint8Array(5), width: 4, height: 3 }, 2, 2), isPiaError('E_INVALID_ARGUMENT'));
  });
});

// Live cross-check against Pillow itself where a Python with PIL is installed (e.g. Debian's python3-pil);
// skipped otherwise. The committed references above do not need it.
describe('against a live Pillow (optional)', () => {
  const python = ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import PIL'], { stdio: 'ignore' }).status === 0);
  const skip = python ? false : 'no python3 with PIL (Pillow) on this machine';
  const dir = tempDir('pia-pil-');

  /** PIL's view of each file: diffusers.utils.load_image = exif_transpose + convert('RGB'). */
  function pilDecode(paths: string[]): { width: number; height: number; data: Uint8Array }[] {
    const script = [
      'import sys, struct',
      'from PIL import Image, ImageOps',
      'for p in sys.argv[1:]:',
      '    im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")',
      '    sys.stdout.buffer.write(struct.pack("<II", *im.size) + im.tobytes())',
    ].join('\n');
    const out = spawnSync(python!, ['-c', script, ...paths], { maxBuffer: 1 << 28 });
    assert.equal(out.status, 0, String(out.stderr));
    const b = out.stdout as Buffer;
    const res = [];
    for (let o = 0; o < b.length; ) {
      const width = b.readUInt32LE(o), height = b.readUInt32LE(o + 4);
      res.push({ width, height, data: new Uint8Array(b.subarray(o + 8, o + 8 + width * height * 3)) });
      o += 8 + width * height * 3;
    }
    return res;
  }

  test('decoding: PNG (RGBA, palette, 16-bit grey), JPEG (4:2:0, 4:4:4, progressive, EXIF-rotated), WebP', { skip }, async () => {
    const w = 61, h = 47;
    const rgb = Uint8Array.from({ length: w * h * 3 }, (_, i) => ((i * 37) ^ (i >> 5)) % 256);
    const rgba = Uint8Array.from({ length: w * h * 4 }, (_, i) => ((i * 53) ^ (i >> 3)) % 256);
    const raw3 = { raw: { width: w, height: h, channels: 3 as const } };
    const files: [string, Buffer][] = [
      ['rgba.png', await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toBuffer()],
      ['pal.png', png(3, 1, 8, 3, [Uint8Array.from([2, 0, 1])], [chunk('PLTE', Uint8Array.from([10, 20, 30, 40, 50, 60, 250, 0, 128])), chunk('tRNS', Uint8Array.from([0, 255, 64]))])],
      ['g16.png', png(2, 1, 16, 0, [Uint8Array.from([0x00, 0x10, 0x12, 0x34])])],
      ['420.jpg', await sharp(rgb, raw3).jpeg({ quality: 80 }).toBuffer()],
      ['444.jpg', await sharp(rgb, raw3).jpeg({ quality: 90, chromaSubsampling: '4:4:4' }).toBuffer()],
      ['prog.jpg', await sharp(rgb, raw3).jpeg({ quality: 75, progressive: true }).toBuffer()],
      ['rot.jpg', await sharp(rgb, raw3).jpeg().withMetadata({ orientation: 6 }).toBuffer()],
      ['lossy.webp', await sharp(rgb, raw3).webp({ quality: 70 }).toBuffer()],
    ];
    const paths = files.map(([n, b]) => {
      const p = join(dir, n);
      writeFileSync(p, b);
      return p;
    });
    const pil = pilDecode(paths);
    for (let i = 0; i < paths.length; i++) {
      const ours = await loadImage(paths[i]);
      assert.equal(ours.width, pil[i].width, files[i][0]);
      assert.equal(ours.height, pil[i].height, files[i][0]);
      let diff = 0;
      for (let k = 0; k < ours.data.length; k++) if (ours.data[k] !== pil[i].data[k]) diff++;
      assert.equal(diff, 0, `${files[i][0]}: ${diff} bytes differ from PIL`);
    }
  });

  test('Lanczos on random sizes equals Pillow', { skip }, () => {
    let s = 12345;
    const rnd = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff) >> 8) % n;
    const cases = Array.from({ length: 12 }, () => [1 + rnd(90), 1 + rnd(90), 1 + rnd(90), 1 + rnd(90)]);
    const inputs = cases.map(([w, h]) => Uint8Array.from({ length: w * h * 3 }, () => rnd(256)));
    const script = [
      'import sys, struct',
      'from PIL import Image',
      'data = sys.stdin.buffer.read(); o = 0',
      'while o < len(data):',
      '    w, h, W, H = struct.unpack_from("<4I", data, o); o += 16',
      '    im = Image.frombytes("RGB", (w, h), data[o:o + w * h * 3]); o += w * h * 3',
      '    sys.stdout.buffer.write(im.resize((W, H), Image.LANCZOS).tobytes())',
    ].join('\n');
    const input = Buffer.concat(cases.flatMap(([w, h, W, H], i) => {
      const hdr = Buffer.alloc(16);
      [w, h, W, H].forEach((v, k) => hdr.writeUInt32LE(v, k * 4));
      return [hdr, Buffer.from(inputs[i])];
    }));
    const out = spawnSync(python!, ['-c', script], { input, maxBuffer: 1 << 26 });
    assert.equal(out.status, 0, String(out.stderr));
    let o = 0;
    cases.forEach(([w, h, W, H], i) => {
      const ref = (out.stdout as Buffer).subarray(o, o + W * H * 3);
      o += W * H * 3;
      const ours = resizeLanczos({ data: inputs[i], width: w, height: h }, W, H);
      assert.deepEqual(ours.data, new Uint8Array(ref), `${w}×${h} → ${W}×${H}`);
    });
  });
});
