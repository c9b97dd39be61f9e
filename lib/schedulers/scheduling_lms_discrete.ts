/** LMSDiscreteScheduler (diffusers v0.26.3 `scheduling_lms_discrete.py`): linear multistep in sigma space. */
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import {
  karrasSigmas,
  logF32,
  npArangeFloat,
  npInterpUnitGrid,
  npLinspace,
  roundHalfEven,
  sigmasFromAlphasCumprod,
  sigmaToT,
  sqrtf,
} from './numerics.js';
import { quad } from './quadpack.js';
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
  toTimestepList,
  uniqueStepIndex,
  TIMESTEP_SPACINGS,
  type ConfigDict,
  type PredictionType,
  type StepOptions,
  type StepOutput,
  type TimestepSpacing,
} from './scheduling_utils.js';

const fr = Math.fround;

export interface LMSStepOptions extends StepOptions {
  /** Multistep order (diffusers' `order` argument of `step`, default 4). */
  order?: number;
}

/**
 * Float timestep grids for the sigma-space schedulers (LMS, Euler, Euler ancestral), as float32 values:
 * "linspace" `np.linspace(0, T−1, N, dtype=float32)`, "leading" `arange(N)·(T // N) + steps_offset`,
 * "trailing" `round(arange(T, 0, −T/N)) − 1` — all descending.
 */
export function spacedFloatTimesteps(spacing: TimestepSpacing, numTrain: number, n: number, stepsOffset: number): number[] {
  if (spacing === 'linspace') return npLinspace(0, numTrain - 1, n).map(fr).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrain / n);
    return Array.from({ length: n }, (_, i) => fr(fr((n - 1 - i) * ratio) + stepsOffset));
  }
  return npArangeFloat(numTrain, 0, -(numTrain / n)).map((v) => fr(roundHalfEven(v)) - 1);
}

