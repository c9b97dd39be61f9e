// Conv2d as GEMM: weights [Cout, Cin·kh·kw] times an im2col panel of the input, built a block of
// output pixels at a time so the panel stays small (the VAE decoder at 512 px would otherwise need
// a 1 GB panel).
#include <algorithm>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"

namespace pia::cpu {

void conv2d(const float* x, int64_t N, int64_t Cin, int64_t H, int64_t W, const float* w, int64_t Cout, int64_t kh,
            int64_t kw, const float* bias, const Conv2dParams& p, float* y, int64_t Ho, int64_t Wo) {
  const int64_t K = Cin * kh * kw;
  const int64_t P = Ho * Wo;
  const bool pointwise = kh == 1 && kw == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_left == 0 &&
                         p.pad_bottom == 0 && p.pad_right == 0;
  // About 4 MB of panel per block, in whole multiples of 64 pixels.
  int64_t pb = std::max<int64_t>(64, (int64_t(1) << 20) / std::max<int64_t>(K, 1) / 64 * 64);
  pb = std::min(pb, P);
  std::vector<float> col(pointwise ? 0 : size_t(K * pb));
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * Cin * H * W;
    float* yn = y + n * Cout * P;
    if (bias) {
      parallel_for(0, Cout, 16, [&](int64_t b, int64_t e) {
        for (int64_t co = b; co < e; ++co) std::fill(yn + co * P, yn + (co + 1) * P, bias[co]);
      });
    }
    if (pointwise) {
      gemm(Cout, P, K, w, K, xn, P, false, yn, P, bias != nullptr);
      continue;
    }
    for (int64_t p0 = 0; p0 < P; p0 += pb) {
      const int64_t np = std::min(pb, P - p0);
      parallel_for(0, K, 4, [&](int64_t b, int64_t e) {
        for (int64_t kk = b; kk < e; ++kk) {
          const int64_t ci = kk / (kh * kw), r = (kk / kw) % kh, s = kk % kw;
          const float* xc = xn + ci * H * W;
          float* dst = col.data() + kk * np;
          for (int64_t q = 0; q < np; ++q) {
            const int64_t pix = p0 + q, oy = pix / Wo, ox = pix % Wo;
            const int64_t iy = oy * p.stride - p.pad_top + r, ix = ox * p.stride - p.pad_left + s;
            dst[q] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.f;
          }
        }
      });
      gemm(Cout, np, K, w, K, col.data(), np, false, yn + p0, P, bias != nullptr);
    }
  }
}

}  // namespace pia::cpu
