// Convolutions through cuDNN when the core found it at run time (library_search.cpp) and use_cudnn
// opened it; our own kernels (gemm.cu's conv2d_implicit_gemm) otherwise, and for every call cuDNN
// declines or fails.
// cuDNN is never linked and no cuDNN header is needed: the legacy convolution API that cuDNN 8 and 9
// both export is declared below. Signatures, struct layout and enum values are those of cuDNN
// 9.6.0's cudnn_graph.h, cudnn_ops.h and cudnn_cnn.h, checked against cuDNN 8.2.1's
// cudnn_ops_infer.h and cudnn_cnn_infer.h, which agree on everything used here (their status codes
// differ, and only CUDNN_STATUS_SUCCESS = 0 is tested; messages come from cudnnGetErrorString).
//
// Which calls go to cuDNN is the policy of cuda_api.h (PIA_CUDA_CONV_*). By default f16/bf16 time
// cuDNN against our kernel on each shape's first call and keep the faster; f32, the parity mode,
// stays on our kernel: cuDNN's heuristics may pick Winograd or FFT algorithms whose rounding differs
// from a direct sum, and a timing-dependent choice would make f32 results differ from run to run
// and machine to machine, which is what the parity mode exists to rule out.
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "cudnn.cuh"
#include "cudnn_host.h"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

namespace rules = cudnn_rules;

using DnnStatus = int;  // cudnnStatus_t
using DnnHandle = void*;
using TensorDesc = void*;
using FilterDesc = void*;
using ConvDesc = void*;
struct FwdAlgoPerf {  // cudnnConvolutionFwdAlgoPerf_t
  int algo;
  DnnStatus status;
  float time;
  size_t memory;
  int determinism;
  int math_type;
  int reserved[3];
};

constexpr int kDataFloat = 0, kDataHalf = 2, kDataBfloat16 = 9;  // cudnnDataType_t
constexpr int kTensorNchw = 0;                                    // cudnnTensorFormat_t
constexpr int kCrossCorrelation = 1;  // cudnnConvolutionMode_t: torch.nn.Conv2d does not flip the kernel
// cudnnMathType_t. FMA for f32: DEFAULT_MATH lets cuDNN 8 use TF32 on Ampere and newer.
constexpr int kTensorOpMath = 1, kFmaMath = 3;
constexpr int kAlgoCount = 8;  // CUDNN_CONVOLUTION_FWD_ALGO_COUNT
constexpr size_t kWorkspaceCap = size_t(256) << 20;
constexpr int kTimedRuns = 3;

struct DnnApi {
  size_t (*get_version)(void);
  const char* (*error_string)(DnnStatus);
  DnnStatus (*create)(DnnHandle*);
  DnnStatus (*set_stream)(DnnHandle, cudaStream_t);
  DnnStatus (*create_tensor)(TensorDesc*);
  DnnStatus (*set_tensor_4d)(TensorDesc, int format, int data_type, int n, int c, int h, int w);
  DnnStatus (*create_filter)(FilterDesc*);
  DnnStatus (*set_filter_4d)(FilterDesc, int data_type, int format, int k, int c, int h, int w);
  DnnStatus (*create_conv)(ConvDesc*);
  DnnStatus (*set_conv_2d)(ConvDesc, int pad_h, int pad_w, int u, int v, int dilation_h, int dilation_w, int mode,
                           int compute_type);
  DnnStatus (*set_conv_math)(ConvDesc, int math_type);
  DnnStatus (*output_dim)(ConvDesc, TensorDesc, FilterDesc, int* n, int* c, int* h, int* w);
  DnnStatus (*get_algorithms)(DnnHandle, TensorDesc, FilterDesc, ConvDesc, TensorDesc, int requested, int* returned,
                              FwdAlgoPerf* results);
  DnnStatus (*workspace_size)(DnnHandle, TensorDesc, FilterDesc, ConvDesc, TensorDesc, int algo, size_t* bytes);
  DnnStatus (*forward)(DnnHandle, const void* alpha, TensorDesc, const void* x, FilterDesc, const void* w, ConvDesc,
                       int algo, void* workspace, size_t workspace_bytes, const void* beta, TensorDesc, void* y);
};

enum class Choice { kUntimed, kCudnn, kOurs };

