/**
 * The tables every scheduler builds (betas, alphas_cumprod, sigmas, timestep grids), computed the way
 * diffusers v0.26.3 computes them under torch 1.13 (CPU, AVX2 kernels) and numpy 1.24 — dtype by dtype:
 * torch float32 tensors where diffusers holds tensors, float64 where it goes through numpy.
 *
 * Values are JS doubles; an "f32" value is one that `Math.fround` leaves unchanged. A single f32 +, −, ×,
 * ÷ or sqrt done in double and then rounded is correctly rounded, so only fused multiply-adds need care.
 */
import { fma32 } from '../random/f32math.js';

const fr = Math.fround;

// ---------------------------------------------------------------------------------------------
// torch (float32)

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` as torch 1.13's AVX2 CPU kernel fills it.
 * The kernel walks the output 16 values at a time as two 8-lane vectors whose first lane is
 * `start + step·idx` (or `end − step·(steps−idx−1)` past the halfway point) contracted to one fma by
 * the compiler, and whose other lanes add `k·step` to it; the tail (steps % 16) is scalar, fused the
 * same way. Checked bit for bit against the betas of the golden schedulers (a plain loop misses ~10%).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = fr(start);
  const e = fr(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = fr(fr(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const first = (idx: number): number => (idx < halfway ? fma32(step, idx, s) : fma32(-step, steps - idx - 1, e));
  const lanes = 8;
  let i = 0;
  for (; i <= steps - 2 * lanes; i += 2 * lanes) {
    for (const v of [i, i + lanes]) {
      const base = first(v);
      out[v] = base;
      for (let k = 1; k < lanes; k++) out[v + k] = fr(base + fr(k * step));
    }
  }
  for (; i < steps; i++) out[i] = first(i);
  return out;
}

/** `torch.cumprod` of a float32 tensor on the CPU: ATen accumulates in double (acc_type<float> on CPU) and rounds each output. */
export function torchCumprodF32(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i]!;
    out[i] = acc;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// numpy (float64)

/** numpy's `round` / `rint`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // halves up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** `np.linspace(start, stop, num, endpoint)` in float64: `i·step + start`, the last value pinned to `stop`. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const delta = stop - start;
  const out = new Array<number>(num);
  if (div > 0) {
    const step = delta / div;
    for (let i = 0; i < num; i++) out[i] = step === 0 ? (i / div) * delta + start : i * step + start;
  } else {
    for (let i = 0; i < num; i++) out[i] = i * delta + start;
  }
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/**
 * `np.arange(start, stop, step)` with a float step: length `ceil((stop − start) / step)`, then numpy's
 * fill loop, which derives its increment from the first two values (`(start + step) − start`).
 */
export function npArangeFloat(start: number, stop: number, step: number): number[] {
  const q = (stop - start) / step;
  const len = q === 0 && stop - start !== 0 ? (Object.is(q, -0) ? 0 : 1) : Math.max(0, Math.ceil(q));
  const out = new Array<number>(len);
  if (len === 0) return out;
  out[0] = start;
  if (len === 1) return out;
  out[1] = start + step;
  const delta = out[1] - start;
  for (let i = 2; i < len; i++) out[i] = start + i * delta;
  return out;
}

/** `np.arange(0, n)`. */
export function npArangeInt(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * `np.interp(x, np.arange(len(fp)), fp)` (numpy's C `arr_interp`): exact hits return the table value,
 * otherwise `slope·(x − xp[j]) + fp[j]` in float64; outside the range the end values.
 */
export function npInterpUnitGrid(x: readonly number[], fp: ArrayLike<number>): number[] {
  const n = fp.length;
  return x.map((xv) => {
    if (Number.isNaN(xv)) return xv;
    if (xv >= n - 1) return fp[n - 1]!;
    if (xv < 0) return fp[0]!;
    const j = Math.floor(xv);
    const y0 = fp[j]!;
    if (xv === j) return y0;
    const y1 = fp[j + 1]!;
    const slope = (y1 - y0) / 1; // xp[j+1] − xp[j] = 1
    let r = slope * (xv - j) + y0;
    if (Number.isNaN(r)) {
      r = slope * (xv - (j + 1)) + y1;
      if (Number.isNaN(r) && y0 === y1) r = y0;
    }
    return r;
  });
}

// ---------------------------------------------------------------------------------------------
// Beta schedules and the tables derived from them

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

/**
 * diffusers' `betas_for_alpha_bar` (cosine): Python float64 arithmetic, then `torch.tensor(..., float32)`.
 */
export function betasForAlphaBar(numDiffusionTimesteps: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number): number => {
    const c = Math.cos(((t + 0.008) / 1.008) * Math.PI / 2);
    return c * c;
  };
  const out = new Float32Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return out;
}

/** The betas every scheduler's `__init__` builds from its config (torch float32). */
export function makeBetas(
  schedule: BetaSchedule,
  betaStart: number,
  betaEnd: number,
  numTrainTimesteps: number,
  trainedBetas: ArrayLike<number> | null,
): Float32Array {
  if (trainedBetas !== null) return Float32Array.from(trainedBetas as ArrayLike<number>);
  switch (schedule) {
    case 'linear':
      return torchLinspaceF32(betaStart, betaEnd, numTrainTimesteps);
    case 'scaled_linear': {
      // `torch.linspace(beta_start**0.5, beta_end**0.5, ...) ** 2`: the roots in Python float64, the square in f32.
      const b = torchLinspaceF32(Math.sqrt(betaStart), Math.sqrt(betaEnd), numTrainTimesteps);
      for (let i = 0; i < b.length; i++) b[i] = b[i]! * b[i]!;
      return b;
    }
    case 'squaredcos_cap_v2':
      return betasForAlphaBar(numTrainTimesteps);
  }
}

/** `1.0 - betas` in f32. */
export function alphasFromBetas(betas: Float32Array): Float32Array {
  const a = new Float32Array(betas.length);
  for (let i = 0; i < betas.length; i++) a[i] = 1 - betas[i]!;
  return a;
}

/** diffusers' `rescale_zero_terminal_snr`, op by op in torch float32. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphasCumprod = torchCumprodF32(alphasFromBetas(betas));
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) s[i] = Math.sqrt(alphasCumprod[i]!);
  const s0 = s[0]!;
  const sT = s[n - 1]!;
  const scale = fr(s0 / fr(s0 - sT));
  for (let i = 0; i < n; i++) s[i] = fr(s[i]! - sT) * scale;
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) bar[i] = s[i]! * s[i]!;
  const out = new Float32Array(n);
  out[0] = 1 - bar[0]!;
  for (let i = 1; i < n; i++) out[i] = 1 - fr(bar[i]! / bar[i - 1]!);
  return out;
}

/** `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in torch float32 (the training sigmas, ascending in t). */
export function sigmasFromAlphasCumprod(alphasCumprod: Float32Array): Float32Array {
  const out = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < out.length; i++) {
    const a = alphasCumprod[i]!;
    out[i] = Math.sqrt(fr(fr(1 - a) / a));
  }
  return out;
}

