// GEMM and convolution (as an implicit GEMM) with a bias + activation epilogue.
//
// Two kernels share the tile loaders: f16/bf16 on tensor cores (wmma 16×16×16, fp32
// accumulators) and a plain tiled fp32 kernel for the parity-test mode. The B operand comes in
// three forms: row-major [K, N], transposed [N, K] (torch.nn.Linear weights) and the im2col view
// of an NCHW image, gathered on the fly so the column matrix is never materialised.
#include <mma.h>

#include "common.cuh"
#include "cublaslt.cuh"
#include "cudnn.cuh"
#include "gemm_pipelined_body.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

enum BMode { kDense = 0, kTrans = 1, kIm2col = 2 };

// The pipelined kernel's operands and epilogue, plus the implicit GEMM's window geometry.
struct GemmP : pia_gemm_pipe::Params {
  // im2col geometry (kIm2col): B(k, n) = x[c, oh·stride − pad_top + r, ow·stride − pad_left + s]
  // with k = (c·kh + r)·kw + s, n = oh·Wo + ow.
  int H, W, Wo, kh, kw, stride, pad_top, pad_left;
};

template <typename T, int MODE>
__device__ __forceinline__ T fetch_b(const GemmP& p, const T* B, int k, int n) {
  if (k >= p.K || n >= p.N) return from_f<T>(0.f);
  if (MODE == kDense) return B[int64_t(k) * p.ldb + n];
  if (MODE == kTrans) return B[int64_t(n) * p.ldb + k];
  const int khw = p.kh * p.kw;
  const int c = k / khw, rs = k - c * khw, r = rs / p.kw, s = rs - r * p.kw;
  const int oh = n / p.Wo, ow = n - oh * p.Wo;
  const int ih = oh * p.stride - p.pad_top + r, iw = ow * p.stride - p.pad_left + s;
  if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) return from_f<T>(0.f);
  return B[(int64_t(c) * p.H + ih) * p.W + iw];
}

template <typename T>
__device__ __forceinline__ void epilogue_store(const GemmP& p, T* C, int gm, int gn, float v) {
  if (p.bias) v += to_f(static_cast<const T*>(p.bias)[p.bias_per_row ? gm : gn]);
  C[int64_t(gm) * p.ldc + gn] = from_f<T>(apply_act(v, p.act));
}

// Loads the BK×BN tile of B at (k0, n0) into Bs (row stride LDB). Threads walk along the
// operand's contiguous axis so global reads coalesce.
template <typename T, int MODE, int BK, int BN, int LDB, int THREADS>
__device__ __forceinline__ void load_b_tile(const GemmP& p, const T* B, int k0, int n0, T* Bs) {
  if (MODE == kTrans) {
    for (int e = threadIdx.x; e < BK * BN; e += THREADS) {
      const int c = e / BK, r = e - c * BK;
      Bs[r * LDB + c] = fetch_b<T, MODE>(p, B, k0 + r, n0 + c);
    }
  } else {
    for (int e = threadIdx.x; e < BK * BN; e += THREADS) {
      const int r = e / BN, c = e - r * BN;
      Bs[r * LDB + c] = fetch_b<T, MODE>(p, B, k0 + r, n0 + c);
    }
  }
}