// One shape's descriptors and algorithm, kept for the life of the process like cuBLASLt's plans.
struct Plan {
  bool usable = false;  // false: cuDNN declined or failed this shape; our kernel runs it from now on
  TensorDesc x = nullptr, y = nullptr;
  FilterDesc w = nullptr;
  ConvDesc conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
  Choice choice = Choice::kUntimed;  // PIA_CUDA_CONV_TUNED's verdict
};

struct DeviceDnn {
  std::mutex mu;
  DnnHandle handle = nullptr;
  bool failed = false;  // no handle could be made: never try again on this device
  cudaEvent_t t0 = nullptr, t1 = nullptr;
  std::map<rules::ConvKey, Plan> plans;
};

std::mutex g_mu;  // use_cudnn
DnnApi g_dnn{};
std::atomic<bool> g_loaded{false};
std::atomic<int> g_policy{PIA_CUDA_CONV_TUNED};
constexpr int kMaxDevices = 64;
DeviceDnn g_dev[kMaxDevices];

std::atomic<uint64_t> g_cudnn_calls{0}, g_own_calls{0}, g_failures{0}, g_timed{0}, g_cudnn_won{0};
std::mutex g_failure_mu;
char g_last_failure[256] = {0};

const char* status_text(DnnStatus s) {
  const char* t = g_dnn.error_string ? g_dnn.error_string(s) : nullptr;
  return t ? t : "unknown cuDNN status";
}

// Keeps the reason a shape left cuDNN (conv_stats) and clears any error the failure left in our
// runtime, so that the fallback kernel's launch check does not report it.
void record_failure(const PiaConv2dArgs& a, const char* what, DnnStatus s) {
  cudaGetLastError();
  g_failures.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(g_failure_mu);
  std::snprintf(g_last_failure, sizeof g_last_failure,
                "%s%s%s (dtype %d, x [%lld,%lld,%lld,%lld], w [%lld,%lld,%lld,%lld], stride %d, pad %d,%d)", what,
                s ? ": " : "", s ? status_text(s) : "", a.dtype, (long long)a.N, (long long)a.C, (long long)a.H,
                (long long)a.W, (long long)a.Co, (long long)a.C, (long long)a.kh, (long long)a.kw, a.stride, a.pad_top,
                a.pad_left);
}

int data_type(int dtype) { return dtype == 1 ? kDataHalf : dtype == 2 ? kDataBfloat16 : kDataFloat; }

// Descriptors, then the first of cuDNN's heuristic choices (fastest first) that succeeds and whose
// workspace fits the cap.
Plan make_plan(DeviceDnn& d, const PiaConv2dArgs& a) {
  Plan p;
  const int t = data_type(a.dtype);
  DnnStatus s = 0;
  const char* what = "cudnnCreate*Descriptor";
  if ((s = g_dnn.create_tensor(&p.x)) || (s = g_dnn.create_tensor(&p.y)) || (s = g_dnn.create_filter(&p.w)) ||
      (s = g_dnn.create_conv(&p.conv))) {
    record_failure(a, what, s);
    return p;
  }
  what = "setting the descriptors";
  if ((s = g_dnn.set_tensor_4d(p.x, kTensorNchw, t, int(a.N), int(a.C), int(a.H), int(a.W))) ||
      (s = g_dnn.set_tensor_4d(p.y, kTensorNchw, t, int(a.N), int(a.Co), int(a.Ho), int(a.Wo))) ||
      (s = g_dnn.set_filter_4d(p.w, t, kTensorNchw, int(a.Co), int(a.C), int(a.kh), int(a.kw))) ||
      (s = g_dnn.set_conv_2d(p.conv, a.pad_top, a.pad_left, a.stride, a.stride, 1, 1, kCrossCorrelation,
                             kDataFloat)) ||
      (s = g_dnn.set_conv_math(p.conv, a.dtype == 0 ? kFmaMath : kTensorOpMath))) {
    record_failure(a, what, s);
    return p;
  }
  int n = 0, c = 0, h = 0, w = 0;
  if ((s = g_dnn.output_dim(p.conv, p.x, p.w, &n, &c, &h, &w)) || n != a.N || c != a.Co || h != a.Ho || w != a.Wo) {
    record_failure(a, "cudnnGetConvolution2dForwardOutputDim disagrees with Ho/Wo", s);
    return p;
  }
  FwdAlgoPerf found[kAlgoCount] = {};
  int count = 0;
  if ((s = g_dnn.get_algorithms(d.handle, p.x, p.w, p.conv, p.y, kAlgoCount, &count, found))) {
    record_failure(a, "cudnnGetConvolutionForwardAlgorithm_v7", s);
    return p;
  }
  for (int i = 0; i < count && i < kAlgoCount; ++i) {
    if (found[i].status != 0) continue;
    // f16/bf16 run in the math type the heuristic ranked this algorithm with (default or tensor
    // ops); f32 keeps FMA, set above, so that no candidate brings TF32 in.
    if (a.dtype != 0) {
      const int math = found[i].math_type == 0 ? 0 : kTensorOpMath;
      if (g_dnn.set_conv_math(p.conv, math) != 0) continue;
    }
    size_t bytes = 0;
    if (g_dnn.workspace_size(d.handle, p.x, p.w, p.conv, p.y, found[i].algo, &bytes) != 0 || bytes > kWorkspaceCap) {
      continue;
    }
    p.algo = found[i].algo;
    p.workspace = bytes;
    p.usable = true;
    return p;
  }
  record_failure(a, "no cuDNN algorithm within the 256 MiB workspace cap", 0);
  return p;
}

