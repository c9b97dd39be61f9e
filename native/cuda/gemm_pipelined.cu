// The f16/bf16 GEMM for machines without cuBLASLt (most npm users have a driver and nothing else):
// 128×128 block tiles, 8 warps of 64×32 on tensor cores (wmma 16×16×16, fp32 accumulators), and
// the next K tile copied into shared memory with cp.async while the current one is multiplied,
// so the tensor cores are not left waiting on global loads as in gemm.cu's simple kernel.
//
// cp.async moves 16-byte chunks, so this path takes only operands whose rows are 16-byte aligned
// and a multiple of 8 elements long along the copied axis (then a chunk is wholly inside or wholly
// outside the matrix, and outside chunks are zero-filled by the copy itself). Everything else —
// and every shape when PIA_CUDA_SIMPLE_GEMM=1 — stays on gemm.cu's kernel.
#include <mma.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256;
constexpr int LDA = BK + 8;   // A tile [BM][LDA]; +8 halves staggers the banks, keeps 16-byte rows
constexpr int LDBT = BK + 8;  // B tile [BN][LDBT] when B is [N, K] (torch.nn.Linear weights)
constexpr int LDBD = BN + 8;  // B tile [BK][LDBD] when B is [K, N]
constexpr int kStageA = BM * LDA;
constexpr int kStageB = (BN * LDBT > BK * LDBD) ? BN * LDBT : BK * LDBD;

struct PipeP {
  int M, N, K;
  const void* A;
  int64_t lda, sa;
  const void* B;
  int64_t ldb, sb;
  void* C;
  int64_t ldc, sc;
  const void* bias;
  int bias_per_row, act;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  // A source size of 0 writes 16 zero bytes and reads nothing: the tile edges.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Copies the K tile at k0 of both operands into one stage: BM·BK/8 = 512 chunks of A and as many
// of B, two of each per thread.
template <typename T, bool TRANS_B>
__device__ __forceinline__ void load_stage(const PipeP& p, const T* A, const T* B, int m0, int n0, int k0, T* As,
                                           T* Bs) {
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const int c = threadIdx.x + t * THREADS;
    const int r = c / (BK / 8), k8 = (c % (BK / 8)) * 8;
    const int gm = m0 + r, gk = k0 + k8;
    const bool ok = gm < p.M && gk < p.K;
    cp_async16(As + r * LDA + k8, ok ? A + int64_t(gm) * p.lda + gk : A, ok);
  }
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const int c = threadIdx.x + t * THREADS;
    if (TRANS_B) {
      const int r = c / (BK / 8), k8 = (c % (BK / 8)) * 8;
      const int gn = n0 + r, gk = k0 + k8;
      const bool ok = gn < p.N && gk < p.K;
      cp_async16(Bs + r * LDBT + k8, ok ? B + int64_t(gn) * p.ldb + gk : B, ok);
    } else {
      const int r = c / (BN / 8), n8 = (c % (BN / 8)) * 8;
      const int gk = k0 + r, gn = n0 + n8;
      const bool ok = gk < p.K && gn < p.N;
      cp_async16(Bs + r * LDBD + n8, ok ? B + int64_t(gk) * p.ldb + gn : B, ok);
    }
  }
}

