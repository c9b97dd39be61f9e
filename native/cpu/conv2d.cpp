// Conv2d as an implicit GEMM: weights [Cout, Cin·kh·kw] times the im2col matrix of the input,
// whose NR-wide panels are gathered straight from the image inside the GEMM's B packing, so no
// im2col buffer is ever built (the VAE decoder at 512 px would need a gigabyte of it).
#include <algorithm>
#include <cstring>

#include "../core/thread_pool.h"
#include "kernels.h"
#include "host_allocator.h"
#include "simd.h"

namespace pia::cpu {

namespace {

// Columns are output pixels of `images` consecutive images (j = image·P + pixel).
struct Im2colPanels {
  const float* x;  // [images, Cin, H, W]
  int64_t Cin, H, W, kh, kw, Wo, P, images;
  Conv2dParams p;

  // Rows k = (ci, r, q) of B, columns j0 .. j0+NR.
  void operator()(int64_t k0, int64_t kc, int64_t j0, float* dst) const {
    const int64_t nj = std::min(kNR, P * images - j0);
    int64_t iy0[kNR], ix0[kNR];
    const float* img[kNR];
    for (int64_t j = 0; j < nj; ++j) {
      const int64_t n = (j0 + j) / P, pix = (j0 + j) % P;
      img[j] = x + n * Cin * H * W;
      iy0[j] = (pix / Wo) * p.stride - p.pad_top;
      ix0[j] = (pix % Wo) * p.stride - p.pad_left;
    }
    // Whole panel on one output row of one image with stride 1: each row of B is a contiguous run.
    const bool one_row = nj == kNR && p.stride == 1 && img[0] == img[kNR - 1] && iy0[0] == iy0[kNR - 1];
    int64_t ci = k0 / (kh * kw), r = (k0 / kw) % kh, q = k0 % kw;
    for (int64_t kk = 0; kk < kc; ++kk) {
      float* d = dst + kk * kNR;
      const int64_t plane = ci * H * W;
      if (one_row) {
        const int64_t iy = iy0[0] + r, ix = ix0[0] + q;
        if (iy < 0 || iy >= H) {
          std::memset(d, 0, sizeof(float) * kNR);
        } else if (ix >= 0 && ix + kNR <= W) {
          std::memcpy(d, img[0] + plane + iy * W + ix, sizeof(float) * kNR);
        } else {
          const float* row = img[0] + plane + iy * W;
          for (int64_t j = 0; j < kNR; ++j) d[j] = (ix + j >= 0 && ix + j < W) ? row[ix + j] : 0.f;
        }
      } else {
        int64_t j = 0;
        for (; j < nj; ++j) {
          const int64_t iy = iy0[j] + r, ix = ix0[j] + q;
          d[j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? img[j][plane + iy * W + ix] : 0.f;
        }
        for (; j < kNR; ++j) d[j] = 0.f;
      }
      if (++q == kw) {
        q = 0;
        if (++r == kh) {
          r = 0;
          ++ci;
        }
      }
    }
  }
};

}  // namespace

void conv2d(const float* x, int64_t N, int64_t Cin, int64_t H, int64_t W, const void* w_data, DType w_dtype, int64_t Cout,
            int64_t kh, int64_t kw, const float* bias, const Conv2dParams& p, float* y, int64_t Ho, int64_t Wo) {
  const int64_t K = Cin * kh * kw;
  const int64_t P = Ho * Wo;
  const MatrixRef w{w_data, K, w_dtype};
  const bool pointwise = kh == 1 && kw == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_left == 0 &&
                         p.pad_bottom == 0 && p.pad_right == 0;
  GemmEpilogue ep;
  ep.row_bias = bias;
  if (N > 1 && P <= 1024) {
    // Small images (the UNet's 8×8 and 16×16 levels): one GEMM over the whole batch, so the
    // weights are packed once rather than once per image, into [Cout, N·P], then scattered to NCHW.
    Tensor tmp = new_tensor({Cout, N * P});  // from the block cache, like the output
    float* c = tmp.data<float>();
    gemm_implicit_b(Cout, N * P, K, w, Im2colPanels{x, Cin, H, W, kh, kw, Wo, P, N, p}, c, N * P, false, ep);
    parallel_for(0, N * Cout, 16, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t n = t / Cout, co = t % Cout;
        std::memcpy(y + t * P, c + co * N * P + n * P, sizeof(float) * size_t(P));
      }
    });
    return;
  }
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * Cin * H * W;
    float* yn = y + n * Cout * P;
    if (pointwise) {
      gemm(Cout, P, K, w, MatrixRef{xn, P}, false, yn, P, false, ep);
    } else {
      gemm_implicit_b(Cout, P, K, w, Im2colPanels{xn, Cin, H, W, kh, kw, Wo, P, 1, p}, yn, P, false, ep);
    }
  }
}

}  // namespace pia::cpu
