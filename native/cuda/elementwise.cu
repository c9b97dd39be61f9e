// Elementwise ops, broadcasting binaries, strided copies (contiguous(), cat) and small gathers.
// All math in f32; every kernel walks its elements with a grid-stride loop.
#include <cstring>

#include "common.cuh"
#include "kernels.cuh"
#include "strided_host.h"
#include "transpose_body.cuh"

namespace pia_cuda {

namespace {

// Shape and two operands' strides in index type I, passed by value (kernel parameter space).
// I is int32_t wherever strided::fits_int32 allows: a 64-bit division costs several times a
// 32-bit one, and these loops divide once per dim per element.
template <typename I>
struct StridesI {
  int nd;
  I shape[PIA_CUDA_MAX_DIMS];
  I s0[PIA_CUDA_MAX_DIMS];
  I s1[PIA_CUDA_MAX_DIMS];
};

template <typename I>
StridesI<I> narrow_to(const strided::Layout& l) {
  StridesI<I> st{};
  st.nd = l.nd;
  for (int d = 0; d < l.nd; ++d) {
    st.shape[d] = I(l.shape[d]);
    st.s0[d] = I(l.s0[d]);
    st.s1[d] = I(l.s1[d]);
  }
  return st;
}

// Offsets of the i-th element (row-major over shape) in the two strided operands.
template <typename I>
__device__ __forceinline__ void offsets(const StridesI<I>& st, I i, I& o0, I& o1) {
  o0 = 0;
  o1 = 0;
  for (int d = st.nd - 1; d >= 0; --d) {
    const I n = st.shape[d];
    const I q = i / n;
    const I c = i - q * n;
    i = q;
    o0 += c * st.s0[d];
    o1 += c * st.s1[d];
  }
}

// The grid-stride counter stays 64-bit (i + stride may pass 2³¹ on the last lap); the index
// arithmetic runs in I.
#define PIA_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__device__ __forceinline__ float binop(int op, float a, float b) {
  switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    default: return a / b;
  }
}

template <typename T, typename I>
__global__ void binary_kernel(int op, StridesI<I> st, int64_t n, const T* a, const T* b, T* y) {
  PIA_GRID_STRIDE(i, n) {
    I oa, ob;
    offsets<I>(st, I(i), oa, ob);
    y[i] = from_f<T>(binop(op, to_f(a[oa]), to_f(b[ob])));
  }
}

// Both operands laid out like y (residual adds and the like): no index arithmetic at all.
template <typename T>
__global__ void binary_dense_kernel(int op, int64_t n, const T* a, const T* b, T* y) {
  PIA_GRID_STRIDE(i, n) { y[i] = from_f<T>(binop(op, to_f(a[i]), to_f(b[i]))); }
}

// a[i] += alpha · b[ob(i)] (a contiguous: operand 0 of st only guides the coalescing).
template <typename T, typename I>
__global__ void add_inplace_kernel(StridesI<I> st, int64_t n, T* a, const T* b, float alpha) {
  PIA_GRID_STRIDE(i, n) {
    I unused, ob;
    offsets<I>(st, I(i), unused, ob);
    a[i] = from_f<T>(to_f(a[i]) + alpha * to_f(b[ob]));
  }
}

template <typename T>
__global__ void add_inplace_dense_kernel(int64_t n, T* a, const T* b, float alpha) {
  PIA_GRID_STRIDE(i, n) { a[i] = from_f<T>(to_f(a[i]) + alpha * to_f(b[i])); }
}

// Copies raw elements of `Word` size (2 or 4 bytes): dtype does not matter.
template <typename Word, typename I>
__global__ void strided_copy_kernel(StridesI<I> st, int64_t n, const Word* src, Word* dst) {
  PIA_GRID_STRIDE(i, n) {
    I os, od;
    offsets<I>(st, I(i), os, od);
    dst[od] = src[os];
  }
}

// transpose_body.cuh's execution context on the GPU.
struct TransposeGpu {
  __device__ __forceinline__ int thread() const { return int(threadIdx.x); }
  __device__ __forceinline__ int block_x() const { return int(blockIdx.x); }
  __device__ __forceinline__ int block_y() const { return int(blockIdx.y); }
  __device__ __forceinline__ int block_z() const { return int(blockIdx.z); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  template <typename Word>
  __device__ __forceinline__ Word lds(const Word* p) const { return *p; }
  template <typename Word>
  __device__ __forceinline__ void sts(Word* p, Word v) const { *p = v; }
};

template <typename Word>
__global__ void __launch_bounds__(pia_transpose::kThreads) transpose_kernel(strided::Transpose t, const Word* src,
                                                                            Word* dst) {
  __shared__ pia_transpose::Shared<Word> sh;
  TransposeGpu ctx;
  pia_transpose::tile(ctx, sh, src, dst, t);
}

template <typename T>
__global__ void affine_kernel(const T* x, T* y, int64_t n, float s, float t) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = from_f<T>(fmaf(to_f(x[i]), s, t));
  }
}

