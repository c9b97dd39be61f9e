// Portable versions of the simd.h kernels and the run-time choice between them and the AVX2 ones.
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/dtype.h"
#include "cpu_features.h"

namespace pia::cpu {

bool use_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool ok = cpu_features().avx2 && cpu_features().fma;
  return ok;
#else
  return false;
#endif
}

namespace {
void micro_kernel_generic(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
  float acc[kMR][kNR];
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) acc[i][j] = accumulate ? C[i * ldc + j] : 0.f;
  for (int64_t k = 0; k < kc; ++k, Ap += kMR, Bp += kNR)
    for (int64_t i = 0; i < kMR; ++i)
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] += Ap[i] * Bp[j];
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) C[i * ldc + j] = acc[i][j];
}
inline float gelu1(float x) { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }
}  // namespace

MicroKernel micro_kernel() {
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2() && cpu_features().avx512f) return avx2::micro_kernel_avx512;
  if (use_avx2()) return avx2::micro_kernel;
#endif
  return micro_kernel_generic;
}

#if defined(__x86_64__) || defined(__i386__)
#define PIA_AVX2(call) \
  if (use_avx2()) return avx2::call
#else
#define PIA_AVX2(call)
#endif

float exp_sub_sum(float* x, int64_t n, float m) {
  PIA_AVX2(exp_sub_sum(x, n, m));
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  return s;
}

float scale_max(float* x, int64_t n, float scale) {
  PIA_AVX2(scale_max(x, n, scale));
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    m = x[i] > m ? x[i] : m;
  }
  return m;
}

void axpby(float* y, const float* x, int64_t n, float a, float b) {
  PIA_AVX2(axpby(y, x, n, a, b));
  if (b == 0.f) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a;
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + y[i] * b;
  }
}

void silu_inplace(float* x, int64_t n) {
  PIA_AVX2(silu_inplace(x, n));
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
}

void gelu_inplace(float* x, int64_t n) {
  PIA_AVX2(gelu_inplace(x, n));
  for (int64_t i = 0; i < n; ++i) x[i] = gelu1(x[i]);
}

void geglu_row(const float* a, const float* g, float* y, int64_t n) {
  PIA_AVX2(geglu_row(a, g, y, n));
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * gelu1(g[i]);
}

void softmax_panel(float* s, int64_t nk, int64_t rows, float scale, float* m, float* l, float* corr) {
  PIA_AVX2(softmax_panel(s, nk, rows, scale, m, l, corr));
  for (int64_t j = 0; j < kNR; ++j) {
    float mx = m[j];
    for (int64_t k = 0; k < nk; ++k) {
      s[k * kNR + j] *= scale;
      mx = std::max(mx, s[k * kNR + j]);
    }
    float sum = 0.f;
    for (int64_t k = 0; k < nk; ++k) sum += (s[k * kNR + j] = std::exp(s[k * kNR + j] - mx));
    for (int64_t k = nk; k < rows; ++k) s[k * kNR + j] = 0.f;
    corr[j] = std::exp(m[j] - mx);
    l[j] = l[j] * corr[j] + sum;
    m[j] = mx;
  }
}

void moments(const float* x, int64_t n, double& mean, double& var) {
  PIA_AVX2(moments(x, n, mean, var));
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  mean = n ? s / double(n) : 0.0;
  for (int64_t i = 0; i < n; ++i) s2 += (double(x[i]) - mean) * (double(x[i]) - mean);
  var = n ? s2 / double(n) : 0.0;
}

void affine_row(float* y, const float* x, int64_t n, float s, float t) {
  PIA_AVX2(affine_row(y, x, n, s, t));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s + t;
}

void widen_f16(const uint16_t* src, float* dst, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool f16c = use_avx2() && cpu_features().f16c;
  if (f16c) return avx2::widen_f16(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace pia::cpu
