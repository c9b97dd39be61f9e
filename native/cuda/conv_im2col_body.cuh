#pragma once
// The im2col convolution (conv_im2col.cu has the design notes) written once for the GPU and for
// the host emulation of test/native/test_conv_im2col_emulated.cpp: the column-block plan, the
// GEMM arguments of each block and the im2col kernel's body, against an execution context X:
//
//   using Elem = T;  int64_t first();  int64_t stride();  // grid-stride loop: global thread, threads
//   T zero();
//
// Nothing else here may be CUDA-specific: the host test compiles this header with g++.
#include <cstddef>
#include <cstdint>

#include "cuda_api.h"

#if defined(__CUDACC__)
#define PIA_IC_FN __device__ __forceinline__
#else
#define PIA_IC_FN inline
#endif

namespace pia_im2col {

constexpr size_t kElemBytes = 2;  // f16 and bf16 only

// Output pixels a column block: a multiple of 8, so that the GEMM copies whole 16-byte chunks,
// and as many as `budget` bytes of scratch hold (at most the image). 0: the shape does not suit
// this path (fewer than 8 columns fit, or the pixel count is not a multiple of 8).
inline int64_t block_pixels(const PiaConv2dArgs& a, size_t budget) {
  const int64_t K = a.C * a.kh * a.kw, Npix = a.Ho * a.Wo;
  if (K <= 0 || Npix <= 0) return 0;
  int64_t nb = int64_t(budget / (size_t(K) * kElemBytes)) / 8 * 8;
  if (nb > Npix) nb = (Npix + 7) / 8 * 8;
  return nb < 8 || Npix % 8 ? 0 : nb;
}

// The GEMM of every column block: y[img][:, n0 : n0 + w] = w · col (+ bias per row, activation).
// B and C are set per block by at_block; B is the weights until then, an alignment stand-in for
// the scratch (allocator blocks are 512-byte aligned) in gemm_pipelined_fits.
inline PiaGemmArgs gemm_args(const PiaConv2dArgs& a, int64_t nb) {
  PiaGemmArgs g{};
  g.dtype = a.dtype;
  g.M = a.Co;
  g.K = a.C * a.kh * a.kw;
  g.batch = 1;
  g.A = a.w;
  g.lda = g.K;
  g.ldc = a.Ho * a.Wo;
  g.bias = a.bias;
  g.bias_per_row = 1;
  g.act = a.act;
  g.N = nb;
  g.ldb = nb;
  g.B = a.w;
  return g;
}
inline void at_block(PiaGemmArgs& g, const PiaConv2dArgs& a, void* scratch, int64_t img, int64_t n0, int64_t w) {
  g.B = scratch;
  g.N = w;
  g.ldb = w;
  g.C = static_cast<char*>(a.y) + (img * a.Co * a.Ho * a.Wo + n0) * int64_t(kElemBytes);
}

// step(img, n0, w) for every column block of every image, in order, until one returns non-zero.
template <class Step>
int for_each_block(const PiaConv2dArgs& a, int64_t nb, Step&& step) {
  const int64_t Npix = a.Ho * a.Wo;
  for (int64_t img = 0; img < a.N; ++img) {
    for (int64_t n0 = 0; n0 < Npix; n0 += nb) {
      const int64_t w = Npix - n0 < nb ? Npix - n0 : nb;  // a multiple of 8: Npix is
      if (int rc = step(img, n0, w)) return rc;
    }
  }
  return 0;
}

struct Params {
  int64_t K, nb, n0;  // rows of col, its columns (this block's w), first output pixel
  int H, W, Wo, kh, kw, stride, pad_top, pad_left;
};
inline Params params(const PiaConv2dArgs& a, int64_t n0, int64_t w) {
  return {a.C * a.kh * a.kw, w, n0, int(a.H), int(a.W), int(a.Wo), int(a.kh), int(a.kw), a.stride, a.pad_top,
          a.pad_left};
}

// col[k][j] = x[c, oh·stride − pad_top + r, ow·stride − pad_left + s] (0 outside the image) for
// k = (c·kh + r)·kw + s and output pixel n0 + j = oh·Wo + ow; writes run along j (coalesced).
template <class X>
PIA_IC_FN void im2col(X& x, const typename X::Elem* src, typename X::Elem* col, const Params& q) {
  const int64_t total = q.K * q.nb;
  for (int64_t e = x.first(); e < total; e += x.stride()) {
    const int64_t k = e / q.nb, j = e - k * q.nb;
    const int khw = q.kh * q.kw;
    const int c = int(k / khw), rs = int(k - int64_t(c) * khw), r = rs / q.kw, s = rs - r * q.kw;
    const int64_t n = q.n0 + j;
    const int oh = int(n / q.Wo), ow = int(n - int64_t(oh) * q.Wo);
    const int ih = oh * q.stride - q.pad_top + r, iw = ow * q.stride - q.pad_left + s;
    col[e] = (ih >= 0 && ih < q.H && iw >= 0 && iw < q.W) ? src[(int64_t(c) * q.H + ih) * q.W + iw] : x.zero();
  }
}

}  // namespace pia_im2col

#undef PIA_IC_FN