template <typename T>
__global__ void activation_kernel(const T* x, T* y, int64_t n, int act) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    y[i] = from_f<T>(apply_act(to_f(x[i]), act));
  }
}

// diffusers GEGLU: hidden, gate = x.chunk(2, -1); hidden * gelu(gate) (erf GELU). I as in
// StridesI: 32-bit index arithmetic whenever the tensor allows.
template <typename T, typename I>
__global__ void geglu_kernel(const T* x, T* y, I rows, I n) {
  const int64_t total = int64_t(rows) * n;
  PIA_GRID_STRIDE(i, total) {
    const I k = I(i), r = k / n, c = k - r * n;
    const T* xr = x + int64_t(r) * 2 * n;
    y[i] = from_f<T>(to_f(xr[c]) * apply_act(to_f(xr[n + c]), 2));
  }
}

template <typename T, typename I>
__global__ void upsample_kernel(const T* x, T* y, I planes, I H, I W) {
  const I W2 = 2 * W, H2 = 2 * H;
  const int64_t total = int64_t(planes) * H2 * W2;
  PIA_GRID_STRIDE(i, total) {
    const I k = I(i), t = k / W2, ox = k - t * W2, pl = t / H2, oy = t - pl * H2;
    y[i] = x[(int64_t(pl) * H + oy / 2) * W + ox / 2];
  }
}

template <typename T>
__global__ void embedding_kernel(const T* table, const int64_t* ids, int64_t n, int64_t D, T* y) {
  const int64_t total = n * D;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, c = i - r * D;
    y[i] = table[ids[r] * D + c];
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] = from_f<D>(to_f(src[i]));
  }
}

// The operands' layout, merged as far as both allow (strided_host.h). s0/s1 null: contiguous.
int make_layout(const PiaStridedShape* shape, const int64_t* s0, const int64_t* s1, strided::Layout& out, int64_t& n) {
  if (shape->ndim < 0 || shape->ndim > PIA_CUDA_MAX_DIMS) {
    set_error("at most %d dims are supported, got %d", PIA_CUDA_MAX_DIMS, shape->ndim);
    return PIA_CUDA_ERR_ARG;
  }
  strided::Layout l;
  l.nd = shape->ndim;
  int64_t contiguous = 1;
  n = 1;
  for (int d = l.nd - 1; d >= 0; --d) {
    l.shape[d] = shape->shape[d];
    l.s0[d] = s0 ? s0[d] : contiguous;
    l.s1[d] = s1 ? s1[d] : contiguous;
    contiguous *= shape->shape[d];
    n *= shape->shape[d];
  }
  out = strided::coalesce(l);
  return PIA_CUDA_OK;
}

}  // namespace

int binary(int device, int dtype, int op, const PiaStridedShape* shape, const void* a, const int64_t* a_strides,
           const void* b, const int64_t* b_strides, void* y) {
  if (int rc = use_device(device)) return rc;
  if (op < 0 || op > 3) {
    set_error("binary: unknown op %d", op);
    return PIA_CUDA_ERR_ARG;
  }
  strided::Layout l;
  int64_t n = 0;
  if (int rc = make_layout(shape, a_strides, b_strides, l, n)) return rc;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  const unsigned g = blocks_for(n);
  if (strided::dense(l)) {
    PIA_DISPATCH(dtype, binary_dense_kernel<T><<<g, 256, 0, s>>>(op, n, static_cast<const T*>(a),
                                                                   static_cast<const T*>(b), static_cast<T*>(y)));
  } else if (strided::fits_int32(l)) {
    PIA_DISPATCH(dtype, binary_kernel<T, int32_t><<<g, 256, 0, s>>>(op, narrow_to<int32_t>(l), n,
                                                                      static_cast<const T*>(a),
                                                                      static_cast<const T*>(b), static_cast<T*>(y)));
  } else {
    PIA_DISPATCH(dtype, binary_kernel<T, int64_t><<<g, 256, 0, s>>>(op, narrow_to<int64_t>(l), n,
                                                                      static_cast<const T*>(a),
                                                                      static_cast<const T*>(b), static_cast<T*>(y)));
  }
  return check_launch("binary kernel");
}

