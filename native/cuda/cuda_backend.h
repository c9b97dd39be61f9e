#pragma once
// The CUDA backend: a thin core-side class over libpia_cuda.so's op table (cuda_api.h), so the
// core itself never links CUDA. Device tensors are pia::Tensor with Device::CUDA storage that
// returns to the library's caching allocator when the last view goes away.
#include <cstddef>
#include <memory>
#include <string>

#include "../ops/backend.h"
#include "cuda_api.h"

namespace pia {

// Activations and weights live in `dtype` on the device: F32 (the parity-test mode) or F16/BF16
// (fp32 accumulation inside every kernel). Throws E_BACKEND with cuda_status().reason when CUDA
// is unavailable, E_INVALID_ARGUMENT for a device index that does not exist.
std::shared_ptr<Backend> make_cuda_backend(int device = 0, DType dtype = DType::F16);

// "cpu", "cuda" (device 0), "cuda:N" or "auto" (CUDA when usable, else the CPU) -> a backend.
// The CPU backend computes in F32 whatever `dtype` says. What the model loaders are given.
std::shared_ptr<Backend> make_backend(const std::string& device, DType dtype = DType::F32);

// For benchmarks and tests on a CUDA backend's device.
struct CudaMemoryStats {
  size_t in_use = 0, peak_in_use = 0;      // bytes handed out by the caching allocator
  size_t reserved = 0, peak_reserved = 0;  // bytes held from the driver
};
CudaMemoryStats cuda_memory_stats(int device);
void cuda_reset_peak_memory(int device);
void cuda_synchronize(int device);
// Seconds of device time between start and stop (events on the library's stream).
void cuda_timer_start(int device);
double cuda_timer_stop(int device);
// Which convolutions cuDNN runs from now on, for the whole process (PIA_CUDA_CONV_* in cuda_api.h;
// the loader sets TUNED, or CUDNN under PIA_CUDNN_AUTOTUNE=0): how tests and benchmarks compare
// cuDNN with our kernel in one process. Returns the previous policy, -1 for an unknown one.
int cuda_set_conv_policy(int policy);
// Counters of conv2d calls (who ran them) and the last cuDNN failure.
PiaConvStats cuda_conv_stats();

}  // namespace pia
