#pragma once
// The C ABI between the core (always built) and libpia_cuda.so (built when nvcc is found).
// The core dlopens the library only after libcuda.so.1 opens, so nothing here may need CUDA headers.
//
// Device pointers cross this boundary as void*. Every op runs on the library's one stream per
// device (stream order makes the caching allocator's reuse safe); copies to the host wait for it.
// While a thread captures a graph on a device, the other threads' calls on that device wait.
// dtype codes are pia::DType's order: 0 = f32, 1 = f16, 2 = bf16. Activation codes are
// pia::Activation's order: 0 none, 1 SiLU, 2 GELU (erf), 3 GELU (tanh), 4 QuickGELU.
#include <stddef.h>
#include <stdint.h>

#define PIA_CUDA_ABI_VERSION 5

// Return codes of the ops table; the message of the last failure on this thread is last_error().
#define PIA_CUDA_OK 0
#define PIA_CUDA_ERR 1
#define PIA_CUDA_ERR_OOM 2
#define PIA_CUDA_ERR_ARG 3

// Which convolutions cuDNN runs once use_cudnn succeeded (set_conv_policy). f32 is the parity
// mode: only CUDNN_ALL sends it to cuDNN (FMA math, never TF32), so that its results do not depend
// on which library was found or which algorithm won a timing.
#define PIA_CUDA_CONV_OURS 0        // our implicit-GEMM kernel only (PIA_DISABLE_CUDNN's semantics)
#define PIA_CUDA_CONV_TUNED 1       // f16/bf16: time both on a shape's first call, keep the faster (default)
#define PIA_CUDA_CONV_CUDNN 2       // f16/bf16: cuDNN wherever it accepts the call, untimed (PIA_CUDNN_AUTOTUNE=0)
#define PIA_CUDA_CONV_CUDNN_ALL 3   // every dtype, f32 included: for tests and benchmarks

#define PIA_CUDA_MAX_DIMS 8
#define PIA_CUDA_MAX_FREQS 64

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

// C = act(A · B + bias), batched with element strides (0 broadcasts one operand over the batch).
// A [M, K] row-major (lda); B [K, N] row-major (ldb), or [N, K] when trans_b; C [M, N] (ldc).
// bias has N entries (one per column: torch.nn.Linear) or, with bias_per_row, M.
struct PiaGemmArgs {
  int dtype;
  int64_t M, N, K, batch;
  const void* A;
  int64_t lda, stride_a;
  const void* B;
  int64_t ldb, stride_b;
  int trans_b;
  void* C;
  int64_t ldc, stride_c;
  const void* bias;
  int bias_per_row;
  int act;
};

// torch.nn.Conv2d (groups 1, dilation 1) as an implicit GEMM: x [N, C, H, W], w [Co, C, kh, kw],
// y [N, Co, Ho, Wo]; padding top/left shift the window (bottom/right only bound Ho/Wo).
struct PiaConv2dArgs {
  int dtype;
  const void* x;
  int64_t N, C, H, W;
  const void* w;
  int64_t Co, kh, kw;
  const void* bias;  // [Co] or null
  int stride, pad_top, pad_left;
  void* y;
  int64_t Ho, Wo;
  int act;
};

// softmax(scale · q kᵀ) v per (batch, head), online softmax over key tiles. A sequence row of
// batch b, position s starts at (b / batch_inner) · outer + (b % batch_inner) · inner + s · seq
// (elements); head h adds h · D (q, k) or h · Dv (v, o). Ordinary [B, S, H·D] tensors have
// batch_inner 1, outer S·H·D, seq H·D; the temporal layout [B, F, HW, C] with frames as the
// sequence has batch B·HW, batch_inner HW, outer F·HW·C, inner C, seq HW·C.
struct PiaAttnStrides {
  int64_t outer, inner, seq;
};
struct PiaAttentionArgs {
  int dtype;
  const void* q;
  const void* k;
  const void* v;
  void* o;
  PiaAttnStrides sq, sk, sv, so;
  int64_t batch, batch_inner, Sq, Sk, heads, D, Dv;
  float scale;
  int causal;  // key j > query i masked (CLIP)
};

// Shapes with per-operand element strides, at most PIA_CUDA_MAX_DIMS dims.
struct PiaStridedShape {
  int ndim;
  int64_t shape[PIA_CUDA_MAX_DIMS];
};

// conv2d calls since the library was loaded, all devices together.
struct PiaConvStats {
  uint64_t cudnn_calls;         // run by cuDNN
  uint64_t own_calls;           // run by our implicit-GEMM kernel (not counting timing runs)
  uint64_t cudnn_failures;      // cuDNN calls that failed; that shape stays on our kernel
  uint64_t shapes_timed;        // shapes timed both ways (PIA_CUDA_CONV_TUNED)
  uint64_t shapes_cudnn_won;    // of those, shapes cuDNN was faster on
  int policy;                   // PIA_CUDA_CONV_*
  int cudnn_loaded;
  char last_failure[256];       // the last cuDNN failure, "" if none
};

struct PiaCudaOps {
  size_t size;  // sizeof(PiaCudaOps) as the library was built
  const char* (*last_error)(void);

  // --- memory: a caching allocator per device (freed blocks are kept for reuse) --------------------
  int (*malloc)(int device, size_t bytes, void** out);  // PIA_CUDA_ERR_OOM says needed vs free
  void (*free)(int device, void* p);
  int (*memcpy_h2d)(int device, void* dst, const void* src, size_t bytes);
  int (*memcpy_d2h)(int device, void* dst, const void* src, size_t bytes);  // waits for the stream
  int (*memset_zero)(int device, void* dst, size_t bytes);
  int (*synchronize)(int device);
  // in_use / peak_in_use: bytes handed out by the allocator; reserved: held from the driver.
  int (*memory_stats)(int device, size_t* in_use, size_t* peak_in_use, size_t* reserved, size_t* peak_reserved);
  int (*reset_peak)(int device);
  int (*empty_cache)(int device);
  // Device time between two calls of the same timer (events on the library's stream).
  int (*timer_start)(int device);
  int (*timer_stop)(int device, double* seconds);

