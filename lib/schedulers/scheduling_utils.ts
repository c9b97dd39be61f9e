/**
 * What the schedulers share: diffusers' ConfigMixin semantics for `fromConfig` / `.config`, option
 * validation, the common interface, RNG draws in diffusers' `randn_tensor` manner, and broadcasting
 * for `add_noise`.
 */
import { PiaError, invalidArgument } from '../errors.js';
import { Generator } from '../random/generator.js';
import { assertTensor, numel, type Tensor } from '../tensor.js';
import {
  alphasFromBetas,
  makeBetas,
  rescaleZeroTerminalSnr,
  sqrtf,
  torchCumprodF32,
  type BetaSchedule,
} from './numerics.js';

export type ConfigDict = Record<string, unknown>;

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

/** Anything with torch's `randn(shape, generator=g)` — the package's `Generator` is one. */
export type RandnGenerator = Pick<Generator, 'randn'>;

export interface StepOptions {
  /** Used where the scheduler draws noise (DDIM with eta > 0, Euler ancestral, LCM, SDE DPM-Solver, Euler with s_churn). A list draws per batch item like diffusers' `randn_tensor`. */
  generator?: RandnGenerator | RandnGenerator[];
  /** DDIM only. */
  eta?: number;
}

export interface StepOutput {
  prevSample: Tensor;
  predOriginalSample?: Tensor;
  denoised?: Tensor;
}

/** The surface every scheduler offers (API.md "Schedulers"). */
export interface Scheduler {
  readonly config: Readonly<ConfigDict>;
  readonly order: number;
  readonly initNoiseSigma: number;
  readonly timesteps: number[];
  /** The dtype of diffusers' `scheduler.timesteps`: int64 (DDIM, PNDM, DPM-Solver, LCM) or float32 (Euler, LMS; float64 in a few corners diffusers leaves in numpy's dtype). */
  readonly timestepsDtype: 'int64' | 'float32' | 'float64';
  readonly numInferenceSteps: number | null;
  setTimesteps(numInferenceSteps: number): void;
  scaleModelInput(sample: Tensor, timestep: number): Tensor;
  step(modelOutput: Tensor, timestep: number, sample: Tensor, options?: StepOptions): StepOutput;
  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor;
}

// ---------------------------------------------------------------------------------------------
// ConfigMixin

/**
 * diffusers' `ConfigMixin.extract_init_dict`: keys listed in `_use_default_values` (defaults the source
 * scheduler did not receive) are dropped, so a swapped-in class uses its OWN default for them; the
 * remaining keys this class knows become constructor arguments (overrides win), and everything else
 * that was given — other classes' keys, `_class_name`, … — is kept "hidden" and re-registered in
 * `.config`, so swapping back and forth loses nothing.
 */
export function extractInitDict(
  expectedKeys: readonly string[],
  config: ConfigDict,
  overrides: ConfigDict = {},
): { init: ConfigDict; hidden: ConfigDict } {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw invalidArgument('config', 'expected a scheduler config object');
  }
  const usedDefaults = Array.isArray(config._use_default_values) ? (config._use_default_values as unknown[]) : [];
  const original: ConfigDict = {};
  for (const [k, v] of Object.entries(config)) {
    if (k === '_use_default_values' || usedDefaults.includes(k)) continue;
    original[k] = v;
  }
  const init: ConfigDict = {};
  for (const key of expectedKeys) {
    if (Object.prototype.hasOwnProperty.call(overrides, key)) init[key] = overrides[key];
    else if (Object.prototype.hasOwnProperty.call(original, key)) init[key] = original[key];
  }
  const hidden: ConfigDict = {};
  for (const [k, v] of Object.entries(original)) if (!(k in init)) hidden[k] = v;
  return { init, hidden };
}

function cloneValue(v: unknown): unknown {
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return Object.freeze(v.map(cloneValue));
  if (v !== null && typeof v === 'object') {
    const o: ConfigDict = {};
    for (const [k, x] of Object.entries(v)) o[k] = cloneValue(x);
    return Object.freeze(o);
  }
  return v;
}

