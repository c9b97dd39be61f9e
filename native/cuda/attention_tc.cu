// Tensor-core flash attention (FlashAttention-2's forward schedule) for f16 and bf16, head dims up
// to 160, on sm_80 and newer: mma.sync m16n8k16 with f32 accumulators and an f32 online softmax.
//
// One CTA = kWarps warps = 16·kWarps query rows of one (batch, head); warp w owns rows
// 16w..16w+15 for the whole key loop, so its softmax statistics and O accumulators never leave
// its registers. Per key tile of KT keys:
//   shared memory  K as [key][d] and V transposed as [d][key]: both are then "B stored
//                  transposed" (mma_layout.cuh), so every B register is one 32-bit load, and the
//                  padded leading dimensions (+8 halves) make those loads bank-conflict free;
//   S = Q·Kᵀ       Q's A fragments were loaded once into registers; S lands in C fragments;
//   softmax        row max over the quad of lanes that share a row (shuffles 1 and 2), running
//                  max m and sum l per row, O rescaled by exp(m_old − m_new);
//   O += P·V       P rounded to the input type and reused in place as the A operand (the C → A
//                  identity of mma_layout.cuh), V's B fragments from the transposed tile.
// Scores are kept in the log2 domain (scale · log2 e folded into one multiply, exp2f after) —
// mathematically the same softmax.
//
// Q, K, V, O are read and written through the same (outer, inner, seq) row addressing as the FMA
// kernel in attention.cu, so temporal attention reads [B, F, HW, C] in place. Rows are loaded in
// chunks of 8 elements: one 16-byte load when the dispatcher proved every row start 16-byte
// aligned, else element by element. Columns beyond D (up to the next multiple of 16) and keys
// beyond Sk are zero-filled in shared memory, because a padded zero times uninitialised shared
// memory could still be NaN; masked keys get a score of −inf, hence P = 0.
#include <atomic>
#include <cmath>

#include "common.cuh"
#include "kernels.cuh"
#include "mma_layout.cuh"

namespace pia_cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 160;  // largest head dim served here

struct TcParams {
  const uint16_t *q, *k, *v;  // f16 or bf16 bits: only the mma and the conversions know which
  uint16_t* o;
  PiaAttnStrides sq, sk, sv, so;
  int64_t batch_inner;
  int Sq, Sk, H, D, Dv;
  float scale_log2;  // scale · log2(e)
  int causal;
  int vec;  // every q/k/v row start is 16-byte aligned (checked by the dispatcher)
};

__device__ __forceinline__ int64_t row_offset(const PiaAttnStrides& s, int64_t b, int64_t inner, int64_t pos) {
  return (b / inner) * s.outer + (b % inner) * s.inner + pos * s.seq;
}

// The element type's conversions and its mma; first element in the low half, as the fragment
// layouts require.
template <typename T>
struct Elem;
template <>
struct Elem<__half> {
  static __device__ __forceinline__ uint16_t bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
  static __device__ __forceinline__ float value(uint16_t b) { return __half2float(__ushort_as_half(b)); }
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // the dispatcher never launches this below sm_80
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
};
template <>
struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ uint16_t bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
  static __device__ __forceinline__ float value(uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
};

