// Flash-style attention: a block of queries meets the keys a block at a time with an online
// softmax (running max and sum), so memory is O(block²) whatever the sequence length. Both
// products go through gemm().
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"
#include "simd.h"

namespace pia::cpu {

void attention(const float* q, const float* k, const float* v, float* o, int64_t B, int64_t Sq, int64_t Sk,
               int64_t H, int64_t D, int64_t Dv, float scale, bool causal) {
  const int64_t BQ = 64, BK = 256;
  const int64_t qblocks = (Sq + BQ - 1) / BQ;
  const int64_t ldq = H * D, ldv = H * Dv;
  parallel_for(0, B * H * qblocks, 1, [&](int64_t tb, int64_t te) {
    std::vector<float> s(static_cast<size_t>(BQ * BK)), acc(static_cast<size_t>(BQ * Dv)), m(static_cast<size_t>(BQ)),
        l(static_cast<size_t>(BQ));
    for (int64_t t = tb; t < te; ++t) {
      const int64_t b = t / (H * qblocks), h = (t / qblocks) % H, q0 = (t % qblocks) * BQ;
      const int64_t nq = std::min(BQ, Sq - q0);
      const float* qb = q + (b * Sq + q0) * ldq + h * D;
      const float* kb = k + b * Sk * ldq + h * D;
      const float* vb = v + b * Sk * ldv + h * Dv;
      std::fill(acc.begin(), acc.end(), 0.f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.f);
      // Causal: query i sees keys 0..i (CLIP's mask), so later key blocks can be skipped.
      const int64_t kend = causal ? std::min(Sk, q0 + nq) : Sk;
      for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        const int64_t nk = std::min(BK, kend - k0);
        gemm(nq, nk, D, qb, ldq, kb + k0 * ldq, ldq, true, s.data(), nk, false);
        for (int64_t i = 0; i < nq; ++i) {
          float* si = s.data() + i * nk;
          const int64_t valid = causal ? std::min(nk, q0 + i - k0 + 1) : nk;
          const float mx = std::max(m[size_t(i)], scale_max(si, valid, scale));
          const float corr = std::exp(m[size_t(i)] - mx);
          const float sum = exp_sub_sum(si, valid, mx);
          std::fill(si + valid, si + nk, 0.f);
          l[size_t(i)] = l[size_t(i)] * corr + sum;
          m[size_t(i)] = mx;
          if (corr != 1.f) axpby(acc.data() + i * Dv, acc.data() + i * Dv, Dv, corr, 0.f);
        }
        gemm(nq, Dv, nk, s.data(), nk, vb + k0 * ldv, ldv, false, acc.data(), Dv, true);
      }
      for (int64_t i = 0; i < nq; ++i) {
        const float inv = 1.f / l[size_t(i)];
        float* oi = o + (b * Sq + q0 + i) * ldv + h * Dv;
        for (int64_t d = 0; d < Dv; ++d) oi[d] = acc[size_t(i * Dv + d)] * inv;
      }
    }
  });
}

}  // namespace pia::cpu
