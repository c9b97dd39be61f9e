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

// GroupNorm in three passes over (sample, group) units split into chunks, so that even a few
// huge groups (the VAE's 512×512 decode, or the motion modules' 2 samples × 32 groups pooling 16
// frames) spread over every SM: a unit's elements are `frames` contiguous spans of (C/groups)·S
// at a stride of C·S, each cut into `parts` chunks of at most kChunk elements; block
// (chunk, group, sample) handles one chunk. Pass 1 writes each chunk's sum, pass 2 each chunk's
// squared deviations from the unit mean, pass 3 normalises. Every block of a unit reduces the
// same partials in the same order, so they all see bit-identical statistics.
constexpr int64_t kChunk = 16384;
constexpr int kNormThreads = 256;

struct GnGeom {
  int64_t C, S, groups, frames, parts, span, chunk;
  __device__ int64_t units_base(int64_t n, int64_t g) const { return (n * groups + g) * frames * parts; }
  // First element and length of chunk `p` of unit (n, g).
  __device__ void chunk_of(int64_t n, int64_t g, int64_t p, int64_t& first, int64_t& len) const {
    const int64_t f = p / parts, part = p % parts;
    const int64_t b = part * chunk;
    first = ((n * frames + f) * C + g * (C / groups)) * S + b;
    len = min(chunk, span - b);
  }
};

// The unit's mean (or mean squared deviation) from its chunk partials, in a fixed order.
__device__ float unit_mean(const float* partial, int64_t count, float denom) {
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  return block_sum(s) / denom;
}

template <typename T>
__global__ void __launch_bounds__(kNormThreads) gn_sum_kernel(const T* x, GnGeom q, float* sums) {
  const int64_t p = blockIdx.x, g = blockIdx.y, n = blockIdx.z;
  int64_t first, len;
  q.chunk_of(n, g, p, first, len);
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += to_f(x[first + i]);
  s = block_sum(s);
  if (threadIdx.x == 0) sums[q.units_base(n, g) + p] = s;
}

template <typename T>
__global__ void __launch_bounds__(kNormThreads) gn_var_kernel(const T* x, GnGeom q, const float* sums, float* sq) {
  const int64_t p = blockIdx.x, g = blockIdx.y, n = blockIdx.z;
  const int64_t count = q.frames * q.parts;
  const float mean = unit_mean(sums + q.units_base(n, g), count, float(q.frames * q.span));
  int64_t first, len;
  q.chunk_of(n, g, p, first, len);
  float v = 0.f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const float d = to_f(x[first + i]) - mean;
    v += d * d;
  }
  v = block_sum(v);
  if (threadIdx.x == 0) sq[q.units_base(n, g) + p] = v;
}

template <typename T>
__global__ void __launch_bounds__(kNormThreads) gn_apply_kernel(const T* x, T* y, GnGeom q, const float* sums,
                                                                const float* sq, const T* gamma, const T* beta,
                                                                float eps, int act) {
  const int64_t p = blockIdx.x, g = blockIdx.y, n = blockIdx.z;
  const int64_t count = q.frames * q.parts;
  const float denom = float(q.frames * q.span);
  const float mean = unit_mean(sums + q.units_base(n, g), count, denom);
  const float rstd = rsqrtf(unit_mean(sq + q.units_base(n, g), count, denom) + eps);
  int64_t first, len;
  q.chunk_of(n, g, p, first, len);
  const int64_t c0 = g * (q.C / q.groups);
  const int64_t off = (p % q.parts) * q.chunk;  // position of the chunk inside its span
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const int64_t c = c0 + (off + i) / q.S;
    float o = (to_f(x[first + i]) - mean) * rstd;
    if (gamma) o *= to_f(gamma[c]);
    if (beta) o += to_f(beta[c]);
    y[first + i] = from_f<T>(apply_act(o, act));
  }
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
  GnGeom q{};
  q.C = C;
  q.S = S;
  q.groups = groups;
  q.frames = frames;
  q.span = (C / groups) * S;
  q.chunk = kChunk;
  q.parts = (q.span + kChunk - 1) / kChunk;
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
    gn_sum_kernel<T><<<grid, kNormThreads, 0, s>>>(xt, q, sums);
    gn_var_kernel<T><<<grid, kNormThreads, 0, s>>>(xt, q, sums, sq);
    gn_apply_kernel<T><<<grid, kNormThreads, 0, s>>>(xt, static_cast<T*>(y), q, sums, sq,
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