// --- tensor cores: 64×64 block tile, 4 warps of 32×32, K step 32 ----------------------------------
template <typename T, int MODE>
__global__ void __launch_bounds__(128) gemm_tc_kernel(GemmP p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  constexpr int BM = 64, BN = 64, BK = 32, LDA = BK + 8, LDB = BN + 8, LDC = BN + 4, THREADS = 128;
  // wmma needs 256-bit aligned fragment pointers: every offset below is a multiple of 32 bytes.
  __shared__ __align__(32) T As[BM * LDA];
  __shared__ __align__(32) T Bs[BK * LDB];
  __shared__ __align__(32) float Cs[BM * LDC];
  const int z = blockIdx.z;
  const T* A = static_cast<const T*>(p.A) + z * p.sa;
  const T* B = static_cast<const T*>(p.B) + z * p.sb;
  T* C = static_cast<T*>(p.C) + z * p.sc;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  for (int k0 = 0; k0 < p.K; k0 += BK) {
    for (int e = threadIdx.x; e < BM * BK; e += THREADS) {
      const int r = e / BK, c = e - r * BK;
      const int gm = m0 + r, gk = k0 + c;
      As[r * LDA + c] = (gm < p.M && gk < p.K) ? A[int64_t(gm) * p.lda + gk] : from_f<T>(0.f);
    }
    load_b_tile<T, MODE, BK, BN, LDB, THREADS>(p, B, k0, n0, Bs);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * LDA + kk, LDA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + kk * LDB + wn * 32 + j * 16, LDB);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < BM * BN; e += THREADS) {
    const int r = e / BN, c = e - r * BN;
    const int gm = m0 + r, gn = n0 + c;
    if (gm < p.M && gn < p.N) epilogue_store<T>(p, C, gm, gn, Cs[r * LDC + c]);
  }
#else
  __trap();  // built only for sm_80 and newer (CMAKE_CUDA_ARCHITECTURES)
#endif
}

// --- fp32: 64×64 block tile, 256 threads of 4×4 outputs, K step 16 -------------------------------
template <int MODE>
__global__ void __launch_bounds__(256) gemm_f32_kernel(GemmP p) {
  constexpr int BM = 64, BN = 64, BK = 16, THREADS = 256, LDB = BN + 1;
  __shared__ float As[BK][BM + 1];  // transposed: As[k][m]
  __shared__ float Bs[BK * LDB];
  const int z = blockIdx.z;
  const float* A = static_cast<const float*>(p.A) + z * p.sa;
  const float* B = static_cast<const float*>(p.B) + z * p.sb;
  float* C = static_cast<float*>(p.C) + z * p.sc;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int k0 = 0; k0 < p.K; k0 += BK) {
    for (int e = threadIdx.x; e < BM * BK; e += THREADS) {
      const int r = e / BK, c = e - r * BK;
      const int gm = m0 + r, gk = k0 + c;
      As[c][r] = (gm < p.M && gk < p.K) ? A[int64_t(gm) * p.lda + gk] : 0.f;
    }
    load_b_tile<float, MODE, BK, BN, LDB, THREADS>(p, B, k0, n0, Bs);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk * LDB + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gm = m0 + ty + 16 * i, gn = n0 + tx + 16 * j;
      if (gm < p.M && gn < p.N) epilogue_store<float>(p, C, gm, gn, acc[i][j]);
    }
}

template <int MODE>
int launch(int dtype, const GemmP& p, int batch) {
  const int64_t mt = (int64_t(p.M) + 63) / 64, nt = (int64_t(p.N) + 63) / 64;
  if (nt > 65535 || batch > 65535) {
    set_error("gemm: N = %d (or batch %d) is too large for one launch", p.N, batch);
    return PIA_CUDA_ERR_ARG;
  }
  const dim3 grid{unsigned(mt), unsigned(nt), unsigned(batch)};
  cudaStream_t s = stream();
  switch (dtype) {
    case 0: gemm_f32_kernel<MODE><<<grid, 256, 0, s>>>(p); break;
    case 1: gemm_tc_kernel<__half, MODE><<<grid, 128, 0, s>>>(p); break;
    case 2: gemm_tc_kernel<__nv_bfloat16, MODE><<<grid, 128, 0, s>>>(p); break;
    default: set_error("gemm: unknown dtype code %d", dtype); return PIA_CUDA_ERR_ARG;
  }
  return check_launch("gemm kernel");
}

bool fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

}  // namespace

