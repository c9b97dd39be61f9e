import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { PiaError } from '../../lib/errors.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { Generator } from '../../lib/random/index.js';
import {
  DDIMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  SchedulerBase,
  schedulerFromConfig,
  type ConfigDict,
} from '../../lib/schedulers/index.js';
import { npLinspace, roundHalfEven } from '../../lib/schedulers/numerics.js';
import { quad } from '../../lib/schedulers/quadpack.js';
import { spacedIntegerTimesteps } from '../../lib/schedulers/scheduling_ddim.js';
import { spacedFloatTimesteps } from '../../lib/schedulers/scheduling_lms_discrete.js';
import type { Tensor } from '../../lib/tensor.js';
import { fixture } from '../helpers/fixtures.js';

const fr = Math.fround;

/** Python's json writes -Infinity / Infinity / NaN (DPM-Solver's lambda_min_clipped), which JSON.parse rejects. */
function readPythonJson(path: string): any {
  const text = readFileSync(path, 'utf8').replace(/(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, '"__py_$1"');
  return JSON.parse(text, (_k, v) =>
    v === '__py_-Infinity' ? -Infinity : v === '__py_Infinity' ? Infinity : v === '__py_NaN' ? NaN : v,
  );
}

const CLASSES: Record<string, { fromConfig(c: ConfigDict, o?: ConfigDict): SchedulerBase }> = {
  DDIMScheduler,
  PNDMScheduler,
  LMSDiscreteScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  LCMScheduler,
};

const G = (...p: string[]) => fixture('golden', 'schedulers', ...p);
const inputs = readSafetensors(G('_inputs.safetensors'));
const input = (name: string): Tensor => {
  const t = inputs.get(name);
  return { data: t.toFloat32(), shape: t.shape };
};

interface Table {
  betas: Float32Array;
  alphasCumprod: Float32Array;
  sigmas?: Float32Array;
}

function assertExactArray(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) assert.fail(`${what}[${i}]: ${actual[i]} !== ${expected[i]}`);
  }
}

/** max |a − e| / max |e| — the trajectories grow to std ~10–40, so errors are judged against the tensor's scale. */
function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num = Math.max(num, Math.abs(actual[i]! - expected[i]!));
    den = Math.max(den, Math.abs(expected[i]!));
  }
  return num / (den || 1);
}

/**
 * Trajectory tolerance, relative to the tensor's max |value|. The schedulers reproduce torch 1.13's float32
 * operation order (scalar tensors rounded at every op, SLEEF log/exp for DPM-Solver, scipy's quad for LMS),
 * so today every golden trajectory matches bit for bit; 1e-6 (≈ 8 float32 ulps at the tensor's scale) only
 * leaves room for a last-ulp difference in a transcendental should the fixtures be regenerated on another
 * libm. Anything beyond that is a real divergence in the step math.
 */
const TRAJ_RTOL = 1e-6;

const index: Array<{ file: string; scheduler: string; N: number }> = readPythonJson(G('index.json'));

