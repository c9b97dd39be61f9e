// GroupNorm / LayerNorm. Statistics are accumulated in double and rounded to float: torch reduces
// in float32 with cascaded sums, whose result is within an ulp or two of the exact value that
// double gives us; the normalisation itself follows torch's float formula
// y = x · (rstd·γ) + (β − mean·rstd·γ).
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"

namespace pia::cpu {

namespace {
void moments(const float* x, int64_t n, float& mean, float& rstd, float eps) {
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const double m = s / double(n);
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(x[i]) - m;
    s2 += d * d;
  }
  mean = float(m);
  // torch: biased variance (divide by n), rstd = 1 / sqrt(var + eps) in float
  const float var = float(s2 / double(n));
  rstd = 1.f / std::sqrt(var + eps);
}
}  // namespace

void group_norm(const float* x, int64_t N, int64_t C, int64_t S, int groups, const float* gamma, const float* beta,
                float eps, Activation act, float* y) {
  const int64_t cg = C / groups;
  parallel_for(0, N * groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng) {
      const int64_t n = ng / groups, g = ng % groups;
      const float* xg = x + (n * C + g * cg) * S;
      float* yg = y + (n * C + g * cg) * S;
      float mean, rstd;
      moments(xg, cg * S, mean, rstd, eps);
      for (int64_t c = 0; c < cg; ++c) {
        const int64_t ch = g * cg + c;
        const float sc = rstd * (gamma ? gamma[ch] : 1.f);
        const float sh = (beta ? beta[ch] : 0.f) - mean * sc;
        const float* xc = xg + c * S;
        float* yc = yg + c * S;
        if (act == Activation::None) {
          for (int64_t i = 0; i < S; ++i) yc[i] = xc[i] * sc + sh;
        } else {
          for (int64_t i = 0; i < S; ++i) yc[i] = apply_activation(act, xc[i] * sc + sh);
        }
      }
    }
  });
}

void layer_norm(const float* x, int64_t R, int64_t D, const float* gamma, const float* beta, float eps, float* y) {
  parallel_for(0, R, 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * D;
      float* yr = y + r * D;
      float mean, rstd;
      moments(xr, D, mean, rstd, eps);
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd * (gamma ? gamma[i] : 1.f) + (beta ? beta[i] : 0.f);
    }
  });
}

}  // namespace pia::cpu
