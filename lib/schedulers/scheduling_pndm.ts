/** PNDMScheduler (diffusers v0.26.3 `scheduling_pndm.py`): pseudo numerical methods, PLMS with optional Runge–Kutta warm-up. */
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
  checkStepInputs,
  checkTimestepNumber,
  checkTrainIndex,
  TIMESTEP_SPACINGS,
  type ConfigDict,
  type StepOutput,
  type StepOptions,
  type TimestepSpacing,
} from './scheduling_utils.js';

const fr = Math.fround;

export class PNDMScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear',
    trained_betas: null,
    skip_prk_steps: false,
    set_alpha_to_one: false,
    prediction_type: 'epsilon',
    timestep_spacing: 'leading',
    steps_offset: 0,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  /** Runge–Kutta timesteps (empty with `skip_prk_steps`). */
  prkTimesteps: number[] = [];
  plmsTimesteps: number[] = [];
  private readonly numTrainTimesteps: number;
  private readonly predictionType: 'epsilon' | 'v_prediction';
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly skipPrkSteps: boolean;
  private readonly pndmOrder = 4;
  // Multistep state, reset by setTimesteps.
  private ets: Float32Array[] = [];
  private counter = 0;
  private curModelOutput: Float32Array | null = null;
  private curSample: Float32Array | null = null;

  /**
   * `PNDMScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): PNDMScheduler {
    const { init, hidden } = extractInitDict(Object.keys(PNDMScheduler.defaultConfig), config, overrides);
    return new PNDMScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('PNDMScheduler', PNDMScheduler.defaultConfig, init, hidden);
    const c = this.config;
    const tables = buildTrainTables('PNDMScheduler', c);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    this.numTrainTimesteps = c.num_train_timesteps as number;
    this.finalAlphaCumprod = checkBool('set_alpha_to_one', c.set_alpha_to_one) ? 1 : this.alphasCumprod[0]!;
    this.predictionType = checkEnum('PNDMScheduler', 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction']);
    this.spacing = checkEnum('PNDMScheduler', 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    this.stepsOffset = checkInt('steps_offset', c.steps_offset, 0);
    this.skipPrkSteps = checkBool('skip_prk_steps', c.skip_prk_steps);
    this.timestepsDtype = 'int64';
  }

  get initNoiseSigma(): number {
    return 1.0;
  }

  setTimesteps(numInferenceSteps: number): void {
    const n = checkInferenceSteps(numInferenceSteps, this.numTrainTimesteps);
    this.numInferenceSteps = n;
    const T = this.numTrainTimesteps;
    // Ascending grid here (PNDM reverses later).
    let base: number[];
    if (this.spacing === 'linspace') {
      base = npLinspace(0, T - 1, n).map(roundHalfEven);
    } else if (this.spacing === 'leading') {
      const ratio = Math.floor(T / n);
      base = Array.from({ length: n }, (_, i) => i * ratio + this.stepsOffset);
    } else {
      base = npArangeFloat(T, 0, -(T / n)).map((v) => roundHalfEven(v) - 1).reverse();
    }
    if (this.skipPrkSteps) {
      // diffusers' PLMS warm-up without Runge–Kutta: the second-to-last grid point is repeated, so
      // the schedule has N + 1 entries and its second timestep appears twice.
      this.prkTimesteps = [];
      this.plmsTimesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(T / n) / 2);
      const lastFour = base.slice(-this.pndmOrder);
      const prk: number[] = [];
      for (const t of lastFour) prk.push(t, t + half);
      // prk[:-1].repeat(2)[1:-1], reversed
      const rep: number[] = [];
      for (const t of prk.slice(0, -1)) rep.push(t, t);
      this.prkTimesteps = rep.slice(1, -1).reverse();
      this.plmsTimesteps = base.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.ets = [];
    this.counter = 0;
    this.curModelOutput = null;
    this.curSample = null;
  }

  scaleModelInput(sample: Tensor, _timestep?: number): Tensor {
    return sample;
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, _options: StepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    if (this.numInferenceSteps === null) throw invalidArgument('numInferenceSteps', 'call setTimesteps before step');
    checkTimestepNumber(timestep);
    // Copies: the multistep history must not alias buffers the caller may reuse for the next step.
    const m = Float32Array.from(modelOutput.data);
    const x = Float32Array.from(sample.data);
    const prev = this.counter < this.prkTimesteps.length && !this.skipPrkSteps
      ? this.stepPrk(m, timestep, x)
      : this.stepPlms(m, timestep, x);
    return { prevSample: { data: prev, shape: [...sample.shape] } };
  }

  private stepPrk(m: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const T = this.numTrainTimesteps;
    const N = this.numInferenceSteps!;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(T / N) / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    const n = m.length;
    let output = m;
    // Runge–Kutta weights 1/6, 1/3, 1/3, 1/6 as Python floats cast to f32 by the tensor multiply.
    const w6 = fr(1 / 6);
    const w3 = fr(1 / 3);
    const acc = (w: number): void => {
      const cur = this.curModelOutput;
      const next = new Float32Array(n);
      // `self.cur_model_output += w * model_output`; starting from the Python int 0.
      for (let i = 0; i < n; i++) next[i] = cur === null ? fr(w * m[i]!) : cur[i]! + fr(w * m[i]!);
      this.curModelOutput = next;
    };
    if (this.counter % 4 === 0) {
      acc(w6);
      this.ets.push(m);
      this.curSample = sample;
    } else if ((this.counter - 1) % 4 === 0) {
      acc(w3);
    } else if ((this.counter - 2) % 4 === 0) {
      acc(w3);
    } else {
      const cur = this.curModelOutput;
      output = new Float32Array(n);
      for (let i = 0; i < n; i++) output[i] = cur === null ? fr(w6 * m[i]!) : cur[i]! + fr(w6 * m[i]!);
      this.curModelOutput = null;
    }
    const curSample = this.curSample ?? sample;
    const prev = this.prevSample(curSample, t, prevTimestep, output);
    this.counter += 1;
    return prev;
  }

  private stepPlms(m: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    if (!this.skipPrkSteps && this.ets.length < 3) {
      throw invalidArgument('timestep', 'PNDMScheduler: PLMS steps can only run after the Runge–Kutta warm-up (call step once per timestep in order)');
    }
    const ratio = Math.floor(this.numTrainTimesteps / this.numInferenceSteps!);
    let prevTimestep = timestep - ratio;
    let t = timestep;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(m);
    } else {
      // The repeated second timestep: diffusers re-solves the first interval with the averaged output.
      prevTimestep = timestep;
      t = timestep + ratio;
    }
    const e = this.ets;
    const n = m.length;
    let output: Float32Array;
    let x = sample;
    if (e.length === 1 && this.counter === 0) {
      output = m;
      this.curSample = sample;
    } else if (e.length === 1 && this.counter === 1) {
      output = new Float32Array(n);
      const last = e[e.length - 1]!;
      for (let i = 0; i < n; i++) output[i] = fr(m[i]! + last[i]!) / 2;
      x = this.curSample!;
      this.curSample = null;
    } else if (e.length === 2) {
      const [e2, e1] = [e[e.length - 2]!, e[e.length - 1]!];
      output = new Float32Array(n);
      for (let i = 0; i < n; i++) output[i] = fr(fr(3 * e1[i]!) - e2[i]!) / 2;
    } else if (e.length === 3) {
      const [e3, e2, e1] = [e[e.length - 3]!, e[e.length - 2]!, e[e.length - 1]!];
      output = new Float32Array(n);
      for (let i = 0; i < n; i++) output[i] = fr(fr(fr(23 * e1[i]!) - fr(16 * e2[i]!)) + fr(5 * e3[i]!)) / 12;
    } else {
      const [e4, e3, e2, e1] = [e[e.length - 4]!, e[e.length - 3]!, e[e.length - 2]!, e[e.length - 1]!];
      const w = fr(1 / 24);
      output = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const acc = fr(fr(fr(fr(55 * e1[i]!) - fr(59 * e2[i]!)) + fr(37 * e3[i]!)) - fr(9 * e4[i]!));
        output[i] = w * acc;
      }
    }
    const prev = this.prevSample(x, t, prevTimestep, output);
    this.counter += 1;
    return prev;
  }

  /** `_get_prev_sample` (formula (9) of the PNDM paper), in float32 scalar-tensor arithmetic. */
  private prevSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutput: Float32Array): Float32Array {
    const T = this.numTrainTimesteps;
    const aT = this.alphasCumprod[checkTrainIndex(timestep, T)]!;
    const aPrev = prevTimestep >= 0 ? this.alphasCumprod[checkTrainIndex(prevTimestep, T)]! : this.finalAlphaCumprod;
    const bT = fr(1 - aT);
    const bPrev = fr(1 - aPrev);
    const n = sample.length;
    let mo = modelOutput;
    if (this.predictionType === 'v_prediction') {
      const sa = sqrtf(aT);
      const sb = sqrtf(bT);
      mo = new Float32Array(n);
      for (let i = 0; i < n; i++) mo[i] = fr(sa * modelOutput[i]!) + fr(sb * sample[i]!);
    }
    const sampleCoeff = sqrtf(fr(aPrev / aT));
    const denom = fr(fr(aT * sqrtf(bPrev)) + sqrtf(fr(fr(aT * bT) * aPrev)));
    const diff = fr(aPrev - aT);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = fr(sampleCoeff * sample[i]!) - fr(fr(diff * mo[i]!) / denom);
    return out;
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    return addNoiseFromAlphas(this.alphasCumprod, originalSamples, noise, timesteps);
  }
}
