// Packed, cache-blocked SGEMM in the BLIS layout: B is packed a KC×NC block at a time into
// NR-wide column panels (shared by all threads), each task packs its MC×KC block of A into MR-row
// panels and runs the MR×NR micro-kernel (AVX2/FMA when available, simd.h) over them.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "../core/thread_pool.h"
#include "kernels.h"
#include "scratch.h"
#include "simd.h"

namespace pia::cpu {

namespace {

// KC·NR·4 ≤ 24 KB: a B panel stays in L1; MC·KC·4 ≤ 144 KB of A stays in L2. K is cut into
// equal blocks of at most KC (K = 320 is one block, not 256 + 64: each block re-reads C).
constexpr int64_t KC = 384, MC = 96, NC = 3072;
static_assert(MC % kMR == 0 && NC % kNR == 0, "blocks are whole micro-tiles");

void pack_b_panel(MatrixRef B, bool trans_b, int64_t k0, int64_t kc, int64_t j0, int64_t N, float* dst) {
  const int64_t nj = std::min(kNR, N - j0), ldb = B.ld;
  const float* Bf = static_cast<const float*>(B.data);
  if (trans_b) {
    thread_local Scratch row;
    float* tmp = B.dtype == DType::F32 ? nullptr : row.get(size_t(kc));
    for (int64_t j = 0; j < nj; ++j) {
      const float* src;
      if (tmp) {
        widen(B.data, B.dtype, (j0 + j) * ldb + k0, kc, tmp);
        src = tmp;
      } else {
        src = Bf + (j0 + j) * ldb + k0;
      }
      for (int64_t k = 0; k < kc; ++k) dst[k * kNR + j] = src[k];
    }
    for (int64_t j = nj; j < kNR; ++j)
      for (int64_t k = 0; k < kc; ++k) dst[k * kNR + j] = 0.f;
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * kNR;
      if (B.dtype == DType::F32) {
        std::memcpy(d, Bf + (k0 + k) * ldb + j0, size_t(nj) * sizeof(float));
      } else {
        widen(B.data, B.dtype, (k0 + k) * ldb + j0, nj, d);
      }
      for (int64_t j = nj; j < kNR; ++j) d[j] = 0.f;
    }
  }
}

// Tile rows [i0, i0+ni) × cols [j0, j0+nj) of C at c.
void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t i0, int64_t ni, int64_t j0, int64_t nj) {
  for (int64_t i = 0; i < ni; ++i) {
    float* row = c + i * ldc;
    const float rb = ep.row_bias ? ep.row_bias[i0 + i] : 0.f;
    if (ep.col_bias) {
      for (int64_t j = 0; j < nj; ++j) row[j] += rb + ep.col_bias[j0 + j];
    } else if (ep.row_bias) {
      for (int64_t j = 0; j < nj; ++j) row[j] += rb;
    }
    activation_inplace_serial(row, nj, ep.act);
  }
}

void pack_a_block(MatrixRef A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  thread_local Scratch row;
  float* tmp = A.dtype == DType::F32 ? nullptr : row.get(size_t(kc));
  for (int64_t r = 0; r < mc; r += kMR) {
    const int64_t ni = std::min(kMR, mc - r);
    float* d = dst + r * kc;
    for (int64_t i = 0; i < ni; ++i) {
      const float* src;
      if (tmp) {
        widen(A.data, A.dtype, (i0 + r + i) * A.ld + k0, kc, tmp);
        src = tmp;
      } else {
        src = static_cast<const float*>(A.data) + (i0 + r + i) * A.ld + k0;
      }
      for (int64_t k = 0; k < kc; ++k) d[k * kMR + i] = src[k];
    }
    for (int64_t i = ni; i < kMR; ++i)
      for (int64_t k = 0; k < kc; ++k) d[k * kMR + i] = 0.f;
  }
}

}  // namespace

void widen(const void* src, DType dtype, int64_t offset, int64_t n, float* out) {
  switch (dtype) {
    case DType::F32: std::memcpy(out, static_cast<const float*>(src) + offset, size_t(n) * sizeof(float)); return;
    case DType::F16: widen_f16(static_cast<const uint16_t*>(src) + offset, out, n); return;
    case DType::BF16: {
      const uint16_t* h = static_cast<const uint16_t*>(src) + offset;
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t u = uint32_t(h[i]) << 16;
        std::memcpy(out + i, &u, 4);
      }
      return;
    }
  }
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool trans_b,
          float* C, int64_t ldc, bool accumulate, const GemmEpilogue& ep) {
  gemm(M, N, K, MatrixRef{A, lda}, MatrixRef{B, ldb}, trans_b, C, ldc, accumulate, ep);
}

