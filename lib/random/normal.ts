import { logf32, sincosf32 } from './f32math.js';
import type { MT19937 } from './mt19937.js';

const TWO_PI_F32 = Math.fround(2 * Math.PI); // 0x40c90fdb
const sc = new Float64Array(2);

/**
 * Box–Muller on one block of 16 uniforms in place, as ATen's `normal_fill_16_AVX2`:
 * lane k pairs u1 = 1 − d[k] with u2 = d[8 + k]; cos goes to d[k], sin to d[8 + k].
 * (mean 0 / std 1, so the final fma(n, std, mean) is the identity.)
 */
function transform16(d: Float32Array, o: number): void {
  for (let k = 0; k < 8; k++) {
    const u1 = 1 - d[o + k]!; // exact: uniforms are multiples of 2^-24
    const u2 = d[o + 8 + k]!;
    const radius = Math.fround(Math.sqrt(logf32(u1) * -2));
    sincosf32(Math.fround(u2 * TWO_PI_F32), sc);
    d[o + k] = radius * sc[1]!;
    d[o + 8 + k] = radius * sc[0]!;
  }
}

/**
 * torch's vectorised normal path (float32, ≥ 16 elements): draw every uniform first, transform
 * 16 at a time; a ragged tail draws 16 FRESH uniforms over the last 16 slots and transforms
 * them again, so the generator advances by n + 16 in that case.
 */
export function fillNormalVectorised(mt: MT19937, out: Float32Array): void {
  const n = out.length;
  mt.fillUniformFloat(out, 0, n);
  for (let i = 0; i + 16 <= n; i += 16) transform16(out, i);
  if (n % 16 !== 0) {
    mt.fillUniformFloat(out, n - 16, n);
    transform16(out, n - 16);
  }
}
