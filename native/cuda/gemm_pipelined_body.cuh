#pragma once
// The body of the cp.async tensor-core GEMM (gemm_pipelined.cu has the design notes), written once
// against an execution context X so that the very same code runs as the CUDA kernel and, on
// machines without a GPU, under the host emulator of test/native/test_gemm_pipelined_emulated.cpp.
// X supplies the hardware:
//
//   using Elem = T (f16 or bf16 storage);  static constexpr bool kTransB;
//   using Acc, FragA, FragB;                         // wmma 16×16×16 fragments (B col-major iff kTransB)
//   int thread(), block_x(), block_y(), block_z();
//   void sync();                                     // every thread of the CTA
//   void syncwarp();                                 // every lane of the warp
//   void cp_async16(T* smem, const T* gmem, bool valid);  // 16 bytes; valid false: zeros, nothing read
//   void cp_async_commit();  void cp_async_wait_one();     // cp.async.wait_group 1
//   void fill(Acc&, float);  void load_a(FragA&, const T*, int ldm);  void load_b(FragB&, const T*, int ldm);
//   void mma(Acc& c, const FragA&, const FragB&);    // c += a·b
//   void store(float* smem, const Acc&, int ldm);    // row-major
//   float lds(const float* smem);                    // a plain shared load
//   float to_f(T);  T from_f(float);
//
// Nothing else here may be CUDA-specific: the host test compiles this header with g++.
#include <cstdint>

#include "activation.cuh"
#include "cuda_api.h"

#if defined(__CUDACC__)
#define PIA_GP_FN __device__ __forceinline__
#define PIA_GP_UNROLL _Pragma("unroll")
#else
#define PIA_GP_FN inline
#define PIA_GP_UNROLL
#endif