int add_inplace(int device, int dtype, const PiaStridedShape* shape, void* a, const void* b, const int64_t* b_strides,
                float alpha) {
  if (int rc = use_device(device)) return rc;
  strided::Layout l;
  int64_t n = 0;
  if (int rc = make_layout(shape, nullptr, b_strides, l, n)) return rc;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  const unsigned g = blocks_for(n);
  if (strided::dense(l)) {
    PIA_DISPATCH(dtype, add_inplace_dense_kernel<T><<<g, 256, 0, s>>>(n, static_cast<T*>(a),
                                                                        static_cast<const T*>(b), alpha));
  } else if (strided::fits_int32(l)) {
    PIA_DISPATCH(dtype, add_inplace_kernel<T, int32_t><<<g, 256, 0, s>>>(narrow_to<int32_t>(l), n,
                                                                           static_cast<T*>(a),
                                                                           static_cast<const T*>(b), alpha));
  } else {
    PIA_DISPATCH(dtype, add_inplace_kernel<T, int64_t><<<g, 256, 0, s>>>(narrow_to<int64_t>(l), n,
                                                                           static_cast<T*>(a),
                                                                           static_cast<const T*>(b), alpha));
  }
  return check_launch("add_ kernel");
}

int affine(int device, int dtype, const void* x, void* y, int64_t n, float sc, float t) {
  if (int rc = use_device(device)) return rc;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  PIA_DISPATCH(dtype, affine_kernel<T><<<blocks_for(n), 256, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                      n, sc, t));
  return check_launch("affine kernel");
}

int activation(int device, int dtype, const void* x, void* y, int64_t n, int act) {
  if (int rc = use_device(device)) return rc;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  PIA_DISPATCH(dtype, activation_kernel<T><<<blocks_for(n), 256, 0, s>>>(static_cast<const T*>(x),
                                                                          static_cast<T*>(y), n, act));
  return check_launch("activation kernel");
}

int geglu(int device, int dtype, const void* x, void* y, int64_t rows, int64_t n) {
  if (int rc = use_device(device)) return rc;
  if (rows == 0 || n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  const unsigned g = blocks_for(rows * n);
  // The input holds 2·rows·n elements: that is what must fit 32 bits.
  if (2 * rows * n <= 0x7fffffffLL) {
    PIA_DISPATCH(dtype, geglu_kernel<T, int32_t><<<g, 256, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                     int32_t(rows), int32_t(n)));
  } else {
    PIA_DISPATCH(dtype, geglu_kernel<T, int64_t><<<g, 256, 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                     rows, n));
  }
  return check_launch("geglu kernel");
}

int upsample_nearest2x(int device, int dtype, const void* x, void* y, int64_t planes, int64_t H, int64_t W) {
  if (int rc = use_device(device)) return rc;
  const int64_t n = planes * 4 * H * W;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  if (n <= 0x7fffffffLL) {
    PIA_DISPATCH(dtype, upsample_kernel<T, int32_t><<<blocks_for(n), 256, 0, s>>>(
                            static_cast<const T*>(x), static_cast<T*>(y), int32_t(planes), int32_t(H), int32_t(W)));
  } else {
    PIA_DISPATCH(dtype, upsample_kernel<T, int64_t><<<blocks_for(n), 256, 0, s>>>(
                            static_cast<const T*>(x), static_cast<T*>(y), planes, H, W));
  }
  return check_launch("upsample kernel");
}

