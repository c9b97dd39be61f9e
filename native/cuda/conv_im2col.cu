// Convolutions (3×3 and strided) in f16/bf16 as an explicit column matrix plus the cp.async GEMM,
// for machines without cuDNN: unrolling a block of output pixels' windows into a [C·kh·kw, n]
// scratch matrix costs one memory pass, while gemm.cu's implicit GEMM gathers (and recomputes the
// window indices of) every element on the fly inside its inner loop and cannot stream its B tiles
// with cp.async. Column blocks are sized so that the scratch stays under column_budget() however
// large the image (a 512×512 VAE decode has 262144 pixels a channel).
#include <cstdlib>

#include "common.cuh"
#include "conv_im2col_body.cuh"
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

// The execution context of conv_im2col_body.cuh's im2col on the GPU: a grid-stride loop.
template <typename T>
struct Gpu {
  using Elem = T;
  __device__ __forceinline__ int64_t first() const { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
  __device__ __forceinline__ int64_t stride() const { return int64_t(gridDim.x) * blockDim.x; }
  __device__ __forceinline__ T zero() const { return from_f<T>(0.f); }
};

template <typename T>
__global__ void im2col_kernel(const T* x, T* col, pia_im2col::Params q) {
  Gpu<T> gpu;
  pia_im2col::im2col(gpu, x, col, q);
}

}  // namespace

int conv2d_im2col(int device, const PiaConv2dArgs* a, bool* handled) {
  *handled = false;
  if (a->dtype != 1 && a->dtype != 2) return PIA_CUDA_OK;
  const int64_t nb = pia_im2col::block_pixels(*a, column_budget());
  if (!nb) return PIA_CUDA_OK;
  PiaGemmArgs g = pia_im2col::gemm_args(*a, nb);
  if (!gemm_pipelined_fits(g)) return PIA_CUDA_OK;
  *handled = true;

  void* scratch = nullptr;
  if (int rc = scratch_alloc(device, size_t(g.K) * size_t(nb) * pia_im2col::kElemBytes, &scratch)) {
    // Short of memory for the columns, the implicit GEMM (which needs none) still can run the
    // convolution. Not inside a graph capture: that would record other kernels than the eager
    // step ran, so the capture fails instead and the step runs eagerly.
    if (rc == PIA_CUDA_ERR_OOM && !capturing_here(device)) {
      *handled = false;
      return PIA_CUDA_OK;
    }
    return rc;
  }
  cudaStream_t st = stream();
  const size_t in_plane = size_t(a->C * a->H * a->W);
  const int rc = pia_im2col::for_each_block(*a, nb, [&](int64_t img, int64_t n0, int64_t w) {
    const pia_im2col::Params q = pia_im2col::params(*a, n0, w);
    if (a->dtype == 1) {
      im2col_kernel<__half><<<blocks_for(q.K * w), 256, 0, st>>>(static_cast<const __half*>(a->x) + img * in_plane,
                                                                   static_cast<__half*>(scratch), q);
    } else {
      im2col_kernel<__nv_bfloat16><<<blocks_for(q.K * w), 256, 0, st>>>(
          static_cast<const __nv_bfloat16*>(a->x) + img * in_plane, static_cast<__nv_bfloat16*>(scratch), q);
    }
    if (int e = check_launch("im2col kernel")) return e;
    pia_im2col::at_block(g, *a, scratch, img, n0, w);
    return gemm_pipelined(g);
  });
  // Stream order: the block is reused only by work queued after the last GEMM.
  scratch_free(device, scratch);
  return rc;
}

}  // namespace pia_cuda