namespace pia_gemm_pipe {

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256;
constexpr int LDA = BK + 8;   // A tile [BM][LDA]; +8 halves staggers the banks, keeps 16-byte rows
constexpr int LDBT = BK + 8;  // B tile [BN][LDBT] when B is [N, K] (torch.nn.Linear weights)
constexpr int LDBD = BN + 8;  // B tile [BK][LDBD] when B is [K, N]
constexpr int kStageA = BM * LDA;
constexpr int kStageB = (BN * LDBT > BK * LDBD) ? BN * LDBT : BK * LDBD;
constexpr int kSmemBytes = 2 * (kStageA + kStageB) * 2;  // two stages of 2-byte elements
static_assert(THREADS / 32 * 256 * 4 <= kSmemBytes, "the epilogue's staging tiles reuse the stages");

struct Params {
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

inline Params make_params(const PiaGemmArgs& a) {
  Params p{};
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
  return p;
}

// The shape and alignment rules of the 16-byte copies (the dtype and the PIA_CUDA_SIMPLE_GEMM
// switch are gemm_pipelined_fits' business). The copied axis of every operand is K for A and for
// a transposed B, N for a dense B.
inline bool shape_fits(const PiaGemmArgs& a) {
  auto aligned16 = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
  const int64_t b_axis = a.trans_b ? a.K : a.N;
  const bool rows_ok = a.K % 8 == 0 && a.lda % 8 == 0 && b_axis % 8 == 0 && a.ldb % 8 == 0 && a.stride_a % 8 == 0 &&
                       a.stride_b % 8 == 0;
  return rows_ok && aligned16(a.A) && aligned16(a.B) && a.K > 0 && (a.M + BM - 1) / BM <= 0x7fffffff &&
         (a.N + BN - 1) / BN <= 65535 && a.batch <= 65535;
}

// Copies the K tile at k0 of both operands into one stage: BM·BK/8 = 512 chunks of A and as many
// of B, two of each per thread.
template <class X, typename T>
PIA_GP_FN void load_stage(X& x, const Params& p, const T* A, const T* B, int m0, int n0, int k0, T* As, T* Bs) {
  PIA_GP_UNROLL
  for (int t = 0; t < 2; ++t) {
    const int c = x.thread() + t * THREADS;
    const int r = c / (BK / 8), k8 = (c % (BK / 8)) * 8;
    const int gm = m0 + r, gk = k0 + k8;
    const bool ok = gm < p.M && gk < p.K;
    x.cp_async16(As + r * LDA + k8, ok ? A + int64_t(gm) * p.lda + gk : A, ok);
  }
  PIA_GP_UNROLL
  for (int t = 0; t < 2; ++t) {
    const int c = x.thread() + t * THREADS;
    if (X::kTransB) {
      const int r = c / (BK / 8), k8 = (c % (BK / 8)) * 8;
      const int gn = n0 + r, gk = k0 + k8;
      const bool ok = gn < p.N && gk < p.K;
      x.cp_async16(Bs + r * LDBT + k8, ok ? B + int64_t(gn) * p.ldb + gk : B, ok);
    } else {
      const int r = c / (BN / 8), n8 = (c % (BN / 8)) * 8;
      const int gk = k0 + r, gn = n0 + n8;
      const bool ok = gk < p.K && gn < p.N;
      x.cp_async16(Bs + r * LDBD + n8, ok ? B + int64_t(gk) * p.ldb + gn : B, ok);
    }
  }
}

// One CTA of THREADS threads: C tile (block_x, block_y) of batch entry block_z. smem holds
// kSmemBytes, 128-byte aligned.
template <class X>
PIA_GP_FN void gemm_cta(X& x, const Params& p, unsigned char* smem) {
  using T = typename X::Elem;
  constexpr bool kTransB = X::kTransB;
  // Two stages of A and B; after the main loop the same bytes hold each warp's 16×16 f32 staging
  // tile for the epilogue (8 KB of the 40 KB).
  // Stage s: A at s·kStageA, B at 2·kStageA + s·kStageB (computed, not a pointer array: an array
  // indexed by the loop's stage would live in local memory).
  T* const As0 = reinterpret_cast<T*>(smem);
  T* const Bs0 = As0 + 2 * kStageA;

  const int z = x.block_z();
  const T* A = static_cast<const T*>(p.A) + z * p.sa;
  const T* B = static_cast<const T*>(p.B) + z * p.sb;
  T* C = static_cast<T*>(p.C) + z * p.sc;
  const int m0 = x.block_x() * BM, n0 = x.block_y() * BN;
  const int warp = x.thread() / 32, lane = x.thread() % 32;
  const int wm = warp / 4, wn = warp % 4;  // 2 × 4 warps, each 64 rows × 32 columns

  typename X::Acc acc[4][2];
  PIA_GP_UNROLL
  for (int i = 0; i < 4; ++i)
    PIA_GP_UNROLL
    for (int j = 0; j < 2; ++j) x.fill(acc[i][j], 0.f);

  const int ktiles = (p.K + BK - 1) / BK;
  load_stage(x, p, A, B, m0, n0, 0, As0, Bs0);
  x.cp_async_commit();
  for (int kt = 0; kt < ktiles; ++kt) {
    const int s = kt & 1;
    // The stage written here was last read in iteration kt − 1, which ended with a barrier.
    if (kt + 1 < ktiles) {
      load_stage(x, p, A, B, m0, n0, (kt + 1) * BK, As0 + (s ^ 1) * kStageA, Bs0 + (s ^ 1) * kStageB);
    }
    x.cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning "stage s"
    x.cp_async_wait_one();
    x.sync();  // this thread's copies have landed; the barrier publishes everyone's
    const T* As = As0 + s * kStageA;
    const T* Bs = Bs0 + s * kStageB;
    PIA_GP_UNROLL
    for (int kk = 0; kk < BK; kk += 16) {
      typename X::FragA a[4];
      typename X::FragB b[2];
      PIA_GP_UNROLL
      for (int i = 0; i < 4; ++i) x.load_a(a[i], As + (wm * 64 + i * 16) * LDA + kk, LDA);
      PIA_GP_UNROLL
      for (int j = 0; j < 2; ++j) {
        if (kTransB) {
          x.load_b(b[j], Bs + (wn * 32 + j * 16) * LDBT + kk, LDBT);
        } else {
          x.load_b(b[j], Bs + kk * LDBD + wn * 32 + j * 16, LDBD);
        }
      }
      PIA_GP_UNROLL
      for (int i = 0; i < 4; ++i)
        PIA_GP_UNROLL
        for (int j = 0; j < 2; ++j) x.mma(acc[i][j], a[i], b[j]);
    }
    x.sync();
  }

  float* stage = reinterpret_cast<float*>(smem) + warp * 256;
  const T* bias = static_cast<const T*>(p.bias);
  PIA_GP_UNROLL
  for (int i = 0; i < 4; ++i) {
    PIA_GP_UNROLL
    for (int j = 0; j < 2; ++j) {
      x.store(stage, acc[i][j], 16);
      x.syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int gm = m0 + wm * 64 + i * 16 + e / 16, gn = n0 + wn * 32 + j * 16 + e % 16;
        if (gm < p.M && gn < p.N) {
          float v = x.lds(stage + e);
          if (bias) v += x.to_f(bias[p.bias_per_row ? gm : gn]);
          C[int64_t(gm) * p.ldc + gn] = x.from_f(pia_cuda::apply_act(v, p.act));
        }
      }
      x.syncwarp();  // the staging tile is rewritten by the next fragment
    }
  }
}

}  // namespace pia_gemm_pipe

#undef PIA_GP_FN
#undef PIA_GP_UNROLL