void gemm(int64_t M, int64_t N, int64_t K, MatrixRef A, MatrixRef B, bool trans_b, float* C, int64_t ldc,
          bool accumulate, const GemmEpilogue& ep) {
  gemm_implicit_b(
      M, N, K, A, [&](int64_t k0, int64_t kc, int64_t j0, float* dst) { pack_b_panel(B, trans_b, k0, kc, j0, N, dst); },
      C, ldc, accumulate, ep);
}

void gemm_implicit_b(int64_t M, int64_t N, int64_t K, MatrixRef A, const PackB& pack_b, float* C, int64_t ldc,
                     bool accumulate, const GemmEpilogue& ep) {
  if (M <= 0 || N <= 0) return;
  const bool has_ep = ep.row_bias || ep.col_bias || ep.act != Activation::None;
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i) {
      if (!accumulate) std::fill(C + i * ldc, C + i * ldc + N, 0.f);
      if (has_ep) apply_epilogue(ep, C + i * ldc, ldc, i, 1, 0, N);
    }
    return;
  }
  const MicroKernel uk = micro_kernel();
  const int64_t threads = ThreadPool::global()->size();
  thread_local Scratch bbuf;
  const int64_t mblocks = (M + MC - 1) / MC;
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t panels = (nc + kNR - 1) / kNR;
    // Split the columns too when there are too few row blocks to keep every thread busy: about
    // four tasks per thread (the pool hands them out dynamically), each at least four panels wide
    // so that repacking its A block stays cheap next to the work on it.
    const int64_t nchunks = std::max<int64_t>(
        1, std::min((panels + 3) / 4, (4 * threads + mblocks - 1) / mblocks));
    const int64_t chunk = (panels + nchunks - 1) / nchunks;
    const int64_t kblocks = (K + KC - 1) / KC, kstep = (K + kblocks - 1) / kblocks;
    for (int64_t pc = 0; pc < K; pc += kstep) {
      const int64_t kc = std::min(kstep, K - pc);
      float* bp = bbuf.get(size_t(panels * kc * kNR));
      parallel_for(0, panels, std::max<int64_t>(1, 64 / std::max<int64_t>(1, kc / 64)), [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) pack_b(pc, kc, jc + p * kNR, bp + p * kc * kNR);
      });
      const bool acc = accumulate || pc > 0;
      const bool finish = has_ep && pc + kc >= K;
      parallel_for(0, mblocks * nchunks, 1, [&](int64_t tb, int64_t te) {
        thread_local Scratch abuf;
        float* ap = abuf.get(size_t(MC * KC));
        alignas(64) float tile[kMR * kNR];
        int64_t packed_ic = -1;
        for (int64_t t = tb; t < te; ++t) {
          const int64_t ic = (t / nchunks) * MC, mc = std::min(MC, M - ic);
          const int64_t p0 = (t % nchunks) * chunk, p1 = std::min(panels, p0 + chunk);
          if (ic != packed_ic) {
            pack_a_block(A, ic, mc, pc, kc, ap);
            packed_ic = ic;
          }
          for (int64_t p = p0; p < p1; ++p) {
            const float* bpan = bp + p * kc * kNR;
            const int64_t j = jc + p * kNR, nj = std::min(kNR, N - j);
            for (int64_t r = 0; r < mc; r += kMR) {
              const int64_t ni = std::min(kMR, mc - r);
              float* c = C + (ic + r) * ldc + j;
              if (ni == kMR && nj == kNR) {
                uk(kc, ap + r * kc, bpan, c, ldc, acc);
                if (finish) apply_epilogue(ep, c, ldc, ic + r, kMR, j, kNR);
                continue;
              }
              if (acc)
                for (int64_t i = 0; i < ni; ++i) std::memcpy(tile + i * kNR, c + i * ldc, size_t(nj) * sizeof(float));
              uk(kc, ap + r * kc, bpan, tile, kNR, acc);
              for (int64_t i = 0; i < ni; ++i) std::memcpy(c + i * ldc, tile + i * kNR, size_t(nj) * sizeof(float));
              if (finish) apply_epilogue(ep, c, ldc, ic + r, ni, j, nj);
            }
          }
        }
      });
    }
  }
}

}  // namespace pia::cpu
