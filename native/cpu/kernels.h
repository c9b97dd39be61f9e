#pragma once
// The CPU backend's kernels (float32, row-major, contiguous). cpu_backend.cpp checks shapes and
// dtypes and calls these; nothing outside native/cpu uses them directly.
#include <cmath>
#include <cstdint>
#include <functional>

#include "../ops/backend.h"

namespace pia::cpu {

// Applied to each finished tile of C while it is in cache: + row_bias[i] (conv: per output
// channel) + col_bias[j] (linear: per output feature), then act.
struct GemmEpilogue {
  const float* row_bias = nullptr;
  const float* col_bias = nullptr;
  Activation act = Activation::None;
};

// A row-major matrix operand: float32, or f16/bf16 weights kept as stored and widened while
// they are packed (so a half-precision checkpoint is never copied to float32 in memory).
struct MatrixRef {
  const void* data;
  int64_t ld;
  DType dtype = DType::F32;
};

// C[M,N] (row stride ldc) = A[M,K] (lda) · op(B)  (+= when accumulate), then the epilogue
// op(B) = B [K,N] (ldb), or Bᵀ with B stored [N,K] (ldb) when trans_b.
// Multi-threaded over the global pool; runs inline when called from inside a worker.
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool trans_b,
          float* C, int64_t ldc, bool accumulate, const GemmEpilogue& ep = {});
void gemm(int64_t M, int64_t N, int64_t K, MatrixRef A, MatrixRef B, bool trans_b, float* C, int64_t ldc,
          bool accumulate, const GemmEpilogue& ep = {});
// The same with B never materialised (implicit GEMM): pack_b(k0, kc, j0, dst) writes rows
// [k0, k0+kc) of columns [j0, j0+kGemmNR) of B into dst[kc][kGemmNR], zeros past column N.
constexpr int64_t kGemmNR = 16;
using PackB = std::function<void(int64_t k0, int64_t kc, int64_t j0, float* dst)>;
void gemm_implicit_b(int64_t M, int64_t N, int64_t K, MatrixRef A, const PackB& pack_b, float* C, int64_t ldc,
                     bool accumulate, const GemmEpilogue& ep = {});

// out[0, n) = float(src[offset, offset + n)) for a float32/f16/bf16 buffer.
void widen(const void* src, DType dtype, int64_t offset, int64_t n, float* out);

// torch.nn.Conv2d (groups=1, dilation=1). x [N,Cin,H,W], w [Cout,Cin,kh,kw] (f32/f16/bf16), bias [Cout] or null.
void conv2d(const float* x, int64_t N, int64_t Cin, int64_t H, int64_t W, const void* w, DType w_dtype, int64_t Cout,
            int64_t kh, int64_t kw, const float* bias, const Conv2dParams& p, float* y, int64_t Ho, int64_t Wo);

// torch.nn.GroupNorm on x [N, C, S] (S = spatial size), then `act`. With frames > 1, x is
// [N·frames, C, S] and sample n's statistics pool its `frames` consecutive entries: GroupNorm of
// the (N, C, frames, S) permutation, written back in x's layout.
void group_norm(const float* x, int64_t N, int64_t C, int64_t S, int groups, const float* gamma, const float* beta,
                float eps, Activation act, float* y, int64_t frames = 1);
// torch.nn.LayerNorm over the last dim D of rows x [R, D].
// With `add` [P, D], row r then gets add[(r / add_div) % P] added (Backend::layer_norm_add).
void layer_norm(const float* x, int64_t R, int64_t D, const float* gamma, const float* beta, float eps, float* y,
                const float* add = nullptr, int64_t add_div = 1, int64_t add_period = 1);

// Flash-style attention; q [B,Sq,H·D], k [B,Sk,H·D], v [B,Sk,H·Dv] -> o [B,Sq,H·Dv]. With
// interleave = G > 1 the B sequences are stored G at a time, interleaved row by row: q is
// [B/G, Sq, G, H·D] (the frame-major layout of temporal attention: G = HW pixels, S = frames).
void attention(const float* q, const float* k, const float* v, float* o, int64_t B, int64_t Sq, int64_t Sk,
               int64_t H, int64_t D, int64_t Dv, float scale, bool causal, int64_t interleave = 1);

// diffusers' FreeU fourier_filter on x [planes, H, W].
void fourier_filter(const float* x, int64_t planes, int64_t H, int64_t W, int threshold, float scale, float* y);

// --- activations (torch formulas) -----------------------------------------------------------------
inline float gelu_erf(float x) { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }
inline float apply_activation(Activation act, float x) {
  switch (act) {
    case Activation::None: return x;
    case Activation::SiLU: return x / (1.f + std::exp(-x));
    case Activation::GELU: return gelu_erf(x);
    case Activation::GELUTanh: {
      const float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
      return 0.5f * x * (1.f + std::tanh(kBeta * (x + 0.044715f * x * x * x)));
    }
    // CLIP's quick_gelu: x * sigmoid(1.702 x)
    case Activation::QuickGELU: return x / (1.f + std::exp(-1.702f * x));
  }
  return x;
}
void activation_inplace(float* x, int64_t n, Activation act);
// The same on the calling thread only (inside a parallel region).
void activation_inplace_serial(float* x, int64_t n, Activation act);

}  // namespace pia::cpu

namespace pia::cpu {
// out = a op b over the broadcast shape `out_shape`; sa/sb are a's and b's strides aligned to
// out_shape (0 on broadcast dims). a and b may be strided views.
void binary(BinaryOp op, const float* a, const Shape& sa, const float* b, const Shape& sb, float* out,
            const Shape& out_shape);
// a += alpha · b, b broadcast by strides sb over a's (contiguous) shape.
void add_inplace(float* a, const Shape& shape, const float* b, const Shape& sb, float alpha);
}  // namespace pia::cpu

namespace pia::cpu {
// dst (contiguous, `shape`) = the strided view src (element strides `st`), for 4- or 2-byte
// elements; transposes (the permutes around attention) are copied in cache-sized tiles.
void strided_copy(const void* src, const Shape& shape, const Shape& st, void* dst, size_t elem_size);
}  // namespace pia::cpu