bool device_ready(DeviceDnn& d) {
  if (d.failed) return false;
  if (d.handle) return true;
  DnnStatus s = g_dnn.create(&d.handle);
  if (s == 0) s = g_dnn.set_stream(d.handle, stream());
  if (s != 0) {
    cudaGetLastError();
    std::lock_guard<std::mutex> lock(g_failure_mu);
    std::snprintf(g_last_failure, sizeof g_last_failure, "cudnnCreate/cudnnSetStream: %s", status_text(s));
    d.failed = true;
    return false;
  }
  return true;
}

// torch.nn.Conv2d's bias and our fused activation, in place after cuDNN's convolution.
template <typename T>
__global__ void bias_act_kernel(T* y, const T* bias, int64_t n, int64_t plane, int64_t channels, int act) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = to_f(y[i]);
    if (bias) v += to_f(bias[(i / plane) % channels]);
    y[i] = from_f<T>(apply_act(v, act));
  }
}

int bias_act(const PiaConv2dArgs& a) {
  if (!a.bias && a.act == 0) return PIA_CUDA_OK;
  const int64_t n = a.N * a.Co * a.Ho * a.Wo;
  PIA_DISPATCH(a.dtype, bias_act_kernel<T><<<blocks_for(n), 256, 0, stream()>>>(
                            static_cast<T*>(a.y), static_cast<const T*>(a.bias), n, a.Ho * a.Wo, a.Co, a.act));
  return check_launch("conv2d bias/activation kernel");
}

// One convolution through cuDNN, then the epilogue: PIA_CUDA_OK; PIA_CUDA_ERR with cuDNN's status
// in *status when cuDNN failed (y is then garbage, to be overwritten by our kernel); or the
// epilogue's launch error with *status 0.
int run_cudnn(DeviceDnn& d, const Plan& p, const PiaConv2dArgs& a, void* workspace, DnnStatus* status) {
  const float alpha = 1.f, beta = 0.f;  // float scaling factors for FLOAT compute, whatever the data type
  *status = g_dnn.forward(d.handle, &alpha, p.x, a.x, p.w, a.w, p.conv, p.algo, workspace, p.workspace, &beta, p.y,
                          a.y);
  if (*status != 0) return PIA_CUDA_ERR;
  return bias_act(a);
}

bool capturing() {
  cudaStreamCaptureStatus s = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream(), &s) != cudaSuccess) {
    cudaGetLastError();
    return true;  // cannot tell: do not time
  }
  return s != cudaStreamCaptureStatusNone;
}

// Milliseconds per run of fn, averaged over kTimedRuns after one warm-up run (lazy module loading,
// the allocator's first blocks); -1 when fn failed.
template <typename F>
float time_ms(DeviceDnn& d, F fn) {
  if (!d.t0 && (cudaEventCreate(&d.t0) != cudaSuccess || cudaEventCreate(&d.t1) != cudaSuccess)) {
    cudaGetLastError();
    return -1;
  }
  if (fn() != PIA_CUDA_OK) return -1;
  if (cudaEventRecord(d.t0, stream()) != cudaSuccess) return -1;
  for (int i = 0; i < kTimedRuns; ++i) {
    if (fn() != PIA_CUDA_OK) return -1;
  }
  float ms = 0;
  if (cudaEventRecord(d.t1, stream()) != cudaSuccess || cudaEventSynchronize(d.t1) != cudaSuccess ||
      cudaEventElapsedTime(&ms, d.t0, d.t1) != cudaSuccess) {
    return -1;
  }
  return ms / kTimedRuns;
}

