/** DPMSolverMultistepScheduler (diffusers v0.26.3 `scheduling_dpmsolver_multistep.py`): DPM-Solver / DPM-Solver++ (2M, 3M, SDE). */
import { PiaError, invalidArgument } from '../errors.js';
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
import { sleefExpf, sleefLogf } from './sleef.js';
import {
  SchedulerBase,
  extractInitDict,
  broadcastBinary,
  buildTrainTables,
  checkBool,
  checkEnum,
  checkInferenceSteps,
  checkInt,
  checkNullableNumber,
  checkNumber,
  checkStepInputs,
  checkTimestepNumber,
  perTimestepTensor,
  randnTensor,
  rejectThresholding,
  timestepMatches,
  toTimestepList,
  unsupported,
  TIMESTEP_SPACINGS,
  type ConfigDict,
  type PredictionType,
  type StepOptions,
  type StepOutput,
  type TimestepSpacing,
} from './scheduling_utils.js';

const fr = Math.fround;
// torch.log / torch.exp of float32 tensors (SLEEF on AVX2, see sleef.ts).
const logf = sleefLogf;
const expf = sleefExpf;

type AlgorithmType = 'dpmsolver++' | 'sde-dpmsolver++' | 'dpmsolver' | 'sde-dpmsolver';
type SolverType = 'midpoint' | 'heun';

/** `_sigma_to_alpha_sigma_t`: α = 1 / √(σ² + 1) (torch's `1 / x` is `reciprocal`), σ_t = σ·α. */
function alphaSigma(sigma: number): [number, number] {
  const alpha = fr(1 / sqrtf(fr(fr(sigma * sigma) + 1)));
  return [alpha, fr(sigma * alpha)];
}

/** Evaluates `c0·t0 ± c1·t1 ± …` left to right in float32, as the Python expression is. */
function combine(n: number, terms: ReadonlyArray<readonly [sign: 1 | -1, coef: number, data: ArrayLike<number>]>): Float32Array {
  const out = new Float32Array(n);
  const [first, ...rest] = terms;
  const [s0, c0, d0] = first!;
  for (let i = 0; i < n; i++) out[i] = fr(c0 * d0[i]!) * s0;
  for (const [sign, c, d] of rest) {
    for (let i = 0; i < n; i++) out[i] = sign > 0 ? out[i]! + fr(c * d[i]!) : out[i]! - fr(c * d[i]!);
  }
  return out;
}

export class DPMSolverMultistepScheduler extends SchedulerBase {
  static readonly defaultConfig: Readonly<ConfigDict> = Object.freeze({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear',
    trained_betas: null,
    solver_order: 2,
    prediction_type: 'epsilon',
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    sample_max_value: 1.0,
    algorithm_type: 'dpmsolver++',
    solver_type: 'midpoint',
    lower_order_final: true,
    euler_at_final: false,
    use_karras_sigmas: false,
    use_lu_lambdas: false,
    final_sigmas_type: 'zero',
    lambda_min_clipped: -Infinity,
    variance_type: null,
    timestep_spacing: 'linspace',
    steps_offset: 0,
  });

  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** √ᾱ, √(1 − ᾱ) and their log-ratio λ over the training timesteps (torch float32). */
  readonly alphaT: Float32Array;
  readonly sigmaT: Float32Array;
  readonly lambdaT: Float32Array;
  sigmas: Float32Array;
  private readonly numTrainTimesteps: number;
  private readonly solverOrder: number;
  private readonly predictionType: PredictionType;
  private readonly algorithmType: AlgorithmType;
  private readonly solverType: SolverType;
  private readonly lowerOrderFinal: boolean;
  private readonly eulerAtFinal: boolean;
  private readonly useKarrasSigmas: boolean;
  private readonly useLuLambdas: boolean;
  private readonly finalSigmasType: 'zero' | 'sigma_min';
  private readonly lambdaMinClipped: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private modelOutputs: Array<Float32Array | null>;
  private lowerOrderNums = 0;
  private stepIndexValue: number | null = null;

  /**
   * `DPMSolverMultistepScheduler.from_config(config, **overrides)`: a scheduler_config.json object or another scheduler's
   * `.config`; keys this class does not know are ignored but kept in `.config`.
   */
  static fromConfig(config: ConfigDict, overrides: ConfigDict = {}): DPMSolverMultistepScheduler {
    const { init, hidden } = extractInitDict(Object.keys(DPMSolverMultistepScheduler.defaultConfig), config, overrides);
    return new DPMSolverMultistepScheduler(init, hidden);
  }