int embedding(int device, int dtype, const void* table, int64_t V, int64_t D, const int64_t* host_ids, int64_t n,
              void* y) {
  if (int rc = use_device(device)) return rc;
  for (int64_t i = 0; i < n; ++i) {
    if (host_ids[i] < 0 || host_ids[i] >= V) {
      set_error("embedding: id %lld out of range [0, %lld)", (long long)host_ids[i], (long long)V);
      return PIA_CUDA_ERR_ARG;
    }
  }
  if (n == 0 || D == 0) return PIA_CUDA_OK;
  void* ids = nullptr;
  const size_t bytes = size_t(n) * sizeof(int64_t);
  if (int rc = scratch_alloc(device, bytes, &ids)) return rc;
  int rc = memcpy_h2d(device, ids, host_ids, bytes);
  if (rc == PIA_CUDA_OK) {
    cudaStream_t s = stream();
    switch (dtype) {
      case 0:
        embedding_kernel<float><<<blocks_for(n * D), 256, 0, s>>>(static_cast<const float*>(table),
                                                                  static_cast<const int64_t*>(ids), n, D,
                                                                  static_cast<float*>(y));
        break;
      case 1:
        embedding_kernel<__half><<<blocks_for(n * D), 256, 0, s>>>(static_cast<const __half*>(table),
                                                                   static_cast<const int64_t*>(ids), n, D,
                                                                   static_cast<__half*>(y));
        break;
      case 2:
        embedding_kernel<__nv_bfloat16><<<blocks_for(n * D), 256, 0, s>>>(
            static_cast<const __nv_bfloat16*>(table), static_cast<const int64_t*>(ids), n, D,
            static_cast<__nv_bfloat16*>(y));
        break;
      default: set_error("embedding: unknown dtype code %d", dtype); rc = PIA_CUDA_ERR_ARG;
    }
    if (rc == PIA_CUDA_OK) rc = check_launch("embedding kernel");
  }
  scratch_free(device, ids);  // stream order keeps it alive for the kernel
  return rc;
}

namespace {

template <typename Word>
int copy_words(const strided::Layout& l, int64_t n, const void* src, void* dst) {
  cudaStream_t s = stream();
  const Word* from = static_cast<const Word*>(src);
  Word* to = static_cast<Word*>(dst);
  if (strided::dense(l)) {
    return check(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(Word), cudaMemcpyDeviceToDevice, s),
                 "cudaMemcpyAsync (on device)");
  }
  strided::Transpose t;
  if (strided::as_transpose(l, t) && t.B <= 65535 && (t.C + pia_transpose::kTile - 1) / pia_transpose::kTile <= 65535) {
    const dim3 grid{unsigned((t.R + pia_transpose::kTile - 1) / pia_transpose::kTile),
                    unsigned((t.C + pia_transpose::kTile - 1) / pia_transpose::kTile), unsigned(t.B)};
    transpose_kernel<Word><<<grid, pia_transpose::kThreads, 0, s>>>(t, from, to);
  } else if (strided::fits_int32(l)) {
    strided_copy_kernel<Word, int32_t><<<blocks_for(n), 256, 0, s>>>(narrow_to<int32_t>(l), n, from, to);
  } else {
    strided_copy_kernel<Word, int64_t><<<blocks_for(n), 256, 0, s>>>(narrow_to<int64_t>(l), n, from, to);
  }
  return check_launch("strided copy kernel");
}

}  // namespace

int strided_copy(int device, size_t elem_size, const PiaStridedShape* shape, const void* src,
                 const int64_t* src_strides, void* dst, const int64_t* dst_strides) {
  if (int rc = use_device(device)) return rc;
  strided::Layout l;
  int64_t n = 0;
  if (int rc = make_layout(shape, src_strides, dst_strides, l, n)) return rc;
  if (n == 0) return PIA_CUDA_OK;
  if (elem_size == 4) return copy_words<uint32_t>(l, n, src, dst);
  if (elem_size == 2) return copy_words<uint16_t>(l, n, src, dst);
  set_error("strided_copy: element size %zu", elem_size);
  return PIA_CUDA_ERR_ARG;
}

int convert(int device, int src_dtype, const void* src, int dst_dtype, void* dst, int64_t n) {
  if (int rc = use_device(device)) return rc;
  if (n == 0) return PIA_CUDA_OK;
  cudaStream_t s = stream();
  const unsigned g = blocks_for(n);
  // Outer dispatch on the source type, inner on the destination (nine small kernels).
  switch (src_dtype) {
    case 0: {
      PIA_DISPATCH(dst_dtype, convert_kernel<float, T><<<g, 256, 0, s>>>(static_cast<const float*>(src),
                                                                          static_cast<T*>(dst), n));
    } break;
    case 1: {
      PIA_DISPATCH(dst_dtype, convert_kernel<__half, T><<<g, 256, 0, s>>>(static_cast<const __half*>(src),
                                                                           static_cast<T*>(dst), n));
    } break;
    case 2: {
      PIA_DISPATCH(dst_dtype, convert_kernel<__nv_bfloat16, T><<<g, 256, 0, s>>>(
                                  static_cast<const __nv_bfloat16*>(src), static_cast<T*>(dst), n));
    } break;
    default: set_error("convert: unknown dtype code %d", src_dtype); return PIA_CUDA_ERR_ARG;
  }
  return check_launch("convert kernel");
}

}  // namespace pia_cuda