// The names in a folder (for the sub-library search).
std::vector<std::string> list_folder(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* dp = opendir(dir.c_str())) {
    while (const dirent* e = readdir(dp)) out.push_back(e->d_name);
    closedir(dp);
  }
  return out;
}

// Opens the sub-libraries beside the dispatcher (cudnn_host.h says why). Their order of
// dependence differs between releases, so the list is retried until a round opens nothing more.
// Handles are never closed: cuDNN keeps using them for the life of the process.
bool open_sublibraries(const std::string& dir, int major, std::string* err) {
  const rules::SubLibraries s = rules::sublibraries(major, list_folder(dir));
  if (!s.missing_required.empty()) {
    *err = "cuDNN's sub-library " + s.missing_required.front() + " is not beside it in " + dir;
    return false;
  }
  std::vector<std::string> pending = s.load;
  std::map<std::string, std::string> errors;
  for (bool progress = true; progress && !pending.empty();) {
    progress = false;
    for (auto it = pending.begin(); it != pending.end();) {
      if (dlopen((dir + "/" + *it).c_str(), RTLD_NOW | RTLD_LOCAL)) {
        it = pending.erase(it);
        progress = true;
      } else {
        const char* e = dlerror();
        errors[*it] = e ? e : "unknown error";
        ++it;
      }
    }
  }
  for (const std::string& r : rules::required_sublibraries(major)) {
    for (const std::string& p : pending) {
      if (p == r) {
        *err = "could not open cuDNN's " + r + ": " + errors[r];
        return false;
      }
    }
  }
  return true;  // an optional one that did not open (e.g. runtime-compiled engines without NVRTC) is cuDNN's to report
}

// A first convolution on device 0 (f16, 3×3, zeros), so that a cuDNN that cannot run here (no
// kernels for this GPU, a sub-library of another release) says so once, in `pia doctor`, rather
// than on every shape.
bool smoke_test(std::string* err) {
  if (use_device(0) != PIA_CUDA_OK) {
    *err = last_error();
    return false;
  }
  DeviceDnn& d = g_dev[0];
  std::lock_guard<std::mutex> lock(d.mu);
  if (!device_ready(d)) {
    *err = g_last_failure;
    return false;
  }
  PiaConv2dArgs a{};
  a.dtype = 1;
  a.N = 1;
  a.C = 8;
  a.H = 8;
  a.W = 8;
  a.Co = 8;
  a.kh = 3;
  a.kw = 3;
  a.stride = 1;
  a.pad_top = 1;
  a.pad_left = 1;
  a.Ho = 8;
  a.Wo = 8;
  const size_t xb = 8 * 8 * 8 * 2, wb = 8 * 8 * 3 * 3 * 2;
  void* buf = nullptr;
  if (dev_malloc(0, 2 * xb + wb, &buf) != PIA_CUDA_OK) {
    *err = last_error();
    return false;
  }
  char* base = static_cast<char*>(buf);
  a.x = base;
  a.y = base + xb;
  a.w = base + 2 * xb;
  bool ok = cudaMemsetAsync(buf, 0, 2 * xb + wb, stream()) == cudaSuccess;
  Plan p = make_plan(d, a);
  void* ws = nullptr;
  DnnStatus s = 0;
  if (ok && p.usable && (p.workspace == 0 || dev_malloc(0, p.workspace, &ws) == PIA_CUDA_OK)) {
    ok = run_cudnn(d, p, a, ws, &s) == PIA_CUDA_OK && cudaStreamSynchronize(stream()) == cudaSuccess;
    if (!ok) *err = std::string("its first convolution failed: ") + (s ? status_text(s) : last_error());
  } else {
    ok = false;
    *err = std::string("it could not plan a first convolution: ") + g_last_failure;
  }
  cudaGetLastError();
  dev_free(0, ws);
  dev_free(0, buf);
  if (ok) d.plans.emplace(rules::conv_key(a), p);
  return ok;
}

}  // namespace

