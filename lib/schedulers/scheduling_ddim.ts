/** DDIMScheduler (diffusers v0.26.3 `scheduling_ddim.py`). */
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { npArangeFloat, npLinspace, roundHalfEven, sqrtf } from './numerics.js';
import {
  SchedulerBase,
  extractInitDict,
  addNoiseFromAlphas,
  buildTrainTables,
  checkBool,
  checkEnum,
  checkInferenceSteps,
  checkInt,
  checkNumber,
  checkStepInputs,
  checkTimestepNumber,
  checkTrainIndex,
  randnTensor,
  rejectThresholding,
  TIMESTEP_SPACINGS,
  type ConfigDict,
  type PredictionType,
  type TimestepSpacing,
  type StepOptions,
  type StepOutput,
} from './scheduling_utils.js';

const fr = Math.fround;

export interface DDIMStepOptions extends StepOptions {
  useClippedModelOutput?: boolean;
  /** Noise to use instead of drawing from `generator` (diffusers' `variance_noise`). */
  varianceNoise?: Tensor;
}

/**
 * Denoising Diffusion Implicit Models. Deterministic unless `eta > 0`, when each step draws
 * `randn(modelOutput.shape)` from the generator.
 */
export class DDIMScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear',
    trained_betas: null,
    clip_sample: true,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: 'epsilon',
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    clip_sample_range: 1.0,
    sample_max_value: 1.0,
    timestep_spacing: 'leading',
    rescale_betas_zero_snr: false,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** `alphas_cumprod` "before" t = 0: 1 with `set_alpha_to_one`, else `alphas_cumprod[0]`. */
  readonly finalAlphaCumprod: number;
  private readonly numTrainTimesteps: number;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;

  /**
   * `DDIMScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): DDIMScheduler {
    const { init, hidden } = extractInitDict(Object.keys(DDIMScheduler.defaultConfig), config, overrides);
    return new DDIMScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('DDIMScheduler', DDIMScheduler.defaultConfig, init, hidden);
    const c = this.config;
    const tables = buildTrainTables('DDIMScheduler', c, checkBool('rescale_betas_zero_snr', c.rescale_betas_zero_snr));
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.numTrainTimesteps = c.num_train_timesteps as number;
    this.finalAlphaCumprod = checkBool('set_alpha_to_one', c.set_alpha_to_one) ? 1 : this.alphasCumprod[0]!;
    this.predictionType = checkEnum('DDIMScheduler', 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    this.spacing = checkEnum('DDIMScheduler', 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    this.stepsOffset = checkInt('steps_offset', c.steps_offset, 0);
    this.clipSample = checkBool('clip_sample', c.clip_sample);
    this.clipSampleRange = checkNumber('clip_sample_range', c.clip_sample_range);
    rejectThresholding('DDIMScheduler', c);
    this.timesteps = Array.from({ length: this.numTrainTimesteps }, (_, i) => this.numTrainTimesteps - 1 - i);
    this.timestepsDtype = 'int64';
  }

  get initNoiseSigma(): number {
    return 1.0;
  }

  setTimesteps(numInferenceSteps: number): void {
    const n = checkInferenceSteps(numInferenceSteps, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    this.timesteps = spacedIntegerTimesteps(this.spacing, this.numTrainTimesteps, n, this.stepsOffset);
  }

  scaleModelInput(sample: Tensor, _timestep?: number): Tensor {
    return sample;
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, options: DDIMStepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    if (this.numInferenceSteps === null) throw invalidArgument('numInferenceSteps', 'call setTimesteps before step');
    const eta = options.eta ?? 0;
    if (typeof eta !== 'number' || Number.isNaN(eta)) throw invalidArgument('eta', `expected a number, got ${String(eta)}`);
    const t = checkTrainIndex(checkTimestepNumber(timestep), this.numTrainTimesteps);
    // DDIM's previous timestep is arithmetic (t − T // N), not a lookup in the schedule.
    const prevT = timestep - Math.floor(this.numTrainTimesteps / this.numInferenceSteps);
    const aT = this.alphasCumprod[t]!;
    const aPrev = prevT >= 0 ? this.alphasCumprod[checkTrainIndex(prevT, this.numTrainTimesteps)]! : this.finalAlphaCumprod;
    const bT = fr(1 - aT);
    const sqrtA = sqrtf(aT);
    const sqrtB = sqrtf(bT);
    const m = modelOutput.data;
    const s = sample.data;
    const n = s.length;
    const x0 = new Float32Array(n);
    const eps = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (this.predictionType === 'epsilon') {
        x0[i] = fr(s[i]! - fr(sqrtB * m[i]!)) / sqrtA;
        eps[i] = m[i]!;
      } else if (this.predictionType === 'sample') {
        x0[i] = m[i]!;
        eps[i] = fr(s[i]! - fr(sqrtA * m[i]!)) / sqrtB;
      } else {
        x0[i] = fr(sqrtA * s[i]!) - fr(sqrtB * m[i]!);
        eps[i] = fr(sqrtA * m[i]!) + fr(sqrtB * s[i]!);
      }
    }
    if (this.clipSample) {
      const r = fr(this.clipSampleRange);
      for (let i = 0; i < n; i++) x0[i] = Math.min(Math.max(x0[i]!, -r), r);
    }
    // _get_variance: (beta_prev / beta_t) · (1 − alpha_t / alpha_prev), all 0-dim float32 tensors.
    const variance = fr(fr(fr(1 - aPrev) / bT) * fr(1 - fr(aT / aPrev)));
    const std = fr(fr(eta) * sqrtf(variance));
    if (options.useClippedModelOutput) {
      for (let i = 0; i < n; i++) eps[i] = fr(s[i]! - fr(sqrtA * x0[i]!)) / sqrtB;
    }
    const dirCoef = sqrtf(fr(fr(1 - aPrev) - fr(std * std)));
    const sqrtAPrev = sqrtf(aPrev);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = fr(sqrtAPrev * x0[i]!) + fr(dirCoef * eps[i]!);
    if (eta > 0) {
      if (options.varianceNoise !== undefined && options.generator !== undefined) {
        throw invalidArgument('varianceNoise', 'pass either generator or varianceNoise, not both');
      }
      const noise = options.varianceNoise ?? randnTensor(modelOutput.shape, options.generator);
      if (noise.data.length !== n) throw invalidArgument('varianceNoise', 'must have the shape of modelOutput');
      for (let i = 0; i < n; i++) prev[i] = prev[i]! + fr(std * noise.data[i]!);
    }
    return {
      prevSample: { data: prev, shape: [...sample.shape] },
      predOriginalSample: { data: x0, shape: [...sample.shape] },
    };
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    return addNoiseFromAlphas(this.alphasCumprod, originalSamples, noise, timesteps);
  }
}

/**
 * Integer timestep grids as DDIM's `set_timesteps` builds them (descending):
 * "leading" `arange(N) · (T // N) + steps_offset`, "linspace" `round(linspace(0, T−1, N))`,
 * "trailing" `round(arange(T, 0, −T/N)) − 1`.
 */
export function spacedIntegerTimesteps(spacing: TimestepSpacing, numTrain: number, n: number, stepsOffset: number): number[] {
  if (spacing === 'linspace') return npLinspace(0, numTrain - 1, n).map(roundHalfEven).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrain / n);
    return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + stepsOffset);
  }
  return npArangeFloat(numTrain, 0, -(numTrain / n)).map((v) => roundHalfEven(v) - 1);
}
