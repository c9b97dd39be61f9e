// AVX2/FMA kernels. This file is compiled with -mavx2 -mfma -mf16c and must only be entered after
// cpu_features() confirmed them (see simd.cpp).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "simd.h"

namespace pia::cpu::avx2 {

namespace {

// e^x for x in float range: Cody–Waite range reduction x = n·ln2 + r and a degree-6 polynomial
// for e^r (Cephes' expf coefficients, ~1 ulp); clamps like expf (−inf → 0).
inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-103.972084f);
  // Results below FLT_MIN are flushed to 0 (−inf → 0 too): a denormal softmax weight adds
  // nothing visible and would cost microcode assists in the GEMM on some CPUs.
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654475f), _CMP_LT_OQ);
  x = _mm256_min_ps(x, hi);
  x = _mm256_max_ps(x, lo);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^n in two halves so that n down to −150 (denormal results) stays representable
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(p, s1), s2));
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the same formula torch's vectorised
// CPU erf uses.
inline __m256 erf256(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.f);
  const __m256 sign = _mm256_and_ps(x, sign_mask);
  const __m256 ax = _mm256_andnot_ps(sign_mask, x);
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, one));
  __m256 r = _mm256_set1_ps(1.061405429f);
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-1.453152027f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421413741f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284496736f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254829592f));
  r = _mm256_mul_ps(r, t);
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ax, ax)));
  const __m256 y = _mm256_fnmadd_ps(r, e, one);
  return _mm256_or_ps(y, sign);
}

inline __m256 gelu256(__m256 x) {
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 e = erf256(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
  return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(_mm256_set1_ps(1.f), e));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Lanes [0, n) of a partial vector.
inline __m256i tail_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), idx);
}

}  // namespace

void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (accumulate) {
    c00 = _mm256_loadu_ps(C + 0 * ldc), c01 = _mm256_loadu_ps(C + 0 * ldc + 8);
    c10 = _mm256_loadu_ps(C + 1 * ldc), c11 = _mm256_loadu_ps(C + 1 * ldc + 8);
    c20 = _mm256_loadu_ps(C + 2 * ldc), c21 = _mm256_loadu_ps(C + 2 * ldc + 8);
    c30 = _mm256_loadu_ps(C + 3 * ldc), c31 = _mm256_loadu_ps(C + 3 * ldc + 8);
    c40 = _mm256_loadu_ps(C + 4 * ldc), c41 = _mm256_loadu_ps(C + 4 * ldc + 8);
    c50 = _mm256_loadu_ps(C + 5 * ldc), c51 = _mm256_loadu_ps(C + 5 * ldc + 8);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(Ap + 0), c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(Ap + 1), c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(Ap + 2), c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(Ap + 3), c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(Ap + 4), c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(Ap + 5), c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
    Ap += kMR;
    Bp += kNR;
  }
  _mm256_storeu_ps(C + 0 * ldc, c00), _mm256_storeu_ps(C + 0 * ldc + 8, c01);
  _mm256_storeu_ps(C + 1 * ldc, c10), _mm256_storeu_ps(C + 1 * ldc + 8, c11);
  _mm256_storeu_ps(C + 2 * ldc, c20), _mm256_storeu_ps(C + 2 * ldc + 8, c21);
  _mm256_storeu_ps(C + 3 * ldc, c30), _mm256_storeu_ps(C + 3 * ldc + 8, c31);
  _mm256_storeu_ps(C + 4 * ldc, c40), _mm256_storeu_ps(C + 4 * ldc + 8, c41);
  _mm256_storeu_ps(C + 5 * ldc, c50), _mm256_storeu_ps(C + 5 * ldc + 8, c51);
}

// The same 6×16 tile with one 512-bit register per row. Compiled for AVX-512F by attribute, so
// the file needs no extra build flags; only entered when cpu_features() reports avx512f.
__attribute__((target("avx512f"))) void micro_kernel_avx512(int64_t kc, const float* Ap, const float* Bp, float* C,
                                                            int64_t ldc, bool accumulate) {
  __m512 c0, c1, c2, c3, c4, c5;
  if (accumulate) {
    c0 = _mm512_loadu_ps(C + 0 * ldc), c1 = _mm512_loadu_ps(C + 1 * ldc), c2 = _mm512_loadu_ps(C + 2 * ldc);
    c3 = _mm512_loadu_ps(C + 3 * ldc), c4 = _mm512_loadu_ps(C + 4 * ldc), c5 = _mm512_loadu_ps(C + 5 * ldc);
  } else {
    c0 = c1 = c2 = c3 = c4 = c5 = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b = _mm512_load_ps(Bp);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[0]), b, c0);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[1]), b, c1);
    c2 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[2]), b, c2);
    c3 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[3]), b, c3);
    c4 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[4]), b, c4);
    c5 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[5]), b, c5);
    Ap += kMR;
    Bp += kNR;
  }
  _mm512_storeu_ps(C + 0 * ldc, c0), _mm512_storeu_ps(C + 1 * ldc, c1), _mm512_storeu_ps(C + 2 * ldc, c2);
  _mm512_storeu_ps(C + 3 * ldc, c3), _mm512_storeu_ps(C + 4 * ldc, c4), _mm512_storeu_ps(C + 5 * ldc, c5);
}