int gemm(int device, const PiaGemmArgs* a) {
  if (int rc = use_device(device)) return rc;
  if (!fits_int(a->M) || !fits_int(a->N) || !fits_int(a->K) || a->batch < 0) {
    set_error("gemm: sizes out of range (M %lld, N %lld, K %lld)", (long long)a->M, (long long)a->N, (long long)a->K);
    return PIA_CUDA_ERR_ARG;
  }
  if (a->M == 0 || a->N == 0 || a->batch == 0) return PIA_CUDA_OK;
  if (int rc = PIA_CUDA_OK; cublaslt_gemm(device, *a, &rc)) return rc;
  if (gemm_pipelined_fits(*a)) return gemm_pipelined(*a);
  GemmP p{};
  p.M = int(a->M);
  p.N = int(a->N);
  p.K = int(a->K);
  p.A = a->A;
  p.lda = a->lda;
  p.sa = a->stride_a;
  p.B = a->B;
  p.ldb = a->ldb;
  p.sb = a->stride_b;
  p.C = a->C;
  p.ldc = a->ldc;
  p.sc = a->stride_c;
  p.bias = a->bias;
  p.bias_per_row = a->bias_per_row;
  p.act = a->act;
  // K == 0 still runs: the epilogue writes bias/activation of a zero product, as torch does.
  return a->trans_b ? launch<kTrans>(a->dtype, p, int(a->batch)) : launch<kDense>(a->dtype, p, int(a->batch));
}

int conv2d(int device, const PiaConv2dArgs* a) {
  if (int rc = use_device(device)) return rc;
  const int64_t K = a->C * a->kh * a->kw, N = a->Ho * a->Wo;
  if (!fits_int(a->Co) || !fits_int(K) || !fits_int(N) || !fits_int(a->C * a->H * a->W) || a->stride < 1) {
    set_error("conv2d: sizes out of range");
    return PIA_CUDA_ERR_ARG;
  }
  if (a->N == 0 || a->Co == 0 || N == 0) return PIA_CUDA_OK;
  if (int rc = PIA_CUDA_OK; cudnn_conv2d(device, *a, &rc)) return rc;
  count_own_conv();
  return conv2d_implicit_gemm(*a);
}

int conv2d_implicit_gemm(const PiaConv2dArgs& args) {
  const PiaConv2dArgs* a = &args;
  const int64_t K = a->C * a->kh * a->kw, N = a->Ho * a->Wo;
  GemmP p{};
  p.M = int(a->Co);
  p.N = int(N);
  p.K = int(K);
  p.A = a->w;
  p.lda = K;
  p.sa = 0;
  p.B = a->x;
  p.sb = a->C * a->H * a->W;
  p.C = a->y;
  p.ldc = N;
  p.sc = a->Co * N;
  p.bias = a->bias;
  p.bias_per_row = 1;
  p.act = a->act;
  p.H = int(a->H);
  p.W = int(a->W);
  p.Wo = int(a->Wo);
  p.kh = int(a->kh);
  p.kw = int(a->kw);
  p.stride = a->stride;
  p.pad_top = a->pad_top;
  p.pad_left = a->pad_left;
  // A 1×1 convolution without stride or padding is a plain GEMM over the [C, H·W] image.
  if (a->kh == 1 && a->kw == 1 && a->stride == 1 && a->pad_top == 0 && a->pad_left == 0 && a->Ho == a->H &&
      a->Wo == a->W) {
    p.ldb = a->H * a->W;
    PiaGemmArgs g{};
    g.dtype = a->dtype;
    g.M = a->Co;
    g.N = N;
    g.K = K;
    g.batch = a->N;
    g.A = a->w;
    g.lda = K;
    g.B = a->x;
    g.ldb = p.ldb;
    g.stride_b = p.sb;
    g.C = a->y;
    g.ldc = N;
    g.stride_c = p.sc;
    g.bias = a->bias;
    g.bias_per_row = 1;
    g.act = a->act;
    if (gemm_pipelined_fits(g)) return gemm_pipelined(g);
    return launch<kDense>(a->dtype, p, int(a->N));
  }
  int device = 0;
  if (int rc = check(cudaGetDevice(&device), "cudaGetDevice")) return rc;
  bool handled = false;
  if (int rc = conv2d_im2col(device, a, &handled); handled) return rc;
  p.ldb = 0;
  return launch<kIm2col>(a->dtype, p, int(a->N));
}

}  // namespace pia_cuda