__device__ __forceinline__ uint32_t shared_pair(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Rows [r0, r0 + n) of one head (columns [col0, col0 + cols) of each row) into a shared tile of
// `rows` rows; columns [cols, cols_pad) and rows [n, rows) become zeros. cols_pad is a multiple
// of 8 (each thread moves 8 elements at a time). TRANSPOSED stores element (r, c) at c·ld + r
// (V as [d][key]); otherwise at r·ld + c, with ld a multiple of 8 so the 16-byte store is aligned.
// Consecutive threads take consecutive chunks of a row (coalesced reads), except when transposing:
// there the 8 stores of a chunk go to 8 rows of the tile whose starts share a bank (8·ld halves is
// a multiple of 32 words), so consecutive threads take consecutive keys of one chunk instead,
// which makes each store instruction of a warp hit 16 distinct words; rows must then be a
// multiple of 32.
template <bool TRANSPOSED>
__device__ __forceinline__ void load_tile(uint16_t* dst, int ld, const uint16_t* src, const PiaAttnStrides& s,
                                          int64_t b, int64_t inner, int64_t col0, int r0, int n, int rows, int cols,
                                          int cols_pad, bool vec) {
  const int chunks = cols_pad / 8;
  for (int c = threadIdx.x; c < rows * chunks; c += blockDim.x) {
    const int r = TRANSPOSED ? c % rows : c / chunks;
    const int d0 = (TRANSPOSED ? c / rows : c - r * chunks) * 8;
    uint32_t w[4] = {0u, 0u, 0u, 0u};  // element i in half (i & 1) of word i / 2: little-endian order
    if (r < n && d0 < cols) {
      const uint16_t* g = src + row_offset(s, b, inner, r0 + r) + col0 + d0;
      if (vec) {  // then cols is a multiple of 8: the chunk is whole
        const uint4 u = *reinterpret_cast<const uint4*>(g);
        w[0] = u.x;
        w[1] = u.y;
        w[2] = u.z;
        w[3] = u.w;
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (d0 + i < cols) w[i >> 1] |= uint32_t(g[i]) << (16 * (i & 1));
        }
      }
    }
    if (TRANSPOSED) {
#pragma unroll
      for (int i = 0; i < 8; ++i) dst[(d0 + i) * ld + r] = uint16_t(w[i >> 1] >> (16 * (i & 1)));
    } else {
      *reinterpret_cast<uint4*>(dst + r * ld + d0) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

constexpr int round_up(int x, int m) { return (x + m - 1) / m * m; }

// DMAX: bound on D and Dv (multiple of 16); KT: keys per tile (multiple of 16).
template <int DMAX, int KT>
struct TcShape {
  static constexpr int kRows = 16 * kWarps;
  static constexpr int kLdQK = DMAX + 8;  // halves; ≡ 8 (mod 16) keeps fragment loads conflict free
  static constexpr int kLdV = KT + 8;
  static constexpr int kQElems = kRows * kLdQK;
  static constexpr int kKVElems = KT * kLdQK + DMAX * kLdV;
  // Q is staged through the same memory as K and V: its fragments live in registers afterwards.
  static constexpr int kSmemElems = kQElems > kKVElems ? kQElems : kKVElems;
  static_assert(DMAX % 16 == 0 && KT % 32 == 0, "mma tiles are 16 deep; the V loader wants whole warps of keys");
  static_assert(kSmemElems * 2 <= 48 * 1024, "static shared memory is limited to 48 KB");
};

template <typename T, int DMAX, int KT>
__global__ void __launch_bounds__(kWarps * 32) attention_tc_kernel(TcParams p) {
  using namespace pia_mma;
  using S = TcShape<DMAX, KT>;
  constexpr int kLd = S::kLdQK, kLdV = S::kLdV;
  constexpr int kDSteps = DMAX / 16;  // k-steps of Q·Kᵀ at most
  constexpr int kSTiles = KT / 8;     // n-tiles of S per key tile
  constexpr int kPSteps = KT / 16;    // k-steps of P·V per key tile
  constexpr int kOTiles = DMAX / 8;   // n-tiles of O at most
  __shared__ __align__(16) uint16_t smem[S::kSmemElems];
  uint16_t* const Qs = smem;
  uint16_t* const Ks = smem;
  uint16_t* const Vt = smem + KT * kLd;

  const int64_t bh = blockIdx.x;
  const int64_t b = bh / p.H;
  const int h = int(bh % p.H);
  const int q0 = int(blockIdx.y) * S::kRows;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int d_steps = round_up(p.D, 16) / 16;  // runtime bounds of the unrolled loops below
  const int o_tiles = round_up(p.Dv, 8) / 8;
  const bool vec = p.vec != 0;

  load_tile<false>(Qs, kLd, p.q, p.sq, b, p.batch_inner, int64_t(h) * p.D, q0, min(S::kRows, p.Sq - q0), S::kRows,
                   p.D, d_steps * 16, vec);
  __syncthreads();
  uint32_t qa[kDSteps][4];
#pragma unroll
  for (int ks = 0; ks < kDSteps; ++ks) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      qa[ks][r] = ks < d_steps ? shared_pair(Qs + warp * 16 * kLd + ks * 16 + a_reg_offset(lane, r, kLd)) : 0u;
    }
  }

  float o[kOTiles][4];
#pragma unroll
  for (int nt = 0; nt < kOTiles; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
  // This lane's two rows: C elements 0,1 are in row `row[0]`, elements 2,3 in `row[1]`.
  const int row0 = q0 + warp * 16;
  const int row[2] = {row0 + c_row(lane, 0), row0 + c_row(lane, 2)};
  float m[2] = {-INFINITY, -INFINITY};  // running max (log2 domain)
  float l[2] = {0.f, 0.f};              // this lane's part of the running sum

  // Causal: no key beyond the CTA's last query row is needed.
  const int q_last = min(q0 + S::kRows, p.Sq) - 1;
  const int kend = p.causal ? min(p.Sk, q_last + 1) : p.Sk;
  for (int j0 = 0; j0 < kend; j0 += KT) {
    __syncthreads();  // Q's fragments (first pass) or the previous tile are no longer read
    const int n = min(KT, p.Sk - j0);
    load_tile<false>(Ks, kLd, p.k, p.sk, b, p.batch_inner, int64_t(h) * p.D, j0, n, KT, p.D, d_steps * 16, vec);
    load_tile<true>(Vt, kLdV, p.v, p.sv, b, p.batch_inner, int64_t(h) * p.Dv, j0, n, KT, p.Dv, round_up(p.Dv, 16),
                    vec);
    __syncthreads();
    // Warp-uniform skips: all rows of this warp are padding, or every key of the tile is in the
    // future of all its rows.
    if (row0 >= p.Sq || (p.causal && j0 > row0 + 15)) continue;

    float s[kSTiles][4];
#pragma unroll
    for (int nt = 0; nt < kSTiles; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      if (nt * 8 >= n) continue;  // keys past Sk: masked below anyway
#pragma unroll
      for (int ks = 0; ks < kDSteps; ++ks) {
        if (ks >= d_steps) continue;
        const uint32_t kb[2] = {shared_pair(Ks + nt * 8 * kLd + ks * 16 + bt_reg_offset(lane, 0, kLd)),
                                shared_pair(Ks + nt * 8 * kLd + ks * 16 + bt_reg_offset(lane, 1, kLd))};
        Elem<T>::mma(s[nt], qa[ks], kb);
      }
    }

    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kSTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j0 + nt * 8 + c_col(lane, e);
        const int i = e >> 1;
        const bool masked = key >= p.Sk || (p.causal && key > row[i]);
        s[nt][e] = masked ? -INFINITY : s[nt][e] * p.scale_log2;
        tile_max[i] = fmaxf(tile_max[i], s[nt][e]);
      }
    }
    float m_use[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      // The 4 lanes of a quad (same group, t = 0..3) hold the row's 2·kSTiles·4 scores.
      tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 1));
      tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 2));
      const float m_new = fmaxf(m[i], tile_max[i]);
      // A row with every key so far masked keeps m = −inf; subtracting 0 then gives P = 0 and
      // corr = 0 instead of exp2(−inf − (−inf)) = NaN.
      m_use[i] = m_new == -INFINITY ? 0.f : m_new;
      const float corr = exp2f(m[i] - m_use[i]);
      m[i] = m_new;
      l[i] *= corr;
