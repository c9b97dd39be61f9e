#include <algorithm>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"

namespace pia::cpu {

namespace {

// One tile of C: rows [i0,i1) × cols [j0,j1).
void gemm_tile_ref(int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, bool trans_b, float* C, int64_t ldc, bool accumulate) {
  if (trans_b) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* a = A + i * lda;
      for (int64_t j = j0; j < j1; ++j) {
        const float* b = B + j * ldb;
        float s = 0.f;
        for (int64_t k = 0; k < K; ++k) s += a[k] * b[k];
        float* c = C + i * ldc + j;
        *c = accumulate ? *c + s : s;
      }
    }
    return;
  }
  std::vector<float> acc(size_t(j1 - j0));
  for (int64_t i = i0; i < i1; ++i) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const float* a = A + i * lda;
    for (int64_t k = 0; k < K; ++k) {
      const float av = a[k];
      const float* b = B + k * ldb + j0;
      for (int64_t j = 0; j < j1 - j0; ++j) acc[size_t(j)] += av * b[j];
    }
    float* c = C + i * ldc + j0;
    for (int64_t j = 0; j < j1 - j0; ++j) c[j] = accumulate ? c[j] + acc[size_t(j)] : acc[size_t(j)];
  }
}

}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool trans_b,
          float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const int64_t TM = 32, TN = 256;
  const int64_t tm = (M + TM - 1) / TM, tn = (N + TN - 1) / TN;
  parallel_for(0, tm * tn, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t i0 = (t / tn) * TM, j0 = (t % tn) * TN;
      gemm_tile_ref(i0, std::min(M, i0 + TM), j0, std::min(N, j0 + TN), K, A, lda, B, ldb, trans_b, C, ldc,
                    accumulate);
    }
  });
}

}  // namespace pia::cpu
