#pragma once
// The C ABI between the core (always built) and libpia_cuda.so (built when nvcc is found).
// The core dlopens the library only after libcuda.so.1 opens, so nothing here may need CUDA headers.
#include <stddef.h>
#include <stdint.h>

#define PIA_CUDA_ABI_VERSION 1

extern "C" {

struct PiaCudaDeviceInfo {
  char name[256];
  int major, minor;           // compute capability
  size_t total_memory, free_memory;
  int multiprocessors;
  int driver_version, runtime_version;
};

// Each function returns 0 on success, or writes a message into err (errlen bytes) and returns non-zero.
typedef int (*pia_cuda_abi_version_fn)(void);
typedef int (*pia_cuda_device_count_fn)(int* count, char* err, size_t errlen);
typedef int (*pia_cuda_device_info_fn)(int device, PiaCudaDeviceInfo* out, char* err, size_t errlen);
// out[i] = a[i] + b[i] on the device, from and to host memory: the seam's smoke test.
typedef int (*pia_cuda_add_f32_fn)(int device, const float* a, const float* b, float* out, size_t n, char* err,
                                   size_t errlen);
}