#pragma unroll
      for (int nt = 0; nt < kOTiles; ++nt) {
        o[nt][2 * i] *= corr;
        o[nt][2 * i + 1] *= corr;
      }
    }

#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk) {
      if (kk * 16 >= n) continue;  // P and V are zero there
      uint32_t pa[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int tile = 2 * kk + a_from_c_tile(r), e = a_from_c_elem(r), i = e >> 1;
        const uint16_t lo = Elem<T>::bits(exp2f(s[tile][e] - m_use[i]));
        const uint16_t hi = Elem<T>::bits(exp2f(s[tile][e + 1] - m_use[i]));
        // The sum takes the rounded P that the product uses, so the normalised weights sum to 1.
        l[i] += Elem<T>::value(lo) + Elem<T>::value(hi);
        pa[r] = uint32_t(lo) | (uint32_t(hi) << 16);
      }
#pragma unroll
      for (int nt = 0; nt < kOTiles; ++nt) {
        if (nt >= o_tiles) continue;
        const uint32_t vb[2] = {shared_pair(Vt + nt * 8 * kLdV + kk * 16 + bt_reg_offset(lane, 0, kLdV)),
                                shared_pair(Vt + nt * 8 * kLdV + kk * 16 + bt_reg_offset(lane, 1, kLdV))};
        Elem<T>::mma(o[nt], pa, vb);
      }
    }
  }

  uint16_t* const out = p.o;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    if (row[i] >= p.Sq) continue;
    const float inv = 1.f / l[i];  // l ≥ 1: the row's largest score contributes exp2(0)
    uint16_t* const orow = out + row_offset(p.so, b, p.batch_inner, row[i]) + int64_t(h) * p.Dv;
