#pragma once
// The entry points each kernel file of libpia_cuda.so defines; backend.cu puts them in the
// PiaCudaOps table (see cuda_api.h for their contracts).
#include "cuda_api.h"

namespace pia_cuda {

// memory.cu
int dev_malloc(int device, size_t bytes, void** out);
void dev_free(int device, void* p);
int memcpy_h2d(int device, void* dst, const void* src, size_t bytes);
int memcpy_d2h(int device, void* dst, const void* src, size_t bytes);
int memset_zero(int device, void* dst, size_t bytes);
int synchronize(int device);
int memory_stats(int device, size_t* in_use, size_t* peak_in_use, size_t* reserved, size_t* peak_reserved);
int reset_peak(int device);
int empty_cache(int device);
int timer_start(int device);
int timer_stop(int device, double* seconds);
int capture_begin(int device);
int capture_end(int device, void** graph);
void capture_abort(int device);
int graph_launch(int device, void* graph);
void graph_destroy(int device, void* graph);

// gemm.cu
int gemm(int device, const PiaGemmArgs* a);
int conv2d(int device, const PiaConv2dArgs* a);
// gemm_pipelined.cu: the cp.async tensor-core GEMM, for f16/bf16 operands it can copy in 16-byte
// chunks (gemm_pipelined_fits); the caller has checked the sizes as gemm() does.
bool gemm_pipelined_fits(const PiaGemmArgs& a);
int gemm_pipelined(const PiaGemmArgs& a);
// conv_im2col.cu: f16/bf16 convolution as column blocks + gemm_pipelined; *handled false (and
// nothing done) when the shape does not suit it.
int conv2d_im2col(int device, const PiaConv2dArgs* a, bool* handled);
// conv2d on our own kernels (1×1 as a GEMM, column blocks + gemm_pipelined in f16/bf16, else the
// implicit GEMM), never cuDNN (cudnn.cu times it against cuDNN): the device is current and the
// arguments were checked by conv2d.
int conv2d_implicit_gemm(const PiaConv2dArgs& a);

// norm.cu
int group_norm(int device, int dtype, const void* x, void* y, int64_t N, int64_t frames, int64_t C, int64_t S,
               int64_t groups, const void* gamma, const void* beta, float eps, int act);
int layer_norm(int device, int dtype, const void* x, void* y, int64_t rows, int64_t D, const void* gamma,
               const void* beta, float eps, const void* add, int64_t add_div, int64_t add_period);

// attention.cu (dispatch; the FMA kernel for f32, head dims above 160 and older GPUs)
int attention(int device, const PiaAttentionArgs* a);

// attention_tc.cu: the tensor-core kernel, for f16/bf16 with D, Dv <= 160 on sm_80+ (the current
// device). attention_tc assumes attention_tc_supported and arguments attention() has checked.
bool attention_tc_supported(const PiaAttentionArgs* a);
int attention_tc(const PiaAttentionArgs* a);

// elementwise.cu
int binary(int device, int dtype, int op, const PiaStridedShape* shape, const void* a, const int64_t* a_strides,
           const void* b, const int64_t* b_strides, void* y);
int add_inplace(int device, int dtype, const PiaStridedShape* shape, void* a, const void* b, const int64_t* b_strides,
                float alpha);
int affine(int device, int dtype, const void* x, void* y, int64_t n, float s, float t);
int activation(int device, int dtype, const void* x, void* y, int64_t n, int act);
int geglu(int device, int dtype, const void* x, void* y, int64_t rows, int64_t n);
int upsample_nearest2x(int device, int dtype, const void* x, void* y, int64_t planes, int64_t H, int64_t W);
int embedding(int device, int dtype, const void* table, int64_t V, int64_t D, const int64_t* host_ids, int64_t n,
              void* y);
int strided_copy(int device, size_t elem_size, const PiaStridedShape* shape, const void* src,
                 const int64_t* src_strides, void* dst, const int64_t* dst_strides);
int convert(int device, int src_dtype, const void* src, int dst_dtype, void* dst, int64_t n);

// fft.cu
int fourier_filter(int device, int dtype, const void* x, void* y, int64_t planes, int64_t H, int64_t W,
                   const int64_t* row_freqs, int nrows, const int64_t* col_freqs, int ncols, double gain);

}  // namespace pia_cuda
