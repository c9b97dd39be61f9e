#include "cuda_loader.h"

#include <cstdlib>
#include <mutex>

#include <dlfcn.h>

#include "library_search.h"

namespace pia {

namespace {

std::string dir_of_this_library() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&dir_of_this_library), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    auto slash = p.rfind('/');
    if (slash != std::string::npos) return p.substr(0, slash);
  }
  return ".";
}

std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}

CudaApi g_api;

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

CudaStatus probe() {
  CudaStatus s;
  if (env_set("PIA_DISABLE_CUDA")) {
    s.reason = "disabled by PIA_DISABLE_CUDA";
    return s;
  }
  // The driver library is what the CUDA runtime itself needs; without it nothing else can work.
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!driver) {
    s.reason = "no NVIDIA driver (libcuda.so.1 could not be opened: " + dl_error() + ")";
    return s;
  }
  std::string lib;
  if (const char* env = std::getenv("PIA_CUDA_LIBRARY"); env && *env) lib = env;
  else lib = dir_of_this_library() + "/libpia_cuda.so";
  void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    s.reason = "the CUDA backend library is missing (this build has no CUDA support?): " + dl_error();
    return s;
  }
  s.library = lib;
  auto version = reinterpret_cast<pia_cuda_abi_version_fn>(dlsym(h, "pia_cuda_abi_version"));
  g_api.device_count = reinterpret_cast<pia_cuda_device_count_fn>(dlsym(h, "pia_cuda_device_count"));
  g_api.device_info = reinterpret_cast<pia_cuda_device_info_fn>(dlsym(h, "pia_cuda_device_info"));
  g_api.add_f32 = reinterpret_cast<pia_cuda_add_f32_fn>(dlsym(h, "pia_cuda_add_f32"));
  if (!version || !g_api.device_count || !g_api.device_info || !g_api.add_f32) {
    s.reason = lib + " lacks the expected entry points";
    return s;
  }
  if (version() != PIA_CUDA_ABI_VERSION) {
    s.reason = lib + " was built for another version of the core (ABI " + std::to_string(version()) + ")";
    return s;
  }
  auto get_ops = reinterpret_cast<pia_cuda_get_ops_fn>(dlsym(h, "pia_cuda_get_ops"));
  if (!get_ops || get_ops(&g_api.ops, sizeof g_api.ops) != 0 || g_api.ops.size != sizeof g_api.ops) {
    s.reason = lib + " lacks the op table of this version of the core";
    return s;
  }
  char err[512] = {0};
  int count = 0;
  if (g_api.device_count(&count, err, sizeof err) != 0) {
    s.reason = std::string("CUDA initialisation failed: ") + err;
    // The library carries the CUDA runtime it was built with (static cudart): an older driver
    // cannot run it, and the fix is a driver update, which the runtime's message does not say.
    if (s.reason.find("insufficient") != std::string::npos) {
      s.reason += " (the CUDA runtime this build carries needs a newer NVIDIA driver: 580 or newer for CUDA 13)";
    }
    return s;
  }
  if (count == 0) {
    s.reason = "the NVIDIA driver reports no CUDA device";
    return s;
  }
  for (int i = 0; i < count; ++i) {
    PiaCudaDeviceInfo info{};
    if (g_api.device_info(i, &info, err, sizeof err) != 0) continue;
    CudaDevice d;
    d.index = i;
    d.name = info.name;
    d.major = info.major;
    d.minor = info.minor;
    d.total_memory = info.total_memory;
    d.free_memory = info.free_memory;
    d.multiprocessors = info.multiprocessors;
    d.driver_version = info.driver_version;
    d.runtime_version = info.runtime_version;
    s.devices.push_back(d);
  }
  s.available = !s.devices.empty();
  if (!s.available) s.reason = "no CUDA device could be queried";
  return s;
}

// Opens one optional library through libpia_cuda.so's `use` entry, filling `lib` for pia doctor.
void open_optional(const CudaStatus& s, OptionalLibrary& lib, const char* disable_env, const char* fallback,
                   int (*use)(const char*, char*, size_t)) {
  if (lib.path.empty()) {
    lib.note = std::string("not found; ") + fallback;
    return;
  }
  if (!s.available) {
    lib.note = "CUDA is unavailable";
    return;
  }
  if (env_set(disable_env)) {
    lib.note = std::string("disabled by ") + disable_env;
    return;
  }
  char info[64] = {0};
  if (use(lib.path.c_str(), info, sizeof info) == 0) {
    lib.in_use = true;
    lib.version = info;
  } else {
    lib.note = g_api.ops.last_error();
  }
}

// cuBLASLt for the GEMMs and cuDNN for the convolutions when they are found and open; our kernels
// otherwise. PIA_DISABLE_CUBLASLT=1 / PIA_DISABLE_CUDNN=1 keep ours (e.g. to compare them);
// PIA_CUDNN_AUTOTUNE=0 sends f16/bf16 convolutions to cuDNN untimed instead of timing both.
CudaStatus with_libraries(CudaStatus s) {
  s.cublaslt.path = cublaslt_search().path;
  s.cudnn.path = cudnn_search().path;
  open_optional(s, s.cublaslt, "PIA_DISABLE_CUBLASLT", "GEMMs run on the built-in tensor-core kernel",
                g_api.ops.use_cublaslt);
  open_optional(s, s.cudnn, "PIA_DISABLE_CUDNN", "convolutions run on the built-in kernels",
                g_api.ops.use_cudnn);
  if (s.cudnn.in_use) {
    const char* tune = std::getenv("PIA_CUDNN_AUTOTUNE");
    const bool untimed = tune && std::string(tune) == "0";
    g_api.ops.set_conv_policy(untimed ? PIA_CUDA_CONV_CUDNN : PIA_CUDA_CONV_TUNED);
    s.cudnn.note = untimed ? "used for f16/bf16 convolutions (PIA_CUDNN_AUTOTUNE=0: untimed)"
                           : "used for f16/bf16 convolutions where it times faster than the built-in kernel";
  }
  return s;
}

}  // namespace

const CudaStatus& cuda_status() {
  static const CudaStatus s = with_libraries(probe());
  return s;
}

const CudaApi* cuda_api() { return cuda_status().available ? &g_api : nullptr; }

}  // namespace pia