  constructor(init: ConfigDict = {}, hidden: ConfigDict = {}) {
    super('DPMSolverMultistepScheduler', DPMSolverMultistepScheduler.defaultConfig, init, hidden);
    const name = 'DPMSolverMultistepScheduler';
    const c = this.config;
    const tables = buildTrainTables(name, c);
    this.betas = tables.betas;
    this.alphas = tables.alphas;
    this.alphasCumprod = tables.alphasCumprod;
    const T = (this.numTrainTimesteps = c.num_train_timesteps as number);
    this.alphaT = new Float32Array(T);
    this.sigmaT = new Float32Array(T);
    this.lambdaT = new Float32Array(T);
    for (let i = 0; i < T; i++) {
      this.alphaT[i] = sqrtf(this.alphasCumprod[i]!);
      this.sigmaT[i] = sqrtf(fr(1 - this.alphasCumprod[i]!));
      this.lambdaT[i] = logf(this.alphaT[i]!) - logf(this.sigmaT[i]!);
    }
    this.sigmas = sigmasFromAlphasCumprod(this.alphasCumprod);

    this.solverOrder = checkInt('solver_order', c.solver_order, 1);
    if (this.solverOrder > 3) throw unsupported('solver_order', c.solver_order, name, [1, 2, 3]);
    this.predictionType = checkEnum(name, 'prediction_type', c.prediction_type, ['epsilon', 'v_prediction', 'sample']);
    rejectThresholding(name, c);
    // diffusers maps solvers of sibling schedulers onto its own and records that in the config.
    let algorithm = c.algorithm_type;
    if (algorithm === 'deis') {
      algorithm = 'dpmsolver++';
      this.updateConfig('algorithm_type', algorithm);
    }
    this.algorithmType = checkEnum(name, 'algorithm_type', algorithm, ['dpmsolver++', 'sde-dpmsolver++', 'dpmsolver', 'sde-dpmsolver']);
    let solver = c.solver_type;
    if (solver === 'logrho' || solver === 'bh1' || solver === 'bh2') {
      solver = 'midpoint';
      this.updateConfig('solver_type', solver);
    }
    this.solverType = checkEnum(name, 'solver_type', solver, ['midpoint', 'heun']);
    this.lowerOrderFinal = checkBool('lower_order_final', c.lower_order_final);
    this.eulerAtFinal = checkBool('euler_at_final', c.euler_at_final);
    this.useKarrasSigmas = checkBool('use_karras_sigmas', c.use_karras_sigmas ?? false);
    this.useLuLambdas = checkBool('use_lu_lambdas', c.use_lu_lambdas ?? false);
    this.finalSigmasType = checkEnum(name, 'final_sigmas_type', c.final_sigmas_type ?? 'zero', ['zero', 'sigma_min']);
    if ((this.algorithmType === 'dpmsolver' || this.algorithmType === 'sde-dpmsolver') && this.finalSigmasType === 'zero') {
      throw new PiaError(
        'E_UNSUPPORTED',
        `${name}: final_sigmas_type "zero" is not supported with algorithm_type "${this.algorithmType}" (use "sigma_min")`,
        { option: 'final_sigmas_type' },
      );
    }
    if (this.algorithmType.startsWith('sde-') && this.solverOrder === 3) {
      // diffusers has no third-order SDE update (it fails at the first third-order step).
      throw unsupported('solver_order', 3, `${name} with ${this.algorithmType}`, [1, 2]);
    }
    this.lambdaMinClipped = checkNumber('lambda_min_clipped', c.lambda_min_clipped);
    // Learned-variance models emit extra channels that diffusers slices off; not a latent-diffusion case.
    if (c.variance_type !== null && c.variance_type !== undefined) throw unsupported('variance_type', c.variance_type, name, [null]);
    this.spacing = checkEnum(name, 'timestep_spacing', c.timestep_spacing, TIMESTEP_SPACINGS);
    this.stepsOffset = checkInt('steps_offset', c.steps_offset, 0);

    this.timesteps = npLinspace(0, T - 1, T).map(fr).reverse();
    this.timestepsDtype = 'float32';
    this.modelOutputs = new Array(this.solverOrder).fill(null);
  }

  get stepIndex(): number | null {
    return this.stepIndexValue;
  }

  get initNoiseSigma(): number {
    return 1.0;
  }

