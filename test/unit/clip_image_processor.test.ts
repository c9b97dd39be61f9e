// CLIPImageProcessor (the IP-Adapter feature extractor) against transformers 4.38 + Pillow 9.4:
// the 224² image (no resampling), a bicubic upscale (96×64 → 336×224) and an antialiased bicubic
// downscale (300×260 → 258×224), each then centre-cropped, rescaled and normalised.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { loadImage } from '../../lib/io/image.js';
import { BICUBIC, LANCZOS } from '../../lib/io/lanczos.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { CLIPImageProcessor } from '../../lib/models/clip_image_processor.js';
import { fixture } from '../helpers/fixtures.js';

const golden = readSafetensors(fixture('ip-adapter', 'golden', 'processor.safetensors'));
const meta = JSON.parse(readFileSync(fixture('ip-adapter', 'golden', 'processor.json'), 'utf8'));

// The README asks for 1e-5: a bit-exact uint8 resize leaves only float32 rounding (≤ 1 ulp of values ≤ ~2.2,
// i.e. ≤ 2.4e-7), while one uint8 step off moves a value by ≥ 0.0145.
const TOL = 1e-5;

describe('CLIPImageProcessor', () => {
  for (const name of Object.keys(meta.images)) {
    test(`${name}: resized uint8 image and pixel_values`, async () => {
      const info = meta.images[name];
      const img = await loadImage(fixture('ip-adapter', info.input_png));
      assert.deepEqual([img.height, img.width], info.input_hw);
      const proc = new CLIPImageProcessor();
      const resized = proc.resize(img);
      assert.deepEqual([resized.height, resized.width], info.resized_hw);
      if (golden.names().includes(`${name}_resized_hwc`)) {
        const ref = golden.get(`${name}_resized_hwc`).toFloat32();
        let off = 0;
        for (let i = 0; i < ref.length; i++) if (resized.data[i] !== ref[i]) off++;
        assert.equal(off, 0, `${off} of ${ref.length} resized bytes differ from Pillow's`);
      }
      const { pixelValues } = await proc.preprocess(fixture('ip-adapter', info.input_png));
      const ref = golden.get(`${name}_pixel_values`);
      assert.deepEqual(pixelValues.shape, ref.shape);
      const r = ref.toFloat32();
      let worst = 0;
      for (let i = 0; i < r.length; i++) worst = Math.max(worst, Math.abs(pixelValues.data[i] - r[i]));
      assert.ok(worst <= TOL, `max |diff| ${worst} > ${TOL}`);
    });
  }

  test('resize targets: shortest edge 224, long edge truncated', () => {
    const p = new CLIPImageProcessor();
    assert.deepEqual(p.resizedSize(96, 64), { width: 336, height: 224 });
    assert.deepEqual(p.resizedSize(300, 260), { width: 258, height: 224 });
    assert.deepEqual(p.resizedSize(100, 301), { width: 224, height: 674 }); // 674.24 → 674
    assert.deepEqual(p.resizedSize(224, 224), { width: 224, height: 224 });
  });

  test('Resample.c kernels: bicubic a = -0.5 and Lanczos-3', () => {
    assert.equal(BICUBIC.kernel(0), 1);
    assert.equal(BICUBIC.kernel(1) + 0, 0); // -0 from the second branch
    assert.equal(BICUBIC.kernel(2), 0);
    assert.equal(BICUBIC.kernel(0.5), 0.5625);
    assert.equal(BICUBIC.kernel(-1.5), -0.0625);
    assert.equal(LANCZOS.kernel(0), 1);
    assert.equal(LANCZOS.kernel(3), 0);
  });

  test('rejects bad options', () => {
    assert.throws(() => new CLIPImageProcessor({ shortestEdge: 0 }), { code: 'E_INVALID_ARGUMENT' });
    assert.throws(() => new CLIPImageProcessor({ imageStd: [1, 2] }), { code: 'E_INVALID_ARGUMENT' });
  });
});
