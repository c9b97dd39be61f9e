// Convolutions (3×3 and strided) in f16/bf16 as an explicit column matrix plus the cp.async GEMM,
// for machines without cuDNN: unrolling a block of output pixels' windows into a [C·kh·kw, n]
// scratch matrix costs one memory pass, while gemm.cu's implicit GEMM gathers (and recomputes the
// window indices of) every element on the fly inside its inner loop and cannot stream its B tiles
// with cp.async. Column blocks are sized so that the scratch stays under column_budget() however
// large the image (a 512×512 VAE decode has 262144 pixels a channel).
#include <algorithm>
#include <cstdlib>

#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

// PIA_CUDA_IM2COL_BUDGET (bytes) shrinks it so that the GPU suite covers several column blocks
// per image at test sizes.
size_t column_budget() {
  static const size_t budget = [] {
    const char* v = std::getenv("PIA_CUDA_IM2COL_BUDGET");
    const long long b = v ? std::atoll(v) : 0;
    return b > 0 ? size_t(b) : size_t(128) << 20;
  }();
  return budget;
}

// col[k][j] = x[c, oh·stride − pad_top + r, ow·stride − pad_left + s] (0 outside the image) for
// k = (c·kh + r)·kw + s and output pixel n0 + j = oh·Wo + ow; writes run along j (coalesced).
template <typename T>
__global__ void im2col_kernel(const T* x, T* col, int64_t K, int64_t nb, int64_t n0, int H, int W, int Wo, int kh,
                              int kw, int stride, int pad_top, int pad_left) {
  const int64_t total = K * nb;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = e / nb, j = e - k * nb;
    const int khw = kh * kw;
    const int c = int(k / khw), rs = int(k - int64_t(c) * khw), r = rs / kw, s = rs - r * kw;
    const int64_t n = n0 + j;
    const int oh = int(n / Wo), ow = int(n - int64_t(oh) * Wo);
    const int ih = oh * stride - pad_top + r, iw = ow * stride - pad_left + s;
    col[e] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[(int64_t(c) * H + ih) * W + iw] : from_f<T>(0.f);
  }
}

}  // namespace

int conv2d_im2col(int device, const PiaConv2dArgs* a, bool* handled) {
  *handled = false;
  if (a->dtype != 1 && a->dtype != 2) return PIA_CUDA_OK;
  const int64_t K = a->C * a->kh * a->kw, Npix = a->Ho * a->Wo;
  const size_t es = 2;
  // Column blocks a multiple of 8 pixels wide, so that the GEMM copies whole 16-byte chunks.
  int64_t nb = int64_t(column_budget() / (size_t(K) * es)) / 8 * 8;
  if (nb > Npix) nb = (Npix + 7) / 8 * 8;
  PiaGemmArgs g{};
  g.dtype = a->dtype;
  g.M = a->Co;
  g.K = K;
  g.batch = 1;
  g.A = a->w;
  g.lda = K;
  g.ldc = Npix;
  g.bias = a->bias;
  g.bias_per_row = 1;
  g.act = a->act;
  g.N = nb;
  g.ldb = nb;
  g.B = a->w;  // alignment stand-in for the scratch (allocator blocks are 512-byte aligned)
  if (nb < 8 || Npix % 8 || !gemm_pipelined_fits(g)) return PIA_CUDA_OK;
  *handled = true;

  void* scratch = nullptr;
  if (int rc = scratch_alloc(device, size_t(K) * size_t(nb) * es, &scratch)) return rc;
  cudaStream_t st = stream();
  int rc = PIA_CUDA_OK;
  const size_t in_plane = size_t(a->C * a->H * a->W), out_plane = size_t(a->Co * Npix);
  for (int64_t img = 0; img < a->N && rc == PIA_CUDA_OK; ++img) {
    for (int64_t n0 = 0; n0 < Npix && rc == PIA_CUDA_OK; n0 += nb) {
      const int64_t w = std::min<int64_t>(nb, Npix - n0);  // a multiple of 8: Npix is
      auto run = [&](auto tag) {
        using T = decltype(tag);
        const T* x = static_cast<const T*>(a->x) + img * in_plane;
        im2col_kernel<T><<<blocks_for(K * w), 256, 0, st>>>(x, static_cast<T*>(scratch), K, w, n0, int(a->H),
                                                           int(a->W), int(a->Wo), int(a->kh), int(a->kw), a->stride,
                                                           a->pad_top, a->pad_left);
        rc = check_launch("im2col kernel");
        if (rc) return;
        g.B = scratch;
        g.N = w;
        g.ldb = w;
        g.C = static_cast<T*>(a->y) + img * out_plane + n0;
        rc = gemm_pipelined(g);
      };
      if (a->dtype == 1) run(__half{});
      else run(__nv_bfloat16{});
    }
  }
  // Stream order: the block is reused only by work queued after the last GEMM.
  scratch_free(device, scratch);
  return rc;
}

}  // namespace pia_cuda
