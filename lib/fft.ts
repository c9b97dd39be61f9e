// Complex FFT over trailing axes, for FreeInit (torch.fft.fftn / ifftn / fftshift). Computed in
// float64 (torch uses complex64; the difference is float32 rounding noise), any axis length:
// radix-2 where the length is a power of two, a direct DFT with a twiddle table otherwise.

export interface Complex {
  re: Float64Array;
  im: Float64Array;
}

const isPow2 = (n: number) => (n & (n - 1)) === 0;

interface Plan {
  n: number;
  cos: Float64Array;
  sin: Float64Array;
  rev?: Uint32Array;
}

const plans = new Map<number, Plan>();

function plan(n: number): Plan {
  let p = plans.get(n);
  if (p) return p;
  const cos = new Float64Array(n), sin = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    cos[k] = Math.cos((2 * Math.PI * k) / n);
    sin[k] = Math.sin((2 * Math.PI * k) / n);
  }
  p = { n, cos, sin };
  if (isPow2(n)) {
    const bits = Math.log2(n);
    const rev = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      rev[i] = r;
    }
    p.rev = rev;
  }
  plans.set(n, p);
  return p;
}

/** In-place 1-D transform of (re, im) of length n; inverse applies 1/n like torch's "backward" norm. */
function fft1d(re: Float64Array, im: Float64Array, inverse: boolean, sre: Float64Array, sim: Float64Array): void {
  const n = re.length;
  if (n <= 1) return;
  const p = plan(n);
  const sign = inverse ? 1 : -1;
  if (p.rev) {
    for (let i = 0; i < n; i++) {
      const j = p.rev[i];
      if (j > i) {
        let t = re[i]; re[i] = re[j]; re[j] = t;
        t = im[i]; im[i] = im[j]; im[j] = t;
      }
    }
    for (let size = 2; size <= n; size <<= 1) {
      const half = size >> 1, step = n / size;
      for (let start = 0; start < n; start += size) {
        for (let k = 0; k < half; k++) {
          const wr = p.cos[k * step], wi = sign * p.sin[k * step];
          const a = start + k, b = a + half;
          const xr = re[b] * wr - im[b] * wi;
          const xi = re[b] * wi + im[b] * wr;
          re[b] = re[a] - xr; im[b] = im[a] - xi;
          re[a] += xr; im[a] += xi;
        }
      }
    }
  } else {
    for (let k = 0; k < n; k++) {
      let accr = 0, acci = 0;
      for (let j = 0, idx = 0; j < n; j++, idx = (idx + k) % n) {
        const wr = p.cos[idx], wi = sign * p.sin[idx];
        accr += re[j] * wr - im[j] * wi;
        acci += re[j] * wi + im[j] * wr;
      }
      sre[k] = accr; sim[k] = acci;
    }
    re.set(sre.subarray(0, n)); im.set(sim.subarray(0, n));
  }
  if (inverse) {
    for (let i = 0; i < n; i++) { re[i] /= n; im[i] /= n; }
  }
}

/** Transforms every line along `axis` of a row-major complex array of `shape`. */
function transformAxis(x: Complex, shape: readonly number[], axis: number, inverse: boolean): void {
  const n = shape[axis];
  let inner = 1;
  for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
  const outer = x.re.length / (n * inner);
  const re = new Float64Array(n), im = new Float64Array(n), sre = new Float64Array(n), sim = new Float64Array(n);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      for (let k = 0; k < n; k++) { re[k] = x.re[base + k * inner]; im[k] = x.im[base + k * inner]; }
      fft1d(re, im, inverse, sre, sim);
      for (let k = 0; k < n; k++) { x.re[base + k * inner] = re[k]; x.im[base + k * inner] = im[k]; }
    }
  }
}

/** torch.fft.fftn / ifftn over the given axes (in place). */
export function fftn(x: Complex, shape: readonly number[], axes: readonly number[], inverse = false): Complex {
  for (const a of axes) transformAxis(x, shape, a, inverse);
  return x;
}

/** torch.fft.fftshift (inverse=false) / ifftshift (inverse=true) over `axes`: roll by ±floor(n/2). */
export function fftshift(x: Complex, shape: readonly number[], axes: readonly number[], inverse = false): Complex {
  let cur = x;
  for (const axis of axes) {
    const n = shape[axis];
    const shift = inverse ? -Math.floor(n / 2) : Math.floor(n / 2);
    if (shift % n === 0) continue;
    let inner = 1;
    for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
    const outer = cur.re.length / (n * inner);
    const out: Complex = { re: new Float64Array(cur.re.length), im: new Float64Array(cur.im.length) };
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < n; k++) {
        const dst = (((k + shift) % n) + n) % n;
        const s = o * n * inner + k * inner, d = o * n * inner + dst * inner;
        out.re.set(cur.re.subarray(s, s + inner), d);
        out.im.set(cur.im.subarray(s, s + inner), d);
      }
    }
    cur = out;
  }
  return cur;
}

export function complexFromReal(x: Float32Array): Complex {
  return { re: Float64Array.from(x), im: new Float64Array(x.length) };
}