/**
 * `np.log` of a float32 array (kept in float32). numpy's own SIMD float32 log is not always correctly
 * rounded; this is. It only feeds `_sigma_to_t` (Karras / Lu schedules), where an ulp moves the
 * fractional timestep by ~1e-5 at most — it changed none of the golden timesteps.
 */
export function logF32(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.log(x[i]!);
  return out;
}

/**
 * `_convert_to_karras` (Karras et al. 2022, rho = 7) in float64 numpy: the ramp from `np.linspace(0, 1, n)`.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7.0;
  const ramp = npLinspace(0, 1, n);
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  const d = minInvRho - maxInvRho;
  return ramp.map((r) => (maxInvRho + r * d) ** rho);
}

/**
 * `_sigma_to_t`: the fractional training timestep whose log-sigma a value falls on. numpy 1.24's
 * value-based casting makes most of it float32 (a float64 scalar against a float32 array stays float32);
 * only `(1 − w)·low_idx + w·high_idx` is float64, because there both operands are arrays.
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const ls32 = fr(logSigma);
  const n = logSigmas.length;
  let low = 0;
  for (let i = 0; i < n; i++) if (logSigmas[i]! <= ls32) low = i;
  if (low > n - 2) low = n - 2;
  const high = low + 1;
  const lo = logSigmas[low]!;
  const hi = logSigmas[high]!;
  let w = fr(fr(lo - ls32) / fr(lo - hi));
  w = Math.min(Math.max(w, 0), 1);
  return fr(1 - w) * low + w * high;
}

/** torch's float32 `sqrt` (also `x ** 0.5`) on a 0-dim tensor. */
export function sqrtf(x: number): number {
  return fr(Math.sqrt(x));
}
