/**
 * `torch.log` / `torch.exp` of float32 tensors as torch 1.13 computes them on an AVX2 CPU: ATen's
 * Vectorized<float> calls SLEEF's `Sleef_logf8_u10` / `Sleef_expf8_u10` (AVX2 + FMA build), even for a
 * 0-dim tensor. Those are faithful (≤ 1 ulp) but not correctly rounded, and DPM-Solver feeds differences
 * of such logs into its step coefficients, so a correctly rounded log/exp drifts from diffusers by an ulp
 * now and then. These functions follow SLEEF's algorithms (xlogf_u1, xexpf) operation by operation; every
 * intermediate is an f32 value held in a double, fused multiply-adds go through `fma32`.
 *
 * Only finite positive inputs (log) and finite inputs (exp) take the polynomial path; the special values
 * are handled as SLEEF does.
 */
import { fma32 } from '../random/f32math.js';

const fr = Math.fround;
const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

function bits(x: number): number {
  f32[0] = x;
  return i32[0]!;
}

function fromBits(b: number): number {
  i32[0] = b;
  return f32[0]!;
}

/** vpow2i: 2^q built from the exponent field. */
function pow2i(q: number): number {
  return fromBits((q + 0x7f) << 23);
}

/** vldexp2: d · 2^(q>>1) · 2^(q − (q>>1)). */
function ldexp2(d: number, q: number): number {
  const h = q >> 1;
  return fr(fr(d * pow2i(h)) * pow2i(q - h));
}

/** Round half to even, as `_mm256_cvtps_epi32` does under the default rounding mode. */
function rintToInt(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// Double-float ("df") arithmetic from SLEEF's df.h, FMA variants. A pair [hi, lo] is an unevaluated sum.
type DF = [number, number];

function dfadd2VfVf(x: number, y: number): DF {
  const s = fr(x + y);
  const v = fr(s - x);
  return [s, fr(fr(x - fr(s - v)) + fr(y - v))];
}

function dfdiv(n: DF, d: DF): DF {
  const t = fr(1 / d[0]);
  const s = fr(n[0] * t);
  const u = fma32(t, n[0], -s);
  const v = fma32(-d[1], t, fma32(-d[0], t, 1));
  return [s, fma32(s, v, fma32(n[1], t, u))];
}

function dfmulVf2Vf(x: DF, y: number): DF {
  const s = fr(x[0] * y);
  return [s, fma32(x[1], y, fma32(x[0], y, -s))];
}

function dfscale(d: DF, s: number): DF {
  return [fr(d[0] * s), fr(d[1] * s)];
}

function dfaddVf2Vf2(x: DF, y: DF): DF {
  const s = fr(x[0] + y[0]);
  return [s, fr(fr(fr(fr(x[0] - s) + y[0]) + x[1]) + y[1])];
}

function dfaddVf2Vf(x: DF, y: number): DF {
  const s = fr(x[0] + y);
  return [s, fr(fr(fr(x[0] - s) + y) + x[1])];
}

const FLT_MIN = 2 ** -126;
const LN2_HI = fr(0.69314718246459960938);
const LN2_LO = fr(-1.904654323148236017e-9);

/** SLEEF `xlogf_u1` (Sleef_logf8_u10). */
export function sleefLogf(x: number): number {
  let d = fr(x);
  if (Number.isNaN(d) || d < 0) return NaN;
  if (d === 0) return -Infinity;
  if (d === Infinity) return Infinity;
  const tiny = d < FLT_MIN;
  if (tiny) d = fr(d * 2 ** 64);
  let e = ((bits(fr(d * fr(1 / 0.75))) >>> 23) & 0xff) - 0x7f;
  const m = fromBits(bits(d) + ((-e) << 23));
  if (tiny) e -= 64;
  let s = dfmulVf2Vf([LN2_HI, LN2_LO], e);
  const xq = dfdiv(dfadd2VfVf(-1, m), dfadd2VfVf(1, m));
  const x2 = fr(xq[0] * xq[0]);
  let t = fr(0.3027294874);
  t = fma32(t, x2, fr(0.3996108174));
  t = fma32(t, x2, fr(0.666669488));
  s = dfaddVf2Vf2(s, dfscale(xq, 2));
  s = dfaddVf2Vf(s, fr(fr(x2 * xq[0]) * t));
  return fr(s[0] + s[1]);
}

const R_LN2F = fr(1.442695040888963407359924681001892137426645954152985934135449406931);
const L2UF = fr(0.693145751953125);
const L2LF = fr(1.428606765330187045e-6);

/** SLEEF `xexpf` (Sleef_expf8_u10). */
export function sleefExpf(x: number): number {
  const d = fr(x);
  if (Number.isNaN(d)) return NaN;
  const q = rintToInt(fr(d * R_LN2F));
  let s = fma32(q, -L2UF, d);
  s = fma32(q, -L2LF, s);
  let u = fr(0.000198527617612853646278381);
  u = fma32(u, s, fr(0.00139304355252534151077271));
  u = fma32(u, s, fr(0.00833336077630519866943359));
  u = fma32(u, s, fr(0.0416664853692054748535156));
  u = fma32(u, s, fr(0.166666671633720397949219));
  u = fma32(u, s, 0.5);
  u = fr(1 + fma32(fr(s * s), u, s));
  u = ldexp2(u, q);
  if (d < -104) u = 0;
  if (d > 100) u = Infinity;
  return u;
}
