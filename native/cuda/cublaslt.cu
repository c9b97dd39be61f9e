// GEMM through cuBLASLt when the core found the library at run time (library_search.cpp) and
// use_cublaslt opened it; gemm.cu's own kernel otherwise. cuBLASLt is never linked: its C ABI is
// declared below from the documented header (cublasLt.h, CUDA 11-13), since the toolkit this
// library is built with need not ship cuBLAS at all. Enum values are the header's.
//
// Our operands are row-major; cuBLASLt's are column-major. C = A·B (row-major [M, N]) is
// Cᵀ = Bᵀ·Aᵀ (column-major [N, M]), so cuBLASLt's first operand is our B and its second our A,
// with m = N and n = M. torch.nn.Linear's bias (one per output column, N entries) then runs along
// the rows of cuBLASLt's D, which is what its BIAS epilogue adds.
#include <dlfcn.h>
#include <library_types.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"
#include "cublaslt.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

using LtStatus = int;  // cublasStatus_t; 0 = CUBLAS_STATUS_SUCCESS
using LtHandle = void*;
using LtDesc = void*;
using LtLayout = void*;
using LtPref = void*;
struct LtAlgo {
  uint64_t data[8];
};
struct LtHeuristic {  // cublasLtMatmulHeuristicResult_t
  LtAlgo algo;
  size_t workspace_size;
  LtStatus state;
  float waves_count;
  int reserved[4];
};

constexpr int kComputeType32F = 68;  // CUBLAS_COMPUTE_32F (no TF32: the fp32 mode is for parity)
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kLayoutBatchCount = 5, kLayoutBatchStride = 6;
constexpr int kPrefMaxWorkspace = 1, kPrefAlignA = 5, kPrefAlignB = 6, kPrefAlignC = 7, kPrefAlignD = 8;
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4;
constexpr int32_t kOpN = 0, kOpT = 1;
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct LtApi {
  LtStatus (*create)(LtHandle*);
  LtStatus (*desc_create)(LtDesc*, int compute_type, cudaDataType_t scale_type);
  LtStatus (*desc_destroy)(LtDesc);
  LtStatus (*desc_set)(LtDesc, int attr, const void* buf, size_t size);
  LtStatus (*layout_create)(LtLayout*, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld);
  LtStatus (*layout_destroy)(LtLayout);
  LtStatus (*layout_set)(LtLayout, int attr, const void* buf, size_t size);
  LtStatus (*pref_create)(LtPref*);
  LtStatus (*pref_destroy)(LtPref);
  LtStatus (*pref_set)(LtPref, int attr, const void* buf, size_t size);
  LtStatus (*heuristic)(LtHandle, LtDesc, LtLayout, LtLayout, LtLayout, LtLayout, LtPref, int requested,
                        LtHeuristic* results, int* returned);
  LtStatus (*matmul)(LtHandle, LtDesc, const void* alpha, const void* A, LtLayout, const void* B, LtLayout,
                     const void* beta, const void* C, LtLayout, void* D, LtLayout, const LtAlgo* algo, void* workspace,
                     size_t workspace_size, cudaStream_t stream);
  size_t (*version)(void);
};

// Everything a cached plan depends on (pointers only through their alignment; the bias's too,
// which the heuristic reads off CUBLASLT_MATMUL_DESC_BIAS_POINTER: 0 = no bias).
using PlanKey = std::tuple<int, int, int, int, int64_t, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int, int, int, int>;

struct Plan {
  bool usable = false;  // false: cuBLASLt declined this shape; gemm.cu's kernel runs it
  LtDesc desc = nullptr;
  LtLayout a = nullptr, b = nullptr, d = nullptr;
  LtAlgo algo{};
  size_t workspace = 0;
};

struct DeviceLt {
  std::mutex mu;
  LtHandle handle = nullptr;
  void* workspace = nullptr;
  bool failed = false;  // handle or workspace could not be made: never try again on this device
  std::map<PlanKey, Plan> plans;
};

std::mutex g_mu;
LtApi g_lt{};
std::atomic<bool> g_loaded{false};
constexpr int kMaxDevices = 64;
DeviceLt g_dev[kMaxDevices];

cudaDataType_t data_type(int dtype) { return dtype == 1 ? CUDA_R_16F : dtype == 2 ? CUDA_R_16BF : CUDA_R_32F; }

int alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && v % uintptr_t(a)) a /= 2;
  return a;
}

