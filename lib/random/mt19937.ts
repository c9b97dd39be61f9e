/**
 * 32-bit Mersenne Twister, the engine behind torch's CPU generator.
 *
 * torch seeds it with `init_genrand` on the low 32 bits of the (64-bit) seed,
 * and starts with an exhausted block so the first draw regenerates the state.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER = 0x80000000;
const LOWER = 0x7fffffff;

export const MT_STATE_SIZE = N;

export class MT19937 {
  readonly state = new Uint32Array(N);
  /** Outputs already taken from the current block; N means "twist before the next output". */
  index = N;

  constructor(seed = 5489) {
    this.seed(seed);
  }

  seed(seed32: number): void {
    const s = this.state;
    s[0] = seed32 >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = s[i - 1]!;
      s[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.index = N;
  }

  private twist(): void {
    const s = this.state;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (s[k]! & UPPER) | (s[k + 1]! & LOWER);
      s[k] = s[k + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (s[k]! & UPPER) | (s[k + 1]! & LOWER);
      s[k] = s[k + M - N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (s[N - 1]! & UPPER) | (s[0]! & LOWER);
    s[N - 1] = s[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }

  /** Next tempered output as an unsigned 32-bit integer. */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * Float uniforms in [0, 1) as torch's `uniform_real_distribution<float>` makes them:
   * one output each, its low 24 bits scaled by 2^-24 (exact in f32).
   */
  fillUniformFloat(out: Float32Array, start: number, end: number): void {
    const s = this.state;
    let idx = this.index;
    for (let i = start; i < end; i++) {
      if (idx >= N) {
        this.twist();
        idx = 0;
      }
      let y = s[idx++]!;
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      out[i] = (y & 0xffffff) * 5.9604644775390625e-8;
    }
    this.index = idx;
  }

  /**
   * Double uniform in [0, 1) as torch's `uniform_real_distribution<double>`: random64() puts the
   * FIRST 32-bit output in the high word, then keeps the low 53 bits.
   */
  nextUniformDouble(): number {
    const hi = this.nextUint32() & 0x1fffff;
    const lo = this.nextUint32();
    return (hi * 4294967296 + lo) * 1.1102230246251565e-16;
  }
}
