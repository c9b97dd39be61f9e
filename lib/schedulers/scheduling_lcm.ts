/** LCMScheduler (diffusers v0.26.3 `scheduling_lcm.py`): multistep latent-consistency sampling. */
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { npLinspace, sqrtf } from './numerics.js';
import {
  SchedulerBase,
  extractInitDict,
  addNoiseFromAlphas,
  buildTrainTables,
  checkBool,
  checkEnum,
  checkInt,
  checkNumber,
  checkStepInputs,
  checkTimestepNumber,
  checkTrainIndex,
  initStepIndex,
  randnTensor,
  rejectThresholding,
  TIMESTEP_SPACINGS,
  type ConfigDict,
  type PredictionType,
  type StepOptions,
  type StepOutput,
} from './scheduling_utils.js';

const fr = Math.fround;

export interface LCMSetTimestepsOptions {
  /** Overrides `config.original_inference_steps` (the distillation schedule length). */
  originalInferenceSteps?: number;
  /** A custom descending schedule instead of `numInferenceSteps`. */
  timesteps?: number[];
  /** img2img strength applied to the original schedule (diffusers' `strength`). */
  strength?: number;
}

export class LCMScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    trained_betas: null,
    original_inference_steps: 50,
    clip_sample: false,
    clip_sample_range: 1.0,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: 'epsilon',
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    sample_max_value: 1.0,
    timestep_spacing: 'leading',
    timestep_scaling: 10.0,
    rescale_betas_zero_snr: false,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  /** True after `setTimesteps` with an explicit schedule. */
  customTimesteps = false;
  private readonly numTrainTimesteps: number;
  private readonly predictionType: PredictionType;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly timestepScaling: number;
  private stepIndexValue: number | null = null;

  /**
   * `LCMScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): LCMScheduler {
    const { init, hidden } = extractInitDict(Object.keys(LCMScheduler.defaultConfig), config, overrides);
    return new LCMScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('LCMScheduler', LCMScheduler.defaultConfig, init, hidden);
    const c = this.config;
    const tables = buildTrainTables('LCMScheduler', c, checkBool('rescale_betas_zero_snr', c.rescale_betas_zero_snr));
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.numTrainTimesteps = c.num_train_timesteps as number;
    this.finalAlphaCumprod = checkBool('set_alpha_to_one', c.set_alpha_to_one) ? 1 : this.alphasCumprod[0]!;
    checkInt('original_inference_steps', c.original_inference_steps, 1);
    this.predictionType = checkEnum('LCMScheduler', 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    this.clipSample = checkBool('clip_sample', c.clip_sample);
    this.clipSampleRange = checkNumber('clip_sample_range', c.clip_sample_range);
    this.timestepScaling = checkNumber('timestep_scaling', c.timestep_scaling);
    rejectThresholding('LCMScheduler', c);
    // Kept in the config for other classes; LCM's own schedule ignores timestep_spacing and steps_offset.
    checkEnum('LCMScheduler', 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    checkInt('steps_offset', c.steps_offset, 0);
    this.timesteps = Array.from({ length: this.numTrainTimesteps }, (_, i) => this.numTrainTimesteps - 1 - i);
    this.timestepsDtype = 'int64';
  }

  get stepIndex(): number | null {
    return this.stepIndexValue;
  }

  get initNoiseSigma(): number {
    return 1.0;
  }

  /**
   * The LCM schedule: the distillation grid `[k−1, 2k−1, …]` (k = T // original_inference_steps), reversed,
   * sampled at `floor(linspace(0, len, N, endpoint=False))`.
   */
  setTimesteps(numInferenceSteps: number | null, options: LCMSetTimestepsOptions = {}): void {
    const T = this.numTrainTimesteps;
    const strength = options.strength ?? 1.0;
    if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) throw invalidArgument('strength', `expected a number in (0, 1], got ${String(strength)}`);
    const custom = options.timesteps;
    if ((numInferenceSteps === null || numInferenceSteps === undefined) === (custom === undefined)) {
      throw invalidArgument('numInferenceSteps', 'pass exactly one of numInferenceSteps or options.timesteps');
    }
    const originalSteps = options.originalInferenceSteps ?? (this.config.original_inference_steps as number);
    checkInt('originalInferenceSteps', originalSteps, 1);
    if (originalSteps > T) {
      throw invalidArgument('originalInferenceSteps', `${originalSteps} cannot be larger than num_train_timesteps (${T})`);
    }
    const k = Math.floor(T / originalSteps);
    const originCount = Math.trunc(originalSteps * strength);
    const origin = Array.from({ length: originCount }, (_, i) => (i + 1) * k - 1);
    let timesteps: number[];
    if (custom !== undefined) {
      if (!Array.isArray(custom) || custom.length === 0 || !custom.every((t) => Number.isInteger(t))) {
        throw invalidArgument('timesteps', 'expected a non-empty array of integer timesteps');
      }
      for (let i = 1; i < custom.length; i++) {
        if (custom[i]! >= custom[i - 1]!) throw invalidArgument('timesteps', 'custom timesteps must be in descending order');
      }
      if (custom[0]! >= T) throw invalidArgument('timesteps', `custom timesteps must start below num_train_timesteps (${T})`);
      this.numInferenceSteps = custom.length;
      this.customTimesteps = true;
      const initTimestep = Math.min(Math.trunc(custom.length * strength), custom.length);
      const tStart = Math.max(custom.length - initTimestep, 0);
      timesteps = custom.slice(tStart * this.order);
    } else {
      const n = numInferenceSteps as number;
      if (!Number.isInteger(n) || n < 1) throw invalidArgument('numInferenceSteps', `expected a positive integer, got ${String(n)}`);
      if (n > T) throw invalidArgument('numInferenceSteps', `${n} cannot be larger than num_train_timesteps (${T})`);
      const skipping = Math.floor(origin.length / n);
      if (skipping < 1) {
        throw invalidArgument(
          'numInferenceSteps',
          `original_inference_steps × strength (${originalSteps} × ${strength}) is smaller than numInferenceSteps (${n})`,
        );
      }
      if (n > originalSteps) {
        throw invalidArgument('numInferenceSteps', `${n} cannot be larger than original_inference_steps (${originalSteps})`);
      }
      this.numInferenceSteps = n;
      const reversed = [...origin].reverse();
      const picks = npLinspace(0, reversed.length, n, false).map(Math.floor);
      timesteps = picks.map((i) => reversed[i]!);
    }
    this.timesteps = timesteps;
    this.stepIndexValue = null;
  }

  scaleModelInput(sample: Tensor, _timestep?: number): Tensor {
    return sample;
  }

  /**
   * `get_scalings_for_boundary_condition_discrete`. The timestep arrives as an int64 tensor, so
   * `timestep * timestep_scaling` is float32 and so is everything after it.
   */
  boundaryScalings(timestep: number): { cSkip: number; cOut: number } {
    const sigmaData2 = 0.25; // sigma_data = 0.5
    const scaled = fr(fr(timestep) * fr(this.timestepScaling));
    const denom = fr(fr(scaled * scaled) + sigmaData2);
    const cSkip = fr(fr(1 / denom) * sigmaData2); // Python scalar / tensor = reciprocal · scalar
    const cOut = fr(scaled / sqrtf(denom));
    return { cSkip, cOut };
  }

  /** One LCM step; draws `randn(modelOutput.shape)` on every step except the last. */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, options: StepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    if (this.numInferenceSteps === null) throw invalidArgument('numInferenceSteps', 'call setTimesteps before step');
    checkTimestepNumber(timestep);
    if (this.stepIndexValue === null) this.stepIndexValue = initStepIndex(this.timesteps, 'int64', timestep, 'LCMScheduler');
    const idx = this.stepIndexValue;
    const prevIdx = idx + 1;
    const prevTimestep = prevIdx < this.timesteps.length ? this.timesteps[prevIdx]! : timestep;
    const T = this.numTrainTimesteps;
    const aT = this.alphasCumprod[checkTrainIndex(timestep, T)]!;
    const aPrev = prevTimestep >= 0 ? this.alphasCumprod[checkTrainIndex(prevTimestep, T)]! : this.finalAlphaCumprod;
    const bT = fr(1 - aT);
    const bPrev = fr(1 - aPrev);
    const { cSkip, cOut } = this.boundaryScalings(timestep);
    const sqrtA = sqrtf(aT);
    const sqrtB = sqrtf(bT);
    const m = modelOutput.data;
    const x = sample.data;
    const n = x.length;
    const x0 = new Float32Array(n);
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < n; i++) x0[i] = fr(x[i]! - fr(sqrtB * m[i]!)) / sqrtA;
    } else if (this.predictionType === 'sample') {
      x0.set(m);
    } else {
      for (let i = 0; i < n; i++) x0[i] = fr(sqrtA * x[i]!) - fr(sqrtB * m[i]!);
    }
    if (this.clipSample) {
      const r = fr(this.clipSampleRange);
      for (let i = 0; i < n; i++) x0[i] = Math.min(Math.max(x0[i]!, -r), r);
    }
    const denoised = new Float32Array(n);
    for (let i = 0; i < n; i++) denoised[i] = fr(cOut * x0[i]!) + fr(cSkip * x[i]!);
    let prev: Float32Array;
    if (idx !== this.numInferenceSteps - 1) {
      const noise = randnTensor(modelOutput.shape, options.generator).data;
      const sa = sqrtf(aPrev);
      const sb = sqrtf(bPrev);
      prev = new Float32Array(n);
      for (let i = 0; i < n; i++) prev[i] = fr(sa * denoised[i]!) + fr(sb * noise[i]!);
    } else {
      prev = denoised;
    }
    this.stepIndexValue = idx + 1;
    const shape = [...sample.shape];
    return {
      prevSample: { data: prev, shape },
      denoised: { data: denoised, shape: [...shape] },
      predOriginalSample: { data: x0, shape: [...shape] },
    };
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    return addNoiseFromAlphas(this.alphasCumprod, originalSamples, noise, timesteps);
  }
}