LtLayout make_layout(cudaDataType_t t, uint64_t rows, uint64_t cols, int64_t ld, int32_t batch, int64_t stride) {
  LtLayout l = nullptr;
  if (g_lt.layout_create(&l, t, rows, cols, ld) != 0) return nullptr;
  if (batch > 1 && (g_lt.layout_set(l, kLayoutBatchCount, &batch, sizeof batch) != 0 ||
                    g_lt.layout_set(l, kLayoutBatchStride, &stride, sizeof stride) != 0)) {
    g_lt.layout_destroy(l);
    return nullptr;
  }
  return l;
}

// Builds the descriptors and asks cuBLASLt's heuristic for one algorithm.
Plan make_plan_once(DeviceLt& d, const PiaGemmArgs& g) {
  Plan p;
  const cudaDataType_t t = data_type(g.dtype);
  const int32_t batch = int32_t(g.batch);
  if (g_lt.desc_create(&p.desc, kComputeType32F, CUDA_R_32F) != 0) return p;
  const int32_t op_a = g.trans_b ? kOpT : kOpN, op_b = kOpN;
  const uint32_t epilogue = g.bias ? kEpilogueBias : kEpilogueDefault;
  const void* bias = g.bias;
  if (g_lt.desc_set(p.desc, kDescTransA, &op_a, sizeof op_a) != 0 ||
      g_lt.desc_set(p.desc, kDescTransB, &op_b, sizeof op_b) != 0 ||
      g_lt.desc_set(p.desc, kDescEpilogue, &epilogue, sizeof epilogue) != 0 ||
      (g.bias && g_lt.desc_set(p.desc, kDescBiasPointer, &bias, sizeof bias) != 0)) {
    return p;
  }
  // cuBLASLt's A (m × k = N × K): our B, [K, N] row-major, or [N, K] row-major when trans_b.
  p.a = g.trans_b ? make_layout(t, uint64_t(g.K), uint64_t(g.N), g.ldb, batch, g.stride_b)
                  : make_layout(t, uint64_t(g.N), uint64_t(g.K), g.ldb, batch, g.stride_b);
  // cuBLASLt's B (k × n = K × M): our A, [M, K] row-major.
  p.b = make_layout(t, uint64_t(g.K), uint64_t(g.M), g.lda, batch, g.stride_a);
  p.d = make_layout(t, uint64_t(g.N), uint64_t(g.M), g.ldc, batch, g.stride_c);
  if (!p.a || !p.b || !p.d) return p;
  LtPref pref = nullptr;
  if (g_lt.pref_create(&pref) != 0) return p;
  const uint64_t ws = kWorkspaceBytes;
  const uint32_t align_a = uint32_t(alignment(g.B)), align_b = uint32_t(alignment(g.A)),
                 align_d = uint32_t(alignment(g.C));
  LtHeuristic h{};
  int found = 0;
  const bool ok = g_lt.pref_set(pref, kPrefMaxWorkspace, &ws, sizeof ws) == 0 &&
                  g_lt.pref_set(pref, kPrefAlignA, &align_a, sizeof align_a) == 0 &&
                  g_lt.pref_set(pref, kPrefAlignB, &align_b, sizeof align_b) == 0 &&
                  g_lt.pref_set(pref, kPrefAlignC, &align_d, sizeof align_d) == 0 &&
                  g_lt.pref_set(pref, kPrefAlignD, &align_d, sizeof align_d) == 0 &&
                  g_lt.heuristic(d.handle, p.desc, p.a, p.b, p.d, p.d, pref, 1, &h, &found) == 0 && found > 0 &&
                  h.state == 0 && h.workspace_size <= kWorkspaceBytes;
  g_lt.pref_destroy(pref);
  if (!ok) return p;
  p.algo = h.algo;
  p.workspace = h.workspace_size;
  p.usable = true;
  return p;
}

// A declined shape keeps only its `usable = false` marker in the cache, not its descriptors.
void release(Plan& p) {
  if (p.a) g_lt.layout_destroy(p.a);
  if (p.b) g_lt.layout_destroy(p.b);
  if (p.d) g_lt.layout_destroy(p.d);
  if (p.desc) g_lt.desc_destroy(p.desc);
  p = Plan{};
}

Plan make_plan(DeviceLt& d, const PiaGemmArgs& g) {
  Plan p = make_plan_once(d, g);
  if (!p.usable) release(p);
  return p;
}

bool device_ready(int device, DeviceLt& d) {
  if (d.failed) return false;
  if (d.handle) return true;
  if (g_lt.create(&d.handle) != 0) {
    d.handle = nullptr;
    d.failed = true;
    return false;
  }
  // Shared by every later gemm, graphs' replays included: never from a graph's pool.
  if (dev_malloc_shared(device, kWorkspaceBytes, &d.workspace) != PIA_CUDA_OK) {
    d.workspace = nullptr;
    d.failed = true;
    return false;
  }
  return true;
}

}  // namespace