float exp_sub_sum(float* x, int64_t n, float m) {
  const __m256 vm = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {
    const __m256i mk = tail_mask(n - i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm));
    _mm256_maskstore_ps(x + i, mk, e);
    acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(mk)));
  }
  return hsum(acc);
}

float scale_max(float* x, int64_t n, float scale) {
  const __m256 vs = _mm256_set1_ps(scale);
  __m256 mx = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
    _mm256_storeu_ps(x + i, v);
    mx = _mm256_max_ps(mx, v);
  }
  float m = hmax(mx);
  for (; i < n; ++i) {
    x[i] *= scale;
    m = x[i] > m ? x[i] : m;
  }
  return m;
}

void axpby(float* y, const float* x, int64_t n, float a, float b) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  int64_t i = 0;
  if (b == 0.f) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    for (; i < n; ++i) y[i] = x[i] * a;
  } else {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, _mm256_mul_ps(_mm256_loadu_ps(y + i), vb)));
    for (; i < n; ++i) y[i] = x[i] * a + y[i] * b;
  }
}

void silu_inplace(float* x, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, v)))));
  }
  for (; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
}

void gelu_inplace(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu256(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
}

void geglu_row(const float* a, const float* g, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), gelu256(_mm256_loadu_ps(g + i))));
  for (; i < n; ++i) y[i] = a[i] * (0.5f * g[i] * (1.f + std::erf(g[i] * 0.70710678118654752f)));
}

void softmax_panel(float* s, int64_t nk, int64_t rows, float scale, float* m, float* l, float* corr) {
  static_assert(kNR == 16, "two vectors of queries");
  const __m256 vs = _mm256_set1_ps(scale);
  for (int h = 0; h < 2; ++h) {
    float* col = s + 8 * h;
    const __m256 m_old = _mm256_loadu_ps(m + 8 * h);
    __m256 mx = m_old;
    for (int64_t k = 0; k < nk; ++k) {
      const __m256 t = _mm256_mul_ps(_mm256_load_ps(col + k * kNR), vs);
      _mm256_store_ps(col + k * kNR, t);
      mx = _mm256_max_ps(mx, t);
    }
    __m256 sum = _mm256_setzero_ps();
    for (int64_t k = 0; k < nk; ++k) {
      const __m256 p = exp256(_mm256_sub_ps(_mm256_load_ps(col + k * kNR), mx));
      _mm256_store_ps(col + k * kNR, p);
      sum = _mm256_add_ps(sum, p);
    }
    for (int64_t k = nk; k < rows; ++k) _mm256_store_ps(col + k * kNR, _mm256_setzero_ps());
    const __m256 c = exp256(_mm256_sub_ps(m_old, mx));
    _mm256_storeu_ps(corr + 8 * h, c);
    _mm256_storeu_ps(l + 8 * h, _mm256_fmadd_ps(_mm256_loadu_ps(l + 8 * h), c, sum));
    _mm256_storeu_ps(m + 8 * h, mx);
  }
}

void moments(const float* x, int64_t n, double& mean, double& var) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_add_pd(a0, a1));
  double s = (t[0] + t[1]) + (t[2] + t[3]);
  for (; i < n; ++i) s += x[i];
  mean = n ? s / double(n) : 0.0;
  const __m256d m = _mm256_set1_pd(mean);
  a0 = a1 = _mm256_setzero_pd();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
    const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
    a0 = _mm256_fmadd_pd(d0, d0, a0);
    a1 = _mm256_fmadd_pd(d1, d1, a1);
  }
  _mm256_store_pd(t, _mm256_add_pd(a0, a1));
  double s2 = (t[0] + t[1]) + (t[2] + t[3]);
  for (; i < n; ++i) s2 += (double(x[i]) - mean) * (double(x[i]) - mean);
  var = n ? s2 / double(n) : 0.0;
}

void affine_row(float* y, const float* x, int64_t n, float s, float t) {
  const __m256 vs = _mm256_set1_ps(s), vt = _mm256_set1_ps(t);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vs, vt));
  for (; i < n; ++i) y[i] = x[i] * s + t;
}

void widen_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

}  // namespace pia::cpu::avx2
#endif  // x86
