import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { MT19937, MT_STATE_SIZE } from './mt19937.js';
import { fillNormalVectorised } from './normal.js';

/** Plain, JSON-serialisable snapshot of a Generator. */
export interface GeneratorState {
  kind: 'torch-cpu-mt19937';
  /** The seed given to manualSeed, as a decimal string (u64 range, like torch's `initial_seed()`). */
  seed: string;
  /** The 624 mt19937 state words. */
  mt: number[];
  /** Outputs already consumed from the current state block (624: the next draw twists). */
  index: number;
  /** Second Box–Muller value cached by the scalar (< 16 elements) normal path, or null. */
  normalCache: number | null;
}

const U64 = 1n << 64n;
const I64_MIN = -(1n << 63n);
const DEFAULT_SEED = 67280421310721n; // torch's default_rng_seed_val

/** Normalises to torch's u64 seed; negatives wrap as two's complement like torch's int64 → uint64. */
function toSeed(seed: number | bigint): bigint {
  let s: bigint;
  if (typeof seed === 'bigint') {
    s = seed;
  } else if (typeof seed === 'number') {
    if (!Number.isInteger(seed)) throw invalidArgument('seed', `must be an integer, got ${seed}`);
    if (!Number.isSafeInteger(seed)) {
      throw invalidArgument('seed', `${seed} is beyond 2^53 and has lost precision; pass a bigint`);
    }
    s = BigInt(seed);
  } else {
    throw invalidArgument('seed', `must be a number or bigint, got ${typeof seed}`);
  }
  if (s < I64_MIN || s >= U64) {
    throw invalidArgument('seed', `${s} is outside the 64-bit range [-2^63, 2^64 - 1] torch accepts`);
  }
  return s < 0n ? s + U64 : s;
}

function checkShape(shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw invalidArgument('shape', 'must be an array of non-negative integers');
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw invalidArgument('shape', `must hold non-negative integers, got [${shape.join(', ')}]`);
    }
    n *= d;
  }
  if (n > 0x7fffffff) throw invalidArgument('shape', `[${shape.join(', ')}] has too many elements (${n})`);
  return n;
}

/**
 * Equivalent of `torch.Generator('cpu')`: `randn` / `rand` (float32) reproduce torch 1.13's
 * CPU kernels bit for bit, including the state carried between draws.
 */
export class Generator {
  private readonly mt = new MT19937();
  private seedValue: bigint = DEFAULT_SEED;
  private normalCache: number | null = null;

  constructor(seed?: number | bigint) {
    this.manualSeed(seed ?? DEFAULT_SEED);
  }

  manualSeed(seed: number | bigint): this {
    const s = toSeed(seed);
    this.seedValue = s;
    this.mt.seed(Number(s & 0xffffffffn));
    this.normalCache = null; // torch resets the cached Box–Muller value on reseed
    return this;
  }

  initialSeed(): bigint {
    return this.seedValue;
  }

  /** Standard normal float32 samples, like `torch.randn(shape, generator=g)`. */
  randn(shape: readonly number[]): Tensor {
    const n = checkShape(shape);
    const data = new Float32Array(n);
    if (n >= 16) fillNormalVectorised(this.mt, data);
    else for (let i = 0; i < n; i++) data[i] = this.scalarNormal();
    return { data, shape: [...shape] };
  }

  /** Uniform [0, 1) float32 samples, like `torch.rand(shape, generator=g)`. */
  rand(shape: readonly number[]): Tensor {
    const n = checkShape(shape);
    const data = new Float32Array(n);
    this.mt.fillUniformFloat(data, 0, n);
    return { data, shape: [...shape] };
  }

  /**
   * torch's scalar path for fewer than 16 elements: `normal_distribution<double>` — Box–Muller
   * in double with one value cached for the next call, rounded to f32 only at the end.
   */
  private scalarNormal(): number {
    if (this.normalCache !== null) {
      const v = this.normalCache;
      this.normalCache = null;
      return v;
    }
    const u1 = this.mt.nextUniformDouble();
    const u2 = this.mt.nextUniformDouble();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.normalCache = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  getState(): GeneratorState {
    return {
      kind: 'torch-cpu-mt19937',
      seed: this.seedValue.toString(),
      mt: Array.from(this.mt.state),
      index: this.mt.index,
      normalCache: this.normalCache,
    };
  }

  setState(state: GeneratorState): this {
    const st = state as Partial<GeneratorState> | null;
    if (st === null || typeof st !== 'object' || st.kind !== 'torch-cpu-mt19937') {
      throw invalidArgument('state', 'not a Generator state (expected kind "torch-cpu-mt19937")');
    }
    const { mt, index, normalCache, seed } = st;
    if (
      !Array.isArray(mt) || mt.length !== MT_STATE_SIZE ||
      !mt.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)
    ) {
      throw invalidArgument('state', `mt must be ${MT_STATE_SIZE} unsigned 32-bit integers`);
    }
    if (!Number.isInteger(index) || index! < 0 || index! > MT_STATE_SIZE) {
      throw invalidArgument('state', `index must be an integer in [0, ${MT_STATE_SIZE}]`);
    }
    if (normalCache !== null && !(typeof normalCache === 'number' && Number.isFinite(normalCache))) {
      throw invalidArgument('state', 'normalCache must be a finite number or null');
    }
    if (typeof seed !== 'string' || !/^\d+$/.test(seed) || BigInt(seed) >= U64) {
      throw invalidArgument('state', 'seed must be a decimal string in the u64 range');
    }
    this.mt.state.set(mt);
    this.mt.index = index!;
    this.normalCache = normalCache;
    this.seedValue = BigInt(seed);
    return this;
  }
}
