// FreeU's fourier_filter without an FFT library: the filter only rescales the frequencies of a
// small centred box (threshold 1 in diffusers' apply_freeu: 2×2 frequencies), so
//   y = x + gain · Re(ifft2(box ∘ fft2(x)))
// needs just the box's DFT coefficients X(r, c) = Σ x[h, w]·e^{−2πi(r·h/H + c·w/W)} (one block
// reduction each, in double) and, per output element, their inverse sum. Exact for any H, W,
// the same formulation as the CPU backend (native/cpu/fourier_filter.cpp).
#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

struct Freqs {
  int nr, nc;
  int r[PIA_CUDA_MAX_FREQS];
  int c[PIA_CUDA_MAX_FREQS];
};

// e^{−2πi·f·i/n}'s angle as a fraction of a full turn, reduced mod n first so it stays exact.
__device__ __forceinline__ double turn(int64_t f, int64_t i, int64_t n) { return double((f * i) % n) / double(n); }

__device__ double block_sum_d(double v) {
  __shared__ double part[32];
  __shared__ double total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double s = lane < warps ? part[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const double r = total;
  __syncthreads();
  return r;
}

// grid (planes, nr·nc): coef[plane][rc] = X(r, c) as (re, im).
template <typename T>
__global__ void __launch_bounds__(256) box_dft_kernel(const T* x, int64_t H, int64_t W, Freqs f, double2* coef) {
  const int64_t plane = blockIdx.x;
  const int rc = blockIdx.y, fr = f.r[rc / f.nc], fc = f.c[rc % f.nc];
  const T* xp = x + plane * H * W;
  double re = 0, im = 0;
  for (int64_t i = threadIdx.x; i < H * W; i += blockDim.x) {
    const int64_t h = i / W, w = i - h * W;
    double s, c;
    sincospi(-2.0 * (turn(fr, h, H) + turn(fc, w, W)), &s, &c);
    const double v = double(to_f(xp[i]));
    re += v * c;
    im += v * s;
  }
  re = block_sum_d(re);
  im = block_sum_d(im);
  if (threadIdx.x == 0) coef[plane * (f.nr * f.nc) + rc] = make_double2(re, im);
}

template <typename T>
__global__ void apply_kernel(const T* x, T* y, int64_t planes, int64_t H, int64_t W, Freqs f, const double2* coef,
                             double gain) {
  const int64_t total = planes * H * W;
  const int nrc = f.nr * f.nc;
  const double norm = gain / double(H * W);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t plane = i / (H * W), hw = i - plane * H * W, h = hw / W, w = hw - h * W;
    const double2* cp = coef + plane * nrc;
    double acc = 0;
    for (int rc = 0; rc < nrc; ++rc) {
      double s, c;
      sincospi(2.0 * (turn(f.r[rc / f.nc], h, H) + turn(f.c[rc % f.nc], w, W)), &s, &c);
      acc += cp[rc].x * c - cp[rc].y * s;  // Re(X · e^{+iθ})
    }
    y[i] = from_f<T>(float(double(to_f(x[i])) + norm * acc));
  }
}

}  // namespace

int fourier_filter(int device, int dtype, const void* x, void* y, int64_t planes, int64_t H, int64_t W,
                   const int64_t* row_freqs, int nrows, const int64_t* col_freqs, int ncols, double gain) {
  if (int rc = use_device(device)) return rc;
  if (nrows < 0 || ncols < 0 || nrows > PIA_CUDA_MAX_FREQS || ncols > PIA_CUDA_MAX_FREQS || planes > 0x7fffffffLL) {
    set_error("fourier_filter: %d × %d box frequencies (at most %d each)", nrows, ncols, PIA_CUDA_MAX_FREQS);
    return PIA_CUDA_ERR_ARG;
  }
  const int64_t n = planes * H * W;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  if (nrows == 0 || ncols == 0 || gain == 0.0) {  // nothing inside the box: y = x
    const size_t bytes = size_t(n) * (dtype == 0 ? 4 : 2);
    return check(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
  }
  Freqs f{};
  f.nr = nrows;
  f.nc = ncols;
  for (int i = 0; i < nrows; ++i) f.r[i] = int(row_freqs[i]);
  for (int i = 0; i < ncols; ++i) f.c[i] = int(col_freqs[i]);
  if (int64_t(nrows) * ncols > 65535) {
    set_error("fourier_filter: box too large");
    return PIA_CUDA_ERR_ARG;
  }
  void* coef = nullptr;
  if (int rc = scratch_alloc(device, size_t(planes) * size_t(nrows * ncols) * sizeof(double2), &coef)) return rc;
  int rc = PIA_CUDA_OK;
  switch (dtype) {
    case 0:
      box_dft_kernel<float><<<dim3(unsigned(planes), unsigned(nrows * ncols)), 256, 0, s>>>(
          static_cast<const float*>(x), H, W, f, static_cast<double2*>(coef));
      apply_kernel<float><<<blocks_for(n), 256, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y), planes,
                                                        H, W, f, static_cast<const double2*>(coef), gain);
      break;
    case 1:
      box_dft_kernel<__half><<<dim3(unsigned(planes), unsigned(nrows * ncols)), 256, 0, s>>>(
          static_cast<const __half*>(x), H, W, f, static_cast<double2*>(coef));
      apply_kernel<__half><<<blocks_for(n), 256, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y),
                                                         planes, H, W, f, static_cast<const double2*>(coef), gain);
      break;
    case 2:
      box_dft_kernel<__nv_bfloat16><<<dim3(unsigned(planes), unsigned(nrows * ncols)), 256, 0, s>>>(
          static_cast<const __nv_bfloat16*>(x), H, W, f, static_cast<double2*>(coef));
      apply_kernel<__nv_bfloat16><<<blocks_for(n), 256, 0, s>>>(
          static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(y), planes, H, W, f,
          static_cast<const double2*>(coef), gain);
      break;
    default: set_error("fourier_filter: unknown dtype code %d", dtype); rc = PIA_CUDA_ERR_ARG;
  }
  if (rc == PIA_CUDA_OK) rc = check_launch("fourier_filter kernels");
  scratch_free(device, coef);
  return rc;
}

}  // namespace pia_cuda
