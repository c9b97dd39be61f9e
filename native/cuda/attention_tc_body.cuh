#pragma once
// The body of the tensor-core attention kernel (attention_tc.cu has the design notes), written
// once against an execution context X so that the very same code runs as the CUDA kernel and, on
// machines without a GPU, under the host emulator of test/native/test_attention_tc_emulated.cpp.
// X supplies what is specific to the hardware: the thread and block indices, __syncthreads, the
// warp shuffle, the mma, the element type's conversions, exp2 and the 16-byte global load:
//
//   int thread(), threads(), block_x(), block_y();
//   void sync();                                  // every thread of the CTA
//   float shfl_xor(float v, int lane_mask);       // every lane of the warp
//   void mma(float c[4], const uint32_t a[4], const uint32_t b[2]);  // m16n8k16, c += a·b
//   uint16_t bits(float);  float value(uint16_t); // round to / widen from f16 or bf16
//   float exp2(float);
//   void load16(const uint16_t* g, uint32_t w[4]); // 8 elements from a 16-byte aligned global address
//   void store16(uint16_t* s, const uint32_t w[4]); // and to a 16-byte aligned shared one
//
// Nothing else here may be CUDA-specific: the host test compiles this header with g++.
#include <cmath>
#include <cstdint>

#include "cuda_api.h"
#include "mma_layout.cuh"

#if defined(__CUDACC__)
#define PIA_TC_FN __device__ __forceinline__
#define PIA_TC_UNROLL _Pragma("unroll")
#else
#define PIA_TC_FN inline
#define PIA_TC_UNROLL
#endif

namespace pia_attn_tc {

constexpr int kMaxHeadDim = 160;  // largest head dim served by this kernel

struct Params {
  const uint16_t *q, *k, *v;  // f16 or bf16 bits: only X's mma and conversions know which
  uint16_t* o;
  PiaAttnStrides sq, sk, sv, so;
  int64_t batch_inner;
  int Sq, Sk, H, D, Dv;
  float scale_log2;  // scale · log2(e)
  int causal;
  int vec;  // every q/k/v row start is 16-byte aligned (checked by the dispatcher)
};

constexpr int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Host side, shared by the dispatcher and the emulator. The tile configurations that exist, as
// X(DMAX, KT, WARPS): DMAX bounds D and Dv, KT keys per tile, WARPS warps of 16 query rows. The
// registers a lane needs grow with DMAX (Q: DMAX/16·4, O: DMAX/8·4, S: KT/8·4 words), so the
// largest head dims take 32-key tiles. One warp serves short query sequences — temporal
// attention's 16 or 24 frames — where 64-row CTAs would leave three warps idle.
#define PIA_ATTN_TC_TILES(X) X(64, 64, 4) X(96, 64, 4) X(160, 32, 4) X(64, 32, 1) X(96, 32, 1) X(160, 32, 1)

struct Bucket {
  int dmax, kt, warps;
};
inline Bucket bucket_for(int D, int Dv, int Sq) {
  const int d = round_up(D > Dv ? D : Dv, 16);
  const int dmax = d <= 64 ? 64 : d <= 96 ? 96 : kMaxHeadDim;
  if (Sq <= 16) return {dmax, 32, 1};
  return {dmax, dmax == kMaxHeadDim ? 32 : 64, 4};
}

inline Params make_params(const PiaAttentionArgs& a) {
  Params p{};
  p.q = static_cast<const uint16_t*>(a.q);
  p.k = static_cast<const uint16_t*>(a.k);
  p.v = static_cast<const uint16_t*>(a.v);
  p.o = static_cast<uint16_t*>(a.o);
  p.sq = a.sq;
  p.sk = a.sk;
  p.sv = a.sv;
  p.so = a.so;
  p.batch_inner = a.batch_inner;
  p.Sq = int(a.Sq);
  p.Sk = int(a.Sk);
  p.H = int(a.heads);
  p.D = int(a.D);
  p.Dv = int(a.Dv);
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.causal = a.causal;
  // 16-byte row loads need every row start (base + row offset + h·D) on a 16-byte boundary.
  auto aligned16 = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; };
  auto strides8 = [](const PiaAttnStrides& s) { return s.outer % 8 == 0 && s.inner % 8 == 0 && s.seq % 8 == 0; };
  p.vec = aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && a.D % 8 == 0 && a.Dv % 8 == 0 && strides8(a.sq) &&
          strides8(a.sk) && strides8(a.sv);
  return p;
}
PIA_TC_FN int imin(int a, int b) { return a < b ? a : b; }

