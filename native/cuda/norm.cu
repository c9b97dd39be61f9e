// GroupNorm(+activation) and LayerNorm with float32 statistics, two-pass (mean, then the mean
// squared deviation) as torch computes them, so no cancellation in E[x²] − E[x]².
#include "common.cuh"
#include "kernels.cuh"
#include "norm_body.cuh"

namespace pia_cuda {

namespace {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// GroupNorm in three passes over (sample, group) units split into chunks, so that even a few
// huge groups (the VAE's 512×512 decode, or the motion modules' 2 samples × 32 groups pooling 16
// frames) spread over every SM: a unit's elements are `frames` contiguous spans of (C/groups)·S
// at a stride of C·S, each cut into `parts` chunks of at most pia_gn::kChunk elements; block
// (chunk, group, sample) handles one chunk. Pass 1 writes each chunk's sum, pass 2 each chunk's
// squared deviations from the unit mean, pass 3 normalises. Every block of a unit reduces the
// same partials in the same order, so they all see bit-identical statistics.
//
// The kernels' bodies are norm_body.cuh, shared with a host emulator
// (test/native/test_group_norm_emulated.cpp); this is their execution context on the GPU.
template <typename T>
struct Gpu {
  using Elem = T;
  // Unsigned, as the built-ins are: the body widens them to int64_t, which is then free.
  __device__ __forceinline__ unsigned thread() const { return threadIdx.x; }
  __device__ __forceinline__ unsigned threads() const { return blockDim.x; }
  __device__ __forceinline__ unsigned block_x() const { return blockIdx.x; }
  __device__ __forceinline__ unsigned block_y() const { return blockIdx.y; }
  __device__ __forceinline__ unsigned block_z() const { return blockIdx.z; }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ float shfl_xor(float v, int m) const { return __shfl_xor_sync(0xffffffffu, v, m); }
  __device__ __forceinline__ float lds(const float* s) const { return *s; }
  __device__ __forceinline__ void sts(float* s, float v) const { *s = v; }
  __device__ __forceinline__ float to_f(T v) const { return pia_cuda::to_f(v); }
  __device__ __forceinline__ T from_f(float v) const { return pia_cuda::from_f<T>(v); }
  __device__ __forceinline__ float rsqrt(float v) const { return rsqrtf(v); }
};

using pia_gn::kThreads;

template <typename T>
__global__ void __launch_bounds__(kThreads) gn_sum_kernel(const T* x, pia_gn::Geom q, float* sums) {
  __shared__ pia_gn::Shared sh;
  Gpu<T> gpu;
  pia_gn::sum_block(gpu, sh, x, q, sums);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gn_var_kernel(const T* x, pia_gn::Geom q, const float* sums, float* sq) {
  __shared__ pia_gn::Shared sh;
  Gpu<T> gpu;
  pia_gn::var_block(gpu, sh, x, q, sums, sq);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gn_apply_kernel(const T* x, T* y, pia_gn::Geom q, const float* sums,
                                                            const float* sq, const T* gamma, const T* beta, float eps,
                                                            int act) {
  __shared__ pia_gn::Shared sh;
  Gpu<T> gpu;
  pia_gn::apply_block(gpu, sh, x, y, q, sums, sq, gamma, beta, eps, act);
}

// One warp per row.
template <typename T>
__global__ void __launch_bounds__(256) layer_norm_kernel(const T* x, T* y, int64_t rows, int64_t D, const T* gamma,
                                                         const T* beta, float eps, const T* add, int64_t add_div,
                                                         int64_t add_period) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* xr = x + row * D;
  float s = 0.f;
  for (int64_t i = lane; i < D; i += 32) s += to_f(xr[i]);
  const float mean = warp_sum(s) / float(D);
  float v = 0.f;
  for (int64_t i = lane; i < D; i += 32) {
    const float d = to_f(xr[i]) - mean;
    v += d * d;
  }
  const float rstd = rsqrtf(warp_sum(v) / float(D) + eps);
  T* yr = y + row * D;
  const T* ar = add ? add + ((row / add_div) % add_period) * D : nullptr;
  for (int64_t i = lane; i < D; i += 32) {
    float o = (to_f(xr[i]) - mean) * rstd;
    if (gamma) o *= to_f(gamma[i]);
    if (beta) o += to_f(beta[i]);
    if (ar) o += to_f(ar[i]);
    yr[i] = from_f<T>(o);
  }
}

}  // namespace

int group_norm(int device, int dtype, const void* x, void* y, int64_t N, int64_t frames, int64_t C, int64_t S,
               int64_t groups, const void* gamma, const void* beta, float eps, int act) {
  if (int rc = use_device(device)) return rc;
  if (groups <= 0 || C % groups || N > 65535 || groups > 65535 || frames <= 0) {
    set_error("group_norm: %lld channels in %lld groups (N %lld, frames %lld)", (long long)C, (long long)groups,
              (long long)N, (long long)frames);
    return PIA_CUDA_ERR_ARG;
  }
  if (N == 0 || C == 0 || S == 0) return PIA_CUDA_OK;
  const pia_gn::Geom q = pia_gn::make_geom(C, S, groups, frames, pia_gn::kChunk);
  const int64_t pieces = frames * q.parts;
  if (pieces > 0x7fffffffLL) {
    set_error("group_norm: %lld chunks per group is too many for one launch", (long long)pieces);
    return PIA_CUDA_ERR_ARG;
  }
  const size_t partials = size_t(N * groups * pieces);
  void* scratch = nullptr;
  if (int rc = scratch_alloc(device, 2 * partials * sizeof(float), &scratch)) return rc;
  float* sums = static_cast<float*>(scratch);
  float* sq = sums + partials;
  const dim3 grid{unsigned(pieces), unsigned(groups), unsigned(N)};
  cudaStream_t s = stream();
  int rc = PIA_CUDA_OK;
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    const T* xt = static_cast<const T*>(x);
    gn_sum_kernel<T><<<grid, kThreads, 0, s>>>(xt, q, sums);
    gn_var_kernel<T><<<grid, kThreads, 0, s>>>(xt, q, sums, sq);
    gn_apply_kernel<T><<<grid, kThreads, 0, s>>>(xt, static_cast<T*>(y), q, sums, sq,
                                                     static_cast<const T*>(gamma), static_cast<const T*>(beta), eps,
                                                     act);
    rc = check_launch("group_norm kernels");
  };
  switch (dtype) {
    case 0: launch(float{}); break;
    case 1: launch(__half{}); break;
    case 2: launch(__nv_bfloat16{}); break;
    default: set_error("group_norm: unknown dtype code %d", dtype); rc = PIA_CUDA_ERR_ARG;
  }
  // Stream order: the block is reused only by work queued after these kernels.
  scratch_free(device, scratch);
  return rc;
}

int layer_norm(int device, int dtype, const void* x, void* y, int64_t rows, int64_t D, const void* gamma,
               const void* beta, float eps, const void* add, int64_t add_div, int64_t add_period) {
  if (int rc = use_device(device)) return rc;
  if (add && (add_div < 1 || add_period < 1)) {
    set_error("layer_norm: add period %lld x %lld", (long long)add_period, (long long)add_div);
    return PIA_CUDA_ERR_ARG;
  }
  if (rows == 0 || D == 0) return PIA_CUDA_OK;
  const int64_t blocks = (rows + 7) / 8;
  cudaStream_t s = stream();
  PIA_DISPATCH(dtype, layer_norm_kernel<T><<<unsigned(blocks), 256, 0, s>>>(
                          static_cast<const T*>(x), static_cast<T*>(y), rows, D, static_cast<const T*>(gamma),
                          static_cast<const T*>(beta), eps, static_cast<const T*>(add), add_div, add_period));
  return check_launch("layer_norm kernel");
}

}  // namespace pia_cuda
