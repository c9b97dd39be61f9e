// The fragment layouts of mma.m16n8k16 (native/cuda/mma_layout.cuh) checked on the host, so the
// register bookkeeping of the tensor-core attention kernel is verified on machines without a GPU.
// A warp's mma is simulated from its definition: the 32 lanes' registers are scattered into the
// A, B, C matrices through the layout functions, D = A·B + C is formed, and D is read back into
// per-lane registers the same way. On top of that, one warp's share of the attention kernel
// (Q fragments and K, Vᵀ tiles addressed with the kernel's offset helpers, S = Q·Kᵀ, S reused as
// the A operand of P·V) is replayed with small integers, where every product is exact, and
// compared with plain matrix products.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/mma_layout.cuh"
#include "harness.h"

using namespace pia_mma;

namespace {

constexpr int kLanes = 32;

// Per-lane fragments, element by element (register r holds elements 2r and 2r + 1).
struct AFrag {
  float e[kLanes][kAElems];
};
struct BFrag {
  float e[kLanes][kBElems];
};
struct CFrag {
  float e[kLanes][kCElems];
};

// D = A·B + C for one warp, as the hardware defines it on whole matrices.
CFrag warp_mma(const AFrag& a, const BFrag& b, const CFrag& c) {
  float A[kM][kK], B[kK][kN], C[kM][kN];
  int seen_a[kM][kK] = {}, seen_b[kK][kN] = {}, seen_c[kM][kN] = {};
  for (int lane = 0; lane < kLanes; ++lane) {
    for (int e = 0; e < kAElems; ++e) {
      A[a_row(lane, e)][a_col(lane, e)] = a.e[lane][e];
      ++seen_a[a_row(lane, e)][a_col(lane, e)];
    }
    for (int e = 0; e < kBElems; ++e) {
      B[b_k(lane, e)][b_n(lane, e)] = b.e[lane][e];
      ++seen_b[b_k(lane, e)][b_n(lane, e)];
    }
    for (int e = 0; e < kCElems; ++e) {
      C[c_row(lane, e)][c_col(lane, e)] = c.e[lane][e];
      ++seen_c[c_row(lane, e)][c_col(lane, e)];
    }
  }
  // Every matrix element must come from exactly one (lane, element): a layout that left a hole
  // or held an element twice would not describe a 16x16 / 16x8 / 16x8 operand.
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kK; ++j) EXPECT(seen_a[i][j] == 1);
  for (int i = 0; i < kK; ++i)
    for (int j = 0; j < kN; ++j) EXPECT(seen_b[i][j] == 1);
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kN; ++j) EXPECT(seen_c[i][j] == 1);
  CFrag d;
  for (int lane = 0; lane < kLanes; ++lane) {
    for (int e = 0; e < kCElems; ++e) {
      const int i = c_row(lane, e), j = c_col(lane, e);
      double acc = C[i][j];
      for (int k = 0; k < kK; ++k) acc += double(A[i][k]) * B[k][j];
      d.e[lane][e] = float(acc);
    }
  }
  return d;
}

float small_int(std::mt19937& g) { return float(int(g() % 7) - 3); }

}  // namespace

PIA_TEST(mma_layout_register_pairs_are_adjacent) {
  // The kernel loads each 32-bit register with one load from shared memory: the two halves must be
  // neighbours along the contiguous dimension (A: a row; B: k), low half first.
  for (int lane = 0; lane < kLanes; ++lane) {
    for (int r = 0; r < kARegs; ++r) {
      EXPECT(a_row(lane, 2 * r + 1) == a_row(lane, 2 * r));
      EXPECT(a_col(lane, 2 * r + 1) == a_col(lane, 2 * r) + 1);
      EXPECT(a_col(lane, 2 * r) % 2 == 0);  // 4-byte aligned pair when the tile row is
    }
    for (int r = 0; r < kBRegs; ++r) {
      EXPECT(b_n(lane, 2 * r + 1) == b_n(lane, 2 * r));
      EXPECT(b_k(lane, 2 * r + 1) == b_k(lane, 2 * r) + 1);
      EXPECT(b_k(lane, 2 * r) % 2 == 0);
    }
    // Rows shared by the 4 lanes of a quad (the softmax reduces over shuffles xor 1 and 2).
    for (int e = 0; e < kCElems; ++e) {
      EXPECT(c_row(lane, e) == c_row(lane ^ 1, e) && c_row(lane, e) == c_row(lane ^ 2, e));
      EXPECT(c_row(lane, e) == c_row(lane, 0) + 8 * (e >> 1));
    }
  }
  // Spot values straight from the PTX ISA's tables.
  EXPECT(a_row(5, 0) == 1 && a_col(5, 0) == 2);   // lane 5: groupID 1, threadID_in_group 1
  EXPECT(a_row(5, 3) == 9 && a_col(5, 3) == 3);   // a3: row groupID + 8
  EXPECT(a_row(5, 6) == 9 && a_col(5, 6) == 10);  // a6: row groupID + 8, col + 8
  EXPECT(b_k(30, 3) == 13 && b_n(30, 3) == 7);    // lane 30: groupID 7, threadID_in_group 2
  EXPECT(c_row(31, 2) == 15 && c_col(31, 3) == 7);
}