for (const entry of index) {
  test(`golden scheduler ${entry.file}`, () => {
    const meta = readPythonJson(G(`${entry.file}.json`));
    const golden = readSafetensors(G(`${entry.file}.safetensors`));
    const g = (name: string) => golden.get(name).toFloat32();
    const Cls = CLASSES[entry.scheduler]!;
    const fresh = () => {
      const s = Cls.fromConfig(meta.from_config);
      s.setTimesteps(entry.N);
      return s;
    };
    const s = fresh() as SchedulerBase & Table;

    // The effective config: every key of the class with its value, the hidden keys, and _use_default_values.
    const { _use_default_values: expectedDefaults, ...expectedCfg } = meta.effective_config;
    const { _use_default_values: actualDefaults, ...actualCfg } = s.config as ConfigDict;
    assert.deepEqual(actualCfg, expectedCfg);
    assert.deepEqual([...((actualDefaults as string[]) ?? [])].sort(), [...(expectedDefaults ?? [])].sort());

    // Tables: exact (betas via torch.linspace's AVX2 kernel, cumprod accumulated in double like ATen on CPU).
    assertExactArray(s.timesteps, Array.from(golden.get('timesteps').data as ArrayLike<number | bigint>, Number), 'timesteps');
    assert.equal(`torch.${s.timestepsDtype}`, meta.timesteps_dtype);
    assertExactArray(s.betas, g('betas'), 'betas');
    assertExactArray(s.alphasCumprod, g('alphas_cumprod'), 'alphas_cumprod');
    if (golden.names().includes('sigmas')) assertExactArray(s.sigmas!, g('sigmas'), 'sigmas');
    assert.equal(s.initNoiseSigma, meta.init_noise_sigma);
    assert.equal(s.order, meta.order);

    const probe = fresh();
    assertExactArray(probe.scaleModelInput(input('scale_probe'), probe.timesteps[0]!).data, g('scale_model_input_t0'), 'scale_model_input_t0');

    for (const a of meta.add_noise as Array<{ key: string; timestep: number; index?: number }>) {
      const t = a.index !== undefined ? s.timesteps[a.index]! : a.timestep;
      const out = s.addNoise(input('add_noise_original'), input('add_noise_noise'), [t]);
      assert.deepEqual(out.shape, input('add_noise_original').shape);
      assertExactArray(out.data, g(a.key), a.key);
    }

    // The trajectory, fed back on itself: sample₀ = init · σ_init; model_output = 0.1 · model_input + ε.
    const sched = fresh();
    const generator = new Generator().manualSeed(7);
    const init = input('init');
    const eps = input('fixed_eps').data;
    const sigma0 = fr(sched.initNoiseSigma);
    let sample: Tensor = { data: init.data.map((v) => fr(v * sigma0)), shape: init.shape };
    assertExactArray(sample.data, g('traj_sample_init'), 'traj_sample_init');
    const c01 = fr(0.1);
    sched.timesteps.forEach((t, i) => {
      const p = String(i).padStart(2, '0');
      const modelInput = sched.scaleModelInput(sample, t);
      const inErr = relErr(modelInput.data, g(`traj_${p}_model_input`));
      assert.ok(inErr <= TRAJ_RTOL, `traj_${p}_model_input: relative error ${inErr}`);
      const modelOutput: Tensor = { data: modelInput.data.map((v, k) => fr(fr(v * c01) + eps[k]!)), shape: modelInput.shape };
      const options = { ...meta.step_kwargs, ...(meta.generator_passed_to_step ? { generator } : {}) };
      const out = sched.step(modelOutput, t, sample, options);
      const err = relErr(out.prevSample.data, g(`traj_${p}_prev_sample`));
      assert.ok(err <= TRAJ_RTOL, `traj_${p}_prev_sample: relative error ${err}`);
      if (golden.names().includes(`traj_${p}_denoised`)) {
        const dErr = relErr(out.denoised!.data, g(`traj_${p}_denoised`));
        assert.ok(dErr <= TRAJ_RTOL, `traj_${p}_denoised: relative error ${dErr}`);
      }
      sample = out.prevSample;
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Config semantics (diffusers' ConfigMixin)

const modelSchedulerConfig = (): ConfigDict =>
  readPythonJson(fixture('models', 'tiny', 'scheduler', 'scheduler_config.json'));

test('a config that carries timestep_spacing passes it to a swapped-in class', () => {
  const ddim = DDIMScheduler.fromConfig(modelSchedulerConfig());
  const euler = EulerDiscreteScheduler.fromConfig(ddim.config);
  assert.equal(euler.config.timestep_spacing, 'leading');
  euler.setTimesteps(4);
  assert.deepEqual(euler.timesteps, [751, 501, 251, 1]); // tiny_euler's UNet timesteps
  assert.equal(euler.initNoiseSigma, fr(Math.sqrt(fr(fr(euler.sigmas[0]! * euler.sigmas[0]!) + 1))));
});

test('defaults a config only inherited are not passed on (_use_default_values)', () => {
  // Built without timestep_spacing, DDIM records it as a default; Euler then uses ITS default, "linspace".
  const ddim = DDIMScheduler.fromConfig({ beta_start: 0.00085, beta_end: 0.012, steps_offset: 1 });
  assert.ok((ddim.config._use_default_values as string[]).includes('timestep_spacing'));
  const euler = EulerDiscreteScheduler.fromConfig(ddim.config);
  assert.equal(euler.config.timestep_spacing, 'linspace');
  assert.equal(euler.config.steps_offset, 1);
});

test('keys of other classes survive a round trip through a class that ignores them', () => {
  const file = modelSchedulerConfig();
  const ddim = DDIMScheduler.fromConfig(file);
  const back = DDIMScheduler.fromConfig(LCMScheduler.fromConfig(EulerDiscreteScheduler.fromConfig(ddim.config).config).config);
  for (const k of Object.keys(DDIMScheduler.defaultConfig)) assert.deepEqual(back.config[k], ddim.config[k], k);
  assert.equal(back.config.skip_prk_steps, true);
  assert.equal(back.config._class_name, 'DDIMScheduler');
  back.setTimesteps(5);
  assert.deepEqual(back.timesteps, [801, 601, 401, 201, 1]);
});

test('fromConfig overrides win over the config, like from_config(config, **kwargs)', () => {
  const dpm = DPMSolverMultistepScheduler.fromConfig(modelSchedulerConfig(), { use_karras_sigmas: true, solver_order: 3 });
  assert.equal(dpm.config.use_karras_sigmas, true);
  assert.equal(dpm.config.solver_order, 3);
  assert.ok(!(dpm.config._use_default_values as string[]).includes('use_karras_sigmas'));
});

test('.config is frozen and lists every key of the class', () => {
  for (const [name, Cls] of Object.entries(CLASSES)) {
    const s = Cls.fromConfig({});
    assert.ok(Object.isFrozen(s.config), name);
    const defaults = (Cls as unknown as { defaultConfig: ConfigDict }).defaultConfig;
    for (const k of Object.keys(defaults)) assert.ok(k in s.config, `${name}.${k}`);
    assert.throws(() => {
      (s.config as Record<string, unknown>).beta_start = 1;
    }, TypeError);
  }
});

test('the pipeline goldens\' schedulers: same config and timesteps as diffusers built them', () => {
  for (const fam of ['tiny', 'mini-sd']) {
    const folder = readPythonJson(fixture('models', fam, 'scheduler', 'scheduler_config.json'));
    const base = DDIMScheduler.fromConfig(folder);
    for (const run of ['ddim_default_trace', 'euler', 'euler_ancestral', 'dpmpp_2m', 'strength0.6']) {
      const meta = readPythonJson(fixture('golden', 'pipeline', `${fam}_${run}.json`));
      const Cls = CLASSES[meta.scheduler.cls]!;
      const want = meta.scheduler.config as ConfigDict;
      const defaults = (Cls as unknown as { defaultConfig: ConfigDict }).defaultConfig;
      // What the fixture script passed as keyword arguments: class keys neither defaulted nor in the folder's config.
      const overrides: ConfigDict = {};
      for (const k of Object.keys(defaults)) {
        if (!(want._use_default_values as string[] | undefined ?? []).includes(k) && !(k in folder)) overrides[k] = want[k];
      }
      const s = meta.scheduler.cls === 'DDIMScheduler' ? base : Cls.fromConfig(base.config, overrides);
      const { _use_default_values: a, ...gotCfg } = s.config as ConfigDict;
      const { _use_default_values: b, ...wantCfg } = want;
      assert.deepEqual(gotCfg, wantCfg, `${fam}_${run} config`);
      assert.deepEqual([...((a as string[]) ?? [])].sort(), [...((b as string[]) ?? [])].sort(), `${fam}_${run} defaults`);
      const N = meta.call.num_inference_steps as number;
      s.setTimesteps(N);
      // PIAPipeline.get_timesteps: keep the last min(int(N·strength), N) steps.
      const keep = Math.min(Math.trunc(N * meta.call.strength), N);
      assert.deepEqual(s.timesteps.slice((N - keep) * s.order), meta.unet_call_timesteps, `${fam}_${run} timesteps`);
    }
  }
});

test('schedulerFromConfig picks the class named by _class_name', () => {
  const s = schedulerFromConfig(modelSchedulerConfig());
  assert.ok(s instanceof DDIMScheduler);
  assert.ok(schedulerFromConfig(modelSchedulerConfig(), 'LCMScheduler') instanceof LCMScheduler);
  assert.throws(
    () => schedulerFromConfig({ _class_name: 'UniPCMultistepScheduler' }),
    (e: unknown) => e instanceof PiaError && e.code === 'E_UNSUPPORTED' && e.option === '_class_name',
  );
});

// ---------------------------------------------------------------------------------------------
// Rejection of configs we do not support

function assertUnsupported(fn: () => unknown, option: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PiaError, String(e));
    assert.equal(e.code, 'E_UNSUPPORTED');
    assert.equal(e.option, option);
    return true;
  });
}

test('unsupported config values throw E_UNSUPPORTED naming the option', () => {
  for (const Cls of Object.values(CLASSES)) {
    assertUnsupported(() => Cls.fromConfig({ prediction_type: 'flow' }), 'prediction_type');
    assertUnsupported(() => Cls.fromConfig({ beta_schedule: 'sigmoid' }), 'beta_schedule');
    assertUnsupported(() => Cls.fromConfig({ timestep_spacing: 'karras' }), 'timestep_spacing');
  }
  for (const Cls of [CLASSES.DDIMScheduler!, CLASSES.DPMSolverMultistepScheduler!, CLASSES.LCMScheduler!]) {
    assertUnsupported(() => Cls.fromConfig({ thresholding: true }), 'thresholding');
  }
  // diffusers accepts this and fails at the first step; we refuse it up front.
  assertUnsupported(() => EulerAncestralDiscreteScheduler.fromConfig({ prediction_type: 'sample' }), 'prediction_type');
  assertUnsupported(() => PNDMScheduler.fromConfig({ prediction_type: 'sample' }), 'prediction_type');
  assertUnsupported(() => DPMSolverMultistepScheduler.fromConfig({ algorithm_type: 'unipc' }), 'algorithm_type');
  assertUnsupported(() => DPMSolverMultistepScheduler.fromConfig({ solver_type: 'rk4' }), 'solver_type');
  assertUnsupported(() => DPMSolverMultistepScheduler.fromConfig({ algorithm_type: 'dpmsolver' }), 'final_sigmas_type');
  assertUnsupported(() => DPMSolverMultistepScheduler.fromConfig({ variance_type: 'learned_range' }), 'variance_type');
  assertUnsupported(() => DPMSolverMultistepScheduler.fromConfig({ algorithm_type: 'sde-dpmsolver++', solver_order: 3 }), 'solver_order');
  assertUnsupported(() => EulerDiscreteScheduler.fromConfig({ interpolation_type: 'cubic' }), 'interpolation_type');
});

test('malformed config values throw E_INVALID_ARGUMENT', () => {
  const bad = (fn: () => unknown, option: string) =>
    assert.throws(fn, (e: unknown) => e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT' && e.option === option);
  bad(() => DDIMScheduler.fromConfig({ num_train_timesteps: 'many' }), 'num_train_timesteps');
  bad(() => EulerDiscreteScheduler.fromConfig({ beta_start: null }), 'beta_start');
  bad(() => DDIMScheduler.fromConfig({ clip_sample: 'no' }), 'clip_sample');
  bad(() => DDIMScheduler.fromConfig({ trained_betas: [0.1, 0.2] }), 'trained_betas');
  bad(() => new DDIMScheduler({ not_an_option: 1 }), 'not_an_option');
  bad(() => DDIMScheduler.fromConfig({}).setTimesteps(1001), 'numInferenceSteps');
});

test('DPM-Solver maps sibling solver names like diffusers and records it in .config', () => {
  const s = DPMSolverMultistepScheduler.fromConfig({ algorithm_type: 'deis', solver_type: 'bh2' });
  assert.equal(s.config.algorithm_type, 'dpmsolver++');
  assert.equal(s.config.solver_type, 'midpoint');
});

// ---------------------------------------------------------------------------------------------
// Behaviour details

test('timestep grids match numpy for every spacing (values computed with numpy)', () => {
  assert.deepEqual(spacedIntegerTimesteps('trailing', 1000, 7, 0), [999, 856, 713, 570, 428, 285, 142]);
  assert.deepEqual(spacedIntegerTimesteps('linspace', 1000, 7, 0), [999, 832, 666, 500, 333, 166, 0]);
  assert.deepEqual(spacedIntegerTimesteps('leading', 1000, 7, 1), [853, 711, 569, 427, 285, 143, 1]);
  assert.deepEqual(spacedFloatTimesteps('linspace', 1000, 7, 0), [999, 832.5, 666, 499.5, 333, 166.5, 0]);
  assert.deepEqual(spacedFloatTimesteps('trailing', 1000, 7, 0), [999, 856, 713, 570, 428, 285, 142]);
  assert.deepEqual(
    spacedIntegerTimesteps('trailing', 1000, 33, 0),
    [999, 969, 938, 908, 878, 847, 817, 787, 757, 726, 696, 666, 635, 605, 575, 544, 514, 484, 454, 423, 393, 363,
      332, 302, 272, 241, 211, 181, 151, 120, 90, 60, 29],
  );
  assert.deepEqual(npLinspace(0, 999, 8).map(roundHalfEven).reverse().slice(0, -1), [999, 856, 714, 571, 428, 285, 143]);
  const dpm = (spacing: string) => {
    const s = DPMSolverMultistepScheduler.fromConfig({ timestep_spacing: spacing, steps_offset: 1 });
    s.setTimesteps(7);
    return s.timesteps;
  };
  assert.deepEqual(dpm('leading'), [876, 751, 626, 501, 376, 251, 126]);
  assert.deepEqual(dpm('trailing'), [999, 856, 713, 570, 428, 285, 142]);
  const pndm = PNDMScheduler.fromConfig({ timestep_spacing: 'trailing', skip_prk_steps: true });
  pndm.setTimesteps(7);
  assert.deepEqual(pndm.timesteps, [999, 856, 856, 713, 570, 428, 285, 142]);
});

test('LMS coefficients integrate like scipy.integrate.quad (value from scipy)', () => {
  const c = 0.3;
  assert.equal(quad((x) => (x - c) * (x - 2 * c) * (x + c) / 7.0, 14.6, 9.72, 1e-4), -1240.5594344228568);
  assert.equal(quad(() => 1.0, 14.6, 9.72, 1e-4), -4.879999999999999);
});

test('PNDM with Runge–Kutta warm-up (skip_prk_steps false) runs its documented schedule', () => {
  const s = PNDMScheduler.fromConfig({ beta_start: 0.00085, beta_end: 0.012, steps_offset: 1 });
  s.setTimesteps(10);
  // Values from diffusers' set_timesteps formulas evaluated with numpy.
  assert.deepEqual(s.prkTimesteps, [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601]);
  assert.deepEqual(s.plmsTimesteps, [601, 501, 401, 301, 201, 101, 1]);
  let x = input('init');
  for (const t of s.timesteps) {
    x = s.step({ data: x.data.map((v) => fr(v * 0.1)), shape: x.shape }, t, x).prevSample;
  }
  assert.ok(x.data.every(Number.isFinite));
});

test('DPM-Solver: an unknown timestep starts at the last step; Euler-family schedulers reject it', () => {
  const dpm = DPMSolverMultistepScheduler.fromConfig({});
  dpm.setTimesteps(5);
  const x = input('init');
  dpm.step(x, 12345, x);
  assert.equal(dpm.stepIndex, 5);
  const euler = EulerDiscreteScheduler.fromConfig({});
  euler.setTimesteps(5);
  assert.throws(() => euler.scaleModelInput(x, 500.5), (e: unknown) => e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT');
});

test('Euler draws from the generator on every step even without churn (diffusers does)', () => {
  const s = EulerDiscreteScheduler.fromConfig({});
  s.setTimesteps(3);
  const g = new Generator().manualSeed(3);
  const ref = new Generator().manualSeed(3);
  const x = input('init');
  s.step(x, s.timesteps[0]!, x, { generator: g });
  ref.randn(x.shape);
  assertExactArray(g.randn([4]).data, ref.randn([4]).data, 'generator state');
});

test('a list of generators draws one batch item from each, like randn_tensor', () => {
  // Zero sample and zero model output: only the ancestral noise · σ_up remains in the step's result.
  const noiseOf = (generator: Generator | Generator[], shape: number[]) => {
    const s = EulerAncestralDiscreteScheduler.fromConfig({});
    s.setTimesteps(2);
    const x: Tensor = { data: new Float32Array(shape.reduce((a, b) => a * b, 1)), shape };
    return s.step(x, s.timesteps[0]!, x, { generator }).prevSample.data;
  };
  const listed = noiseOf([new Generator().manualSeed(1), new Generator().manualSeed(2)], [2, 4, 8]);
  assertExactArray(listed.subarray(0, 32), noiseOf(new Generator().manualSeed(1), [1, 4, 8]), 'item 0');
  assertExactArray(listed.subarray(32), noiseOf(new Generator().manualSeed(2), [1, 4, 8]), 'item 1');
  // A single generator draws the whole shape at once (a different stream from two (1, …) draws).
  assert.notDeepEqual(noiseOf(new Generator().manualSeed(1), [2, 4, 8]).subarray(32), listed.subarray(32));
});

test('addNoise broadcasts like torch (PIA adds noise to masked_image[0] for a [B] timestep list)', () => {
  const s = DDIMScheduler.fromConfig(modelSchedulerConfig());
  s.setTimesteps(5);
  const original: Tensor = { data: new Float32Array(4 * 2 * 3).fill(1), shape: [4, 2, 3] };
  const noise: Tensor = { data: new Float32Array(4 * 2 * 3).fill(2), shape: [1, 4, 2, 3] };
  const out = s.addNoise(original, noise, [s.timesteps[0]!]);
  assert.deepEqual(out.shape, [1, 4, 2, 3]);
  const a = s.alphasCumprod[s.timesteps[0]!]!;
  assert.equal(out.data[5], fr(fr(Math.sqrt(a)) + fr(fr(Math.sqrt(fr(1 - a))) * 2)));
  assert.throws(() => s.addNoise(original, noise, [1, 2]), (e: unknown) => e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT');
});

test('LCM: custom timesteps, strength and original_inference_steps', () => {
  const s = LCMScheduler.fromConfig({});
  s.setTimesteps(4);
  assert.deepEqual(s.timesteps, [999, 759, 499, 259]);
  s.setTimesteps(4, { originalInferenceSteps: 20 });
  assert.deepEqual(s.timesteps, [999, 749, 499, 249]);
  s.setTimesteps(2, { strength: 0.5 });
  assert.deepEqual(s.timesteps, [499, 259]);
  s.setTimesteps(null, { timesteps: [999, 499, 19] });
  assert.deepEqual(s.timesteps, [999, 499, 19]);
  assert.throws(() => s.setTimesteps(null, { timesteps: [19, 499] }), (e: unknown) => e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT');
  assert.throws(() => s.setTimesteps(60), (e: unknown) => e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT');
});

test('every scheduler runs its variants without producing non-finite values', () => {
  const x = input('init');
  const variants: Array<[string, ConfigDict]> = [
    ['DDIMScheduler', { prediction_type: 'v_prediction', timestep_spacing: 'trailing', rescale_betas_zero_snr: true }],
    ['DDIMScheduler', { prediction_type: 'sample', beta_schedule: 'squaredcos_cap_v2' }],
    ['EulerDiscreteScheduler', { use_karras_sigmas: true, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 }],
    ['EulerDiscreteScheduler', { prediction_type: 'v_prediction', timestep_type: 'continuous' }],
    ['EulerDiscreteScheduler', { interpolation_type: 'log_linear' }],
    ['LMSDiscreteScheduler', { use_karras_sigmas: true }],
    ['EulerAncestralDiscreteScheduler', { prediction_type: 'v_prediction', timestep_spacing: 'trailing' }],
    ['DPMSolverMultistepScheduler', { solver_order: 3 }],
    ['DPMSolverMultistepScheduler', { solver_type: 'heun', use_lu_lambdas: true }],
    ['DPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver++' }],
    ['DPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver', final_sigmas_type: 'sigma_min', solver_order: 3 }],
    ['DPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver', final_sigmas_type: 'sigma_min', solver_type: 'heun' }],
    ['PNDMScheduler', { prediction_type: 'v_prediction', skip_prk_steps: true, timestep_spacing: 'linspace' }],
    ['LCMScheduler', { prediction_type: 'v_prediction', clip_sample: true }],
  ];
  for (const [name, cfg] of variants) {
    const s = CLASSES[name]!.fromConfig(cfg);
    s.setTimesteps(20);
    const g = new Generator().manualSeed(0);
    let sample: Tensor = { data: x.data.map((v) => fr(v * fr(s.initNoiseSigma))), shape: x.shape };
    for (const t of s.timesteps) {
      const mi = s.scaleModelInput(sample, t);
      sample = s.step({ data: mi.data.map((v) => fr(v * 0.05)), shape: mi.shape }, t, sample, { generator: g }).prevSample;
    }
    assert.ok(sample.data.every(Number.isFinite), `${name} ${JSON.stringify(cfg)}`);
  }
});
