// GroupNorm / LayerNorm. Statistics are accumulated in double and rounded to float: torch reduces
// in float32 with cascaded sums, whose result is within an ulp or two of the exact value that
// double gives us; the normalisation itself follows torch's float formula
// y = x · (rstd·γ) + (β − mean·rstd·γ).
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"
#include "simd.h"

namespace pia::cpu {

namespace {
void stats(const float* x, int64_t n, float eps, float& mean, float& rstd) {
  double m, v;
  moments(x, n, m, v);
  mean = float(m);
  // torch: biased variance, rstd = 1 / sqrt(var + eps) in float
  rstd = 1.f / std::sqrt(float(v) + eps);
}
}  // namespace

void group_norm(const float* x, int64_t N, int64_t C, int64_t S, int groups, const float* gamma, const float* beta,
                float eps, Activation act, float* y, int64_t frames) {
  const int64_t cg = C / groups, span = cg * S;
  parallel_for(0, N * groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng) {
      const int64_t n = ng / groups, g = ng % groups;
      auto at = [&](int64_t f) { return ((n * frames + f) * C + g * cg) * S; };
      float mean, rstd;
      if (frames == 1) {
        stats(x + at(0), span, eps, mean, rstd);
      } else {
        // Per-frame moments in double, pooled exactly (Chan et al.): the same statistics as
        // one pass over the permuted copy, without making it.
        double m = 0, v = 0;
        std::vector<double> fm(static_cast<size_t>(frames)), fv(static_cast<size_t>(frames));
        for (int64_t f = 0; f < frames; ++f) {
          moments(x + at(f), span, fm[size_t(f)], fv[size_t(f)]);
          m += fm[size_t(f)];
        }
        m /= double(frames);
        for (int64_t f = 0; f < frames; ++f) {
          const double d = fm[size_t(f)] - m;
          v += fv[size_t(f)] + d * d;
        }
        v /= double(frames);
        mean = float(m);
        rstd = 1.f / std::sqrt(float(v) + eps);
      }
      for (int64_t f = 0; f < frames; ++f) {
        const float* xg = x + at(f);
        float* yg = y + at(f);
        for (int64_t c = 0; c < cg; ++c) {
          const int64_t ch = g * cg + c;
          const float sc = rstd * (gamma ? gamma[ch] : 1.f);
          const float sh = (beta ? beta[ch] : 0.f) - mean * sc;
          affine_row(yg + c * S, xg + c * S, S, sc, sh);
        }
        // fused activation while the group is still in cache
        activation_inplace_serial(yg, span, act);
      }
    }
  });
}

void layer_norm(const float* x, int64_t R, int64_t D, const float* gamma, const float* beta, float eps, float* y,
                const float* add, int64_t add_div, int64_t add_period) {
  parallel_for(0, R, std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * D;
      float* yr = y + r * D;
      float mean, rstd;
      stats(xr, D, eps, mean, rstd);
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd * (gamma ? gamma[i] : 1.f) + (beta ? beta[i] : 0.f);
      if (add) {
        // The norm's float result first, then the add: the two roundings of the unfused ops.
        const float* ar = add + ((r / add_div) % add_period) * D;
        for (int64_t i = 0; i < D; ++i) yr[i] += ar[i];
      }
    }
  });
}

}  // namespace pia::cpu
