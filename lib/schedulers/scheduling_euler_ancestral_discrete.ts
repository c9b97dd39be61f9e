/** EulerAncestralDiscreteScheduler (diffusers v0.26.3 `scheduling_euler_ancestral_discrete.py`): Euler steps with ancestral sampling. */
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { npInterpUnitGrid, npLinspace, sigmasFromAlphasCumprod, sqrtf } from './numerics.js';
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

export class EulerAncestralDiscreteScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear',
    trained_betas: null,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  sigmas: Float32Array;
  private readonly numTrainTimesteps: number;
  private readonly predictionType: 'epsilon' | 'v_prediction';
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private stepIndexValue: number | null = null;

  /**
   * `EulerAncestralDiscreteScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): EulerAncestralDiscreteScheduler {
    const { init, hidden } = extractInitDict(Object.keys(EulerAncestralDiscreteScheduler.defaultConfig), config, overrides);
    return new EulerAncestralDiscreteScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('EulerAncestralDiscreteScheduler', EulerAncestralDiscreteScheduler.defaultConfig, init, hidden);
    const c = this.config;
    const rescale = checkBool('rescale_betas_zero_snr', c.rescale_betas_zero_snr);
    const tables = buildTrainTables('EulerAncestralDiscreteScheduler', c, rescale);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    // As in Euler: keep the last sigma finite under zero terminal SNR.
    if (rescale) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.numTrainTimesteps = c.num_train_timesteps as number;
    // diffusers accepts "sample" in the config but raises NotImplementedError at the first step.
    this.predictionType = checkEnum('EulerAncestralDiscreteScheduler', 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction']);
    this.spacing = checkEnum('EulerAncestralDiscreteScheduler', 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    this.stepsOffset = checkInt('steps_offset', c.steps_offset, 0);
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    this.sigmas = Float32Array.from([...Float32Array.from(train).reverse(), 0]);
    // Before setTimesteps the schedule is float64 (numpy linspace), as in diffusers.
    this.timesteps = npLinspace(0, this.numTrainTimesteps - 1, this.numTrainTimesteps).reverse();
    this.timestepsDtype = 'float64';
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
    const timesteps = spacedFloatTimesteps(this.spacing, this.numTrainTimesteps, n, this.stepsOffset);
    const sigmas = npInterpUnitGrid(timesteps, sigmasFromAlphasCumprod(this.alphasCumprod));
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = timesteps;
    this.timestepsDtype = 'float32';
    this.stepIndexValue = null;
  }

  private initStepIndex(timestep: number): void {
    this.stepIndexValue = initStepIndex(this.timesteps, this.timestepsDtype, checkTimestepNumber(timestep), 'EulerAncestralDiscreteScheduler');
  }

  scaleModelInput(sample: Tensor, timestep: number): Tensor {
    if (this.stepIndexValue === null) this.initStepIndex(timestep);
    const sigma = this.sigmas[this.stepIndexValue!]!;
    const scale = sqrtf(fr(fr(sigma * sigma) + 1));
    const out = new Float32Array(sample.data.length);
    for (let i = 0; i < out.length; i++) out[i] = sample.data[i]! / scale;
    return { data: out, shape: [...sample.shape] };
  }

  /** One ancestral step; draws `randn(modelOutput.shape)` from the generator every step. */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, options: StepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    if (this.stepIndexValue === null) this.initStepIndex(timestep);
    const idx = this.stepIndexValue!;
    if (idx + 1 >= this.sigmas.length) throw invalidArgument('timestep', 'EulerAncestralDiscreteScheduler: no steps left in the schedule');
    const sigma = this.sigmas[idx]!;
    const m = modelOutput.data;
    const x = sample.data;
    const n = x.length;
    const x0 = new Float32Array(n);
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < n; i++) x0[i] = x[i]! - fr(sigma * m[i]!);
    } else {
      const sq = fr(fr(sigma * sigma) + 1);
      const c = fr(-sigma / sqrtf(sq));
      for (let i = 0; i < n; i++) x0[i] = fr(m[i]! * c) + fr(x[i]! / sq);
    }
    const sigmaFrom = sigma;
    const sigmaTo = this.sigmas[idx + 1]!;
    const from2 = fr(sigmaFrom * sigmaFrom);
    const to2 = fr(sigmaTo * sigmaTo);
    const sigmaUp = sqrtf(fr(fr(to2 * fr(from2 - to2)) / from2));
    const sigmaDown = sqrtf(fr(to2 - fr(sigmaUp * sigmaUp)));
    const dt = fr(sigmaDown - sigma);
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const derivative = fr(fr(x[i]! - x0[i]!) / sigma);
      prev[i] = x[i]! + fr(derivative * dt);
    }
    const noise = randnTensor(modelOutput.shape, options.generator);
    for (let i = 0; i < n; i++) prev[i] = prev[i]! + fr(noise.data[i]! * sigmaUp);
    this.stepIndexValue = idx + 1;
    return { prevSample: { data: prev, shape: [...sample.shape] }, predOriginalSample: { data: x0, shape: [...sample.shape] } };
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    const idx = toTimestepList(timesteps).map((t) => uniqueStepIndex(this.timesteps, this.timestepsDtype, t, 'EulerAncestralDiscreteScheduler'));
    return addNoiseFromSigmas(idx.map((i) => this.sigmas[i]!), originalSamples, noise);
  }
}
