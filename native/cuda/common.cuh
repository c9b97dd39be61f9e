#pragma once
// Shared by the kernel files of libpia_cuda.so: error reporting, the per-device stream, element
// types (f32 / f16 / bf16 in memory, f32 in registers) and the activations.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <dlfcn.h>

#include <cstdint>

#include "activation.cuh"  // apply_act
#include "cuda_api.h"

#define PIA_EXPORT __attribute__((visibility("default")))

namespace pia_cuda {

// The message behind the last non-zero return on this thread.
void set_error(const char* fmt, ...);
const char* last_error();
// cudaSetDevice, with the error recorded.
int use_device(int device);
// The library's stream on the current device (non-blocking, created on first use).
cudaStream_t stream();
// PIA_CUDA_OK, or the launch error (cudaGetLastError) recorded under `what`.
int check_launch(const char* what);
int check(cudaError_t e, const char* what);

// out = the symbol `name` of a dlopened library (cuBLASLt, cuDNN), as function pointer type F.
template <typename F>
bool sym(void* h, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(h, name));
  return out != nullptr;
}

// Scratch memory from the caching allocator (stream-ordered reuse), for kernels that need it.
int scratch_alloc(int device, size_t bytes, void** out);
void scratch_free(int device, void* p);
// A block from the shared pool even while this thread captures a graph: for buffers that outlive
// any one graph (cuBLASLt's workspace), which must not vanish with a graph's pool.
int dev_malloc_shared(int device, size_t bytes, void** out);
// Whether the calling thread is capturing a CUDA graph on `device` (memory.cu).
bool capturing_here(int device);

// Held for the length of every entry point of the ops table that touches a device: waits while
// another thread captures on that device (see memory.cu), and makes a new capture wait for it.
class StreamGate {
 public:
  explicit StreamGate(int device);
  ~StreamGate();
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;

 private:
  int device_ = -1;
};

template <typename T>
__device__ __forceinline__ float to_f(T x);
template <>
__device__ __forceinline__ float to_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Grid-stride launch size for n elements.
inline unsigned blocks_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return unsigned(b);
}

}  // namespace pia_cuda

// Runs the statement with T bound to the element type of dtype code `dt`; an unknown code
// returns PIA_CUDA_ERR_ARG from the enclosing function.
#define PIA_DISPATCH(dt, ...)                                                   \
  switch (dt) {                                                                 \
    case 0: {                                                                   \
      using T = float;                                                          \
      __VA_ARGS__;                                                              \
    } break;                                                                    \
    case 1: {                                                                   \
      using T = __half;                                                         \
      __VA_ARGS__;                                                              \
    } break;                                                                    \
    case 2: {                                                                   \
      using T = __nv_bfloat16;                                                  \
      __VA_ARGS__;                                                              \
    } break;                                                                    \
    default: ::pia_cuda::set_error("unknown dtype code %d", int(dt)); return PIA_CUDA_ERR_ARG; \
  }