export class LMSDiscreteScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear',
    trained_betas: null,
    use_karras_sigmas: false,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  sigmas: Float32Array;
  private readonly numTrainTimesteps: number;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly useKarrasSigmas: boolean;
  private derivatives: Float32Array[] = [];
  private stepIndexValue: number | null = null;

  /**
   * `LMSDiscreteScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): LMSDiscreteScheduler {
    const { init, hidden } = extractInitDict(Object.keys(LMSDiscreteScheduler.defaultConfig), config, overrides);
    return new LMSDiscreteScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('LMSDiscreteScheduler', LMSDiscreteScheduler.defaultConfig, init, hidden);
    const c = this.config;
    const tables = buildTrainTables('LMSDiscreteScheduler', c);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.numTrainTimesteps = c.num_train_timesteps as number;
    this.predictionType = checkEnum('LMSDiscreteScheduler', 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    this.spacing = checkEnum('LMSDiscreteScheduler', 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    this.stepsOffset = checkInt('steps_offset', c.steps_offset, 0);
    this.useKarrasSigmas = checkBool('use_karras_sigmas', c.use_karras_sigmas ?? false);
    this.sigmas = new Float32Array(0);
    // diffusers' __init__ ends by calling set_timesteps(num_train_timesteps).
    this.setTimesteps(this.numTrainTimesteps);
  }

  /** The index of the next step (diffusers' `step_index`), null until the first scale/step call. */
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
    let timesteps = spacedFloatTimesteps(this.spacing, this.numTrainTimesteps, n, this.stepsOffset);
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    let sigmas = npInterpUnitGrid(timesteps, train);
    this.timestepsDtype = 'float32';
    if (this.useKarrasSigmas) {
      const logSigmas = logF32(train);
      sigmas = karrasSigmas(sigmas[sigmas.length - 1]!, sigmas[0]!, n);
      // LMS keeps these float64 (no astype(float32), unlike Euler).
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
      this.timestepsDtype = 'float64';
    }
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = timesteps;
    this.stepIndexValue = null;
    this.derivatives = [];
  }

  scaleModelInput(sample: Tensor, timestep: number): Tensor {
    if (this.stepIndexValue === null) this.initStepIndex(timestep);
    const sigma = this.sigmas[this.stepIndexValue!]!;
    const scale = sqrtf(fr(fr(sigma * sigma) + 1));
    const out = new Float32Array(sample.data.length);
    for (let i = 0; i < out.length; i++) out[i] = sample.data[i]! / scale;
    return { data: out, shape: [...sample.shape] };
  }

  private initStepIndex(timestep: number): void {
    this.stepIndexValue = initStepIndex(this.timesteps, this.timestepsDtype, checkTimestepNumber(timestep), 'LMSDiscreteScheduler');
  }

  /**
   * `get_lms_coefficient`: ∫ of the Lagrange basis polynomial over [σ_t, σ_{t+1}] by scipy's quad. The
   * integrand runs on 0-dim float32 tensors in diffusers (τ is cast to float32 at each subtraction), so
   * it is evaluated in float32 here too.
   */
  getLmsCoefficient(order: number, t: number, currentOrder: number): number {
    const s = this.sigmas;
    const integrand = (tau: number): number => {
      let prod: number | null = null; // Python's 1.0 until the first tensor factor
      const tau32 = fr(tau);
      for (let k = 0; k < order; k++) {
        if (currentOrder === k) continue;
        const factor = fr(fr(tau32 - s[t - k]!) / fr(s[t - currentOrder]! - s[t - k]!));
        prod = prod === null ? factor : fr(prod * factor);
      }
      return prod ?? 1.0;
    };
    return quad(integrand, s[t]!, s[t + 1]!, 1e-4);
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, options: LMSStepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    let order = options.order ?? 4;
    if (!Number.isInteger(order) || order < 1) throw invalidArgument('order', `expected a positive integer, got ${order}`);
    if (this.stepIndexValue === null) this.initStepIndex(timestep);
    const idx = this.stepIndexValue!;
    if (idx + 1 >= this.sigmas.length) throw invalidArgument('timestep', 'LMSDiscreteScheduler: no steps left in the schedule');
    const sigma = this.sigmas[idx]!;
    const m = modelOutput.data;
    const x = sample.data;
    const n = x.length;
    const x0 = new Float32Array(n);
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < n; i++) x0[i] = x[i]! - fr(sigma * m[i]!);
    } else if (this.predictionType === 'v_prediction') {
      const sq = fr(fr(sigma * sigma) + 1);
      const c = fr(-sigma / sqrtf(sq));
      for (let i = 0; i < n; i++) x0[i] = fr(m[i]! * c) + fr(x[i]! / sq);
    } else {
      x0.set(m);
    }
    const derivative = new Float32Array(n);
    for (let i = 0; i < n; i++) derivative[i] = fr(x[i]! - x0[i]!) / sigma;
    this.derivatives.push(derivative);
    if (this.derivatives.length > order) this.derivatives.shift();
    order = Math.min(idx + 1, order);
    const coeffs = Array.from({ length: order }, (_, k) => fr(this.getLmsCoefficient(order, idx, k)));
    // `sample + sum(coeff * derivative for ... reversed(derivatives))`: Python's sum starts at int 0.
    const recent = [...this.derivatives].reverse();
    const acc = new Float32Array(n);
    for (let k = 0; k < coeffs.length; k++) {
      const d = recent[k]!;
      const c = coeffs[k]!;
      for (let i = 0; i < n; i++) acc[i] = k === 0 ? fr(c * d[i]!) : acc[i]! + fr(c * d[i]!);
    }
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = x[i]! + acc[i]!;
    this.stepIndexValue = idx + 1;
    return { prevSample: { data: prev, shape: [...sample.shape] }, predOriginalSample: { data: x0, shape: [...sample.shape] } };
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    const idx = toTimestepList(timesteps).map((t) => uniqueStepIndex(this.timesteps, this.timestepsDtype, t, 'LMSDiscreteScheduler'));
    return addNoiseFromSigmas(idx.map((i) => this.sigmas[i]!), originalSamples, noise);
  }
}
