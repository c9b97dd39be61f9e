// Flash-style attention on the GEMM micro-kernel. Per (batch, head) K is packed once as MR-key
// panels and V once as MR-channel panels of Vᵀ. A block of queries computes Sᵀ = K·Qᵀ tile by
// tile into a [query panel][key][NR] buffer — exactly the packed-B layout — runs the online
// softmax on it with queries across SIMD lanes, and accumulates Oᵀ += Vᵀ·P from the same buffer
// without repacking. Memory is O(block²) whatever the sequence length.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/thread_pool.h"
#include "kernels.h"
#include "scratch.h"
#include "simd.h"

namespace pia::cpu {

namespace {
constexpr int64_t BQ = 64;   // queries per task (4 panels of kNR)
constexpr int64_t BK = 240;  // keys per block (a multiple of kMR)
static_assert(BQ % kNR == 0 && BK % kMR == 0, "blocks are whole tiles");
int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
}  // namespace

void attention(const float* q, const float* k, const float* v, float* o, int64_t B, int64_t Sq, int64_t Sk,
               int64_t H, int64_t D, int64_t Dv, float scale, bool causal, int64_t interleave) {
  const MicroKernel uk = micro_kernel();
  const int64_t ldq = H * D, ldv = H * Dv;
  // Element offset of row s of sequence n in a tensor of sequences of length S: sequences are
  // interleaved `interleave` at a time (1: [B, S, C] rows; HW: the frame-major [B·F, HW, C]
  // layout in which the F frames of each pixel form a sequence).
  auto row = [interleave](int64_t n, int64_t s_, int64_t S, int64_t C) {
    return ((n / interleave) * S * interleave + s_ * interleave + n % interleave) * C;
  };
  const int64_t Skp = round_up(Sk, kMR), Dvp = round_up(Dv, kMR);
  const int64_t kstride = Skp * D, vstride = Skp * Dvp;  // packed floats per (b, h)
  auto pack_kv = [&](int64_t bh, float* kd, float* vd) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t kt = 0; kt < Skp; kt += kMR) {  // kd: [key tile][d][kMR]
      float* dst = kd + kt * D;
      for (int64_t i = 0; i < kMR; ++i) {
        const float* src = k + row(b, kt + i, Sk, ldq) + h * D;
        if (kt + i < Sk) {
          for (int64_t d = 0; d < D; ++d) dst[d * kMR + i] = src[d];
        } else {
          for (int64_t d = 0; d < D; ++d) dst[d * kMR + i] = 0.f;
        }
      }
    }
    for (int64_t key = 0; key < Skp; ++key) {  // vd: [channel tile][key][kMR]
      const float* src = v + row(b, key, Sk, ldv) + h * Dv;
      for (int64_t dt = 0; dt < Dvp; dt += kMR) {
        float* dst = vd + dt * Skp + key * kMR;
        const int64_t n = key < Sk ? std::min(kMR, Dv - dt) : 0;
        int64_t i = 0;
        for (; i < n; ++i) dst[i] = src[dt + i];
        for (; i < kMR; ++i) dst[i] = 0.f;
      }
    }
  };
  // One block of queries of one (batch, head) against all its keys; `work` holds
  // BQ·D + BQ·BK + Dvp·BQ + 3·BQ floats.
  auto query_block = [&](int64_t bh, int64_t q0, const float* kd, const float* vd, float* work) {
    const int64_t b = bh / H, h = bh % H;
    float* qpan = work;           // Qᵀ panels [panel][d][kNR]
    float* sbuf = qpan + BQ * D;  // [query panel][key][kNR]
    float* ot = sbuf + BQ * BK;   // Oᵀ [Dvp][BQ]
    float* m = ot + Dvp * BQ;
    float* l = m + BQ;
    float* corr = l + BQ;
    const int64_t nq = std::min(BQ, Sq - q0), npan = (nq + kNR - 1) / kNR;
    for (int64_t j = 0; j < npan * kNR; ++j) {
      float* dst = qpan + (j / kNR) * D * kNR + j % kNR;
      const float* src = q + row(b, q0 + j, Sq, ldq) + h * D;
      if (j < nq) {
        for (int64_t d = 0; d < D; ++d) dst[d * kNR] = src[d];
      } else {
        for (int64_t d = 0; d < D; ++d) dst[d * kNR] = 0.f;
      }
    }
    for (int64_t d = 0; d < Dvp; ++d) std::fill(ot + d * BQ, ot + d * BQ + npan * kNR, 0.f);
    std::fill(m, m + npan * kNR, -std::numeric_limits<float>::infinity());
    std::fill(l, l + npan * kNR, 0.f);
    // Causal (CLIP): query i sees keys 0..i, so later key blocks are skipped.
    const int64_t kend = causal ? std::min(Sk, q0 + nq) : Sk;
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
      const int64_t nk = std::min(BK, kend - k0), nkp = round_up(nk, kMR);
      for (int64_t p = 0; p < npan; ++p) {
        float* sp = sbuf + p * BK * kNR;
        for (int64_t kt = 0; kt < nkp; kt += kMR) uk(D, kd + (k0 + kt) * D, qpan + p * D * kNR, sp + kt * kNR, kNR, false);
        if (causal) {
          for (int64_t kk = 0; kk < nk; ++kk)
            for (int64_t j = 0; j < kNR; ++j)
              if (k0 + kk > q0 + p * kNR + j) sp[kk * kNR + j] = -std::numeric_limits<float>::infinity();
        }
        softmax_panel(sp, nk, nkp, scale, m + p * kNR, l + p * kNR, corr + p * kNR);
        if (k0 > 0) {
          for (int64_t d = 0; d < Dvp; ++d) {
            float* row = ot + d * BQ + p * kNR;
            for (int64_t j = 0; j < kNR; ++j) row[j] *= corr[p * kNR + j];
          }
        }
        for (int64_t dt = 0; dt < Dvp; dt += kMR) uk(nkp, vd + dt * Skp + k0 * kMR, sp, ot + dt * BQ + p * kNR, BQ, true);
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float inv = 1.f / l[i];
      float* oi = o + row(b, q0 + i, Sq, ldv) + h * Dv;
      for (int64_t d = 0; d < Dv; ++d) oi[d] = ot[d * BQ + i] * inv;
    }
  };
  const size_t work_floats = size_t(BQ * D + BQ * BK + Dvp * BQ + 3 * BQ);
  const int64_t qblocks = (Sq + BQ - 1) / BQ;
  const int64_t threads = ThreadPool::global()->size();
  if (B >= 2 * threads && Sk <= 256) {
    // Many short sequences (temporal attention: pixels × 16 frames; cross-attention: 77 keys):
    // one task per batch row packs K and V of all its heads in one sequential pass over their
    // rows. Per-head passes would read 160-byte pieces of rows 1280 bytes apart, which the
    // hardware prefetchers do not follow, and stall on memory.
    parallel_for(0, B, 1, [&](int64_t tb, int64_t te) {
      thread_local Scratch kvbuf, workbuf;
      float* kd = kvbuf.get(size_t(H * (kstride + vstride)));
      float* vd = kd + H * kstride;
      float* work = workbuf.get(work_floats);
      for (int64_t b = tb; b < te; ++b) {
        for (int64_t i = 0; i < std::min<int64_t>(Sq, 4 * BQ); ++i) {
          const char* qr = reinterpret_cast<const char*>(q + row(b, i, Sq, ldq));
          for (int64_t off = 0; off < ldq * 4; off += 64) __builtin_prefetch(qr + off);
        }
        for (int64_t kt = 0; kt < Skp; kt += kMR) {  // kd per head: [key tile][d][kMR]
          for (int64_t i = 0; i < kMR; ++i) {
            const float* src = k + row(b, kt + i, Sk, ldq);
            for (int64_t h = 0; h < H; ++h) {
              float* dst = kd + h * kstride + kt * D + i;
              if (kt + i < Sk) {
                for (int64_t d = 0; d < D; ++d) dst[d * kMR] = src[h * D + d];
              } else {
                for (int64_t d = 0; d < D; ++d) dst[d * kMR] = 0.f;
              }
            }
          }
        }
        for (int64_t key = 0; key < Skp; ++key) {  // vd per head: [channel tile][key][kMR]
          const float* src = v + row(b, key, Sk, ldv);
          for (int64_t h = 0; h < H; ++h) {
            for (int64_t dt = 0; dt < Dvp; dt += kMR) {
              float* dst = vd + h * vstride + dt * Skp + key * kMR;
              const int64_t n = key < Sk ? std::min(kMR, Dv - dt) : 0;
              int64_t i = 0;
              for (; i < n; ++i) dst[i] = src[h * Dv + dt + i];
              for (; i < kMR; ++i) dst[i] = 0.f;
            }
          }
        }
        for (int64_t h = 0; h < H; ++h)
          for (int64_t qb = 0; qb < qblocks; ++qb)
            query_block(b * H + h, qb * BQ, kd + h * kstride, vd + h * vstride, work);
      }
    });
    return;
  }
  if (B * H >= 2 * threads) {
    // Enough (batch, head) pairs to go round (the UNet's CFG × frames batch, temporal attention's
    // pixels × heads): each task packs its own K and V into thread-local scratch.
    parallel_for(0, B * H, 1, [&](int64_t tb, int64_t te) {
      thread_local Scratch kvbuf, workbuf;
      float* kd = kvbuf.get(size_t(kstride + vstride));
      float* work = workbuf.get(work_floats);
      for (int64_t bh = tb; bh < te; ++bh) {
        pack_kv(bh, kd, kd + kstride);
        for (int64_t qb = 0; qb < qblocks; ++qb) query_block(bh, qb * BQ, kd, kd + kstride, work);
      }
    });
    return;
  }
  // Few pairs: pack them all first, then share the query blocks out.
  Scratch kv;
  float* kp = kv.get(size_t(B * H * (kstride + vstride)));
  parallel_for(0, B * H, 1, [&](int64_t tb, int64_t te) {
    for (int64_t bh = tb; bh < te; ++bh) pack_kv(bh, kp + bh * (kstride + vstride), kp + bh * (kstride + vstride) + kstride);
  });
  parallel_for(0, B * H * qblocks, 1, [&](int64_t tb, int64_t te) {
    thread_local Scratch workbuf;
    float* work = workbuf.get(work_floats);
    for (int64_t t = tb; t < te; ++t) {
      const int64_t bh = t / qblocks;
      const float* kd = kp + bh * (kstride + vstride);
      query_block(bh, (t % qblocks) * BQ, kd, kd + kstride, work);
    }
  });
}

}  // namespace pia::cpu