int use_cudnn(const char* path, char* info, size_t infolen) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (info && infolen) info[0] = 0;
  if (g_loaded) return PIA_CUDA_OK;
  const std::string file = path ? path : "";
  // The major version decides which sub-libraries must be there before anything calls into cuDNN.
  int major = rules::major_from_name(file);
  if (!major) {
    char real[PATH_MAX];
    if (realpath(file.c_str(), real)) major = rules::major_from_name(real);
  }
  if (major != 8 && major != 9) {
    set_error("%s: cannot tell it is cuDNN 8 or 9 from its name (libcudnn.so.N); set PIA_CUDNN_LIBRARY to "
              "libcudnn.so.8 or .9",
              file.c_str());
    return PIA_CUDA_ERR;
  }
  const size_t slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : file.substr(0, slash);
  std::string err;
  if (!open_sublibraries(dir, major, &err)) {
    set_error("%s", err.c_str());
    return PIA_CUDA_ERR;
  }
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    set_error("could not open %s: %s", file.c_str(), e ? e : "unknown error");
    return PIA_CUDA_ERR;
  }
  DnnApi api{};
  const bool all =
      sym(h, "cudnnGetVersion", api.get_version) && sym(h, "cudnnGetErrorString", api.error_string) &&
      sym(h, "cudnnCreate", api.create) && sym(h, "cudnnSetStream", api.set_stream) &&
      sym(h, "cudnnCreateTensorDescriptor", api.create_tensor) &&
      sym(h, "cudnnSetTensor4dDescriptor", api.set_tensor_4d) &&
      sym(h, "cudnnCreateFilterDescriptor", api.create_filter) &&
      sym(h, "cudnnSetFilter4dDescriptor", api.set_filter_4d) &&
      sym(h, "cudnnCreateConvolutionDescriptor", api.create_conv) &&
      sym(h, "cudnnSetConvolution2dDescriptor", api.set_conv_2d) &&
      sym(h, "cudnnSetConvolutionMathType", api.set_conv_math) &&
      sym(h, "cudnnGetConvolution2dForwardOutputDim", api.output_dim) &&
      sym(h, "cudnnGetConvolutionForwardAlgorithm_v7", api.get_algorithms) &&
      sym(h, "cudnnGetConvolutionForwardWorkspaceSize", api.workspace_size) &&
      sym(h, "cudnnConvolutionForward", api.forward);
  if (!all) {
    set_error("%s lacks cuDNN's legacy convolution entry points", file.c_str());
    return PIA_CUDA_ERR;  // the sub-libraries are open and stay open; nothing of theirs runs
  }
  const size_t v = api.get_version();
  if (rules::version_major(v) != major) {
    set_error("%s reports cuDNN %s, not the %d its name says", file.c_str(), rules::version_string(v).c_str(), major);
    return PIA_CUDA_ERR;
  }
  g_dnn = api;
  if (!smoke_test(&err)) {
    g_dnn = DnnApi{};
    set_error("cuDNN %s at %s cannot be used: %s", rules::version_string(v).c_str(), file.c_str(), err.c_str());
    return PIA_CUDA_ERR;
  }
  if (info && infolen) std::snprintf(info, infolen, "%s", rules::version_string(v).c_str());
  g_loaded = true;
  return PIA_CUDA_OK;
}

int set_conv_policy(int policy) {
  if (policy < PIA_CUDA_CONV_OURS || policy > PIA_CUDA_CONV_CUDNN_ALL) return -1;
  return g_policy.exchange(policy);
}

int conv_stats(PiaConvStats* out) {
  if (!out) return PIA_CUDA_ERR_ARG;
  std::memset(out, 0, sizeof *out);
  out->cudnn_calls = g_cudnn_calls.load();
  out->own_calls = g_own_calls.load();
  out->cudnn_failures = g_failures.load();
  out->shapes_timed = g_timed.load();
  out->shapes_cudnn_won = g_cudnn_won.load();
  out->policy = g_policy.load();
  out->cudnn_loaded = g_loaded ? 1 : 0;
  std::lock_guard<std::mutex> lock(g_failure_mu);
  std::snprintf(out->last_failure, sizeof out->last_failure, "%s", g_last_failure);
  return PIA_CUDA_OK;
}

void count_own_conv() { g_own_calls.fetch_add(1, std::memory_order_relaxed); }

