#pragma once
// Kernels with an AVX2/FMA build (simd_avx2.cpp, compiled with -mavx2 -mfma) and a portable one.
// Callers go through the dispatching wrappers below, which pick the AVX2 path when cpu_features()
// reports avx2+fma (PIA_CPU_GENERIC=1 forces the portable path).
#include <cstdint>

#include "kernels.h"

namespace pia::cpu {

// GEMM micro-kernel tile: MR rows of packed A times NR columns of packed B.
constexpr int64_t kMR = 6, kNR = 16;
static_assert(kNR == kGemmNR, "kernels.h promises NR-wide B panels");

// C[MR×NR] (ldc) (+)= Ap[kc×MR] · Bp[kc×NR]; accumulate=false overwrites C.
using MicroKernel = void (*)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate);
MicroKernel micro_kernel();

// Softmax helper: x[i] = exp(x[i] − m), returns Σ x[i].
float exp_sub_sum(float* x, int64_t n, float m);
// Max of x[0..n) scaled in place by `scale` (x[i] *= scale), returns the max (−inf when n = 0).
float scale_max(float* x, int64_t n, float scale);
// y = x · a + y·b (b = 0 or 1 overwrites/adds).
void axpby(float* y, const float* x, int64_t n, float a, float b);
// In-place activations in float, torch formulas.
void silu_inplace(float* x, int64_t n);
void gelu_inplace(float* x, int64_t n);
// y[i] = a[i] * gelu(g[i]) (diffusers GEGLU).
void geglu_row(const float* a, const float* g, float* y, int64_t n);

// Online-softmax step on a key block of scores laid out [rows][kNR] (kNR queries side by side):
// rows [0, nk) hold raw q·k (−inf where masked), rows [nk, rows) are padding. Scales by `scale`,
// updates the running max m[kNR] and sum l[kNR], overwrites the scores with
// p = exp(scale·s − m_new) (padding rows with 0) and writes the factor corr = exp(m_old − m_new)
// that the earlier partial outputs must be multiplied by.
void softmax_panel(float* s, int64_t nk, int64_t rows, float scale, float* m, float* l, float* corr);
// Mean and biased variance of x[0, n) in double (two passes: Σx, then Σ(x − mean)²).
void moments(const float* x, int64_t n, double& mean, double& var);
// dst = float(src) for IEEE half (F16C when available).
void widen_f16(const uint16_t* src, float* dst, int64_t n);
// y = x · s + t.
void affine_row(float* y, const float* x, int64_t n, float s, float t);

bool use_avx2();

// AVX2 builds (defined in simd_avx2.cpp; only called when use_avx2()).
namespace avx2 {
void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate);
void micro_kernel_avx512(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate);
float exp_sub_sum(float* x, int64_t n, float m);
float scale_max(float* x, int64_t n, float scale);
void axpby(float* y, const float* x, int64_t n, float a, float b);
void silu_inplace(float* x, int64_t n);
void gelu_inplace(float* x, int64_t n);
void geglu_row(const float* a, const float* g, float* y, int64_t n);
void softmax_panel(float* s, int64_t nk, int64_t rows, float scale, float* m, float* l, float* corr);
void moments(const float* x, int64_t n, double& mean, double& var);
void affine_row(float* y, const float* x, int64_t n, float s, float t);
void widen_f16(const uint16_t* src, float* dst, int64_t n);
}  // namespace avx2

}  // namespace pia::cpu