PIA_TEST(mma_layout_simulated_warp_mma_is_the_matrix_product) {
  std::mt19937 g(7);
  float A[kM][kK], B[kK][kN], C[kM][kN];
  for (auto& row : A)
    for (float& x : row) x = small_int(g);
  for (auto& row : B)
    for (float& x : row) x = small_int(g);
  for (auto& row : C)
    for (float& x : row) x = small_int(g);
  AFrag a;
  BFrag b;
  CFrag c;
  for (int lane = 0; lane < kLanes; ++lane) {
    for (int e = 0; e < kAElems; ++e) a.e[lane][e] = A[a_row(lane, e)][a_col(lane, e)];
    for (int e = 0; e < kBElems; ++e) b.e[lane][e] = B[b_k(lane, e)][b_n(lane, e)];
    for (int e = 0; e < kCElems; ++e) c.e[lane][e] = C[c_row(lane, e)][c_col(lane, e)];
  }
  const CFrag d = warp_mma(a, b, c);
  for (int lane = 0; lane < kLanes; ++lane) {
    for (int e = 0; e < kCElems; ++e) {
      const int i = c_row(lane, e), j = c_col(lane, e);
      float ref = C[i][j];
      for (int k = 0; k < kK; ++k) ref += A[i][k] * B[k][j];
      EXPECT(d.e[lane][e] == ref);
    }
  }
}

PIA_TEST(mma_layout_accumulator_pair_is_the_a_operand) {
  // P·V takes the two C tiles of a 16x16 score block as its A operand, register for register.
  for (int lane = 0; lane < kLanes; ++lane) {
    for (int r = 0; r < kARegs; ++r) {
      for (int half = 0; half < 2; ++half) {
        const int e = 2 * r + half;  // A element
        const int tile = a_from_c_tile(r), ce = a_from_c_elem(r) + half;
        EXPECT(a_row(lane, e) == c_row(lane, ce));
        EXPECT(a_col(lane, e) == 8 * tile + c_col(lane, ce));
      }
    }
  }
}

