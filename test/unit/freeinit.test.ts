import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readSafetensors } from '../../lib/index.js';
import { freeInitFilter, freqMix3d, resolveFreeInit, type FreeInitMethod } from '../../lib/freeinit.js';
import { prepareMaskCoefByStatistics } from '../../lib/pipelines/mask_coef.js';
import { fixture } from '../helpers/fixtures.js';

const golden = readSafetensors(fixture('golden/components/freeinit_and_mask.safetensors'));
const meta = JSON.parse(readFileSync(fixture('golden/components/freeinit_and_mask.json'), 'utf8'));

test('FreeInit filters equal diffusers _get_freeinit_freq_filter', () => {
  let n = 0;
  for (const name of golden.names().filter((k) => k.startsWith('filter_'))) {
    const m = /^filter_(\w+?)_o(\d+)_ds([\d.]+)_dt([\d.]+)_1x4x(\d+)x(\d+)x(\d+)$/.exec(name);
    assert.ok(m, name);
    const [, method, order, ds, dt, t, h, w] = m;
    const ours = freeInitFilter(+t, +h, +w, method as FreeInitMethod, +order, +ds, +dt);
    const ref = golden.get(name).toFloat32();
    const block = +t * +h * +w;
    // The reference repeats one filter over the 4 channels; values are Python doubles cast to
    // float32, which our double math reproduces exactly.
    for (let c = 0; c < 4; c++) assert.deepEqual(ref.subarray(c * block, (c + 1) * block), ours, name);
    n++;
  }
  assert.equal(n, 18);
});

test('freq mix equals diffusers _freq_mix_3d (complex64 reference vs our float64 FFT)', () => {
  const x = golden.get('freq_mix_x'), noise = golden.get('freq_mix_noise'), ref = golden.get('freq_mix_out').toFloat32();
  const [t, h, w] = x.shape.slice(-3);
  const lpf = freeInitFilter(t, h, w, 'butterworth', 4, 0.25, 0.25);
  const out = freqMix3d({ data: x.toFloat32(), shape: x.shape }, { data: noise.toFloat32(), shape: noise.shape }, lpf);
  assert.deepEqual(out.shape, x.shape);
  let maxErr = 0, maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(out.data[i] - ref[i]));
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  // torch's FFT runs in float32: its rounding noise is ~1e-6 of the values' scale.
  assert.ok(maxErr <= 1e-5 * maxRef, `max error ${maxErr} (max |ref| ${maxRef})`);
});

test('mask coefficients equal prepare_mask_coef_by_statistics', () => {
  let n = 0;
  for (const [key, values] of Object.entries(meta.mask_coef as Record<string, number[]>)) {
    const m = /^frames(\d+)_scale(\d+)$/.exec(key);
    assert.ok(m, key);
    assert.deepEqual(prepareMaskCoefByStatistics(+m[1], 0, +m[2]), values, key);
    n++;
  }
  assert.ok(n >= 36);
  assert.throws(() => prepareMaskCoefByStatistics(8, 0, 9), /motionScale/);
  assert.throws(() => prepareMaskCoefByStatistics(0, 0, 1), /numFrames/);
});

test('enable_free_init defaults and validation', () => {
  const r = resolveFreeInit();
  assert.deepEqual(
    { ...r, generator: undefined },
    { numIters: 3, useFastSampling: false, method: 'butterworth', order: 4, spatialStopFrequency: 0.25, temporalStopFrequency: 0.25, generator: undefined },
  );
  assert.throws(() => resolveFreeInit({ method: 'box' as FreeInitMethod }), /method/);
  assert.throws(() => resolveFreeInit({ numIters: 0 }), /numIters/);
  assert.throws(() => resolveFreeInit({ spatialStopFrequency: 2 }), /spatialStopFrequency/);
});
