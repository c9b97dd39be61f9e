// GroupNorm(+activation) and LayerNorm with float32 statistics, two-pass (mean, then the mean
// squared deviation) as torch computes them, so no cancellation in E[x²] − E[x]².
#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
__device__ float block_sum(float v) {
  __shared__ float part[32];
  __shared__ float total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? part[lane] : 0.f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();  // part/total are reused by the next call
  return r;
}

// One block per (group, sample): the group is a contiguous span of (C/groups)·S elements.
template <typename T>
__global__ void __launch_bounds__(512) group_norm_kernel(const T* x, T* y, int64_t C, int64_t S, int64_t groups,
                                                         const T* gamma, const T* beta, float eps, int act) {
  const int64_t g = blockIdx.x, n = blockIdx.y;
  const int64_t cpg = C / groups, len = cpg * S;
  const int64_t base = (n * C + g * cpg) * S;
  const T* xs = x + base;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += to_f(xs[i]);
  const float mean = block_sum(s) / float(len);
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const float d = to_f(xs[i]) - mean;
    v += d * d;
  }
  const float rstd = rsqrtf(block_sum(v) / float(len) + eps);
  T* ys = y + base;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const int64_t c = g * cpg + i / S;
    float o = (to_f(xs[i]) - mean) * rstd;
    if (gamma) o *= to_f(gamma[c]);
    if (beta) o += to_f(beta[c]);
    ys[i] = from_f<T>(apply_act(o, act));
  }
}

// One warp per row.
template <typename T>
__global__ void __launch_bounds__(256) layer_norm_kernel(const T* x, T* y, int64_t rows, int64_t D, const T* gamma,
                                                         const T* beta, float eps) {
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
  for (int64_t i = lane; i < D; i += 32) {
    float o = (to_f(xr[i]) - mean) * rstd;
    if (gamma) o *= to_f(gamma[i]);
    if (beta) o += to_f(beta[i]);
    yr[i] = from_f<T>(o);
  }
}

}  // namespace

int group_norm(int device, int dtype, const void* x, void* y, int64_t N, int64_t C, int64_t S, int64_t groups,
               const void* gamma, const void* beta, float eps, int act) {
  if (int rc = use_device(device)) return rc;
  if (groups <= 0 || C % groups || N > 65535) {
    set_error("group_norm: %lld channels in %lld groups (N %lld)", (long long)C, (long long)groups, (long long)N);
    return PIA_CUDA_ERR_ARG;
  }
  if (N == 0 || C == 0 || S == 0) return PIA_CUDA_OK;
  const dim3 grid{unsigned(groups), unsigned(N), 1u};
  const int threads = (C / groups) * S >= 8192 ? 512 : 128;
  cudaStream_t s = stream();
  PIA_DISPATCH(dtype, group_norm_kernel<T><<<grid, threads, 0, s>>>(
                          static_cast<const T*>(x), static_cast<T*>(y), C, S, groups, static_cast<const T*>(gamma),
                          static_cast<const T*>(beta), eps, act));
  return check_launch("group_norm kernel");
}

int layer_norm(int device, int dtype, const void* x, void* y, int64_t rows, int64_t D, const void* gamma,
               const void* beta, float eps) {
  if (int rc = use_device(device)) return rc;
  if (rows == 0 || D == 0) return PIA_CUDA_OK;
  const int64_t blocks = (rows + 7) / 8;
  cudaStream_t s = stream();
  PIA_DISPATCH(dtype, layer_norm_kernel<T><<<unsigned(blocks), 256, 0, s>>>(
                          static_cast<const T*>(x), static_cast<T*>(y), rows, D, static_cast<const T*>(gamma),
                          static_cast<const T*>(beta), eps));
  return check_launch("layer_norm kernel");
}

}  // namespace pia_cuda
