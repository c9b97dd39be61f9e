#pragma once
// Finds the optional CUDA backend at run time: libcuda.so.1 first (no driver, no CUDA), then our
// libpia_cuda.so beside the addon. Never throws; `reason` says why CUDA is unavailable.
#include <string>
#include <vector>

#include "cuda_api.h"

namespace pia {

struct CudaDevice {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  size_t total_memory = 0, free_memory = 0;
  int multiprocessors = 0;
  int driver_version = 0, runtime_version = 0;
};

// An optional NVIDIA library: where the search found it, whether the CUDA backend uses it.
struct OptionalLibrary {
  std::string path;     // empty: not found
  bool in_use = false;  // opened by libpia_cuda.so
  std::string version;  // when in use
  std::string note;     // why it is not in use, or what it is used for
};

struct CudaStatus {
  bool available = false;
  std::string reason;
  std::string library;  // path of libpia_cuda.so when found
  std::vector<CudaDevice> devices;
  OptionalLibrary cublaslt, cudnn;  // searched even where CUDA is unavailable (pia doctor)
};

struct CudaApi {
  pia_cuda_device_count_fn device_count = nullptr;
  pia_cuda_device_info_fn device_info = nullptr;
  pia_cuda_add_f32_fn add_f32 = nullptr;
  // The device memory and op entry points (cuda_api.h); what CudaBackend calls.
  PiaCudaOps ops{};
};

// Probed once per process.
const CudaStatus& cuda_status();
// nullptr unless cuda_status().available.
const CudaApi* cuda_api();

}  // namespace pia