// One warp's share of attention_tc_kernel without the softmax: O = (Q·Kᵀ)·V for 16 query rows,
// with the kernel's shared-memory tiles (zero padding, leading dimensions), its offset helpers and
// its C → A reuse. Integer inputs keep every product and sum exact in float.
static void replay_warp_tile(int D, int Dv, int keys, int ld_qk_pad, int ldv_pad, uint32_t seed) {
  const int d_steps = (D + 15) / 16, dpad = d_steps * 16;
  const int o_tiles = (Dv + 7) / 8, dvpad = (Dv + 15) / 16 * 16;
  const int kt = (keys + 15) / 16 * 16;  // the tile the kernel would load: keys past the end are zero
  const int ld = dpad + ld_qk_pad, ldv = kt + ldv_pad;
  std::mt19937 g(seed);
  std::vector<float> Q(size_t(16) * D), K(size_t(keys) * D), V(size_t(keys) * Dv);
  for (float& x : Q) x = small_int(g);
  for (float& x : K) x = small_int(g);
  for (float& x : V) x = small_int(g);
  // Shared tiles as the kernel fills them (load_tile): Q, K as [row][d], V as [d][key].
  std::vector<float> Qs(size_t(16) * ld, 0.f), Ks(size_t(kt) * ld, 0.f), Vt(size_t(dvpad) * ldv, 0.f);
  for (int i = 0; i < 16; ++i)
    for (int d = 0; d < D; ++d) Qs[size_t(i) * ld + d] = Q[size_t(i) * D + d];
  for (int j = 0; j < keys; ++j)
    for (int d = 0; d < D; ++d) Ks[size_t(j) * ld + d] = K[size_t(j) * D + d];
  for (int j = 0; j < keys; ++j)
    for (int d = 0; d < Dv; ++d) Vt[size_t(d) * ldv + j] = V[size_t(j) * Dv + d];

  // S = Q·Kᵀ: kt / 8 C tiles.
  std::vector<CFrag> S(size_t(kt / 8));
  for (int nt = 0; nt < kt / 8; ++nt) {
    CFrag acc{};
    for (int ks = 0; ks < d_steps; ++ks) {
      AFrag a;
      BFrag b;
      for (int lane = 0; lane < kLanes; ++lane) {
        for (int r = 0; r < kARegs; ++r) {
          const size_t off = size_t(ks * 16 + a_reg_offset(lane, r, ld));
          a.e[lane][2 * r] = Qs[off];
          a.e[lane][2 * r + 1] = Qs[off + 1];
        }
        for (int r = 0; r < kBRegs; ++r) {
          const size_t off = size_t(nt * 8 * ld + ks * 16 + bt_reg_offset(lane, r, ld));
          b.e[lane][2 * r] = Ks[off];
          b.e[lane][2 * r + 1] = Ks[off + 1];
        }
      }
      acc = warp_mma(a, b, acc);
    }
    S[size_t(nt)] = acc;
  }
  // O = P·V with P = S taken from the accumulators.
  std::vector<CFrag> O(static_cast<size_t>(o_tiles));
  for (int nt = 0; nt < o_tiles; ++nt) {
    CFrag acc{};
    for (int kk = 0; kk < kt / 16; ++kk) {
      AFrag a;
      BFrag b;
      for (int lane = 0; lane < kLanes; ++lane) {
        for (int r = 0; r < kARegs; ++r) {
          const CFrag& c = S[size_t(2 * kk + a_from_c_tile(r))];
          a.e[lane][2 * r] = c.e[lane][a_from_c_elem(r)];
          a.e[lane][2 * r + 1] = c.e[lane][a_from_c_elem(r) + 1];
        }
        for (int r = 0; r < kBRegs; ++r) {
          const size_t off = size_t(nt * 8 * ldv + kk * 16 + bt_reg_offset(lane, r, ldv));
          b.e[lane][2 * r] = Vt[off];
          b.e[lane][2 * r + 1] = Vt[off + 1];
        }
      }
      acc = warp_mma(a, b, acc);
    }
    O[size_t(nt)] = acc;
  }
  // Written back as the kernel does: C element e of tile nt is (c_row, nt·8 + c_col).
  std::vector<float> got(size_t(16) * Dv, NAN);
  for (int nt = 0; nt < o_tiles; ++nt)
    for (int lane = 0; lane < kLanes; ++lane)
      for (int e = 0; e < kCElems; ++e) {
        const int col = nt * 8 + c_col(lane, e);
        if (col < Dv) got[size_t(c_row(lane, e)) * Dv + col] = O[size_t(nt)].e[lane][e];
      }
  int bad = 0;
  for (int i = 0; i < 16; ++i)
    for (int d = 0; d < Dv; ++d) {
      double ref = 0;
      for (int j = 0; j < keys; ++j) {
        double s = 0;
        for (int c = 0; c < D; ++c) s += double(Q[size_t(i) * D + c]) * K[size_t(j) * D + c];
        ref += s * V[size_t(j) * Dv + d];
      }
      if (!(got[size_t(i) * Dv + d] == float(ref))) ++bad;
    }
  std::printf("     D %3d Dv %3d keys %3d: %d of %d outputs differ\n", D, Dv, keys, bad, 16 * Dv);
  EXPECT(bad == 0);
}

PIA_TEST(mma_layout_replayed_attention_tile_is_q_kt_v) {
  // SD-1.5's head dims, the fixtures' small ones, D != Dv, ragged key counts; leading-dimension
  // padding as in the kernel (+8 halves).
  replay_warp_tile(40, 40, 64, 8, 8, 1);
  replay_warp_tile(80, 80, 32, 8, 8, 2);
  replay_warp_tile(160, 160, 32, 8, 8, 3);
  replay_warp_tile(8, 16, 7, 8, 8, 4);
  replay_warp_tile(4, 4, 1, 8, 8, 5);
  replay_warp_tile(64, 24, 77, 8, 8, 6);
}