int use_cublaslt(const char* path, char* info, size_t infolen) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (info && infolen) info[0] = 0;
  if (g_loaded) return PIA_CUDA_OK;
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    set_error("could not open %s: %s", path, e ? e : "unknown error");
    return PIA_CUDA_ERR;
  }
  LtApi api{};
  const bool all = sym(h, "cublasLtCreate", api.create) && sym(h, "cublasLtMatmulDescCreate", api.desc_create) &&
                   sym(h, "cublasLtMatmulDescDestroy", api.desc_destroy) &&
                   sym(h, "cublasLtMatmulDescSetAttribute", api.desc_set) &&
                   sym(h, "cublasLtMatrixLayoutCreate", api.layout_create) &&
                   sym(h, "cublasLtMatrixLayoutDestroy", api.layout_destroy) &&
                   sym(h, "cublasLtMatrixLayoutSetAttribute", api.layout_set) &&
                   sym(h, "cublasLtMatmulPreferenceCreate", api.pref_create) &&
                   sym(h, "cublasLtMatmulPreferenceDestroy", api.pref_destroy) &&
                   sym(h, "cublasLtMatmulPreferenceSetAttribute", api.pref_set) &&
                   sym(h, "cublasLtMatmulAlgoGetHeuristic", api.heuristic) && sym(h, "cublasLtMatmul", api.matmul) &&
                   sym(h, "cublasLtGetVersion", api.version);
  if (!all) {
    set_error("%s lacks cuBLASLt entry points", path);
    dlclose(h);
    return PIA_CUDA_ERR;
  }
  const size_t v = api.version();  // major·10000 + minor·100 + patch
  if (v < 110000) {
    set_error("%s is cuBLASLt %zu; 11.0 or newer is needed", path, v);
    dlclose(h);
    return PIA_CUDA_ERR;
  }
  if (info && infolen) std::snprintf(info, infolen, "%zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
  g_lt = api;  // the handle stays open for the life of the process
  g_loaded = true;
  return PIA_CUDA_OK;
}

bool cublaslt_gemm(int device, const PiaGemmArgs& g, int* rc) {
  if (!g_loaded || device < 0 || device >= kMaxDevices) return false;
  // What the plan cannot express goes to gemm.cu: a row bias (convolutions), K = 0 (the epilogue
  // alone), a broadcast batch operand, an output that is not one dense block (the activation
  // below runs over it as a flat array), sizes past cuBLASLt's int32 batch.
  if (g.bias_per_row || g.K == 0 || g.batch > 65535 || g.ldc != g.N) return false;
  if (g.batch > 1 && (g.stride_a == 0 || g.stride_b == 0 || g.stride_c != g.M * g.N)) return false;
  DeviceLt& d = g_dev[device];
  std::lock_guard<std::mutex> lock(d.mu);
  if (!device_ready(device, d)) return false;
  const PlanKey key{g.dtype, int(g.M), int(g.N), int(g.K), g.batch, g.trans_b, g.lda, g.ldb, g.ldc,
                    g.stride_a, g.stride_b, g.stride_c, g.bias ? alignment(g.bias) : 0, alignment(g.A),
                    alignment(g.B), alignment(g.C)};
  auto it = d.plans.find(key);
  if (it == d.plans.end()) it = d.plans.emplace(key, make_plan(d, g)).first;
  Plan& p = it->second;
  if (!p.usable) return false;
  const void* bias = g.bias;  // the cached descriptor holds the last call's pointer
  if (g.bias && g_lt.desc_set(p.desc, kDescBiasPointer, &bias, sizeof bias) != 0) return false;
  const float alpha = 1.f, beta = 0.f;
  if (g_lt.matmul(d.handle, p.desc, &alpha, g.B, p.a, g.A, p.b, &beta, g.C, p.d, g.C, p.d, &p.algo,
                  p.workspace ? d.workspace : nullptr, p.workspace, stream()) != 0) {
    if (capturing_here(device)) {
      // Falling back to gemm.cu here would record another kernel than the eager run used (and
      // end cuBLASLt for this shape): fail the capture instead, the step then runs eagerly.
      set_error("cublasLtMatmul failed during CUDA graph capture");
      *rc = PIA_CUDA_ERR;
      return true;
    }
    release(p);  // not again for this shape
    return false;
  }
  *rc = PIA_CUDA_OK;
  // cuBLASLt's fused activations are ReLU and tanh-GELU only; ours (SiLU, erf-GELU, ...) run after.
  if (g.act != 0) *rc = activation(device, g.dtype, g.C, g.C, g.M * g.N * g.batch, g.act);
  return true;
}

bool cublaslt_loaded() { return g_loaded; }

}  // namespace pia_cuda