/**
 * What `register_to_config` leaves in `.config`: every constructor key in signature order with its
 * value, `_use_default_values` naming the ones that fell back to a default, then the hidden keys.
 */
export function registerConfig(
  defaults: Readonly<ConfigDict>,
  init: ConfigDict,
  hidden: ConfigDict,
  resolved: ConfigDict,
): Readonly<ConfigDict> {
  const out: ConfigDict = {};
  for (const k of Object.keys(defaults)) out[k] = cloneValue(resolved[k]);
  const usedDefaults = Object.keys(defaults).filter((k) => !(k in init));
  if (usedDefaults.length > 0) out._use_default_values = Object.freeze(usedDefaults);
  for (const [k, v] of Object.entries(hidden)) if (!(k in out)) out[k] = cloneValue(v);
  return Object.freeze(out);
}

/** Rejects constructor arguments the class does not take (Python would raise a TypeError). */
export function checkKnownKeys(className: string, defaults: Readonly<ConfigDict>, init: ConfigDict): void {
  for (const k of Object.keys(init)) {
    if (!(k in defaults)) throw invalidArgument(k, `${className} has no config option "${k}"`);
  }
}

// ---------------------------------------------------------------------------------------------
// Option validation

export function unsupported(option: string, value: unknown, className: string, supported: readonly unknown[]): PiaError {
  return new PiaError(
    'E_UNSUPPORTED',
    `${className}: ${option}=${JSON.stringify(value)} is not supported (supported: ${supported.map((s) => JSON.stringify(s)).join(', ')})`,
    { option },
  );
}

export function checkEnum<T extends string>(className: string, option: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw unsupported(option, value, className, allowed);
  }
  return value as T;
}

export function checkBool(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(option, `expected true or false, got ${JSON.stringify(value)}`);
  return value;
}

export function checkNumber(option: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidArgument(option, `expected a number, got ${JSON.stringify(value)}`);
  return value;
}

