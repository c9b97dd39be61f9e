/**
 * `scipy.integrate.quad(f, a, b, epsrel=1e-4)` as LMSDiscreteScheduler.get_lms_coefficient uses it.
 *
 * scipy calls QUADPACK's dqagse, whose first move is one 21-point Gauss–Kronrod rule (dqk21) over [a, b].
 * The LMS integrands are polynomials of degree ≤ 3, which that rule integrates exactly, so the error
 * estimate meets the tolerance and dqagse returns the dqk21 sum as is. Reproducing dqk21's nodes, weights
 * and summation order therefore reproduces scipy's value, rounding included. Should the estimate ever miss
 * the tolerance we bisect adaptively (dqage-style, without dqagse's epsilon extrapolation), which only
 * moves the result by rounding for such integrands.
 */

// dqk21 abscissae: xgk[1], xgk[3], … are the 10-point Gauss nodes; xgk[10] is the centre.
const XGK = [
  0.995657163025808080735527280689003, 0.973906528517171720077964012084452, 0.930157491355708226001207180059508,
  0.865063366688984510732096688423493, 0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
  0.562757134668604683339000099272694, 0.433395394129247190799265943165784, 0.294392862701460198131126603103866,
  0.148874338981631210884826001129720, 0.0,
];
const WGK = [
  0.011694638867371874278064396062192, 0.032558162307964727478818972459390, 0.054755896574351996031381300244580,
  0.075039674810919952767043140916190, 0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
  0.123491976262065851077958109831074, 0.134709217311473325928054001771707, 0.142775938577060080797094273138717,
  0.147739104901338491374841515972068, 0.149445554002916905664936468389821,
];
const WG = [
  0.066671344308688137593568809893332, 0.149451349150580593145776339657697, 0.219086362515982043995534934228163,
  0.269266719309996355091226921569469, 0.295524224714752870173892994651338,
];

const EPMACH = 2 ** -52; // d1mach(4)
const UFLOW = 2 ** -1022; // d1mach(1)

interface Qk21 {
  result: number;
  abserr: number;
  resabs: number;
  resasc: number;
}

/** QUADPACK dqk21, in its own evaluation and summation order. */
function qk21(f: (x: number) => number, a: number, b: number): Qk21 {
  const centr = 0.5 * (a + b);
  const hlgth = 0.5 * (b - a);
  const dhlgth = Math.abs(hlgth);
  const fv1 = new Array<number>(10);
  const fv2 = new Array<number>(10);
  let resg = 0;
  const fc = f(centr);
  let resk = WGK[10]! * fc;
  let resabs = Math.abs(resk);
  // Fortran j = 1..5, jtw = 2j → 0-based index 2j − 1 (the Gauss nodes).
  for (let j = 1; j <= 5; j++) {
    const jtw = 2 * j - 1;
    const absc = hlgth * XGK[jtw]!;
    const fval1 = f(centr - absc);
    const fval2 = f(centr + absc);
    fv1[jtw] = fval1;
    fv2[jtw] = fval2;
    const fsum = fval1 + fval2;
    resg = resg + WG[j - 1]! * fsum;
    resk = resk + WGK[jtw]! * fsum;
    resabs = resabs + WGK[jtw]! * (Math.abs(fval1) + Math.abs(fval2));
  }
  // jtwm1 = 2j − 1 → 0-based 2j − 2 (the Kronrod extension nodes).
  for (let j = 1; j <= 5; j++) {
    const jtwm1 = 2 * j - 2;
    const absc = hlgth * XGK[jtwm1]!;
    const fval1 = f(centr - absc);
    const fval2 = f(centr + absc);
    fv1[jtwm1] = fval1;
    fv2[jtwm1] = fval2;
    const fsum = fval1 + fval2;
    resk = resk + WGK[jtwm1]! * fsum;
    resabs = resabs + WGK[jtwm1]! * (Math.abs(fval1) + Math.abs(fval2));
  }
  const reskh = resk * 0.5;
  let resasc = WGK[10]! * Math.abs(fc - reskh);
  for (let j = 0; j < 10; j++) resasc = resasc + WGK[j]! * (Math.abs(fv1[j]! - reskh) + Math.abs(fv2[j]! - reskh));
  const result = resk * hlgth;
  resabs = resabs * dhlgth;
  resasc = resasc * dhlgth;
  let abserr = Math.abs((resk - resg) * hlgth);
  if (resasc !== 0 && abserr !== 0) abserr = resasc * Math.min(1, (200 * abserr / resasc) ** 1.5);
  if (resabs > UFLOW / (50 * EPMACH)) abserr = Math.max(EPMACH * 50 * resabs, abserr);
  return { result, abserr, resabs, resasc };
}

/** ∫_a^b f with scipy's defaults (epsabs 1.49e-8, limit 50) and the given epsrel. */
export function quad(f: (x: number) => number, a: number, b: number, epsrel = 1.49e-8, epsabs = 1.49e-8): number {
  const first = qk21(f, a, b);
  const errbnd = Math.max(epsabs, epsrel * Math.abs(first.result));
  // dqagse names dqk21's (resabs, resasc) (defabs, resabs): the test below compares against resasc.
  if ((first.abserr <= errbnd && first.abserr !== first.resasc) || first.abserr === 0) return first.result;
  if (first.abserr <= 100 * EPMACH * first.resabs && first.abserr > errbnd) return first.result; // roundoff: dqagse stops (ier = 2)
  // Adaptive bisection of the interval with the largest error (dqage's strategy).
  const parts: Array<{ a: number; b: number; r: Qk21 }> = [{ a, b, r: first }];
  for (let it = 1; it < 50; it++) {
    let worst = 0;
    for (let i = 1; i < parts.length; i++) if (parts[i]!.r.abserr > parts[worst]!.r.abserr) worst = i;
    const p = parts[worst]!;
    const mid = 0.5 * (p.a + p.b);
    parts.splice(worst, 1, { a: p.a, b: mid, r: qk21(f, p.a, mid) }, { a: mid, b: p.b, r: qk21(f, mid, p.b) });
    let area = 0;
    let err = 0;
    for (const q of parts) {
      area += q.r.result;
      err += q.r.abserr;
    }
    if (err <= Math.max(epsabs, epsrel * Math.abs(area))) return area;
  }
  return parts.reduce((s, q) => s + q.r.result, 0);
}