bool cudnn_conv2d(int device, const PiaConv2dArgs& a, int* rc) {
  if (!g_loaded || device < 0 || device >= kMaxDevices) return false;
  const int policy = g_policy.load();
  if (!rules::policy_uses_cudnn(policy, a.dtype) || !rules::fits_legacy_api(a) ||
      !rules::symmetric_padding_fits(a.H, a.W, a.kh, a.kw, a.stride, a.pad_top, a.pad_left, a.Ho, a.Wo)) {
    return false;
  }
  DeviceDnn& d = g_dev[device];
  std::lock_guard<std::mutex> lock(d.mu);
  if (!device_ready(d)) return false;
  const rules::ConvKey key = rules::conv_key(a);
  auto it = d.plans.find(key);
  if (it == d.plans.end()) it = d.plans.emplace(key, make_plan(d, a)).first;
  Plan& p = it->second;
  if (!p.usable) return false;
  const bool tuned = rules::policy_times(policy, a.dtype);
  if (tuned && p.choice == Choice::kOurs) return false;
  const bool time_now = tuned && p.choice == Choice::kUntimed;
  // Events cannot be waited on inside a stream capture; such a call runs ours and decides nothing.
  if (time_now && capturing()) return false;
  void* ws = nullptr;
  if (p.workspace && scratch_alloc(device, p.workspace, &ws) != PIA_CUDA_OK) {
    cudaGetLastError();
    return false;  // no memory for the workspace now; our kernel needs none
  }
  DnnStatus s = 0;
  if (time_now) {
    const float t_cudnn = time_ms(d, [&] { return run_cudnn(d, p, a, ws, &s); });
    if (t_cudnn < 0 && s != 0) {
      record_failure(a, "cudnnConvolutionForward", s);
      p.usable = false;
      scratch_free(device, ws);
      return false;
    }
    int own_rc = PIA_CUDA_OK;
    const float t_ours = time_ms(d, [&] { return own_rc = conv2d_implicit_gemm(a); });
    if (own_rc != PIA_CUDA_OK) {
      scratch_free(device, ws);
      *rc = own_rc;
      return true;
    }
    if (t_cudnn < 0 || t_ours < 0) {  // an event failed: nothing decided, our result in y stands
      scratch_free(device, ws);
      *rc = check(cudaGetLastError(), "conv2d timing");
      return true;
    }
    p.choice = t_cudnn < t_ours ? Choice::kCudnn : Choice::kOurs;
    // y holds our kernel's result (it ran last). When cuDNN won, every later call of this shape
    // returns cuDNN's rounding, so this one must too: a step's first (warm-up) run would otherwise
    // differ bitwise from its replays and from the same step run again eagerly.
    if (p.choice == Choice::kCudnn) {
      if (const int r = run_cudnn(d, p, a, ws, &s); r != PIA_CUDA_OK) {
        scratch_free(device, ws);
        if (s == 0) {  // the epilogue's launch failed
          *rc = r;
          return true;
        }
        record_failure(a, "cudnnConvolutionForward", s);
        p.usable = false;
        return false;  // y is garbage now: conv2d reruns our kernel
      }
    }
    scratch_free(device, ws);
    g_timed.fetch_add(1, std::memory_order_relaxed);
    if (p.choice == Choice::kCudnn) g_cudnn_won.fetch_add(1, std::memory_order_relaxed);
    (p.choice == Choice::kCudnn ? g_cudnn_calls : g_own_calls).fetch_add(1, std::memory_order_relaxed);
    *rc = PIA_CUDA_OK;
    return true;
  }
  const int r = run_cudnn(d, p, a, ws, &s);
  scratch_free(device, ws);
  if (s != 0 && capturing_here(device)) {
    // As cublaslt.cu does: our kernel here would record another kernel than the eager run used,
    // and the shape would leave cuDNN for good over a failure the capture itself may have caused.
    // The capture fails instead; the step then runs eagerly, still on cuDNN.
    set_error("cudnnConvolutionForward failed during CUDA graph capture: %s", status_text(s));
    *rc = PIA_CUDA_ERR;
    return true;
  }
  if (s != 0) {
    record_failure(a, "cudnnConvolutionForward", s);
    p.usable = false;
    return false;
  }
  g_cudnn_calls.fetch_add(1, std::memory_order_relaxed);
  *rc = r;  // the epilogue's launch status
  return true;
}

}  // namespace pia_cuda