  setTimesteps(numInferenceSteps: number): void {
    const n = checkInferenceSteps(numInferenceSteps, this.numTrainTimesteps);
    const T = this.numTrainTimesteps;
    // searchsorted(flip(lambda_t), lambda_min_clipped): how many λ lie below the clip. torch promotes the
    // float32 table and the Python float to double for the search, so the clip is not rounded to f32.
    let clippedIdx = 0;
    for (let i = T - 1; i >= 0; i--) if (this.lambdaT[i]! < this.lambdaMinClipped) clippedIdx++;
    const lastTimestep = T - clippedIdx;
    let timesteps: number[];
    if (this.spacing === 'linspace') {
      timesteps = npLinspace(0, lastTimestep - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    } else if (this.spacing === 'leading') {
      const ratio = Math.floor(lastTimestep / (n + 1));
      timesteps = Array.from({ length: n + 1 }, (_, i) => i * ratio).reverse().slice(0, -1).map((t) => t + this.stepsOffset);
    } else {
      timesteps = npArangeFloat(lastTimestep, 0, -(T / n)).map((v) => roundHalfEven(v) - 1);
    }
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = logF32(train);
    let sigmas: number[];
    if (this.useKarrasSigmas) {
      // Like diffusers, honour sigma_min / sigma_max when the config carries them (e.g. kept from an Euler config).
      const cfgMin = checkNullableNumber('sigma_min', this.config.sigma_min);
      const cfgMax = checkNullableNumber('sigma_max', this.config.sigma_max);
      sigmas = karrasSigmas(cfgMin ?? train[0]!, cfgMax ?? train[train.length - 1]!, n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else if (this.useLuLambdas) {
      // _convert_to_lu: log-sigmas spaced uniformly (rho = 1) between log σ_max and log σ_min.
      const lMin = logSigmas[0]!;
      const lMax = logSigmas[logSigmas.length - 1]!;
      const ramp = npLinspace(0, 1, n);
      sigmas = ramp.map((r) => Math.exp(lMax + r * (lMin - lMax)));
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else {
      sigmas = npInterpUnitGrid(timesteps, train);
    }
    const sigmaLast = this.finalSigmasType === 'sigma_min' ? train[0]! : 0;
    this.sigmas = Float32Array.from([...sigmas, sigmaLast]);
    this.timesteps = timesteps;
    this.timestepsDtype = 'int64';
    this.numInferenceSteps = timesteps.length;
    this.modelOutputs = new Array(this.solverOrder).fill(null);
    this.lowerOrderNums = 0;
    this.stepIndexValue = null;
  }

  scaleModelInput(sample: Tensor, _timestep?: number): Tensor {
    return sample;
  }

  /** diffusers' rule: first match, second of a repeated timestep, and the LAST index when none matches. */
  private indexFor(timestep: number): number {
    const hits = timestepMatches(this.timesteps, this.timestepsDtype, checkTimestepNumber(timestep));
    if (hits.length === 0) return this.timesteps.length - 1;
    return hits.length > 1 ? hits[1]! : hits[0]!;
  }

  /** `convert_model_output`: x₀ for the ++ solvers, ε for the others. */
  private convertModelOutput(m: Float32Array, x: Float32Array, idx: number): Float32Array {
    const n = m.length;
    const out = new Float32Array(n);
    const [alpha, sigma] = alphaSigma(this.sigmas[idx]!);
    const dataPrediction = this.algorithmType === 'dpmsolver++' || this.algorithmType === 'sde-dpmsolver++';
    if (dataPrediction) {
      if (this.predictionType === 'epsilon') for (let i = 0; i < n; i++) out[i] = fr(x[i]! - fr(sigma * m[i]!)) / alpha;
      else if (this.predictionType === 'sample') out.set(m);
      else for (let i = 0; i < n; i++) out[i] = fr(alpha * x[i]!) - fr(sigma * m[i]!);
    } else {
      if (this.predictionType === 'epsilon') out.set(m);
      else if (this.predictionType === 'sample') for (let i = 0; i < n; i++) out[i] = fr(x[i]! - fr(alpha * m[i]!)) / sigma;
      else for (let i = 0; i < n; i++) out[i] = fr(alpha * m[i]!) + fr(sigma * x[i]!);
    }
    return out;
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, options: StepOptions = {}): StepOutput {
    checkStepInputs(modelOutput, sample);
    if (this.numInferenceSteps === null) throw invalidArgument('numInferenceSteps', 'call setTimesteps before step');
    if (this.stepIndexValue === null) this.stepIndexValue = this.indexFor(timestep);
    const idx = this.stepIndexValue;
    const len = this.timesteps.length;
    if (idx >= len) throw invalidArgument('timestep', 'DPMSolverMultistepScheduler: no steps left in the schedule');
    const lowerOrderFinal = idx === len - 1 &&
      (this.eulerAtFinal || (this.lowerOrderFinal && len < 15) || this.finalSigmasType === 'zero');
    const lowerOrderSecond = idx === len - 2 && this.lowerOrderFinal && len < 15;
    const x = sample.data;
    const converted = this.convertModelOutput(modelOutput.data, x, idx);
    for (let i = 0; i < this.solverOrder - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1]!;
    this.modelOutputs[this.solverOrder - 1] = converted;
    const noise = this.algorithmType.startsWith('sde-') ? randnTensor(modelOutput.shape, options.generator).data : null;
    let prev: Float32Array;
    if (this.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrderUpdate(converted, x, noise, idx);
    } else if (this.solverOrder === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prev = this.secondOrderUpdate(x, noise, idx);
    } else {
      prev = this.thirdOrderUpdate(x, idx);
    }
    if (this.lowerOrderNums < this.solverOrder) this.lowerOrderNums += 1;
    this.stepIndexValue = idx + 1;
    return { prevSample: { data: prev, shape: [...sample.shape] } };
  }

  private lambdas(...sigmas: number[]): Array<{ alpha: number; sigma: number; lambda: number }> {
    return sigmas.map((s) => {
      const [alpha, sigma] = alphaSigma(s);
      return { alpha, sigma, lambda: fr(logf(alpha) - logf(sigma)) };
    });
  }

  private firstOrderUpdate(m: Float32Array, x: Float32Array, noise: Float32Array | null, idx: number): Float32Array {
    const [t, s] = this.lambdas(this.sigmas[idx + 1]!, this.sigmas[idx]!);
    const h = fr(t!.lambda - s!.lambda);
    const n = x.length;
    switch (this.algorithmType) {
      case 'dpmsolver++':
        return combine(n, [[1, fr(t!.sigma / s!.sigma), x], [-1, fr(t!.alpha * fr(expf(-h) - 1)), m]]);
      case 'dpmsolver':
        return combine(n, [[1, fr(t!.alpha / s!.alpha), x], [-1, fr(t!.sigma * fr(expf(h) - 1)), m]]);
      case 'sde-dpmsolver++': {
        const e2 = expf(fr(-2 * h));
        return combine(n, [
          [1, fr(fr(t!.sigma / s!.sigma) * expf(-h)), x],
          [1, fr(t!.alpha * fr(1 - e2)), m],
          [1, fr(t!.sigma * sqrtf(fr(1 - e2))), noise!],
        ]);
      }
      case 'sde-dpmsolver':
        return combine(n, [
          [1, fr(t!.alpha / s!.alpha), x],
          [-1, fr(2 * fr(t!.sigma * fr(expf(h) - 1))), m],
          [1, fr(t!.sigma * sqrtf(fr(expf(fr(2 * h)) - 1))), noise!],
        ]);
    }
  }

  private secondOrderUpdate(x: Float32Array, noise: Float32Array | null, idx: number): Float32Array {
    const [t, s0, s1] = this.lambdas(this.sigmas[idx + 1]!, this.sigmas[idx]!, this.sigmas[idx - 1]!);
    const m0 = this.modelOutputs[this.solverOrder - 1]!;
    const m1 = this.modelOutputs[this.solverOrder - 2]!;
    const h = fr(t!.lambda - s0!.lambda);
    const h0 = fr(s0!.lambda - s1!.lambda);
    const r0 = fr(h0 / h);
    const n = x.length;
    const invR0 = fr(1 / r0);
    const d1 = new Float32Array(n);
    for (let i = 0; i < n; i++) d1[i] = invR0 * fr(m0[i]! - m1[i]!);
    const em = expf(-h);
    const ep = expf(h);
    switch (this.algorithmType) {
      case 'dpmsolver++': {
        const c0 = fr(t!.alpha * fr(em - 1));
        const c1 = this.solverType === 'midpoint' ? fr(0.5 * c0) : fr(t!.alpha * fr(fr(fr(em - 1) / h) + 1));
        return combine(n, [[1, fr(t!.sigma / s0!.sigma), x], [-1, c0, m0], [this.solverType === 'midpoint' ? -1 : 1, c1, d1]]);
      }
      case 'dpmsolver': {
        const c0 = fr(t!.sigma * fr(ep - 1));
        const c1 = this.solverType === 'midpoint' ? fr(0.5 * c0) : fr(t!.sigma * fr(fr(fr(ep - 1) / h) - 1));
        return combine(n, [[1, fr(t!.alpha / s0!.alpha), x], [-1, c0, m0], [-1, c1, d1]]);
      }
      case 'sde-dpmsolver++': {
        const e2 = expf(fr(-2 * h));
        const c0 = fr(t!.alpha * fr(1 - e2));
        const c1 = this.solverType === 'midpoint'
          ? fr(0.5 * c0)
          : fr(t!.alpha * fr(fr(fr(1 - e2) / fr(-2 * h)) + 1));
        return combine(n, [
          [1, fr(fr(t!.sigma / s0!.sigma) * em), x],
          [1, c0, m0],
          [1, c1, d1],
          [1, fr(t!.sigma * sqrtf(fr(1 - e2))), noise!],
        ]);
      }
      case 'sde-dpmsolver': {
        const base = fr(t!.sigma * fr(ep - 1));
        const c1 = this.solverType === 'midpoint' ? base : fr(2 * fr(t!.sigma * fr(fr(fr(ep - 1) / h) - 1)));
        return combine(n, [
          [1, fr(t!.alpha / s0!.alpha), x],
          [-1, fr(2 * base), m0],
          [-1, c1, d1],
          [1, fr(t!.sigma * sqrtf(fr(expf(fr(2 * h)) - 1))), noise!],
        ]);
      }
    }
  }

  private thirdOrderUpdate(x: Float32Array, idx: number): Float32Array {
    const [t, s0, s1, s2] = this.lambdas(this.sigmas[idx + 1]!, this.sigmas[idx]!, this.sigmas[idx - 1]!, this.sigmas[idx - 2]!);
    const m0 = this.modelOutputs[this.solverOrder - 1]!;
    const m1 = this.modelOutputs[this.solverOrder - 2]!;
    const m2 = this.modelOutputs[this.solverOrder - 3]!;
    const h = fr(t!.lambda - s0!.lambda);
    const h0 = fr(s0!.lambda - s1!.lambda);
    const h1 = fr(s1!.lambda - s2!.lambda);
    const r0 = fr(h0 / h);
    const r1 = fr(h1 / h);
    const n = x.length;
    const inv0 = fr(1 / r0);
    const inv1 = fr(1 / r1);
    const rsum = fr(r0 + r1);
    const w = fr(r0 / rsum);
    const invSum = fr(1 / rsum);
    const d1 = new Float32Array(n);
    const d2 = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const d10 = fr(inv0 * fr(m0[i]! - m1[i]!));
      const d11 = fr(inv1 * fr(m1[i]! - m2[i]!));
      const diff = fr(d10 - d11);
      d1[i] = d10 + fr(w * diff);
      d2[i] = invSum * diff;
    }
    const h2 = fr(h * h);
    if (this.algorithmType === 'dpmsolver++') {
      const em1 = fr(expf(-h) - 1);
      return combine(n, [
        [1, fr(t!.sigma / s0!.sigma), x],
        [-1, fr(t!.alpha * em1), m0],
        [1, fr(t!.alpha * fr(fr(em1 / h) + 1)), d1],
        [-1, fr(t!.alpha * fr(fr(fr(em1 + h) / h2) - 0.5)), d2],
      ]);
    }
    const ep1 = fr(expf(h) - 1);
    return combine(n, [
      [1, fr(t!.alpha / s0!.alpha), x],
      [-1, fr(t!.sigma * ep1), m0],
      [-1, fr(t!.sigma * fr(fr(ep1 / h) - 1)), d1],
      [-1, fr(t!.sigma * fr(fr(fr(ep1 - h) / h2) - 0.5)), d2],
    ]);
  }

  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
    const sig = toTimestepList(timesteps).map((t) => this.sigmas[this.indexFor(t)]!);
    const alphas = sig.map((s) => alphaSigma(s)[0]);
    const sigmaTs = sig.map((s) => alphaSigma(s)[1]);
    const a = broadcastBinary(perTimestepTensor(alphas, originalSamples), originalSamples, (c, v) => fr(c * v), 'originalSamples');
    const b = broadcastBinary(perTimestepTensor(sigmaTs, originalSamples), noise, (c, v) => fr(c * v), 'noise');
    return broadcastBinary(a, b, (p, q) => fr(p + q), 'noise');
  }
}