template <typename T, bool TRANS_B>
__global__ void __launch_bounds__(THREADS) gemm_pipelined_kernel(PipeP p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  // Two stages of A and B; after the main loop the same bytes hold each warp's 16×16 f32 staging
  // tile for the epilogue (8 KB of the 40 KB).
  __shared__ __align__(128) unsigned char smem[2 * (kStageA + kStageB) * sizeof(T)];
  // Stage s: A at s·kStageA, B at 2·kStageA + s·kStageB (computed, not a pointer array: an array
  // indexed by the loop's stage would live in local memory).
  T* const As0 = reinterpret_cast<T*>(smem);
  T* const Bs0 = As0 + 2 * kStageA;

  const int z = blockIdx.z;
  const T* A = static_cast<const T*>(p.A) + z * p.sa;
  const T* B = static_cast<const T*>(p.B) + z * p.sb;
  T* C = static_cast<T*>(p.C) + z * p.sc;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / 4, wn = warp % 4;  // 2 × 4 warps, each 64 rows × 32 columns

  using BLayout = typename std::conditional<TRANS_B, wmma::col_major, wmma::row_major>::type;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  const int ktiles = (p.K + BK - 1) / BK;
  load_stage<T, TRANS_B>(p, A, B, m0, n0, 0, As0, Bs0);
  cp_async_commit();
  for (int kt = 0; kt < ktiles; ++kt) {
    const int s = kt & 1;
    // The stage written here was last read in iteration kt − 1, which ended with a barrier.
    if (kt + 1 < ktiles) {
      load_stage<T, TRANS_B>(p, A, B, m0, n0, (kt + 1) * BK, As0 + (s ^ 1) * kStageA, Bs0 + (s ^ 1) * kStageB);
    }
    cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning "stage s"
    cp_async_wait_one();
    __syncthreads();
    const T* As = As0 + s * kStageA;
    const T* Bs = Bs0 + s * kStageB;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> b[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(a[i], As + (wm * 64 + i * 16) * LDA + kk, LDA);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if (TRANS_B) {
          wmma::load_matrix_sync(b[j], Bs + (wn * 32 + j * 16) * LDBT + kk, LDBT);
        } else {
          wmma::load_matrix_sync(b[j], Bs + kk * LDBD + wn * 32 + j * 16, LDBD);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

  float* stage = reinterpret_cast<float*>(smem) + warp * 256;
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int gm = m0 + wm * 64 + i * 16 + e / 16, gn = n0 + wn * 32 + j * 16 + e % 16;
        if (gm < p.M && gn < p.N) {
          float v = stage[e];
          if (bias) v += to_f(bias[p.bias_per_row ? gm : gn]);
          C[int64_t(gm) * p.ldc + gn] = from_f<T>(apply_act(v, p.act));
        }
      }
      __syncwarp();  // the staging tile is rewritten by the next fragment
    }
  }
#else
  __trap();  // built only for sm_80 and newer (CMAKE_CUDA_ARCHITECTURES)
#endif
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

bool simple_gemm_forced() {
  static const bool forced = [] {
    const char* v = std::getenv("PIA_CUDA_SIMPLE_GEMM");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return forced;
}

}  // namespace

bool gemm_pipelined_fits(const PiaGemmArgs& a) {
  if (a.dtype != 1 && a.dtype != 2) return false;
  if (simple_gemm_forced()) return false;
  // The copied axis of every operand is K for A and for a transposed B, N for a dense B.
  const int64_t b_axis = a.trans_b ? a.K : a.N;
  const bool rows_ok = a.K % 8 == 0 && a.lda % 8 == 0 && b_axis % 8 == 0 && a.ldb % 8 == 0 &&
                       a.stride_a % 8 == 0 && a.stride_b % 8 == 0;
  return rows_ok && aligned16(a.A) && aligned16(a.B) && a.K > 0 && (a.M + BM - 1) / BM <= 0x7fffffff &&
         (a.N + BN - 1) / BN <= 65535 && a.batch <= 65535;
}

int gemm_pipelined(const PiaGemmArgs& a) {
  PipeP p{};
  p.M = int(a.M);
  p.N = int(a.N);
  p.K = int(a.K);
  p.A = a.A;
  p.lda = a.lda;
  p.sa = a.stride_a;
  p.B = a.B;
  p.ldb = a.ldb;
  p.sb = a.stride_b;
  p.C = a.C;
  p.ldc = a.ldc;
  p.sc = a.stride_c;
  p.bias = a.bias;
  p.bias_per_row = a.bias_per_row;
  p.act = a.act;
  const dim3 grid{unsigned((a.M + BM - 1) / BM), unsigned((a.N + BN - 1) / BN), unsigned(a.batch)};
  cudaStream_t s = stream();
  if (a.dtype == 1) {
    if (a.trans_b) gemm_pipelined_kernel<__half, true><<<grid, THREADS, 0, s>>>(p);
    else gemm_pipelined_kernel<__half, false><<<grid, THREADS, 0, s>>>(p);
  } else {
    if (a.trans_b) gemm_pipelined_kernel<__nv_bfloat16, true><<<grid, THREADS, 0, s>>>(p);
    else gemm_pipelined_kernel<__nv_bfloat16, false><<<grid, THREADS, 0, s>>>(p);
  }
  return check_launch("gemm (pipelined) kernel");
}

}  // namespace pia_cuda
