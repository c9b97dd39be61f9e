/**
 * Single-precision helpers that reproduce, bit for bit, what ATen's AVX2 normal kernel computes
 * (Cephes `log256_ps` / `sincos256_ps` from avx_mathfun.h, compiled with FMA contraction).
 *
 * Everything is carried in JS doubles holding f32 values. A plain f32 +, −, × or sqrt done in
 * double and then `Math.fround`ed is correctly rounded (double has more than 2·24+2 bits), so only
 * the fused multiply-adds need care; see `fma32`.
 */

const fround = Math.fround;

/**
 * f32 fused multiply-add of f32 inputs: round(a·b + c) with a single rounding.
 * a·b is exact in double and TwoSum gives the error of the double sum s. Rounding s to f32
 * is only wrong when s lands exactly on a midpoint between two floats that the exact sum
 * does not sit on; then the error's sign picks the side.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  const bv = s - p;
  const err = (p - (s - bv)) + (c - bv);
  if (err === 0) return r;
  const d = s - r; // exact
  const other = r + 2 * d; // the neighbouring float if s is a midpoint
  if (d === 0 || fround(other) !== other) return r;
  return err > 0 === d > 0 ? other : r;
}

const SQRTHF = fround(0.707106781186547524);
const LOG_P0 = fround(7.0376836292e-2);
const LOG_P1 = fround(-1.1514610310e-1);
const LOG_P2 = fround(1.1676998740e-1);
const LOG_P3 = fround(-1.2420140846e-1);
const LOG_P4 = fround(1.4249322787e-1);
const LOG_P5 = fround(-1.6668057665e-1);
const LOG_P6 = fround(2.0000714765e-1);
const LOG_P7 = fround(-2.4999993993e-1);
const LOG_P8 = fround(3.3333331174e-1);
const LOG_Q1 = fround(-2.12194440e-4);
const LOG_Q2 = fround(0.693359375);

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

/**
 * Natural log of a positive normal f32, as `log256_ps` evaluates it per lane.
 * (Only called with x in [2^-24, 1]; zero, negatives and denormals are not handled.)
 */
export function logf32(v: number): number {
  f32[0] = v;
  const bits = i32[0]!;
  let e = (bits >>> 23) - 126; // exponent − 127 + 1
  i32[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa scaled into [0.5, 1)
  let x = f32[0]!;
  // x < √½ → use 2x − 1 and one less in the exponent; both branches are exact in f32.
  if (x < SQRTHF) {
    e -= 1;
    x = x - 1 + x;
  } else {
    x = x - 1;
  }
  let y = LOG_P0;
  y = fma32(y, x, LOG_P1);
  y = fma32(y, x, LOG_P2);
  y = fma32(y, x, LOG_P3);
  y = fma32(y, x, LOG_P4);
  y = fma32(y, x, LOG_P5);
  y = fma32(y, x, LOG_P6);
  y = fma32(y, x, LOG_P7);
  y = fma32(y, x, LOG_P8);
  y = fround(y * x);
  const z = fround(x * x);
  // The compiler fused y·z with the separately rounded e·q1 (not e·q1 with y·z).
  y = fma32(y, z, fround(e * LOG_Q1));
  y = fma32(-z, 0.5, y);
  x = fround(x + y);
  return fma32(e, LOG_Q2, x);
}

const FOPI = fround(1.27323954473516);
const MINUS_DP1 = fround(-0.78515625);
const MINUS_DP2 = fround(-2.4187564849853515625e-4);
const MINUS_DP3 = fround(-3.77489497744594108e-8);
const SIN_P0 = fround(-1.9515295891e-4);
const SIN_P1 = fround(8.3321608736e-3);
const SIN_P2 = fround(-1.6666654611e-1);
const COS_P0 = fround(2.443315711809948e-5);
const COS_P1 = fround(-1.388731625493765e-3);
const COS_P2 = fround(4.166664568298827e-2);

/**
 * sin and cos of an f32 angle as `sincos256_ps` evaluates them per lane, written to
 * out[0] (sin) and out[1] (cos) so the hot loop allocates nothing.
 */
export function sincosf32(theta: number, out: Float64Array): void {
  const neg = theta < 0 || Object.is(theta, -0);
  let x = Math.abs(theta);
  const yq = fround(x * FOPI);
  // Cephes octant: truncate, then round up to even.
  const j = ((yq | 0) + 1) & ~1;
  x = fma32(j, MINUS_DP1, x);
  x = fma32(j, MINUS_DP2, x);
  x = fma32(j, MINUS_DP3, x);
  const z = fround(x * x);

  let yc = fma32(COS_P0, z, COS_P1);
  yc = fma32(yc, z, COS_P2);
  yc = fround(yc * z);
  yc = fma32(yc, z, -fround(z * 0.5));
  yc = fround(yc + 1);

  let ys = fma32(SIN_P0, z, SIN_P1);
  ys = fma32(ys, z, SIN_P2);
  ys = fround(ys * z);
  ys = fma32(ys, x, x);

  // Blend exactly like the and/andnot/sub/add sequence so signed zeros come out the same.
  const useSinPoly = (j & 2) === 0;
  const ysin2 = useSinPoly ? ys : 0;
  const ysin1 = useSinPoly ? 0 : yc;
  const s = ysin1 + ysin2;
  const c = (yc - ysin1) + (ys - ysin2);
  const flipSin = ((j & 4) !== 0) !== neg;
  const flipCos = (~(j - 2) & 4) !== 0;
  out[0] = flipSin ? -s : s;
  out[1] = flipCos ? -c : c;
}
