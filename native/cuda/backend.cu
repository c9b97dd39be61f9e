// libpia_cuda.so: the CUDA backend, linked against the static CUDA runtime so that only the
// driver (libcuda.so.1) is needed on the user's machine. Exposes the C ABI of cuda_api.h.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "common.cuh"
#include "cublaslt.cuh"
#include "cudnn.cuh"
#include "cuda_api.h"
#include "kernels.cuh"

namespace {

int report(cudaError_t e, const char* what, char* err, size_t errlen) {
  if (e == cudaSuccess) return 0;
  if (err && errlen) std::snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e));
  return 1;
}

__global__ void add_f32_kernel(const float* a, const float* b, float* out, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  size_t stride = size_t(gridDim.x) * blockDim.x;
  for (; i < n; i += stride) out[i] = a[i] + b[i];
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int pia_cuda_abi_version(void) { return PIA_CUDA_ABI_VERSION; }

__attribute__((visibility("default"))) int pia_cuda_device_count(int* count, char* err, size_t errlen) {
  *count = 0;
  cudaError_t e = cudaGetDeviceCount(count);
  if (e == cudaErrorNoDevice) {
    *count = 0;
    return 0;
  }
  return report(e, "cudaGetDeviceCount", err, errlen);
}

__attribute__((visibility("default"))) int pia_cuda_device_info(int device, PiaCudaDeviceInfo* out, char* err,
                                                                 size_t errlen) {
  cudaDeviceProp p{};
  if (report(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties", err, errlen)) return 1;
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", p.name);
  out->major = p.major;
  out->minor = p.minor;
  out->total_memory = p.totalGlobalMem;
  out->multiprocessors = p.multiProcessorCount;
  cudaDriverGetVersion(&out->driver_version);
  cudaRuntimeGetVersion(&out->runtime_version);
  if (report(cudaSetDevice(device), "cudaSetDevice", err, errlen)) return 1;
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) out->free_memory = free_b;
  return 0;
}

__attribute__((visibility("default"))) int pia_cuda_add_f32(int device, const float* a, const float* b, float* out,
                                                             size_t n, char* err, size_t errlen) {
  if (report(cudaSetDevice(device), "cudaSetDevice", err, errlen)) return 1;
  float *da = nullptr, *db = nullptr, *dout = nullptr;
  size_t bytes = n * sizeof(float);
  int rc = 0;
  if ((rc = report(cudaMalloc(&da, bytes), "cudaMalloc", err, errlen)) ||
      (rc = report(cudaMalloc(&db, bytes), "cudaMalloc", err, errlen)) ||
      (rc = report(cudaMalloc(&dout, bytes), "cudaMalloc", err, errlen)) ||
      (rc = report(cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice), "cudaMemcpy", err, errlen)) ||
      (rc = report(cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice), "cudaMemcpy", err, errlen))) {
  } else {
    unsigned blocks = unsigned((n + 255) / 256);
    if (blocks > 65535) blocks = 65535;
    if (blocks == 0) blocks = 1;
    add_f32_kernel<<<blocks, 256>>>(da, db, dout, n);
    rc = report(cudaGetLastError(), "add_f32_kernel", err, errlen);
    if (!rc) rc = report(cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy", err, errlen);
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dout);
  return rc;
}

// The ops table (cuda_api.h); the core refuses a library whose ABI version differs, and a table
// smaller than the caller's (an older library) is refused here.
__attribute__((visibility("default"))) int pia_cuda_get_ops(PiaCudaOps* out, size_t size) {
  if (size > sizeof(PiaCudaOps)) return 1;
  PiaCudaOps t{};
  t.size = sizeof(PiaCudaOps);
  t.last_error = pia_cuda::last_error;
  t.malloc = pia_cuda::dev_malloc;
  t.free = pia_cuda::dev_free;
  t.memcpy_h2d = pia_cuda::memcpy_h2d;
  t.memcpy_d2h = pia_cuda::memcpy_d2h;
  t.memset_zero = pia_cuda::memset_zero;
  t.synchronize = pia_cuda::synchronize;
  t.memory_stats = pia_cuda::memory_stats;
  t.reset_peak = pia_cuda::reset_peak;
  t.empty_cache = pia_cuda::empty_cache;
  t.timer_start = pia_cuda::timer_start;
  t.timer_stop = pia_cuda::timer_stop;
  t.gemm = pia_cuda::gemm;
  t.conv2d = pia_cuda::conv2d;
  t.group_norm = pia_cuda::group_norm;
  t.layer_norm = pia_cuda::layer_norm;
  t.attention = pia_cuda::attention;
  t.binary = pia_cuda::binary;
  t.add_inplace = pia_cuda::add_inplace;
  t.affine = pia_cuda::affine;
  t.activation = pia_cuda::activation;
  t.geglu = pia_cuda::geglu;
  t.upsample_nearest2x = pia_cuda::upsample_nearest2x;
  t.embedding = pia_cuda::embedding;
  t.fourier_filter = pia_cuda::fourier_filter;
  t.strided_copy = pia_cuda::strided_copy;
  t.convert = pia_cuda::convert;
  t.use_cublaslt = pia_cuda::use_cublaslt;
  t.use_cudnn = pia_cuda::use_cudnn;
  t.set_conv_policy = pia_cuda::set_conv_policy;
  t.conv_stats = pia_cuda::conv_stats;
  std::memcpy(out, &t, size);
  return 0;
}

}  // extern "C"