PIA_TC_FN int64_t row_offset(const PiaAttnStrides& s, int64_t b, int64_t inner, int64_t pos) {
  return (b / inner) * s.outer + (b % inner) * s.inner + pos * s.seq;
}

PIA_TC_FN uint32_t shared_pair(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// DMAX: bound on D and Dv (multiple of 16); KT: keys per tile; WARPS: warps of 16 query rows.
template <int DMAX, int KT, int WARPS>
struct Shape {
  static constexpr int kRows = 16 * WARPS;
  static constexpr int kLdQK = DMAX + 8;  // halves; ≡ 8 (mod 16) keeps fragment loads conflict free
  static constexpr int kLdV = KT + 8;
  static constexpr int kQElems = kRows * kLdQK;
  static constexpr int kKVElems = KT * kLdQK + DMAX * kLdV;
  // Q is staged through the same memory as K and V: its fragments live in registers afterwards.
  static constexpr int kSmemElems = kQElems > kKVElems ? kQElems : kKVElems;
  static_assert(DMAX % 16 == 0 && KT % 32 == 0, "mma tiles are 16 deep; the V loader wants whole warps of keys");
  static_assert(kSmemElems * 2 <= 48 * 1024, "static shared memory is limited to 48 KB");
};

// Rows [r0, r0 + n) of one head (columns [col0, col0 + cols) of each row) into a shared tile of
// `rows` rows; columns [cols, cols_pad) and rows [n, rows) become zeros. cols_pad is a multiple
// of 8 (each thread moves 8 elements at a time). TRANSPOSED stores element (r, c) at c·ld + r
// (V as [d][key]); otherwise at r·ld + c, with ld a multiple of 8 so the 16-byte store is aligned.
// Consecutive threads take consecutive chunks of a row (coalesced reads), except when transposing:
// there the 8 stores of a chunk go to 8 rows of the tile whose starts share a bank (8·ld halves is
// a multiple of 32 words), so consecutive threads take consecutive keys of one chunk instead,
// which makes each store instruction of a warp hit 16 distinct words; rows must then be a
// multiple of 32.
template <bool TRANSPOSED, class X>
PIA_TC_FN void load_tile(X& x, uint16_t* dst, int ld, const uint16_t* src, const PiaAttnStrides& s, int64_t b,
                         int64_t inner, int64_t col0, int r0, int n, int rows, int cols, int cols_pad, bool vec) {
  const int chunks = cols_pad / 8;
  for (int c = x.thread(); c < rows * chunks; c += x.threads()) {
    const int r = TRANSPOSED ? c % rows : c / chunks;
    const int d0 = (TRANSPOSED ? c / rows : c - r * chunks) * 8;
    uint32_t w[4] = {0u, 0u, 0u, 0u};  // element i in half (i & 1) of word i / 2: little-endian order
    if (r < n && d0 < cols) {
      const uint16_t* g = src + row_offset(s, b, inner, r0 + r) + col0 + d0;
      if (vec) {  // then cols is a multiple of 8: the chunk is whole
        x.load16(g, w);
      } else {
        PIA_TC_UNROLL
        for (int i = 0; i < 8; ++i) {
          if (d0 + i < cols) w[i >> 1] |= uint32_t(g[i]) << (16 * (i & 1));
        }
      }
    }
    if (TRANSPOSED) {
      PIA_TC_UNROLL
      for (int i = 0; i < 8; ++i) dst[(d0 + i) * ld + r] = uint16_t(w[i >> 1] >> (16 * (i & 1)));
    } else {
      x.store16(dst + r * ld + d0, w);
    }
  }
}

// One CTA of WARPS·32 threads: query rows [16·WARPS·block_y, +16·WARPS) of (batch, head)
// block_x. smem holds Shape::kSmemElems.
template <int DMAX, int KT, int WARPS, class X>
PIA_TC_FN void attention_cta(X& x, const Params& p, uint16_t* smem) {
  using namespace pia_mma;
  using S = Shape<DMAX, KT, WARPS>;
  constexpr int kLd = S::kLdQK, kLdV = S::kLdV;
  constexpr int kDSteps = DMAX / 16;  // k-steps of Q·Kᵀ at most
  constexpr int kSTiles = KT / 8;     // n-tiles of S per key tile
  constexpr int kPSteps = KT / 16;    // k-steps of P·V per key tile
  constexpr int kOTiles = DMAX / 8;   // n-tiles of O at most
  uint16_t* const Qs = smem;
  uint16_t* const Ks = smem;
  uint16_t* const Vt = smem + KT * kLd;

  const int64_t bh = x.block_x();
  const int64_t b = bh / p.H;
  const int h = int(bh % p.H);
  const int q0 = x.block_y() * S::kRows;
  const int lane = x.thread() & 31, warp = x.thread() >> 5;
  const int d_steps = round_up(p.D, 16) / 16;  // runtime bounds of the unrolled loops below
  const int o_tiles = round_up(p.Dv, 8) / 8;
  const bool vec = p.vec != 0;

  load_tile<false>(x, Qs, kLd, p.q, p.sq, b, p.batch_inner, int64_t(h) * p.D, q0, imin(S::kRows, p.Sq - q0), S::kRows,
                   p.D, d_steps * 16, vec);
  x.sync();
  uint32_t qa[kDSteps][4];
  PIA_TC_UNROLL
  for (int ks = 0; ks < kDSteps; ++ks) {
    PIA_TC_UNROLL
    for (int r = 0; r < 4; ++r) {
      qa[ks][r] = ks < d_steps ? shared_pair(Qs + warp * 16 * kLd + ks * 16 + a_reg_offset(lane, r, kLd)) : 0u;
    }
  }

  float o[kOTiles][4];
  PIA_TC_UNROLL
  for (int nt = 0; nt < kOTiles; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
  // This lane's two rows: C elements 0,1 are in row `row[0]`, elements 2,3 in `row[1]`.
  const int row0 = q0 + warp * 16;
  const int row[2] = {row0 + c_row(lane, 0), row0 + c_row(lane, 2)};
  float m[2] = {-INFINITY, -INFINITY};  // running max (log2 domain)
  float l[2] = {0.f, 0.f};              // this lane's part of the running sum

  // Causal: no key beyond the CTA's last query row is needed.
  const int q_last = imin(q0 + S::kRows, p.Sq) - 1;
  const int kend = p.causal ? imin(p.Sk, q_last + 1) : p.Sk;
  for (int j0 = 0; j0 < kend; j0 += KT) {
    x.sync();  // Q's fragments (first pass) or the previous tile are no longer read
    const int n = imin(KT, p.Sk - j0);
    load_tile<false>(x, Ks, kLd, p.k, p.sk, b, p.batch_inner, int64_t(h) * p.D, j0, n, KT, p.D, d_steps * 16, vec);
    load_tile<true>(x, Vt, kLdV, p.v, p.sv, b, p.batch_inner, int64_t(h) * p.Dv, j0, n, KT, p.Dv, round_up(p.Dv, 16),
                    vec);
    x.sync();
    // Warp-uniform skips: all rows of this warp are padding, or every key of the tile is in the
    // future of all its rows.
    if (row0 >= p.Sq || (p.causal && j0 > row0 + 15)) continue;

    float s[kSTiles][4];
    PIA_TC_UNROLL
    for (int nt = 0; nt < kSTiles; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      if (nt * 8 >= n) continue;  // keys past Sk: masked below anyway
      PIA_TC_UNROLL
      for (int ks = 0; ks < kDSteps; ++ks) {
        if (ks >= d_steps) continue;
        const uint32_t kb[2] = {shared_pair(Ks + nt * 8 * kLd + ks * 16 + bt_reg_offset(lane, 0, kLd)),
                                shared_pair(Ks + nt * 8 * kLd + ks * 16 + bt_reg_offset(lane, 1, kLd))};
        x.mma(s[nt], qa[ks], kb);
      }
    }

    // Only the last tile (keys past Sk) and causal tiles reaching past the warp's first row have
    // masked keys; the test is warp-uniform and spares the others the per-score index arithmetic.
    const bool any_masked = n < KT || (p.causal && j0 + KT - 1 > row0);
    float tile_max[2] = {-INFINITY, -INFINITY};
    PIA_TC_UNROLL
    for (int nt = 0; nt < kSTiles; ++nt) {
      PIA_TC_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int key = j0 + nt * 8 + c_col(lane, e);
        const int i = e >> 1;
        const bool masked = any_masked && (key >= p.Sk || (p.causal && key > row[i]));
        s[nt][e] = masked ? -INFINITY : s[nt][e] * p.scale_log2;
        tile_max[i] = fmaxf(tile_max[i], s[nt][e]);
      }
    }
    float m_use[2];
    PIA_TC_UNROLL
    for (int i = 0; i < 2; ++i) {
      // The 4 lanes of a quad (same group, t = 0..3) hold the row's 2·kSTiles·4 scores.
      tile_max[i] = fmaxf(tile_max[i], x.shfl_xor(tile_max[i], 1));
      tile_max[i] = fmaxf(tile_max[i], x.shfl_xor(tile_max[i], 2));
      const float m_new = fmaxf(m[i], tile_max[i]);
      // A row with every key so far masked keeps m = −inf; subtracting 0 then gives P = 0 and
      // corr = 0 instead of exp2(−inf − (−inf)) = NaN.
      m_use[i] = m_new == -INFINITY ? 0.f : m_new;
      const float corr = x.exp2(m[i] - m_use[i]);
      m[i] = m_new;
      l[i] *= corr;
      PIA_TC_UNROLL
      for (int nt = 0; nt < kOTiles; ++nt) {
        o[nt][2 * i] *= corr;
        o[nt][2 * i + 1] *= corr;
      }
    }

    PIA_TC_UNROLL
    for (int kk = 0; kk < kPSteps; ++kk) {
      if (kk * 16 >= n) continue;  // P and V are zero there
      uint32_t pa[4];
      PIA_TC_UNROLL
      for (int r = 0; r < 4; ++r) {
        const int tile = 2 * kk + a_from_c_tile(r), e = a_from_c_elem(r), i = e >> 1;
        const uint16_t lo = x.bits(x.exp2(s[tile][e] - m_use[i]));
        const uint16_t hi = x.bits(x.exp2(s[tile][e + 1] - m_use[i]));
        // The sum takes the rounded P that the product uses, so the normalised weights sum to 1.
        l[i] += x.value(lo) + x.value(hi);
        pa[r] = uint32_t(lo) | (uint32_t(hi) << 16);
      }
      PIA_TC_UNROLL
      for (int nt = 0; nt < kOTiles; ++nt) {
        if (nt >= o_tiles) continue;
        const uint32_t vb[2] = {shared_pair(Vt + nt * 8 * kLdV + kk * 16 + bt_reg_offset(lane, 0, kLdV)),
                                shared_pair(Vt + nt * 8 * kLdV + kk * 16 + bt_reg_offset(lane, 1, kLdV))};
        x.mma(o[nt], pa, vb);
      }
    }
  }

  PIA_TC_UNROLL
  for (int i = 0; i < 2; ++i) {
    l[i] += x.shfl_xor(l[i], 1);
    l[i] += x.shfl_xor(l[i], 2);
    if (row[i] >= p.Sq) continue;
    const float inv = 1.f / l[i];  // l ≥ 1: the row's largest score contributes exp2(0)
    uint16_t* const orow = p.o + row_offset(p.so, b, p.batch_inner, row[i]) + int64_t(h) * p.Dv;
    PIA_TC_UNROLL
    for (int nt = 0; nt < kOTiles; ++nt) {
      PIA_TC_UNROLL
      for (int j = 0; j < 2; ++j) {
        const int col = nt * 8 + c_col(lane, 2 * i + j);
        if (col < p.Dv) orow[col] = x.bits(o[nt][2 * i + j] * inv);
      }
    }
  }
}

}  // namespace pia_attn_tc

#undef PIA_TC_FN
#undef PIA_TC_UNROLL