  // --- ops -----------------------------------------------------------------------------------------
  int (*gemm)(int device, const PiaGemmArgs* a);
  int (*conv2d)(int device, const PiaConv2dArgs* a);
  // x [N·frames, C, S] -> y; statistics in f32 over frames × (C/groups) × S of each of the N
  // samples (frames 1: plain GroupNorm); affine per channel; act fused.
  int (*group_norm)(int device, int dtype, const void* x, void* y, int64_t N, int64_t frames, int64_t C, int64_t S,
                    int64_t groups, const void* gamma, const void* beta, float eps, int act);
  // add (or null) [add_period, D]: row r then gets add[(r / add_div) % add_period] (Backend::layer_norm_add).
  int (*layer_norm)(int device, int dtype, const void* x, void* y, int64_t rows, int64_t D, const void* gamma,
                    const void* beta, float eps, const void* add, int64_t add_div, int64_t add_period);
  int (*attention)(int device, const PiaAttentionArgs* a);
  // y (contiguous, shape) = a op b with strides per operand (0 on broadcast dims); op: pia::BinaryOp.
  int (*binary)(int device, int dtype, int op, const PiaStridedShape* shape, const void* a, const int64_t* a_strides,
                const void* b, const int64_t* b_strides, void* y);
  // a (contiguous, shape) += alpha · b (strided/broadcast).
  int (*add_inplace)(int device, int dtype, const PiaStridedShape* shape, void* a, const void* b,
                     const int64_t* b_strides, float alpha);
  int (*affine)(int device, int dtype, const void* x, void* y, int64_t n, float s, float t);
  int (*activation)(int device, int dtype, const void* x, void* y, int64_t n, int act);
  int (*geglu)(int device, int dtype, const void* x, void* y, int64_t rows, int64_t n);
  int (*upsample_nearest2x)(int device, int dtype, const void* x, void* y, int64_t planes, int64_t H, int64_t W);
  // ids live in host memory; out [n, D] = table rows.
  int (*embedding)(int device, int dtype, const void* table, int64_t V, int64_t D, const int64_t* host_ids, int64_t n,
                   void* y);
  // FreeU: y = x + gain · Re(ifft2(box ∘ fft2(x))) per [H, W] plane, the box given by its
  // unshifted row and column frequencies (at most PIA_CUDA_MAX_FREQS each).
  int (*fourier_filter)(int device, int dtype, const void* x, void* y, int64_t planes, int64_t H, int64_t W,
                        const int64_t* row_freqs, int nrows, const int64_t* col_freqs, int ncols, double gain);
  // dst[i] = src[i] over `shape` with element strides for both sides; elem_size 2 or 4 bytes.
  int (*strided_copy)(int device, size_t elem_size, const PiaStridedShape* shape, const void* src,
                      const int64_t* src_strides, void* dst, const int64_t* dst_strides);
  // Element type conversion of a contiguous buffer on the device.
  int (*convert)(int device, int src_dtype, const void* src, int dst_dtype, void* dst, int64_t n);

  // --- optional libraries ----------------------------------------------------------------------------
  // Opens cuBLASLt at `path` (found by the core: library_search.h) for every later gemm; writes its
  // version into info. Non-zero with last_error() when it cannot be used (gemm keeps our kernel).
  int (*use_cublaslt)(const char* path, char* info, size_t infolen);

  // --- cuDNN (appended in ABI 4) ----------------------------------------------------------------------
  // Opens cuDNN at `path` (library_search.h) and its sub-libraries from the same folder, checks it
  // with one small convolution, and from then on routes conv2d by set_conv_policy's policy; writes its
  // version ("9.1.0") into info. Non-zero with last_error() when it cannot be used.
  int (*use_cudnn)(const char* path, char* info, size_t infolen);
  // PIA_CUDA_CONV_*; returns the previous policy, or -1 for an unknown one (then nothing changes).
  int (*set_conv_policy)(int policy);
  int (*conv_stats)(PiaConvStats* out);
  // --- CUDA graphs (appended in ABI 5): a whole step recorded once and replayed ----------------------
  // Starts capturing the calling thread's work on the device's stream. Until capture_end or
  // capture_abort nothing runs, this thread's allocations come from a pool private to the graph,
  // and other threads' calls on the device wait. Copies to or from the host, synchronize,
  // empty_cache and timers fail inside a capture (what a replay would repeat must not be host I/O).
  int (*capture_begin)(int device);
  // Ends the capture and instantiates it: *graph owns the pool. On failure (an op that failed or
  // could not be captured) the capture and its pool are discarded; non-zero with last_error().
  int (*capture_end)(int device, void** graph);
  // Discards this thread's capture in progress, if any (after an op inside it failed).
  void (*capture_abort)(int device);
  // Replays a graph on the device's stream, asynchronously like any op.
  int (*graph_launch)(int device, void* graph);
  // Waits for the graph's replays, then frees it and its pool's free blocks (blocks still held by
  // a tensor join the shared pool).
  void (*graph_destroy)(int device, void* graph);
};

// Fills the table; returns 0, or non-zero when the caller's struct is larger than ours.
typedef int (*pia_cuda_get_ops_fn)(PiaCudaOps* out, size_t size);
}