#pragma unroll
    for (int nt = 0; nt < kOTiles; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int col = nt * 8 + c_col(lane, 2 * i + j);
        if (col < p.Dv) orow[col] = Elem<T>::bits(o[nt][2 * i + j] * inv);
      }
    }
  }
}

template <typename T, int DMAX, int KT>
int launch_tc(const TcParams& p, int64_t batch_heads) {
  constexpr int rows = TcShape<DMAX, KT>::kRows;
  const int64_t qtiles = (int64_t(p.Sq) + rows - 1) / rows;
  if (qtiles > 65535 || batch_heads > 0x7fffffffLL) {
    set_error("attention: %d queries x %lld batch*heads is too large for one launch", p.Sq, (long long)batch_heads);
    return PIA_CUDA_ERR_ARG;
  }
  const dim3 grid{unsigned(batch_heads), unsigned(qtiles), 1u};
  attention_tc_kernel<T, DMAX, KT><<<grid, kWarps * 32, 0, stream()>>>(p);
  return check_launch("tensor-core attention kernel");
}

template <typename T>
int dispatch_tc(const TcParams& p, int64_t batch_heads) {
  const int dmax = round_up(p.D > p.Dv ? p.D : p.Dv, 16);
  // Register budget: kDSteps·4 (Q) + kOTiles·4 (O) + kSTiles·4 (S) words; 160 takes 32-key tiles.
  if (dmax <= 64) return launch_tc<T, 64, 64>(p, batch_heads);
  if (dmax <= 96) return launch_tc<T, 96, 64>(p, batch_heads);
  return launch_tc<T, kMaxHeadDim, 32>(p, batch_heads);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }
bool strides_multiple_of_8(const PiaAttnStrides& s) { return s.outer % 8 == 0 && s.inner % 8 == 0 && s.seq % 8 == 0; }

// Compute capability major of the current device, asked once per device.
int device_major() {
  static std::atomic<int> cache[64];  // 0 = not asked yet
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return 0;
  if (dev < 64) {
    if (int m = cache[dev].load(std::memory_order_relaxed)) return m;
  }
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return 0;
  if (dev < 64) cache[dev].store(major, std::memory_order_relaxed);
  return major;
}

}  // namespace

bool attention_tc_supported(const PiaAttentionArgs* a) {
  return (a->dtype == 1 || a->dtype == 2) && a->D <= kMaxHeadDim && a->Dv <= kMaxHeadDim && device_major() >= 8;
}

int attention_tc(const PiaAttentionArgs* a) {
  TcParams p{};
  p.q = static_cast<const uint16_t*>(a->q);
  p.k = static_cast<const uint16_t*>(a->k);
  p.v = static_cast<const uint16_t*>(a->v);
  p.o = static_cast<uint16_t*>(a->o);
  p.sq = a->sq;
  p.sk = a->sk;
  p.sv = a->sv;
  p.so = a->so;
  p.batch_inner = a->batch_inner;
  p.Sq = int(a->Sq);
  p.Sk = int(a->Sk);
  p.H = int(a->heads);
  p.D = int(a->D);
  p.Dv = int(a->Dv);
  p.scale_log2 = a->scale * 1.4426950408889634f;
  p.causal = a->causal;
  // 16-byte row loads need every row start (base + row offset + h·D) on a 16-byte boundary.
  p.vec = aligned16(a->q) && aligned16(a->k) && aligned16(a->v) && a->D % 8 == 0 && a->Dv % 8 == 0 &&
          strides_multiple_of_8(a->sq) && strides_multiple_of_8(a->sk) && strides_multiple_of_8(a->sv);
  const int64_t bh = a->batch * a->heads;
  if (a->dtype == 1) return dispatch_tc<__half>(p, bh);
  return dispatch_tc<__nv_bfloat16>(p, bh);
}

}  // namespace pia_cuda