export function checkInt(option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw invalidArgument(option, `expected an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkNullableNumber(option: string, value: unknown): number | null {
  return value === null || value === undefined ? null : checkNumber(option, value);
}

export function checkTrainedBetas(value: unknown): number[] | null {
  if (value === null || value === undefined) return null;
  const arr = ArrayBuffer.isView(value) ? Array.from(value as unknown as ArrayLike<number>) : value;
  if (!Array.isArray(arr) || arr.length === 0 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw invalidArgument('trained_betas', 'expected null or a non-empty array of finite numbers');
  }
  return arr as number[];
}

/**
 * Dynamic thresholding (Imagen's `_threshold_sample`) is meant for pixel-space models and is not
 * implemented; a config that turns it on is rejected rather than silently ignored.
 */
export function rejectThresholding(className: string, config: Readonly<ConfigDict>): void {
  if (checkBool('thresholding', config.thresholding)) throw unsupported('thresholding', true, className, [false]);
}

/** `num_inference_steps` checks shared by every `setTimesteps`. */
export function checkInferenceSteps(n: unknown, numTrainTimesteps: number): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw invalidArgument('numInferenceSteps', `expected a positive integer, got ${JSON.stringify(n)}`);
  }
  if (n > numTrainTimesteps) {
    throw invalidArgument('numInferenceSteps', `${n} cannot be larger than num_train_timesteps (${numTrainTimesteps})`);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Timesteps and step indices

/**
 * `(self.timesteps == timestep).nonzero()`: a float32 schedule compares against the timestep rounded to
 * float32 (torch casts the Python scalar to the tensor's dtype); an int64 schedule compares exactly.
 */
export function timestepMatches(timesteps: readonly number[], dtype: 'int64' | 'float32' | 'float64', t: number): number[] {
  const key = dtype === 'float32' ? Math.fround(t) : t;
  const hits: number[] = [];
  for (let i = 0; i < timesteps.length; i++) if (timesteps[i] === key) hits.push(i);
  return hits;
}

/**
 * `_init_step_index`: the first match, or the SECOND when the timestep appears twice — diffusers' rule so
 * that a schedule cut for img2img (which can start on a repeated timestep) does not skip a sigma.
 */
export function initStepIndex(timesteps: readonly number[], dtype: 'int64' | 'float32' | 'float64', t: number, className: string): number {
  const hits = timestepMatches(timesteps, dtype, t);
  if (hits.length === 0) {
    throw invalidArgument('timestep', `${className}: timestep ${t} is not in the schedule (call setTimesteps and pass one of .timesteps)`);
  }
  return hits.length > 1 ? hits[1]! : hits[0]!;
}

export function checkTimestepNumber(t: unknown): number {
  if (typeof t !== 'number' || !Number.isFinite(t)) throw invalidArgument('timestep', `expected a finite number, got ${String(t)}`);
  return t;
}

/** A timestep used to index `alphas_cumprod` must be an integer in range (torch indexing). */
export function checkTrainIndex(t: number, numTrainTimesteps: number): number {
  if (!Number.isInteger(t) || t < -numTrainTimesteps || t >= numTrainTimesteps) {
    throw invalidArgument('timestep', `expected an integer training timestep in [0, ${numTrainTimesteps}), got ${t}`);
  }
  return t < 0 ? t + numTrainTimesteps : t; // Python-style negative indexing, like the tensor lookup
}

export function toTimestepList(t: number | readonly number[]): number[] {
  const list = typeof t === 'number' ? [t] : Array.from(t);
  if (list.length === 0) throw invalidArgument('timesteps', 'expected at least one timestep');
  for (const v of list) checkTimestepNumber(v);
  return list;
}

// ---------------------------------------------------------------------------------------------
// Tensors

export function checkSameShape(a: Tensor, b: Tensor, nameA: string, nameB: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw invalidArgument(nameB, `shape [${b.shape.join(', ')}] does not match ${nameA} [${a.shape.join(', ')}]`);
  }
}

export function checkStepInputs(modelOutput: Tensor, sample: Tensor): void {
  assertTensor(modelOutput, 'modelOutput');
  assertTensor(sample, 'sample');
  checkSameShape(sample, modelOutput, 'sample', 'modelOutput');
}

let fallbackGenerator: Generator | undefined;

/**
 * diffusers' `randn_tensor(shape, generator)`: one draw of the full shape, or with a list of generators
 * one `(1, ...)` draw per batch item. Without a generator torch would use its global RNG; we keep one
 * process-wide generator, randomly seeded, for that case.
 */
export function randnTensor(shape: readonly number[], generator: RandnGenerator | RandnGenerator[] | undefined): Tensor {
  if (Array.isArray(generator) && generator.length === 1) generator = generator[0];
  if (Array.isArray(generator)) {
    const batch = shape[0] ?? 1;
    if (generator.length !== batch) {
      throw invalidArgument('generator', `got a list of ${generator.length} generators for a batch of ${batch}`);
    }
    const itemShape = [1, ...shape.slice(1)];
    const per = numel(itemShape);
    const data = new Float32Array(numel(shape));
    generator.forEach((g, i) => data.set(g.randn(itemShape).data, i * per));
    return { data, shape: [...shape] };
  }
  if (generator === undefined || generator === null) {
    fallbackGenerator ??= new Generator(BigInt(Math.floor(Math.random() * 2 ** 52)));
    return fallbackGenerator.randn(shape);
  }
  if (typeof (generator as RandnGenerator).randn !== 'function') throw invalidArgument('generator', 'expected an object with randn(shape)');
  const t = generator.randn(shape);
  if (t.data.length !== numel(shape)) throw invalidArgument('generator', 'randn returned the wrong number of values');
  return t;
}

/** torch's broadcasting rule for two shapes. */
export function broadcastShapes(a: readonly number[], b: readonly number[], what: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw invalidArgument(what, `shapes [${a.join(', ')}] and [${b.join(', ')}] cannot be broadcast together`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Element offsets of `shape` (right-aligned, size-1 dims repeated) for each position of `outShape`. */
function broadcastIndex(shape: readonly number[], outShape: readonly number[]): Int32Array {
  const n = numel(outShape);
  const idx = new Int32Array(n);
  const rank = outShape.length;
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const o = rank - shape.length + i;
    strides[o] = shape[i] === 1 ? 0 : s;
    s *= shape[i]!;
  }
  const counter = new Array<number>(rank).fill(0);
  let off = 0;
  for (let k = 0; k < n; k++) {
    idx[k] = off;
    for (let d = rank - 1; d >= 0; d--) {
      counter[d]!++;
      off += strides[d]!;
      if (counter[d]! < outShape[d]!) break;
      off -= strides[d]! * counter[d]!;
      counter[d] = 0;
    }
  }
  return idx;
}

/** An elementwise f32 op over two broadcast tensors (`fn` must return the f32-rounded result). */
export function broadcastBinary(a: Tensor, b: Tensor, fn: (x: number, y: number) => number, what: string): Tensor {
  const shape = broadcastShapes(a.shape, b.shape, what);
  const n = numel(shape);
  const out = new Float32Array(n);
  const sameA = a.data.length === n && a.shape.length === shape.length;
  const sameB = b.data.length === n && b.shape.length === shape.length;
  const ia = sameA ? null : broadcastIndex(a.shape, shape);
  const ib = sameB ? null : broadcastIndex(b.shape, shape);
  for (let i = 0; i < n; i++) out[i] = fn(a.data[ia ? ia[i]! : i]!, b.data[ib ? ib[i]! : i]!);
  return { data: out, shape };
}

/**
 * A per-timestep coefficient as `add_noise` shapes it: `flatten()` to [B], then `unsqueeze(-1)` until it
 * has as many dims as `reference`.
 */
export function perTimestepTensor(values: readonly number[], reference: Tensor): Tensor {
  const shape = [values.length];
  while (shape.length < reference.shape.length) shape.push(1);
  return { data: Float32Array.from(values), shape };
}

// ---------------------------------------------------------------------------------------------
// Base class

/** The static side every scheduler class has. */
export interface SchedulerClass<T extends SchedulerBase = SchedulerBase> {
  new (init?: ConfigDict, hidden?: ConfigDict): T;
  readonly defaultConfig: Readonly<ConfigDict>;
  fromConfig(config: ConfigDict, overrides?: ConfigDict): T;
}

/** diffusers' SchedulerMixin + ConfigMixin: config bookkeeping and the fields every scheduler has. */
export abstract class SchedulerBase implements Scheduler {
  /** diffusers' class-level `order` (1 for every scheduler here, DPM-Solver included). */
  readonly order: number = 1;
  timesteps: number[] = [];
  timestepsDtype: 'int64' | 'float32' | 'float64' = 'int64';
  numInferenceSteps: number | null = null;
  #config: Readonly<ConfigDict>;

  protected constructor(className: string, defaults: Readonly<ConfigDict>, init: ConfigDict, hidden: ConfigDict) {
    if (init === null || typeof init !== 'object') throw invalidArgument('config', 'expected an object');
    checkKnownKeys(className, defaults, init);
    const resolved: ConfigDict = { ...defaults, ...init };
    this.#config = registerConfig(defaults, init, hidden ?? {}, resolved);
  }

  /** Every config key with its value, snake_case like diffusers (frozen). */
  get config(): Readonly<ConfigDict> {
    return this.#config;
  }

  /** `register_to_config(key=value)` after construction (DPM-Solver maps legacy solver names this way). */
  protected updateConfig(key: string, value: unknown): void {
    this.#config = Object.freeze({ ...this.#config, [key]: value });
  }

  abstract get initNoiseSigma(): number;
  abstract setTimesteps(numInferenceSteps: number): void;
  abstract scaleModelInput(sample: Tensor, timestep: number): Tensor;
  abstract step(modelOutput: Tensor, timestep: number, sample: Tensor, options?: StepOptions): StepOutput;
  abstract addNoise(originalSamples: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor;
}

// ---------------------------------------------------------------------------------------------
// Training tables and add_noise variants shared by several schedulers

export interface TrainTables {
  betas: Float32Array;
  alphas: Float32Array;
  alphasCumprod: Float32Array;
}

export const BETA_SCHEDULES = ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const;

/** The `__init__` preamble every scheduler here shares: betas → (optional zero-SNR rescale) → alphas → cumprod. */
export function buildTrainTables(className: string, config: Readonly<ConfigDict>, rescaleZeroSnr = false): TrainTables {
  const numTrain = checkInt('num_train_timesteps', config.num_train_timesteps, 1);
  const betaStart = checkNumber('beta_start', config.beta_start);
  const betaEnd = checkNumber('beta_end', config.beta_end);
  const trained = checkTrainedBetas(config.trained_betas);
  const schedule = trained === null
    ? checkEnum(className, 'beta_schedule', config.beta_schedule, BETA_SCHEDULES)
    : (config.beta_schedule as BetaSchedule);
  if (trained !== null && trained.length !== numTrain) {
    // diffusers would build tables of the wrong length and fail later; say so up front.
    throw invalidArgument('trained_betas', `has ${trained.length} values, num_train_timesteps is ${numTrain}`);
  }
  let betas = makeBetas(schedule, betaStart, betaEnd, numTrain, trained);
  if (rescaleZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  const alphas = alphasFromBetas(betas);
  return { betas, alphas, alphasCumprod: torchCumprodF32(alphas) };
}

/**
 * DDPM-style `add_noise` (DDIM, PNDM, LCM): `alphas_cumprod[t] ** 0.5 * x + (1 - alphas_cumprod[t]) ** 0.5 * noise`,
 * each coefficient shaped [B, 1, …] against `x`, in float32 with torch broadcasting.
 */
export function addNoiseFromAlphas(alphasCumprod: Float32Array, original: Tensor, noise: Tensor, timesteps: number | readonly number[]): Tensor {
  assertTensor(original, 'originalSamples');
  assertTensor(noise, 'noise');
  const ts = toTimestepList(timesteps).map((t) => checkTrainIndex(t, alphasCumprod.length));
  const sqrtA = perTimestepTensor(ts.map((t) => sqrtf(alphasCumprod[t]!)), original);
  const sqrtB = perTimestepTensor(ts.map((t) => sqrtf(Math.fround(1 - alphasCumprod[t]!))), original);
  const fr = Math.fround;
  const a = broadcastBinary(sqrtA, original, (c, x) => fr(c * x), 'originalSamples');
  const b = broadcastBinary(sqrtB, noise, (c, x) => fr(c * x), 'noise');
  return broadcastBinary(a, b, (x, y) => fr(x + y), 'noise');
}

/** Sigma-space `add_noise` (Euler, Euler ancestral, LMS): `x + noise * sigma`. */
export function addNoiseFromSigmas(sigmaValues: readonly number[], original: Tensor, noise: Tensor): Tensor {
  assertTensor(original, 'originalSamples');
  assertTensor(noise, 'noise');
  const fr = Math.fround;
  const sigma = perTimestepTensor(sigmaValues, original);
  const scaled = broadcastBinary(noise, sigma, (n, s) => fr(n * s), 'noise');
  return broadcastBinary(original, scaled, (x, y) => fr(x + y), 'noise');
}

/** `(schedule_timesteps == t).nonzero().item()`: exactly one match, as `.item()` demands. */
export function uniqueStepIndex(timesteps: readonly number[], dtype: 'int64' | 'float32' | 'float64', t: number, className: string): number {
  const hits = timestepMatches(timesteps, dtype, t);
  if (hits.length !== 1) {
    throw invalidArgument('timesteps', `${className}.addNoise: timestep ${t} matches ${hits.length} entries of the schedule (need exactly one)`);
  }
  return hits[0]!;
}

/** A fresh f32 tensor with `fn` applied elementwise (`fn` returns the rounded value). */
export function mapTensor(x: Tensor, fn: (v: number, i: number) => number): Tensor {
  const out = new Float32Array(x.data.length);
  const d = x.data;
  for (let i = 0; i < d.length; i++) out[i] = fn(d[i]!, i);
  return { data: out, shape: [...x.shape] };
}
