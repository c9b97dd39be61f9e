/** EulerDiscreteScheduler (diffusers v0.26.3 `scheduling_euler_discrete.py`): Algorithm 2 of Karras et al. 2022. */
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import {
  karrasSigmas,
  logF32,
  npInterpUnitGrid,
  npLinspace,
  sigmasFromAlphasCumprod,
  sigmaToT,
  sqrtf,
  torchLinspaceF32,
} from './numerics.js';
import { spacedFloatTimesteps } from './scheduling_lms_discrete.js';
import {
  SchedulerBase,
  extractInitDict,
  addNoiseFromSigmas,
  buildTrainTables,
  checkBool,
  checkEnum,
  checkInferenceSteps,
  checkInt,
  checkNullableNumber,
  checkStepInputs,
  checkTimestepNumber,
  initStepIndex,
  randnTensor,
  toTimestepList,
  uniqueStepIndex,
  TIMESTEP_SPACINGS,
  type ConfigDict,
  type StepOptions,
  type StepOutput,
  type TimestepSpacing,
} from './scheduling_utils.js';

const fr = Math.fround;

export interface EulerStepOptions extends StepOptions {
  sChurn?: number;
  sTmin?: number;
  sTmax?: number;
  sNoise?: number;
}

/** Reverses a float32 table (the train sigmas run ascending in t; the schedule descending). */
function reversed(x: Float32Array): Float32Array {
  return Float32Array.from(x).reverse();
}

export class EulerDiscreteScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear',
    trained_betas: null,
    prediction_type: 'epsilon',
    interpolation_type: 'linear',
    use_karras_sigmas: false,
    sigma_min: null,
    sigma_max: null,
    timestep_spacing: 'linspace',
    timestep_type: 'discrete',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  sigmas: Float32Array;
  private readonly numTrainTimesteps: number;
  private readonly predictionType: 'epsilon' | 'v_prediction' | 'sample' | 'original_sample';
  private readonly interpolationType: 'linear' | 'log_linear';
  private readonly useKarrasSigmas: boolean;
  private readonly sigmaMin: number | null;
  private readonly sigmaMax: number | null;
  private readonly spacing: TimestepSpacing;
  private readonly continuousTimesteps: boolean;
  private readonly stepsOffset: number;
  private stepIndexValue: number | null = null;

  /**
   * `EulerDiscreteScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): EulerDiscreteScheduler {
    const { init, hidden } = extractInitDict(Object.keys(EulerDiscreteScheduler.defaultConfig), config, overrides);
    return new EulerDiscreteScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('EulerDiscreteScheduler', EulerDiscreteScheduler.defaultConfig, init, hidden);
    const c = this.config;
    const rescale = checkBool('rescale_betas_zero_snr', c.rescale_betas_zero_snr);
    const tables = buildTrainTables('EulerDiscreteScheduler', c, rescale);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    // Zero terminal SNR would make the last sigma infinite; diffusers pins alphas_cumprod[-1] to 2^-24.
    if (rescale) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.numTrainTimesteps = c.num_train_timesteps as number;
    this.predictionType = checkEnum('EulerDiscreteScheduler', 'prediction_type', c.prediction_type, [
      'epsilon',
      'v_prediction',
      'sample',
      'original_sample',
    ]);
    this.interpolationType = checkEnum('EulerDiscreteScheduler', 'interpolation_type', c.interpolation_type, ['linear', 'log_linear']);
    this.useKarrasSigmas = checkBool('use_karras_sigmas', c.use_karras_sigmas ?? false);
    this.sigmaMin = checkNullableNumber('sigma_min', c.sigma_min);
    this.sigmaMax = checkNullableNumber('sigma_max', c.sigma_max);
    this.spacing = checkEnum('EulerDiscreteScheduler', 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    const timestepType = checkEnum('EulerDiscreteScheduler', 'timestep_type', c.timestep_type, ['discrete', 'continuous']);
    // "continuous" only changes anything together with v_prediction (diffusers checks both).
    this.continuousTimesteps = timestepType === 'continuous' && this.predictionType === 'v_prediction';
    this.stepsOffset = checkInt('steps_offset', c.steps_offset, 0);

    const sigmas = reversed(sigmasFromAlphasCumprod(this.alphasCumprod));
    this.timestepsDtype = 'float32';
    this.timesteps = this.continuousTimesteps
      ? Array.from(sigmas, (s) => fr(0.25 * Math.log(s)))
      : npLinspace(0, this.numTrainTimesteps - 1, this.numTrainTimesteps).reverse().map(fr);
    this.sigmas = Float32Array.from([...sigmas, 0]);
  }

  get stepIndex(): number | null {
    return this.stepIndexValue;
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) if (s > max) max = s;
    if (this.spacing === 'linspace' || this.spacing === 'trailing') return max;
    return sqrtf(fr(fr(max * max) + 1));
  }

  setTimesteps(numInferenceSteps: number): void {
    const n = checkInferenceSteps(numInferenceSteps, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    let timesteps: number[] = spacedFloatTimesteps(this.spacing, this.numTrainTimesteps, n, this.stepsOffset);
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = logF32(train);
    let sigmas: number[];
    if (this.interpolationType === 'linear') {
      sigmas = npInterpUnitGrid(timesteps, train);
    } else {
      // torch.linspace(log σ_max, log σ_min, N + 1).exp(): N + 1 sigmas (diffusers then appends a 0 too).
      const ls = torchLinspaceF32(fr(Math.log(train[train.length - 1]!)), fr(Math.log(train[0]!)), n + 1);
      sigmas = Array.from(ls, (v) => fr(Math.exp(v)));
    }
    if (this.useKarrasSigmas) {
      sigmas = karrasSigmas(this.sigmaMin ?? sigmas[sigmas.length - 1]!, this.sigmaMax ?? sigmas[0]!, n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    const sig32 = Float32Array.from(sigmas);
    this.timesteps = this.continuousTimesteps
      ? Array.from(sig32, (s) => fr(0.25 * Math.log(s)))
      : timesteps.map(fr);
    this.sigmas = Float32Array.from([...sig32, 0]);
    this.stepIndexValue = null;
  }

  private initStepIndex(timestep: number): void {
    this.stepIndexValue = initStepIndex(this.timesteps, this.timestepsDtype, checkTimestepNumber(timestep), 'EulerDiscreteScheduler');
  }

  scaleModelInput(sample: Tensor, timestep: number): Tensor {
    if (this.stepIndexValue === null) this.initStepIndex(timestep);
    const sigma = this.sigmas[this.stepIndexValue!]!;
    const scale = sqrtf(fr(fr(sigma * sigma) + 1));
    const out = new Float32Array(sample.data.length);
    for (let i = 0; i < out.length; i++) out[i] = sample.data[i]! / scale;
    return { data: out, shape: [...sample.shape] };
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, options: EulerStepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    const sChurn = options.sChurn ?? 0;
    const sTmin = options.sTmin ?? 0;
    const sTmax = options.sTmax ?? Infinity;
    const sNoise = options.sNoise ?? 1;
    for (const [k, v] of Object.entries({ sChurn, sTmin, sTmax, sNoise })) {
      if (typeof v !== 'number' || Number.isNaN(v)) throw invalidArgument(k, `expected a number, got ${String(v)}`);
    }
    if (this.stepIndexValue === null) this.initStepIndex(timestep);
    const idx = this.stepIndexValue!;
    if (idx + 1 >= this.sigmas.length) throw invalidArgument('timestep', 'EulerDiscreteScheduler: no steps left in the schedule');
    const sigma = this.sigmas[idx]!;
    const gamma = fr(sTmin) <= sigma && sigma <= fr(sTmax) ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0.0;
    // diffusers draws this noise on EVERY step, even when gamma = 0 and it goes unused, so a shared
    // generator advances by one draw of the sample's shape per step. Without a generator the draw would
    // only move torch's global RNG, which has no counterpart here, so it is skipped unless needed.
    const noise = options.generator !== undefined || gamma > 0 ? randnTensor(modelOutput.shape, options.generator) : null;
    const sigmaHat = fr(sigma * fr(gamma + 1));
    const m = modelOutput.data;
    const n = m.length;
    let x = sample.data;
    if (gamma > 0) {
      const coef = sqrtf(fr(fr(sigmaHat * sigmaHat) - fr(sigma * sigma)));
      const sn = fr(sNoise);
      const nx = new Float32Array(n);
      for (let i = 0; i < n; i++) nx[i] = x[i]! + fr(fr(noise!.data[i]! * sn) * coef);
      x = nx;
    }
    const x0 = new Float32Array(n);
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < n; i++) x0[i] = x[i]! - fr(sigmaHat * m[i]!);
    } else if (this.predictionType === 'v_prediction') {
      const sq = fr(fr(sigma * sigma) + 1);
      const c = fr(-sigma / sqrtf(sq));
      for (let i = 0; i < n; i++) x0[i] = fr(m[i]! * c) + fr(x[i]! / sq);
    } else {
      x0.set(m);
    }
    const dt = fr(this.sigmas[idx + 1]! - sigmaHat);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const derivative = fr(fr(x[i]! - x0[i]!) / sigmaHat);
      prev[i] = x[i]! + fr(derivative * dt);
    }
    this.stepIndexValue = idx + 1;
    return { prevSample: { data: prev, shape: [...sample.shape] }, predOriginalSample: { data: x0, shape: [...sample.shape] } };
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    const idx = toTimestepList(timesteps).map((t) => uniqueStepIndex(this.timesteps, this.timestepsDtype, t, 'EulerDiscreteScheduler'));
    return addNoiseFromSigmas(idx.map((i) => this.sigmas[i]!), originalSamples, noise);
  }
}
